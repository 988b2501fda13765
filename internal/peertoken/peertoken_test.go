package peertoken

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	tokA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" // 40 bytes
	tokB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
		err        string // substring; "" means success
	}{
		{"one", tokA + "\n", []string{tokA}, ""},
		{"no final newline", tokA, []string{tokA}, ""},
		{"comments and blanks", "# rotation 2026-12\n\n  " + tokA + "  \r\n#old\n" + tokB + "\n", []string{tokA, tokB}, ""},
		{"short", "# c\n\n" + tokA + "\nshort-token\n", nil, "f:4: token shorter than 32 bytes"},
		{"exactly 31", strings.Repeat("x", 31), nil, "f:1: token shorter"},
		{"exactly 32", strings.Repeat("x", 32), []string{strings.Repeat("x", 32)}, ""},
		{"inner space", "aaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbb\n", nil, "f:1: token holds a character"},
		{"non-ascii", strings.Repeat("é", 20), nil, "f:1: token holds a character"},
		{"too long", strings.Repeat("x", MaxLen+1), nil, "f:1: token longer"},
		{"empty", "", nil, "f: no token"},
		{"only comments", "# nothing\n\n", nil, "f: no token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("f", []byte(tc.data))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse = %v, %v; want error containing %q", got, err, tc.err)
				}
				for _, line := range strings.Split(tc.data, "\n") {
					if l := strings.TrimSpace(line); len(l) >= 8 && l[0] != '#' && strings.Contains(err.Error(), l) {
						t.Errorf("error %q quotes a token line", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("Parse = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	if _, err := ReadFile(p); err == nil || !os.IsNotExist(err) {
		t.Errorf("missing file: %v, want not-exist", err)
	}
	if err := os.WriteFile(p, []byte(strings.Repeat("#", maxFile+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
	if err := os.WriteFile(p, []byte(tokB+"\n"+tokA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(p)
	if err != nil || len(got) != 2 || got[0] != tokB {
		t.Errorf("ReadFile = %q, %v", got, err)
	}
}

func TestSetMatch(t *testing.T) {
	s := NewSet([]string{tokA, tokB})
	if s.Len() != 2 {
		t.Fatalf("Len = %d", s.Len())
	}
	for _, tc := range []struct {
		presented string
		want      bool
	}{
		{tokA, true}, {tokB, true}, {"", false}, {tokA[:39], false}, {tokA + "a", false},
		{strings.ToUpper(tokA), false},
	} {
		if got := s.Match(tc.presented); got != tc.want {
			t.Errorf("Match(%d bytes) = %v, want %v", len(tc.presented), got, tc.want)
		}
	}
	if NewSet(nil).Match("") {
		t.Error("an empty set matched the empty string")
	}
}
