package mirrorsync

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// RunningName is the marker file a run creates in the export root once it
// holds the lock and removes when it ends, however it ends. A run that
// finds it was preceded by one that was killed (SIGKILL, OOM, crash,
// power loss). It is empty: creating it takes an inode, no data block,
// so it works on a full disk.
const RunningName = ".sync.running"

// ErrKilled is the outcome recorded for a run that was killed before it
// finished, detected by the next run (Result.PreviousRunKilled).
var ErrKilled = errors.New("the previous sync run was killed before it finished")

// markRunning detects a killed previous run and creates the marker; the
// returned function removes it. A marker that cannot be created is logged
// and does not stop the run.
func (r *run) markRunning() (unmark func()) {
	path := filepath.Join(r.opts.Root, RunningName)
	if fi, err := os.Lstat(path); err == nil {
		r.res.PreviousRunKilled = true
		r.res.PreviousRunStarted = fi.ModTime()
		r.log.Warn("previous run was killed before it finished; resuming from what it staged",
			"started", fi.ModTime().UTC(), "marker", path)
		if err := os.Remove(path); err != nil {
			r.log.Warn("cannot remove the marker of the killed run", "error", err)
		}
	}
	if r.opts.Started != nil {
		r.opts.Started(r.res)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		r.log.Warn("cannot create the running marker; a kill of this run will go unnoticed", "error", err)
		return func() {}
	}
	f.Close()
	syncDir(r.opts.Root)
	return func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("cannot remove the running marker", "error", err)
		}
	}
}
