package localsrc_test

import (
	"testing"

	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/localsrc"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

func TestConformance(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, root string) mirrorsync.Source {
		s, err := localsrc.New(root)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
