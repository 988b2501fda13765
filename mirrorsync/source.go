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

// Mirrorer is implemented by sources that copy a whole export directory
// more efficiently themselves (rsync). Mirror copies export id into dst,
// which may already hold files from an interrupted run; linkDest lists
// published export directories whose identical files may be hard-linked.
// The engine verifies dst afterwards and fetches whatever is still missing
// or wrong through Open. Mirror returns how many bytes it transferred.
type Mirrorer interface {
	Mirror(ctx context.Context, id, dst string, linkDest []string) (int64, error)
}
