package mirrorsync_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/localsrc"
)

// manyDomains is a real export directory whose source claims thousands of
// Excititor domains (a hostile or broken source).
type manyDomains struct {
	mirrorsync.Source
	n int
}

func (m manyDomains) ExcititorDomains(ctx context.Context, id string) ([]string, error) {
	ds := make([]string, m.n)
	for i := range ds {
		ds[i] = fmt.Sprintf("d%05d", i)
	}
	return ds, nil
}

// TestHostileDomainListBounded: an export listing more Excititor domains
// than a run will hold indexes for in memory fails verification, naming
// the bound, instead of reading up to 32 MiB per listed domain.
func TestHostileDomainListBounded(t *testing.T) {
	src := t.TempDir()
	writeSource(t, src, 1)
	s, err := localsrc.New(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "root")
	_, err = mirrorsync.Run(context.Background(), baseOptions(dst, manyDomains{Source: s, n: 5000}))
	var ve *mirrorsync.VerifyError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "more than 1024 Excititor domains") {
		t.Fatalf("err = %v, want a VerifyError naming the domain bound", err)
	}
	if latestOf(dst) != "" {
		t.Errorf("published %s", latestOf(dst))
	}
	// The same export with its own domains syncs.
	if res, err := mirrorsync.Run(context.Background(), baseOptions(dst, s)); err != nil || !res.Published {
		t.Fatalf("genuine export: %+v %v", res, err)
	}
}
