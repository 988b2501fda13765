// Package atomicfile writes files so that readers see either the old content
// or the complete new content, never a partial file, even across a crash.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// WriteFile writes data to path atomically: it writes a temporary file in the
// same directory, fsyncs it, sets perm, renames it over path and fsyncs the
// directory so the rename itself is durable. perm is applied exactly (the
// umask does not apply). An existing file at path is replaced; on error, path
// is left as it was and the temporary file is removed.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, nil)
}

// WriteFileKeepOwner is WriteFile that also gives the new file the owner and
// group of the file it replaces, so a file handed to a service account
// (e.g. a container's uid) stays readable by it after a rewrite. Only root
// may give a file away: for anyone else the new file keeps the writer's
// owner and group, and no error is returned for that.
func WriteFileKeepOwner(path string, data []byte, perm os.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return write(path, data, perm, nil)
	}
	uid, gid, ok := owner(fi)
	if !ok {
		return write(path, data, perm, nil)
	}
	return write(path, data, perm, func(f *os.File) error {
		if err := f.Chown(uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return err
		}
		return nil
	})
}

// write is WriteFile with a hook run on the temporary file before it is
// renamed into place.
func write(path string, data []byte, perm os.FileMode, prepare func(*os.File) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
			err = fmt.Errorf("atomicfile: write %s: %w", path, err)
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if prepare != nil {
		if err = prepare(tmp); err != nil {
			return err
		}
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmpName, path); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		// The file is in place; only durability of the rename is in doubt.
		return fmt.Errorf("atomicfile: write %s: sync directory: %w", path, err)
	}
	return nil
}

// syncDir fsyncs a directory so a rename in it survives a crash. Platforms
// and file systems that cannot fsync a directory are tolerated.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return nil
}
