// Package filewatch calls back when files change, watching their parent
// directories with fsnotify: editors, `mv` and Kubernetes secret updates
// replace files atomically, which a watch on the file itself misses.
//
// It reports that something in a watched directory changed, never what:
// callers re-read and validate their files, which makes spurious calls
// harmless. It is not a polling fallback.
package filewatch

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Debounce is how long events are gathered before the callback runs, so
// that a write in several steps (truncate, write, chmod) reloads once.
const Debounce = 100 * time.Millisecond

// Watch watches the parent directories of paths and calls onChange(path)
// for each path whose directory saw an event, at most once per Debounce
// window, until ctx is done. It returns once the watches are in place;
// the watching runs in a goroutine. Errors from fsnotify are logged.
func Watch(ctx context.Context, paths []string, logger *slog.Logger, onChange func(path string)) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("starting file watcher: %w", err)
	}
	byDir := make(map[string][]string)
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			w.Close()
			return fmt.Errorf("watching %s: %w", p, err)
		}
		dir := filepath.Dir(abs)
		if _, seen := byDir[dir]; !seen {
			if err := w.Add(dir); err != nil {
				w.Close()
				return fmt.Errorf("watching directory %s (of %s): %w", dir, p, err)
			}
		}
		byDir[dir] = append(byDir[dir], p)
	}
	go func() {
		defer w.Close()
		pending := make(map[string]bool)
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				dir := filepath.Dir(ev.Name)
				for _, p := range byDir[dir] {
					pending[p] = true
				}
				if len(pending) > 0 {
					timer.Reset(Debounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				logger.Warn("file watcher", "error", err.Error())
			case <-timer.C:
				for p := range pending {
					delete(pending, p)
					onChange(p)
				}
			}
		}
	}()
	return nil
}
