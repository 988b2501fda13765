// Package flock takes exclusive advisory locks on lock files (flock(2)), so
// that two processes never work on the same directory at once. The kernel
// drops the lock when the holder exits or dies, so a killed process never
// leaves a stale lock behind.
package flock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned (wrapped) when another holder has the lock.
var ErrLocked = errors.New("held by another process")

// TryLock opens or creates path and takes an exclusive lock on it without
// waiting. release closes the file, which drops the lock. When another
// process (or another open file description in this one) holds the lock,
// the error wraps ErrLocked and names path.
func TryLock(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
