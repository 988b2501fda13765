// Package rsyncsrc is the mirrorsync source for an export root reachable
// with rsync: an rsync daemon (rsync://host[:port]/module/path) or a remote
// shell path (host:path, user@host:path, over ssh). It runs the rsync
// binary.
//
// The engine first hard-links into staging every file a published export
// holds with the same digest (hashed, whatever its mtime) and keeps the
// verified files an interrupted run left; [Source.Mirror] then lists the
// export at the source (one `rsync --list-only`), refuses before copying
// anything a wanted file that is missing, a symbolic link or another
// non-regular file, or whose size differs from the size the index declares
// (naming the rsync URL, the declared and the actual size), and copies only
// the wanted files with `rsync -rt --ignore-existing --max-size=<largest
// declared size>`. Exports never contain symbolic links, so the source
// refuses them rather than following or skipping them. The engine then
// verifies every digest and signature.
//
// Every rsync runs in its own process group under a small /bin/sh reaper
// that the kernel signals when sync dies (PR_SET_PDEATHSIG), and that then
// kills the whole group: rsync's forked receiver included, so no rsync
// outlives a SIGKILLed sync and keeps writing into staging. A cancelled
// context kills the group too. A failed rsync is an [*Error] naming its
// exit status, what rsync documents it to mean and the end of its stderr;
// it never becomes sync's own exit status.
//
// Credentials are rsync's own: RSYNC_PASSWORD or --password-file for a
// daemon, ssh keys for a remote shell; none appear in the source string or
// in errors.
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
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

var (
	_ mirrorsync.Source   = (*Source)(nil)
	_ mirrorsync.Mirrorer = (*Source)(nil)
)

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
	// bounds holds the size bounds of the files the last Mirror call was
	// given (for Open, which the engine calls for what Mirror left wrong).
	boundsID string
	bounds   map[string]mirrorsync.MirrorFile
}

// New returns the source for src (rsync://… or host:path); bin is the
// rsync binary ("" for rsync from PATH).
func New(src, bin string) (*Source, error) {
	if bin == "" {
		bin = "rsync"
	}
	path, err := lookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("rsync source: %w (apt-get install rsync)", err)
	}
	if !strings.HasPrefix(src, "rsync://") && !strings.Contains(src, ":") {
		return nil, fmt.Errorf("rsync source %q: want rsync://host/module/path or host:path", src)
	}
	if _, err := lookPath(reaperShell); err != nil {
		return nil, fmt.Errorf("rsync source: %w (every rsync runs under %s so that it dies with sync)", err, reaperShell)
	}
	return &Source{base: strings.TrimRight(src, "/"), bin: path}, nil
}

// String returns the source as given.
func (s *Source) String() string { return s.base }

// url returns the rsync URL (or host:path) of rel in export id.
func (s *Source) url(id, rel string) string {
	if rel == "" {
		return s.base + "/" + id + "/"
	}
	return s.base + "/" + id + "/" + rel
}

// maxStdout bounds what one rsync call may print (listings, --stats).
const maxStdout = 32 << 20

// rsync runs one rsync call (op says what it does, for errors) and returns
// its stdout.
func (s *Source) rsync(ctx context.Context, op string, args ...string) ([]byte, error) {
	stdout := &limitBuffer{max: maxStdout}
	stderr := &tailBuffer{max: stderrTail}
	cmd := command(ctx, s.bin, append(append([]string{}, s.Args...), args...))
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if stdout.overflow {
		return nil, fmt.Errorf("%s: rsync printed more than %d bytes", op, maxStdout)
	}
	return nil, newError(op, cmd.ProcessState, err, stderr.String())
}

// listLine matches one line of --list-only output: mode, size, date, time, name.
var listLine = regexp.MustCompile(`^(\S+)\s+([\d,.]+)\s+(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)\s+(.+)$`)

// entry is one line of a listing.
type entry struct {
	mode   byte // the first letter of the mode: '-' file, 'd', 'l', …
	size   int64
	mod    time.Time
	target string // a symlink's target (listings with -l)
}

// parseListing parses --list-only output into name → entry.
func parseListing(out []byte) map[string]entry {
	m := map[string]entry{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := listLine.FindStringSubmatch(sc.Text())
		if f == nil {
			continue
		}
		e := entry{mode: f[1][0]}
		e.size, _ = strconv.ParseInt(strings.NewReplacer(",", "", ".", "").Replace(f[2]), 10, 64)
		e.mod, _ = time.ParseInLocation("2006/01/02 15:04:05", f[3], time.Local)
		name := f[4]
		if e.mode == 'l' {
			name, e.target, _ = strings.Cut(name, " -> ")
		}
		m[name] = e
	}
	return m
}

// Resolve returns the target of latest, else the newest export with a
// mirror/index.json (by its mtime, ties by name).
func (s *Source) Resolve(ctx context.Context) (string, error) {
	tmp, err := os.MkdirTemp("", "stella-rsync-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	latest := s.base + "/" + export.LatestLink
	// Only a symlink is wanted: a regular file named latest (of any size)
	// is not transferred (--max-size bounds it), nor a device or a fifo.
	if _, err := s.rsync(ctx, "reading "+latest, "-l", "--no-devices", "--no-specials", "--max-size=4096", latest, tmp+"/"); err == nil {
		if target, err := os.Readlink(filepath.Join(tmp, export.LatestLink)); err == nil {
			if strings.Contains(target, "/") || !export.ValidExportID(target) {
				return "", fmt.Errorf("%s points to %q, which is not an export id", latest, target)
			}
			return target, s.prefetch(ctx, target)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	out, err := s.rsync(ctx, "listing the exports at "+s.base+"/", "--list-only", "-r", "--include=/*/", "--include=/*/mirror/",
		"--include=/*/mirror/index.json", "--exclude=*", s.base+"/")
	if err != nil {
		return "", err
	}
	var cands []mirrorsync.Candidate
	for name, e := range parseListing(out) {
		id, rest, ok := strings.Cut(name, "/")
		if !ok || rest != export.IndexPath || e.mode != '-' {
			continue
		}
		cands = append(cands, mirrorsync.Candidate{ID: id, Marker: e.mod})
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
	if _, err := s.rsync(ctx, "fetching the indexes of "+s.url(id, ""), "-rt", "--no-links", "--no-devices", "--no-specials",
		fmt.Sprintf("--max-size=%d", maxIndexBytes),
		"--include=/mirror/", "--include=/mirror/index.json", "--include=/excititor/", "--include=/excititor/*/",
		"--include=/excititor/*/index.json", "--exclude=*", s.url(id, ""), tmp+"/"); err != nil {
		return err
	}
	s.indexesID, s.indexes = id, map[string][]byte{}
	return filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
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

// safeRel matches the paths this source passes to rsync: characters that
// rsync's daemon would glob-expand or that its filter rules treat
// specially (* ? [ \ spaces, newlines) never occur in an export's paths.
var safeRel = regexp.MustCompile(`^[A-Za-z0-9._/+=@,~:-]+$`)

// checkRel validates a path of export id before it reaches rsync.
func checkRel(id, rel string) error {
	if !export.ValidExportID(id) {
		return fmt.Errorf("export id %q: invalid", id)
	}
	if err := export.ValidateRelPath(rel); err != nil {
		return err
	}
	if !safeRel.MatchString(rel) {
		return fmt.Errorf("path %q: characters rsync would interpret (only letters, digits and ._/+=@,~:- are passed to rsync)", rel)
	}
	return nil
}

// bound returns the size bound of rel in export id: the one Mirror was
// given, else the format's limit for indexes and signatures; -1 when none
// is known.
func (s *Source) bound(id, rel string) mirrorsync.MirrorFile {
	if f, ok := s.bounds[rel]; ok && s.boundsID == id {
		return f
	}
	switch {
	case rel == export.IndexPath || strings.HasPrefix(rel, "excititor/") && strings.HasSuffix(rel, "/index.json"):
		return mirrorsync.MirrorFile{Path: rel, Size: -1, Max: maxIndexBytes}
	case strings.HasSuffix(rel, ".jws"):
		return mirrorsync.MirrorFile{Path: rel, Size: -1, Max: jws.MaxSignatureSize}
	}
	return mirrorsync.MirrorFile{Path: rel, Size: -1, Max: -1}
}

// Open copies one file to a temporary directory and opens it; Close
// removes it. A file larger than its bound is not transferred.
func (s *Source) Open(ctx context.Context, id, rel string) (io.ReadCloser, error) {
	if err := checkRel(id, rel); err != nil {
		return nil, err
	}
	if data, ok := s.indexes[rel]; ok && s.indexesID == id {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	tmp, err := os.MkdirTemp("", "stella-rsync-")
	if err != nil {
		return nil, err
	}
	b := s.bound(id, rel)
	// -l: a symlink arrives as one (and is refused below, naming the
	// source), rather than being skipped without a word.
	args := []string{"-t", "-l"}
	if b.Max >= 0 {
		args = append(args, fmt.Sprintf("--max-size=%d", b.Max))
	}
	if _, err := s.rsync(ctx, "fetching "+s.url(id, rel), append(args, s.url(id, rel), tmp+"/f")...); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	fi, err := os.Lstat(filepath.Join(tmp, "f"))
	if err != nil || !fi.Mode().IsRegular() {
		os.RemoveAll(tmp)
		// Skipped by --max-size, or not a regular file: say which.
		out, lerr := s.rsync(ctx, "listing "+s.url(id, rel), "--list-only", "-l", s.url(id, rel))
		if lerr != nil {
			return nil, lerr
		}
		for _, e := range parseListing(out) {
			if err := s.check(id, b, e); err != nil {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%s: rsync copied nothing: %w", s.url(id, rel), fs.ErrNotExist)
	}
	f, err := os.Open(filepath.Join(tmp, "f"))
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &tempFile{File: f, dir: tmp}, nil
}

// check refuses a listed file that is not a regular file or whose size
// differs from what the index declares.
func (s *Source) check(id string, f mirrorsync.MirrorFile, e entry) error {
	url := s.url(id, f.Path)
	switch {
	case e.mode == 'l':
		se := &SymlinkError{URL: url, Target: e.target}
		return &mirrorsync.VerifyError{Path: f.Path, Reason: se.Error(), Err: se}
	case e.mode != '-':
		return &mirrorsync.VerifyError{Path: f.Path, Reason: fmt.Sprintf("%s is not a regular file (mode %c…)", url, e.mode)}
	case f.Size >= 0 && e.size != f.Size:
		return &mirrorsync.VerifyError{Path: f.Path, Reason: fmt.Sprintf("%d bytes at %s, the index declares %d; not transferred", e.size, url, f.Size)}
	case f.Max >= 0 && e.size > f.Max:
		return &mirrorsync.VerifyError{Path: f.Path, Reason: fmt.Sprintf("%d bytes at %s, more than the %d allowed; not transferred", e.size, url, f.Max)}
	}
	return nil
}

// SymlinkError is a symbolic link at the source where the export has a
// file (the typed cause of a [mirrorsync.VerifyError] naming the file).
// Exports never contain symbolic links; the source refuses them instead of
// following them (they could point anywhere on the source host) or
// skipping them.
type SymlinkError struct {
	URL    string // the file's rsync URL
	Target string // where the link points ("" when not listed)
}

func (e *SymlinkError) Error() string {
	t := ""
	if e.Target != "" {
		t = fmt.Sprintf(" (-> %s)", e.Target)
	}
	return fmt.Sprintf("%s is a symbolic link%s; exports contain regular files only, so it is refused", e.URL, t)
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
	out, err := s.rsync(ctx, "listing "+s.url(id, "excititor/"), "--list-only", s.url(id, "excititor/"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ds []string
	for name, e := range parseListing(out) {
		if e.mode == 'd' && export.ValidDomainID(name) {
			ds = append(ds, name)
		}
	}
	slices.Sort(ds)
	return ds, nil
}

// transferred matches --stats' count of bytes sent as file data.
var transferred = regexp.MustCompile(`(?m)^Total transferred file size: ([\d,.]+)`)

// maxProblems bounds the files one refusal names.
const maxProblems = 5

// Mirror lists export id at the source, refuses any of files that is
// missing, not a regular file or of another size than declared, and then
// copies them into dst with one rsync call that transfers nothing larger
// than the largest bound and leaves every other file of dst alone.
func (s *Source) Mirror(ctx context.Context, id, dst string, files []mirrorsync.MirrorFile) (int64, error) {
	s.boundsID, s.bounds = id, map[string]mirrorsync.MirrorFile{}
	for _, f := range files {
		if err := checkRel(id, f.Path); err != nil {
			return 0, err
		}
		s.bounds[f.Path] = f
	}
	if len(files) == 0 {
		return 0, nil
	}
	out, err := s.rsync(ctx, "listing "+s.url(id, ""), "--list-only", "-r", "-l", s.url(id, ""))
	if err != nil {
		return 0, err
	}
	listing := parseListing(out)
	var problems []error
	linkedDirs := map[string]bool{}
	maxSize := int64(0)
	for _, f := range files {
		e, ok := listing[f.Path]
		if !ok {
			err := s.missing(id, f.Path, listing)
			var se *SymlinkError
			if errors.As(err, &se) {
				if linkedDirs[se.URL] {
					continue // named once
				}
				linkedDirs[se.URL] = true
			}
			problems = append(problems, err)
		} else if err := s.check(id, f, e); err != nil {
			problems = append(problems, err)
		}
		maxSize = max(maxSize, f.Max, f.Size)
	}
	if len(problems) > 0 {
		if len(problems) > maxProblems {
			problems = append(problems[:maxProblems], fmt.Errorf("and %d more files", len(problems)-maxProblems))
		}
		return 0, errors.Join(problems...)
	}

	tmp, err := os.MkdirTemp("", "stella-rsync-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	filter := filepath.Join(tmp, "filter")
	if err := os.WriteFile(filter, filterRules(files), 0o600); err != nil {
		return 0, err
	}
	out, err = s.rsync(ctx, "copying "+s.url(id, ""), "-rt", "--no-links", "--no-devices", "--no-specials",
		"--ignore-existing", fmt.Sprintf("--max-size=%d", maxSize), "--filter=. "+filter, "--stats",
		s.url(id, ""), dst+"/")
	if err != nil {
		return 0, err
	}
	var n int64
	if m := transferred.FindSubmatch(out); m != nil {
		n, _ = strconv.ParseInt(strings.NewReplacer(",", "", ".", "").Replace(string(m[1])), 10, 64)
	}
	return n, nil
}

// missing describes a wanted file the listing lacks: under a directory
// that is a symbolic link (refused like a linked file), or not there.
func (s *Source) missing(id, rel string, listing map[string]entry) error {
	for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
		if e, ok := listing[dir]; ok && e.mode == 'l' {
			se := &SymlinkError{URL: s.url(id, dir), Target: e.target}
			return &mirrorsync.VerifyError{Path: rel, Reason: se.Error(), Err: se}
		}
	}
	return fmt.Errorf("%s: missing at the source (%s): %w", rel, s.url(id, rel), fs.ErrNotExist)
}

// filterRules returns rsync filter rules that include exactly files (and
// the directories leading to them), anchored at the export directory.
func filterRules(files []mirrorsync.MirrorFile) []byte {
	var b bytes.Buffer
	dirs := map[string]bool{}
	for _, f := range files {
		for i := 0; i < len(f.Path); i++ {
			if f.Path[i] == '/' && !dirs[f.Path[:i]] {
				dirs[f.Path[:i]] = true
				fmt.Fprintf(&b, "+ /%s/\n", f.Path[:i])
			}
		}
		fmt.Fprintf(&b, "+ /%s\n", f.Path)
	}
	b.WriteString("- *\n")
	return b.Bytes()
}
