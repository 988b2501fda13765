package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"filippo.io/age"
)

// ageMagic starts every binary age file.
const ageMagic = "age-encryption.org/v1\n"

// Limits on the metadata members, so a hostile archive cannot make
// restore read unbounded data into memory.
const (
	maxSumsBytes     = 16 << 20
	maxManifestBytes = 64 << 20
)

// ErrWrongIdentity is returned (wrapped) when no identity given to restore
// opens the archive.
var ErrWrongIdentity = errors.New("wrong identity")

// ErrCorrupt is returned (wrapped) when the archive fails decryption,
// decompression, its checksums or its manifest.
var ErrCorrupt = errors.New("archive is corrupted")

// openedArchive is a decrypted, decompressed archive stream.
type openedArchive struct {
	f         *os.File
	tr        *tar.Reader
	encrypted bool
}

func (a *openedArchive) Close() error { return a.f.Close() }

// openArchive opens name, decrypting it with ids when it is age-encrypted.
func openArchive(name string, ids []age.Identity, identityFile string) (*openedArchive, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	a := &openedArchive{f: f}
	br := bufio.NewReader(f)
	head, _ := br.Peek(len(ageMagic))
	var r io.Reader = br
	switch {
	case string(head) == ageMagic:
		a.encrypted = true
		if len(ids) == 0 {
			f.Close()
			return nil, fmt.Errorf("%s is encrypted with age: give the identity file with --identity", name)
		}
		r, err = age.Decrypt(br, ids...)
		var nomatch *age.NoIdentityMatchError
		switch {
		case errors.As(err, &nomatch):
			f.Close()
			return nil, fmt.Errorf("%s: %w: the identity in %s does not match any recipient the archive was encrypted to", name, ErrWrongIdentity, identityFile)
		case err != nil:
			f.Close()
			return nil, fmt.Errorf("%s: %w (age header: %v)", name, ErrCorrupt, err)
		}
	case strings.HasPrefix(string(head), "-----BEGIN AGE"):
		f.Close()
		return nil, fmt.Errorf("%s is an ASCII-armored age file; this program writes and reads binary age files", name)
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
	default:
		f.Close()
		return nil, fmt.Errorf("%s is not a stella-mirror backup (neither age-encrypted nor gzip)", name)
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		f.Close()
		return nil, corrupt(name, err)
	}
	a.tr = tar.NewReader(gz)
	return a, nil
}

// corrupt wraps a read error of the archive stream.
func corrupt(name string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: %w: %v", name, ErrCorrupt, err)
}

// verified is an archive whose every checksum was checked.
type verified struct {
	manifest *Manifest
	sums     map[string]string
	files    map[string]*Entry // member → entry
}

// verifyArchive reads the whole archive once and checks SHA256SUMS, the
// manifest and every member against them, writing nothing.
func verifyArchive(name string, ids []age.Identity, identityFile string) (*verified, error) {
	a, err := openArchive(name, ids, identityFile)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrCorrupt, fmt.Sprintf(format, args...))
	}
	next := func() (*tar.Header, error) {
		h, err := a.tr.Next()
		if err != nil && err != io.EOF {
			return nil, corrupt(name, err)
		}
		return h, err
	}
	readSmall := func(h *tar.Header, limit int64) ([]byte, error) {
		if h.Size > limit {
			return nil, bad("%s is %d bytes (limit %d)", h.Name, h.Size, limit)
		}
		b, err := io.ReadAll(a.tr)
		if err != nil {
			return nil, corrupt(name, err)
		}
		return b, nil
	}
	// SHA256SUMS, then MANIFEST.json, then the files.
	h, err := next()
	if err != nil {
		if err == io.EOF {
			return nil, bad("empty")
		}
		return nil, err
	}
	top, base := path.Split(h.Name)
	if base != SumsName || strings.Count(top, "/") != 1 {
		return nil, bad("first member is %s, want NAME/%s", h.Name, SumsName)
	}
	top = strings.TrimSuffix(top, "/")
	sb, err := readSmall(h, maxSumsBytes)
	if err != nil {
		return nil, err
	}
	sums, err := parseSums(sb)
	if err != nil {
		return nil, bad("%v", err)
	}
	if h, err = next(); err != nil {
		if err == io.EOF {
			return nil, bad("no %s", ManifestName)
		}
		return nil, err
	}
	if h.Name != top+"/"+ManifestName {
		return nil, bad("second member is %s, want %s/%s", h.Name, top, ManifestName)
	}
	mb, err := readSmall(h, maxManifestBytes)
	if err != nil {
		return nil, err
	}
	if got := sha256.Sum256(mb); hex.EncodeToString(got[:]) != sums[ManifestName] {
		return nil, bad("%s does not match its checksum", ManifestName)
	}
	m := &Manifest{}
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, bad("%s: %v", ManifestName, err)
	}
	if err := m.validate(); err != nil {
		return nil, bad("%v", err)
	}
	if m.Name != top {
		return nil, bad("manifest names %s, the archive's folder is %s", m.Name, top)
	}
	v := &verified{manifest: m, sums: sums, files: make(map[string]*Entry)}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeFile {
			continue
		}
		mem := member(e.Path)
		if sums[mem] != e.SHA256 {
			return nil, bad("%s: SHA256SUMS and the manifest disagree", mem)
		}
		v.files[mem] = e
	}
	if len(v.files)+1 != len(sums) {
		return nil, bad("%s lists %d files, the manifest %d", SumsName, len(sums)-1, len(v.files))
	}
	seen := make(map[string]bool)
	for {
		h, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		mem, ok := strings.CutPrefix(h.Name, top+"/")
		e := v.files[mem]
		switch {
		case !ok || e == nil:
			return nil, bad("unexpected member %s", h.Name)
		case seen[mem]:
			return nil, bad("%s appears twice", h.Name)
		case h.Typeflag != tar.TypeReg:
			return nil, bad("%s is not a regular file", h.Name)
		case h.Size != e.Size:
			return nil, bad("%s is %d bytes, the manifest says %d", mem, h.Size, e.Size)
		}
		seen[mem] = true
		hs := sha256.New()
		if _, err := io.Copy(hs, a.tr); err != nil {
			return nil, corrupt(name, err)
		}
		if got := hex.EncodeToString(hs.Sum(nil)); got != e.SHA256 {
			return nil, bad("%s has sha256 %s, %s says %s", mem, got, SumsName, e.SHA256)
		}
	}
	for mem := range v.files {
		if !seen[mem] {
			return nil, bad("%s is listed in %s but missing from the archive", mem, SumsName)
		}
	}
	return v, nil
}
