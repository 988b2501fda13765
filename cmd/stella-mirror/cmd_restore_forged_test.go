package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/backup/backuptest"
)

// forgeSymlinkChain rewrites a plain archive as someone who can write to
// the backup folder would: the manifest gains the symlink chain /L→.,
// /a/L→., /a/evil→L/../L/../outside, the checksums are recomputed, and
// the archive is unsigned.
func forgeSymlinkChain(t *testing.T, archive string) string {
	t.Helper()
	type member struct {
		name string
		data []byte
	}
	var members []member
	for _, m := range backuptest.Read(t, archive, nil) {
		members = append(members, member{m.Header.Name, m.Body})
	}
	var top string
	var sums []string
	for i, m := range members {
		top, _, _ = strings.Cut(m.name, "/")
		if strings.HasSuffix(m.name, "/MANIFEST.json") {
			var man map[string]any
			if err := json.Unmarshal(m.data, &man); err != nil {
				t.Fatal(err)
			}
			entries := man["entries"].([]any)
			for _, l := range [][2]string{{"/L", "."}, {"/a/L", "."}, {"/a/evil", "L/../L/../outside"}} {
				entries = append(entries, map[string]any{"path": l[0], "type": "symlink", "mode": "0777", "uid": 0, "gid": 0, "target": l[1], "kind": "include"})
			}
			man["entries"] = entries
			members[i].data, _ = json.MarshalIndent(man, "", "  ")
		}
	}
	var out []member
	for _, m := range members {
		_, rest, _ := strings.Cut(m.name, "/")
		switch rest {
		case "SHA256SUMS", "MANIFEST.sig":
			continue
		}
		s := sha256.Sum256(m.data)
		sums = append(sums, fmt.Sprintf("%s  %s\n", hex.EncodeToString(s[:]), rest))
		out = append(out, m)
	}
	sort.Strings(sums)
	out = append(out, member{top + "/SHA256SUMS", []byte(strings.Join(sums, ""))})
	var ms []backuptest.Member
	for _, m := range out {
		ms = append(ms, backuptest.Member{Header: tar.Header{Typeflag: tar.TypeReg, Name: m.name, Mode: 0o600, Size: int64(len(m.data))}, Body: m.data})
	}
	name := filepath.Join(t.TempDir(), filepath.Base(archive))
	backuptest.Write(t, name, nil, ms)
	return name
}

// TestRestoreDrillRefusesSymlinkChain: restore and --drill refuse the
// forged chain even with --allow-unsigned, and write nothing.
func TestRestoreDrillRefusesSymlinkChain(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("tok\n"), 0o600)
	cfg := filepath.Join(dir, "sync.env")
	os.WriteFile(cfg, []byte("SYNC__SOURCE=https://upstream.example\nSYNC__DEST="+filepath.Join(dir, "exports")+"\nSYNC__BEARERTOKENFILE="+token+"\n"), 0o640)
	var stdout, stderr bytes.Buffer
	out := filepath.Join(dir, "backups")
	if code := run([]string{"backup", "--config", cfg, "--out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("backup: exit %d %s", code, stderr.String())
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 1 {
		t.Fatalf("%d files in %s", len(ents), out)
	}
	forged := forgeSymlinkChain(t, filepath.Join(out, ents[0].Name()))
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"restore", []string{"--to", filepath.Join(dir, "root")}},
		{"drill", []string{"--drill"}},
		{"drill into --to", []string{"--drill", "--to", filepath.Join(dir, "drill")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout.Reset()
			stderr.Reset()
			args := append([]string{"restore", "--from", forged, "--allow-unsigned"}, tc.args...)
			if code := run(args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `symlink target "."`) {
				t.Fatalf("exit %d, stderr %s", code, stderr.String())
			}
			for _, p := range []string{filepath.Join(dir, "root"), filepath.Join(dir, "drill")} {
				if ents, _ := os.ReadDir(p); len(ents) > 0 {
					t.Errorf("%s holds %d entries", p, len(ents))
				}
			}
			if _, rest, ok := strings.Cut(stdout.String(), " into "); ok {
				drillRoot, _, _ := strings.Cut(rest, "\n")
				if ents, _ := os.ReadDir(drillRoot); len(ents) > 0 {
					t.Errorf("the drill left %s with %d entries", drillRoot, len(ents))
				}
			}
		})
	}
	// Unsigned without --allow-unsigned: refused, says what to do.
	stderr.Reset()
	if code := run([]string{"restore", "--from", filepath.Join(out, ents[0].Name()), "--to", filepath.Join(dir, "r3")}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "--allow-unsigned") {
		t.Errorf("unsigned: exit %d, %s", code, stderr.String())
	}
}
