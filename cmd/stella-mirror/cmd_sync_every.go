package main

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"time"
)

// minEvery is the shortest --every (SYNC__EVERY) accepted. Exports are
// published hours apart; a faster loop would only spend the upstream's
// index budget (MAXINDEXREQUESTSPERHOUR) and the source's bandwidth. The
// test binary lowers it (STELLA_MIRROR_TEST_MIN_EVERY, read only by
// TestMain) so a test can watch several runs; the shipped binary cannot.
var minEvery = time.Minute

// jitter returns a random extra wait in [0, every/10]: pods started
// together by a rollout drift apart instead of hitting the upstream at
// the same second on every run.
func jitter(every time.Duration) time.Duration {
	return rand.N(every/10 + 1)
}

// syncEvery runs once at once, then again every plus jitter(every) after
// the previous run started (at once when a run took longer; runs never
// overlap), until ctx is done:
//
//   - after each run one "next sync run" line gives its result, its exit
//     status and the time of the next run;
//   - a run's failure (status 1) or a held lock (75) is logged and the loop
//     goes on; an invalid configuration (2) at the first run is returned
//     (no endless loop on a bad configuration). The configuration is read
//     and validated once, before the first run, so a later run has no
//     status-2 cause of its own: files it names (a secret that vanished)
//     are read at run time and are status-1 failures, retried next time;
//   - ctx done while waiting returns nil (exit 0) at once; ctx done during
//     a run returns that run's error, so the process exits with the status
//     a single interrupted run has.
func syncEvery(ctx context.Context, every time.Duration, logger *slog.Logger,
	once func(context.Context) (string, error), jitter func(time.Duration) time.Duration) error {
	logger.Info("sync repeating", "every", every.String(), "jitter_max", (every / 10).String())
	for n := 1; ; n++ {
		start := time.Now()
		result, err := once(ctx)
		status := syncStatus(err)
		if ctx.Err() != nil {
			logger.Info("sync stopping: signal received during a run", "run", n, "result", result, "status", status)
			return err
		}
		if n == 1 && status == exitConfig {
			return err
		}
		switch {
		case status == exitLocked:
			logger.Warn("sync skipped", "result", result, "error", err)
		case err != nil && !errors.As(err, new(loggedError)):
			// A single run leaves these to run(), which prints them
			// once at exit; the loop goes on, so it logs them here.
			logger.Error("sync failed", "result", result, "error", err)
		}
		next := start.Add(every + jitter(every))
		wait := max(time.Until(next), 0)
		logger.Info("next sync run", "run", n, "result", result, "status", status,
			"next_run", time.Now().Add(wait).UTC().Format(time.RFC3339), "wait_s", wait.Seconds(),
			"goroutines", runtime.NumGoroutine())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			logger.Info("sync stopped: signal received while waiting", "runs", n)
			return nil
		case <-t.C:
			if ctx.Err() != nil { // both ready: the signal wins
				logger.Info("sync stopped: signal received while waiting", "runs", n)
				return nil
			}
		}
	}
}

// syncStatus is the exit status run() gives err, for the log line.
func syncStatus(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return exitConfig
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return exitFailed
}
