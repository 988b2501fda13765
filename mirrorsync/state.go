package mirrorsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/stella-ops/stella-mirror/internal/atomicfile"
)

// StateName is the file in the export root where runs record what they
// published.
const StateName = ".sync-state.json"

// State is what the last runs recorded in ROOT/.sync-state.json.
type State struct {
	// Source is the source of the last published export (no credentials).
	Source string `json:"source,omitempty"`
	// ExportID is the export the last successful run published or found
	// current.
	ExportID string `json:"exportId,omitempty"`
	// Fingerprint is the upstream fingerprint of that export.
	Fingerprint string `json:"fingerprint,omitempty"`
	// GeneratedAt is the export's generatedAt.
	GeneratedAt time.Time `json:"generatedAt,omitzero"`
	// LastSuccess is when a run last ended successfully (published or
	// found nothing new).
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastPublish is when a run last published an export.
	LastPublish time.Time `json:"lastPublish,omitzero"`
}

// ReadState reads ROOT/.sync-state.json; a missing file is the zero State.
func ReadState(root string) (State, error) {
	var st State
	data, err := os.ReadFile(filepath.Join(root, StateName))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("%s: %w", filepath.Join(root, StateName), err)
	}
	return st, nil
}

func writeState(root string, st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(root, StateName), append(data, '\n'), 0o644)
}
