package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte // nil: no file before the write
		data     []byte
		perm     os.FileMode
	}{
		{"new private file", nil, []byte("secret"), 0o600},
		{"new public file", nil, []byte("public"), 0o644},
		{"replace existing", []byte("old content that is longer"), []byte("new"), 0o644},
		{"empty data", []byte("old"), []byte{}, 0o600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.txt")
			if tc.existing != nil {
				if err := os.WriteFile(path, tc.existing, 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, tc.data, tc.perm); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tc.data) {
				t.Errorf("content = %q, want %q", got, tc.data)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tc.perm {
				t.Errorf("perm = %v, want %v", fi.Mode().Perm(), tc.perm)
			}
			assertOnlyFile(t, dir, "f.txt")
		})
	}
}

func TestWriteFileRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := WriteFile("rel.txt", []byte("x"), 0o644); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	assertOnlyFile(t, dir, "rel.txt")
}

func TestWriteFileErrors(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := WriteFile(filepath.Join(dir, "nope", "f"), []byte("x"), 0o644); err == nil {
			t.Fatal("WriteFile succeeded in a missing directory")
		}
		assertOnlyFile(t, dir)
	})
	t.Run("target is a directory", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "sub")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(target, "keep"), []byte("k"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(target, []byte("x"), 0o644); err == nil {
			t.Fatal("WriteFile replaced a non-empty directory")
		}
		// The temporary file is gone and the directory is untouched.
		assertOnlyFile(t, dir, "sub")
		if _, err := os.Stat(filepath.Join(target, "keep")); err != nil {
			t.Errorf("directory content lost: %v", err)
		}
	})
}

// assertOnlyFile fails unless dir holds exactly the named entries (no
// leftover temporary files).
func assertOnlyFile(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if len(got) != len(names) {
		t.Fatalf("dir holds %q, want %q", got, names)
	}
	for i := range names {
		if got[i] != names[i] {
			t.Fatalf("dir holds %q, want %q", got, names)
		}
	}
}

func TestWriteFileKeepOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := WriteFileKeepOwner(path, []byte("one"), 0o600); err != nil {
		t.Fatalf("new file: %v", err)
	}
	if os.Geteuid() != 0 {
		// Giving a file away needs root; the write must still succeed.
		if err := WriteFileKeepOwner(path, []byte("two"), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.Chown(path, 65532, 65531); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileKeepOwner(path, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, _ := owner(fi)
	if uid != 65532 || gid != 65531 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after rewrite: owner %d:%d mode %v, want 65532:65531 0600", uid, gid, fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Fatalf("content %q", b)
	}
}
