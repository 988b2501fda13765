package mirrorsync

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/stella-ops/stella-mirror/internal/flock"
)

// LockName is the lock file in the export root.
const LockName = ".sync.lock"

// ErrLocked is returned when another run holds the root's lock.
var ErrLocked = errors.New("another sync run holds the lock")

// LockedError is ErrLocked with the lock file's path.
type LockedError struct{ Path string }

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s on %s; this run changes nothing", ErrLocked, e.Path)
}

// Unwrap makes errors.Is(err, ErrLocked) hold.
func (e *LockedError) Unwrap() error { return ErrLocked }

// lockRoot takes an exclusive, non-blocking flock on ROOT/.sync.lock. The
// kernel releases it when the process dies, so a killed run never leaves
// a stale lock.
func lockRoot(root string) (release func(), err error) {
	path := filepath.Join(root, LockName)
	release, err = flock.TryLock(path)
	if errors.Is(err, flock.ErrLocked) {
		return nil, &LockedError{Path: path}
	}
	return release, err
}
