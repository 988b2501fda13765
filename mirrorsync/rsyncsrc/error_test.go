package rsyncsrc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTidyStderr(t *testing.T) {
	t.Setenv("RSYNC_PASSWORD", "hunter2-pw")
	var lines []string
	for i := range 10 {
		lines = append(lines, "line "+string(rune('a'+i)))
	}
	tests := []struct {
		name, in, want string
	}{
		{"password removed", "@ERROR: auth failed for hunter2-pw\n", "@ERROR: auth failed for [RSYNC_PASSWORD]"},
		{"last lines only", strings.Join(lines, "\n") + "\n\n", "line e; line f; line g; line h; line i; line j"},
		{"blank lines dropped", "\n  a  \n\n b\n", "a; b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tidyStderr(tc.in); got != tc.want {
				t.Errorf("%q, want %q", got, tc.want)
			}
		})
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, s := range []string{"0123", "456789", "abcdefghij", "XY"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write: %d %v", n, err)
		}
	}
	if got := b.String(); got != "efghijXY" {
		t.Errorf("%q, want the last 8 bytes efghijXY", got)
	}
}

func TestLimitBufferFailsPastMax(t *testing.T) {
	b := &limitBuffer{max: 5}
	if _, err := b.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("def")); err == nil || !b.overflow {
		t.Fatalf("write past max: %v (overflow %v)", err, b.overflow)
	}
	if string(b.Bytes()) != "abc" {
		t.Errorf("%q", b.Bytes())
	}
}

// TestRsyncKilledOrMissing runs stand-ins for rsync under the reaper: one
// killed by SIGKILL, one exiting with an undocumented status, one that is
// not there: each error says what happened and carries no exit status.
func TestRsyncKilledOrMissing(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, bin string
		code      int
		want      string
	}{
		{"killed", script("killed", "echo dying >&2; kill -KILL $$"), -1, "rsync was killed by signal 9 (killed): dying"},
		{"undocumented", script("odd", "exit 99"), 99, "rsync exit status 99 (undocumented exit status)"},
		{"not found", filepath.Join(dir, "nonexistent"), 127, "rsync exit status 127 (the rsync binary was not found)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Source{base: "rsync://127.0.0.1:1/x", bin: tc.bin}
			_, err := s.rsync(context.Background(), "testing", "--version")
			var re *Error
			if !errors.As(err, &re) || re.Code != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v (%#v): want code %d and %q", err, re, tc.code, tc.want)
			}
			if errors.As(err, new(interface{ ExitCode() int })) {
				t.Errorf("the error has an ExitCode method")
			}
		})
	}
}
