package jws

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestBoundedMemory signs and verifies a 256 MiB file with both algorithms
// and checks that the bytes allocated stay far below the file size: the
// payload is streamed, never held in memory. TotalAlloc counts every
// allocation, collected or not, so it catches a ReadAll even if the GC frees
// it. Under the race detector, which slows the base64 encoding about 20
// times, the file is 32 MiB (and the bound 2 MiB) to keep the test quick.
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 256 MiB file")
	}
	size := 256 << 20
	if raceEnabled {
		size = 32 << 20
	}
	maxAlloc := uint64(size / 16)
	path := filepath.Join(t.TempDir(), "big.bin")
	writeBigFile(t, path, size)

	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			key := testKeys[alg]
			keys := trusted(t, key)
			sigPath := path + "." + alg + ".jws"

			start := time.Now()
			delta := allocated(func() {
				sig, err := SignFile(path, key, "")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(sigPath, sig, 0o644); err != nil {
					t.Fatal(err)
				}
			})
			signed := time.Since(start)
			start = time.Now()
			delta += allocated(func() {
				if _, err := VerifyFile(sigPath, path, keys); err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("%s over %d MiB: sign %v, verify %v, allocated %d KiB",
				alg, size>>20, signed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), delta>>10)
			if delta > maxAlloc {
				t.Fatalf("sign+verify of a %d MiB file allocated %d KiB; want < %d KiB (payload not streamed?)",
					size>>20, delta>>10, maxAlloc>>10)
			}
		})
	}
}

// allocated returns the bytes allocated while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// writeBigFile writes size bytes of varied content in 1 MiB chunks.
func writeBigFile(t *testing.T, path string, size int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	chunk := testMessage(1<<20, 99)
	for i := 0; i < size/len(chunk); i++ {
		chunk[i%len(chunk)] ^= byte(i) // no two chunks alike
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
