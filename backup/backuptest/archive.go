// Package backuptest reads and rewrites backup archives for tests, as
// anyone who can write to the backup folder could (the age recipient is
// public): every member of the tar stream, in order, and back.
package backuptest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"testing"

	"filippo.io/age"
)

// Member is one member of an archive's tar stream, as written.
type Member struct {
	Header tar.Header
	Body   []byte
}

// Read returns every member of the archive file: a plain .tar.gz when id
// is nil, else an age-encrypted one decrypted with id.
func Read(t testing.TB, file string, id age.Identity) []Member {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if id != nil {
		if r, err = age.Decrypt(f, id); err != nil {
			t.Fatal(err)
		}
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var ms []Member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, Member{Header: *h, Body: b})
	}
}

// Write writes ms as a .tar.gz to file (0600), encrypted to r unless r is
// nil. Each header is written as given: one may declare more than its
// body (a huge declared size), and the stream then simply ends early.
func Write(t testing.TB, file string, r age.Recipient, ms []Member) {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser = nopCloser{&buf}
	if r != nil {
		var err error
		if w, err = age.Encrypt(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	for _, m := range ms {
		if err := tw.WriteHeader(&m.Header); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.Body)
	}
	// With a body shorter than its header declares, Close fails and the
	// stream ends without its end-of-archive blocks: what a forger would
	// write, not a failure of the test.
	tw.Close()
	for _, c := range []io.Closer{zw, w} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
