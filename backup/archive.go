package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	// maxMembers bounds the members of an archive (their digests are held
	// until the manifest, at the end, is read).
	maxMembers = 1 << 18
	// maxNameBytes bounds the total length of the member names held.
	maxNameBytes = 64 << 20
)

// ErrWrongIdentity is returned (wrapped) when no identity given to restore
// opens the archive.
var ErrWrongIdentity = errors.New("wrong identity")

// ErrCorrupt is returned (wrapped) when the archive fails decryption,
// decompression, its checksums or its manifest.
var ErrCorrupt = errors.New("archive is corrupted")

// ErrAgeHeader is returned (wrapped) when an age-encrypted archive's header
// cannot be parsed: the file is not an age file, or its header is damaged.
var ErrAgeHeader = errors.New("not an age file / damaged age header")

// openedArchive is a decrypted, decompressed archive stream.
type openedArchive struct {
	f         *os.File
	gz        *gzip.Reader
	tr        *tar.Reader
	encrypted bool
}

func (a *openedArchive) Close() error { return a.f.Close() }

// finish reads the stream to its end after the tar's end-of-archive
// marker: only zero padding may follow, and reading to EOF makes gzip
// check its trailer (CRC-32 and size) and age authenticate its last chunk.
func (a *openedArchive) finish(name string) error {
	var buf [32 << 10]byte
	for {
		n, err := a.gz.Read(buf[:])
		for _, b := range buf[:n] {
			if b != 0 {
				return fmt.Errorf("%s: %w: data after the end of the tar archive", name, ErrCorrupt)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return corrupt(name, err)
		}
	}
}

// openArchive opens name, decrypting it with ids when it is age-encrypted.
func openArchive(name string, ids []age.Identity, identityFile string) (*openedArchive, error) {
	if IsPartial(filepath.Base(name)) {
		return nil, fmt.Errorf("%s is the unfinished output of a backup run (partial archive), not an archive", name)
	}
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
			return nil, fmt.Errorf("%s: %w: the identity in %s does not match any of the archive's %d recipient stanza(s) (%s): it was encrypted for other recipients (or a recipient stanza is damaged)",
				name, ErrWrongIdentity, identityFile, len(nomatch.StanzaTypes), strings.Join(nomatch.StanzaTypes, ", "))
		case err != nil && (strings.HasPrefix(err.Error(), "failed to read header") || err.Error() == "bad header MAC"):
			// A header that does not parse, or whose MAC (keyed by the file
			// key the identity did unwrap) does not match: damaged.
			f.Close()
			return nil, fmt.Errorf("%s: %w: %v", name, ErrAgeHeader, err)
		case err != nil:
			f.Close()
			return nil, fmt.Errorf("%s: %w (age: %v)", name, ErrCorrupt, err)
		}
	case strings.HasPrefix(string(head), "-----BEGIN AGE"):
		f.Close()
		return nil, fmt.Errorf("%s is an ASCII-armored age file; this program writes and reads binary age files", name)
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
	case strings.HasSuffix(name, ".age") || strings.HasPrefix(string(head), "age-encryption.org/"):
		// Named or started like an age file, but its version line is not
		// age's: a damaged header, not some other file.
		f.Close()
		return nil, fmt.Errorf("%s: %w: it starts with %q, an age file with %q", name, ErrAgeHeader, head, strings.TrimSuffix(ageMagic, "\n"))
	default:
		f.Close()
		return nil, fmt.Errorf("%s is not a stella-mirror backup (neither age-encrypted nor gzip)", name)
	}
	a.gz, err = gzip.NewReader(r)
	if err != nil {
		f.Close()
		return nil, corrupt(name, err)
	}
	a.tr = tar.NewReader(a.gz)
	return a, nil
}

// corrupt wraps a read error of the archive stream.
func corrupt(name string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: %w: %v", name, ErrCorrupt, err)
}

// verified is an archive whose every checksum (and signature) was checked.
type verified struct {
	manifest *Manifest
	sums     map[string]string
	files    map[string]*Entry // member → entry
	// keyID names the key that verified the signature ("" when unsigned
	// or not checked).
	keyID string
	// signed tells whether the archive carries a signature.
	signed bool
}

// verifyOptions say how verifyArchive checks the signature.
type verifyOptions struct {
	identities    []age.Identity
	identityFile  string
	verifyKeys    []ed25519.PublicKey
	allowUnsigned bool
}

// verifyArchive reads the whole archive once and checks SHA256SUMS, the
// manifest, every member against them and the signature, writing nothing.
func verifyArchive(name string, o verifyOptions) (*verified, error) {
	a, err := openArchive(name, o.identities, o.identityFile)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	v, err := readArchive(name, a.tr, o)
	if err != nil {
		return nil, err
	}
	if err := a.finish(name); err != nil {
		return nil, err
	}
	return v, nil
}

// member digests as read.
type memberSum struct {
	size   int64
	sha256 string
}

// readArchive checks a decompressed archive stream (see verifyArchive).
// The members may come in any order (format 1 wrote the metadata first,
// the streaming writer writes it last).
func readArchive(name string, tr *tar.Reader, o verifyOptions) (*verified, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrCorrupt, fmt.Sprintf(format, args...))
	}
	var top string
	var sb, mb, sigb []byte
	members := make(map[string]memberSum)
	nameBytes := 0
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, corrupt(name, err)
		}
		if nameBytes += len(h.Name); n >= maxMembers || nameBytes > maxNameBytes {
			return nil, bad("more than %d members or %d MiB of member names", maxMembers, maxNameBytes>>20)
		}
		t, rest, ok := strings.Cut(h.Name, "/")
		if n == 0 {
			top = t
		}
		switch {
		case !ok || t != top || t == "" || rest == "":
			return nil, bad("member %s is not under the archive's folder %s/", h.Name, top)
		case h.Typeflag != tar.TypeReg:
			return nil, bad("%s is not a regular file", h.Name)
		}
		readSmall := func(dst *[]byte, limit int64) error {
			if *dst != nil {
				return bad("%s appears twice", h.Name)
			}
			if h.Size > limit {
				return bad("%s is %d bytes (limit %d)", h.Name, h.Size, limit)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return corrupt(name, err)
			}
			*dst = b // never nil: io.ReadAll allocates
			return nil
		}
		switch rest {
		case SumsName:
			err = readSmall(&sb, maxSumsBytes)
		case ManifestName:
			err = readSmall(&mb, maxManifestBytes)
		case SignatureName:
			err = readSmall(&sigb, maxSignatureBytes)
		default:
			if !strings.HasPrefix(rest, filesDir+"/") {
				return nil, bad("unexpected member %s", h.Name)
			}
			if _, dup := members[rest]; dup {
				return nil, bad("%s appears twice", h.Name)
			}
			hs := sha256.New()
			n, err := io.Copy(hs, tr)
			if err != nil {
				return nil, corrupt(name, err)
			}
			members[rest] = memberSum{size: n, sha256: hex.EncodeToString(hs.Sum(nil))}
		}
		if err != nil {
			return nil, err
		}
	}
	switch {
	case top == "":
		return nil, bad("empty")
	case sb == nil:
		return nil, bad("no %s", SumsName)
	case mb == nil:
		return nil, bad("no %s", ManifestName)
	}
	sums, err := parseSums(sb)
	if err != nil {
		return nil, bad("%v", err)
	}
	if got := sha256.Sum256(mb); hex.EncodeToString(got[:]) != sums[ManifestName] {
		return nil, bad("%s does not match its checksum", ManifestName)
	}
	m, err := parseManifest(mb)
	if err != nil {
		return nil, bad("%v", err)
	}
	if m.Name != top {
		return nil, bad("manifest names %s, the archive's folder is %s", m.Name, top)
	}
	v := &verified{manifest: m, sums: sums, files: make(map[string]*Entry), signed: sigb != nil}
	// The signature, before anything the manifest says is trusted further.
	switch {
	case sigb != nil && len(o.verifyKeys) > 0:
		s, err := parseSignature(sigb)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", name, ErrSignature, err)
		}
		if v.keyID, err = verifySignature(s, mb, sb, o.verifyKeys); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	case sigb != nil && !o.allowUnsigned:
		return nil, fmt.Errorf("%s: %w: the archive is signed; give the backup verification key with --verify-key (or --allow-unsigned to restore without checking it)", name, ErrSignature)
	case sigb == nil && !o.allowUnsigned:
		return nil, fmt.Errorf("%s: %w: the archive is not signed; restore it only if you trust where it came from, with --allow-unsigned", name, ErrSignature)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeFile {
			continue
		}
		mem := member(e.Path)
		got, ok := members[mem]
		switch {
		case sums[mem] != e.SHA256:
			return nil, bad("%s: SHA256SUMS and the manifest disagree", mem)
		case !ok:
			return nil, bad("%s is listed in %s but missing from the archive", mem, SumsName)
		case got.size != e.Size:
			return nil, bad("%s is %d bytes, the manifest says %d", mem, got.size, e.Size)
		case got.sha256 != e.SHA256:
			return nil, bad("%s has sha256 %s, %s says %s", mem, got.sha256, SumsName, e.SHA256)
		}
		v.files[mem] = e
	}
	if len(v.files)+1 != len(sums) {
		return nil, bad("%s lists %d files, the manifest %d", SumsName, len(sums)-1, len(v.files))
	}
	for mem := range members {
		if v.files[mem] == nil {
			return nil, bad("unexpected member %s/%s", top, mem)
		}
	}
	return v, nil
}

// parseManifest decodes and validates a manifest strictly.
func parseManifest(mb []byte) (*Manifest, error) {
	m := &Manifest{}
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%s: %v", ManifestName, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the JSON object", ManifestName)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}
