package mirrorsync

import (
	"context"
	"errors"
	"io"
)

// Source is where exports come from. Paths are relative to an export
// directory and use the layout of package export (mirror/index.json,
// mirror/<domain>/bundle.json, excititor/<domain>/exports/<key>, …).
//
// Implementations MUST be safe for sequential use by one run and honour
// context cancellation. They MUST return an error wrapping fs.ErrNotExist
// for a file or export that does not exist.
type Source interface {
	// String describes the source for logs and errors. It MUST NOT
	// contain credentials.
	String() string
	// Resolve returns the id of the export to sync: the source's newest
	// complete export (or the one an upstream mirror serves).
	Resolve(ctx context.Context) (string, error)
	// Open returns the bytes of file rel of export id. The caller closes
	// the reader; a read error means the transfer failed.
	Open(ctx context.Context, id, rel string) (io.ReadCloser, error)
	// ExcititorDomains lists the domains of export id that may have an
	// Excititor index; a listed domain without one is skipped (Open
	// returns fs.ErrNotExist for its index).
	ExcititorDomains(ctx context.Context, id string) ([]string, error)
}

// Mirrorer is implemented by sources that copy many files of an export
// more efficiently themselves (rsync). Mirror copies the listed files of
// export id into dst, which holds none of them (the engine has already
// hard-linked into dst, by digest, every file a published export holds and
// kept the verified files an interrupted run left there); it must not
// touch other files of dst. Before copying anything it MUST refuse a listed
// file that is missing at the source (an error wrapping fs.ErrNotExist), is
// not a regular file, or whose size differs from MirrorFile.Size (or
// exceeds MirrorFile.Max), naming the file; and it must not transfer a file
// larger than the largest bound. The engine verifies dst afterwards and
// fetches whatever is still missing or wrong through Open. Mirror returns
// how many bytes it transferred.
type Mirrorer interface {
	Mirror(ctx context.Context, id, dst string, files []MirrorFile) (int64, error)
}

// MirrorFile is one file a Mirrorer copies.
type MirrorFile struct {
	// Path is relative to the export directory (export.ValidateRelPath).
	Path string
	// Size is the size the indexes declare; -1 when they declare none
	// (detached signatures).
	Size int64
	// Max bounds the file's size: Size when declared, else the format's
	// limit (jws.MaxSignatureSize).
	Max int64
}

// RangeOpener is implemented by sources that can continue an interrupted
// download (HTTP Range, S3 ranged GET, a seek). The engine keeps the
// partial file of a failed or killed transfer and asks for the rest.
// Sources without it (rsync keeps its own partial files) always start over.
//
// OpenFrom returns the bytes of file rel of export id from offset on, and
// the offset it actually starts at: offset, or 0 when the source sends the
// whole file instead (an HTTP server that ignores Range, or a file that
// changed since validator). validator is what the reader of the first
// transfer reported through Validator ("" when it reported none); a source
// that can tell that the file changed since then MUST return the whole
// file from 0 rather than splice two versions. A served range that does
// not start at offset, or whose Content-Range does not parse, MUST be an
// error wrapping ErrBadRange: the engine then discards the partial file
// and fetches the whole file with Open.
type RangeOpener interface {
	OpenFrom(ctx context.Context, id, rel string, offset int64, validator string) (rc io.ReadCloser, start int64, err error)
}

// ErrBadRange is wrapped by RangeOpener.OpenFrom's error when the source
// answered the range request with bytes it cannot splice onto the partial
// file (a range starting elsewhere, a Content-Range that does not parse).
var ErrBadRange = errors.New("the source answered the range request with another range")

// Sizer is implemented by readers from Source.Open and RangeOpener.OpenFrom
// that know the whole file's size at the source before sending it
// (Content-Length or Content-Range, an object's or a file's size). Size
// returns -1 when it is unknown. The engine refuses a file whose size
// differs from the declared one without reading it.
type Sizer interface {
	Size() int64
}

// Validator is implemented by readers that can name the version of the
// file they deliver (an HTTP or S3 ETag, a file's size and modification
// time). The engine stores it beside a partial file and passes it to
// RangeOpener.OpenFrom when it resumes.
type Validator interface {
	Validator() string
}
