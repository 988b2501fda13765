package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnippetsMatch: every mutation's snippet occurs exactly once in its
// file as the code is now, so `make mutate` cannot silently stop applying
// a mutation after a refactoring (it would report the mismatch only when
// run; this runs in make test).
func TestSnippetsMatch(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	names := map[string]bool{}
	for _, m := range mutations {
		if names[m.Name] {
			t.Errorf("mutation %s listed twice", m.Name)
		}
		names[m.Name] = true
		if len(m.Edits) == 0 || len(m.Packages) == 0 {
			t.Errorf("%s: no edits or no packages", m.Name)
		}
		for _, e := range m.Edits {
			data, err := os.ReadFile(filepath.Join(root, e.File))
			if err != nil {
				t.Errorf("%s: %v", m.Name, err)
				continue
			}
			if n := strings.Count(string(data), e.Old); n != 1 {
				t.Errorf("%s: snippet found %d times in %s, want once:\n%s", m.Name, n, e.File, e.Old)
			}
			if e.Old == e.New {
				t.Errorf("%s: the edit of %s changes nothing", m.Name, e.File)
			}
		}
	}
}
