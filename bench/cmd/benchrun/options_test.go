//go:build unix

package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o options)
		err   string // substring; "usage" for errUsage, "help" for flag.ErrHelp
	}{
		{name: "defaults", check: func(t *testing.T, o options) {
			if o.bin != "bin/stella-mirror" || o.out != "bench/out" || o.duration != 10*time.Second ||
				o.smallConns != 32 || o.largeConns != 8 || o.bundleSize != 64<<20 ||
				o.smallThreads != 1 || o.largeThreads != 2 || o.rounds != 2 || o.warmup != 2*time.Second || o.keep {
				t.Errorf("defaults = %+v", o)
			}
		}},
		{name: "connections and threads set both", args: []string{"--connections", "16", "--threads", "3", "--bundle-size", "8MiB", "--keep"}, check: func(t *testing.T, o options) {
			if o.smallConns != 16 || o.largeConns != 16 || o.smallThreads != 3 || o.largeThreads != 3 || o.bundleSize != 8<<20 || !o.keep {
				t.Errorf("got %+v", o)
			}
		}},
		{name: "fractional duration", args: []string{"--duration", "1500ms"}, err: "--duration 1.5s: want whole seconds"},
		{name: "zero duration", args: []string{"--duration", "0s"}, err: "at least 1s"},
		{name: "negative warmup", args: []string{"--warmup", "-1s"}, err: "--warmup -1s"},
		{name: "bad size", args: []string{"--bundle-size", "lots"}, err: "--bundle-size"},
		{name: "zero size", args: []string{"--bundle-size", "0"}, err: "--bundle-size"},
		{name: "threads above connections", args: []string{"--threads", "4", "--connections", "2"}, err: "--connections 2/2 below --threads 4/4"},
		{name: "default threads above connections", args: []string{"--connections", "1"}, err: "--connections 1/1 below --threads 1/2"},
		{name: "rounds", args: []string{"--rounds", "4"}, check: func(t *testing.T, o options) {
			if o.rounds != 4 {
				t.Errorf("rounds = %d, want 4", o.rounds)
			}
		}},
		{name: "zero rounds", args: []string{"--rounds", "0"}, err: "--rounds 0: want 1 to 20"},
		{name: "negative threads", args: []string{"--threads", "-1"}, err: "--threads -1"},
		{name: "negative connections", args: []string{"--connections", "-1"}, err: "--connections -1"},
		{name: "unknown flag", args: []string{"--nope"}, err: "usage"},
		{name: "stray argument", args: []string{"extra"}, err: "usage"},
		{name: "help", args: []string{"--help"}, err: "help"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, io.Discard)
			switch {
			case tt.err == "usage":
				if !errors.Is(err, errUsage) {
					t.Fatalf("err = %v, want errUsage", err)
				}
			case tt.err == "help":
				if !errors.Is(err, flag.ErrHelp) {
					t.Fatalf("err = %v, want flag.ErrHelp", err)
				}
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, o)
			}
		})
	}
}

func TestCheckToolsNamesTheFix(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "stella-mirror")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    options
		want []string
		ok   bool
	}{
		{"all missing", options{bin: filepath.Join(dir, "nope"), nginx: filepath.Join(dir, "nginx"), wrk: "no-such-wrk-binary", h2load: "no-such-h2load"},
			[]string{"stella-mirror binary not found", "run make build", "nginx not found", "apt-get install nginx-light", "wrk not found: apt-get install wrk",
				"h2load not found: apt-get install nghttp2-client"}, false},
		{"binary is a directory", options{bin: dir, nginx: "/bin/sh", wrk: "/bin/sh", h2load: "/bin/sh"}, []string{"stella-mirror binary not found"}, false},
		{"present", options{bin: bin, nginx: "/bin/sh", wrk: "sh", h2load: "sh"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			err := checkTools(&o)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if !filepath.IsAbs(o.wrk) {
					t.Errorf("wrk not resolved to a path: %q", o.wrk)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"help", []string{"--help"}, 0},
		{"bad flag", []string{"--duration", "soon"}, 2},
		{"invalid value", []string{"--threads", "-2"}, 2},
		{"missing tool", []string{"--bin", "/nonexistent/stella-mirror", "--out", "/nonexistent/out"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(tt.args, io.Discard, io.Discard); got != tt.want {
				t.Errorf("run(%q) = %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}

func TestInheritedEnvDropsMirrorSettings(t *testing.T) {
	t.Setenv("CONCELIER__MIRROR__REQUIREAUTHENTICATION", "true")
	t.Setenv("EXCITITOR__MIRROR__ENABLED", "false")
	t.Setenv("BENCH_KEEP_ME", "1")
	env := strings.Join(inheritedEnv(), "\n")
	if strings.Contains(env, "CONCELIER__") || strings.Contains(env, "EXCITITOR__") {
		t.Errorf("inherited env keeps mirror settings:\n%s", env)
	}
	if !strings.Contains(env, "BENCH_KEEP_ME=1") {
		t.Error("inherited env dropped an unrelated variable")
	}
}
