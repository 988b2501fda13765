package mirrorsync

import (
	"time"

	"github.com/stella-ops/stella-mirror/export"
)

// Candidate is one export a source holds, for Newest.
type Candidate struct {
	// ID is the export directory's name.
	ID string
	// Marker is the modification time of its mirror/index.json.
	Marker time.Time
}

// Newest picks the export a source offers the way the origin picks the
// active one without a latest link: the newest completion marker, ties
// broken by the greater name. Invalid ids are ignored; "" when none is left.
func Newest(cands []Candidate) string {
	var best Candidate
	for _, c := range cands {
		if !export.ValidExportID(c.ID) {
			continue
		}
		if best.ID == "" || c.Marker.After(best.Marker) || c.Marker.Equal(best.Marker) && c.ID > best.ID {
			best = c
		}
	}
	return best.ID
}
