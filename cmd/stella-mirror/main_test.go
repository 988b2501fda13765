package main

import (
	"os"
	"testing"
	"time"
)

// TestMain lets a test run the program itself: with
// STELLA_MIRROR_TEST_RUN_MAIN=1 the test binary is stella-mirror (its
// arguments are the command line), so a test can start it as a process
// (e.g. under prlimit) without a build step.
func TestMain(m *testing.M) {
	if os.Getenv("STELLA_MIRROR_TEST_RUN_MAIN") == "1" {
		if v := os.Getenv("STELLA_MIRROR_TEST_MIN_EVERY"); v != "" {
			// Only the test binary: lets a test watch several --every
			// runs without waiting minutes between them.
			d, err := time.ParseDuration(v)
			if err != nil {
				panic(err)
			}
			minEvery = d
		}
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
