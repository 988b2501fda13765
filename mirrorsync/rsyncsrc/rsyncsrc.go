// Package rsyncsrc is the mirrorsync source for an export root reachable
// with rsync: an rsync daemon (rsync://host[:port]/module/path) or a remote
// shell path (host:path, user@host:path, over ssh). It runs the rsync
// binary.
//
// The export is copied with `rsync -rt --checksum --delete --link-dest=…`
// into the staging directory: files identical by checksum (never by size
// and time alone) to a file of a published export are hard-linked from it,
// and a staging directory left by an interrupted run is completed rather
// than started again. Symlinks, devices and special files of the source
// are skipped. The engine then verifies every digest and signature.
//
// Credentials are rsync's own: RSYNC_PASSWORD or --password-file for a
// daemon, ssh keys for a remote shell; none appear in the source string.
package rsyncsrc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

var (
	_ mirrorsync.Source   = (*Source)(nil)
	_ mirrorsync.Mirrorer = (*Source)(nil)
)

// maxLinkDest is rsync's limit on --link-dest directories.
const maxLinkDest = 20

// Source is an export root reachable with rsync.
type Source struct {
	base string // without a trailing slash
	bin  string
	// Args are extra arguments for every rsync call (e.g. --password-file=…,
	// -e "ssh -i key"). Default: none.
	Args []string

	// indexes holds the resolved export's index files (path → bytes),
	// fetched in one rsync call so a run with nothing new stays cheap.
	indexesID string
	indexes   map[string][]byte
}

// New returns the source for src (rsync://… or host:path); bin is the
// rsync binary ("" for rsync from PATH).
func New(src, bin string) (*Source, error) {
	if bin == "" {
		bin = "rsync"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("rsync source: %w (apt-get install rsync)", err)
	}
	if !strings.HasPrefix(src, "rsync://") && !strings.Contains(src, ":") {
		return nil, fmt.Errorf("rsync source %q: want rsync://host/module/path or host:path", src)
	}
	return &Source{base: strings.TrimRight(src, "/"), bin: path}, nil
}

// String returns the source as given.
func (s *Source) String() string { return s.base }

// rsync runs one rsync call and returns its stdout.
func (s *Source) rsync(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.bin, append(append([]string{}, s.Args...), args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		msg := strings.TrimSpace(stderr.String())
		if errors.As(err, &ee) && ee.ExitCode() == 23 && strings.Contains(msg, "No such file or directory") {
			return nil, fmt.Errorf("rsync: %s: %w", msg, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("rsync %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// listLine matches one line of --list-only output: mode, size, date, time, name.
var listLine = regexp.MustCompile(`^(\S+)\s+([\d,]+)\s+(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)\s+(.+)$`)

// Resolve returns the target of latest, else the newest export with a
// mirror/index.json (by its mtime, ties by name).
func (s *Source) Resolve(ctx context.Context) (string, error) {
	tmp, err := os.MkdirTemp("", "stella-rsync-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if _, err := s.rsync(ctx, "-l", s.base+"/"+export.LatestLink, tmp+"/"); err == nil {
		if target, err := os.Readlink(filepath.Join(tmp, export.LatestLink)); err == nil {
			if strings.Contains(target, "/") || !export.ValidExportID(target) {
				return "", fmt.Errorf("%s/latest points to %q, which is not an export id", s.base, target)
			}
			return target, s.prefetch(ctx, target)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	out, err := s.rsync(ctx, "--list-only", "-r", "--include=/*/", "--include=/*/mirror/",
		"--include=/*/mirror/index.json", "--exclude=*", s.base+"/")
	if err != nil {
		return "", err
	}
	var cands []mirrorsync.Candidate
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := listLine.FindStringSubmatch(sc.Text())
		if m == nil || !strings.HasPrefix(m[1], "-") {
			continue
		}
		id, rest, ok := strings.Cut(m[4], "/")
		if !ok || rest != export.IndexPath {
			continue
		}
		mod, _ := time.ParseInLocation("2006/01/02 15:04:05", m[3], time.Local)
		cands = append(cands, mirrorsync.Candidate{ID: id, Marker: mod})
	}
	id := mirrorsync.Newest(cands)
	if id == "" {
		return "", fmt.Errorf("no complete export at %s: %w", s.base, fs.ErrNotExist)
	}
	return id, s.prefetch(ctx, id)
}

// maxIndexBytes bounds one prefetched index.
const maxIndexBytes = 32 << 20

// prefetch copies export id's Concelier index and Excititor indexes in one
// rsync call and keeps their bytes.
func (s *Source) prefetch(ctx context.Context, id string) error {
	tmp, err := os.MkdirTemp("", "stella-rsync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if _, err := s.rsync(ctx, "-rt", "--no-links", "--no-devices", "--no-specials",
		"--include=/mirror/", "--include=/mirror/index.json", "--include=/excititor/", "--include=/excititor/*/",
		"--include=/excititor/*/index.json", "--exclude=*", s.base+"/"+id+"/", tmp+"/"); err != nil {
		return err
	}
	s.indexesID, s.indexes = id, map[string][]byte{}
	return filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Size() > maxIndexBytes {
			return nil // left to Open, which the engine bounds
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tmp, p)
		s.indexes[filepath.ToSlash(rel)] = data
		return nil
	})
}

// Open copies one file to a temporary directory and opens it; Close
// removes it.
func (s *Source) Open(ctx context.Context, id, rel string) (io.ReadCloser, error) {
	if !export.ValidExportID(id) {
		return nil, fmt.Errorf("export id %q: invalid", id)
	}
	if err := export.ValidateRelPath(rel); err != nil {
		return nil, err
	}
	if data, ok := s.indexes[rel]; ok && s.indexesID == id {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	tmp, err := os.MkdirTemp("", "stella-rsync-")
	if err != nil {
		return nil, err
	}
	if _, err := s.rsync(ctx, "-t", s.base+"/"+id+"/"+rel, tmp+"/f"); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	f, err := os.Open(filepath.Join(tmp, "f"))
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &tempFile{File: f, dir: tmp}, nil
}

type tempFile struct {
	*os.File
	dir string
}

func (t *tempFile) Close() error {
	err := t.File.Close()
	os.RemoveAll(t.dir)
	return err
}

// ExcititorDomains lists the directories under <id>/excititor/ (from the
// prefetched indexes when id was just resolved).
func (s *Source) ExcititorDomains(ctx context.Context, id string) ([]string, error) {
	if s.indexesID == id {
		var ds []string
		for rel := range s.indexes {
			parts := strings.Split(rel, "/")
			if len(parts) == 3 && parts[0] == "excititor" && parts[2] == "index.json" && export.ValidDomainID(parts[1]) {
				ds = append(ds, parts[1])
			}
		}
		slices.Sort(ds)
		return ds, nil
	}
	out, err := s.rsync(ctx, "--list-only", s.base+"/"+id+"/excititor/")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ds []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := listLine.FindStringSubmatch(sc.Text())
		if m != nil && strings.HasPrefix(m[1], "d") && export.ValidDomainID(m[4]) {
			ds = append(ds, m[4])
		}
	}
	return ds, nil
}

// transferred matches --stats' count of bytes sent as file data.
var transferred = regexp.MustCompile(`(?m)^Total transferred file size: ([\d,.]+)`)

// Mirror copies export id into dst with --link-dest against the published
// exports (the active one first).
func (s *Source) Mirror(ctx context.Context, id, dst string, linkDest []string) (int64, error) {
	args := []string{"-rt", "--checksum", "--delete", "--no-links", "--no-devices", "--no-specials", "--stats"}
	for i, d := range linkDest {
		if i == maxLinkDest {
			break
		}
		args = append(args, "--link-dest="+d)
	}
	args = append(args, s.base+"/"+id+"/", dst+"/")
	out, err := s.rsync(ctx, args...)
	if err != nil {
		return 0, err
	}
	var n int64
	if m := transferred.FindSubmatch(out); m != nil {
		n, _ = strconv.ParseInt(strings.NewReplacer(",", "", ".", "").Replace(string(m[1])), 10, 64)
	}
	return n, nil
}
