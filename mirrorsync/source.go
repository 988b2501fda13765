package mirrorsync

import (
	"context"
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
