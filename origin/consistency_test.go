package origin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
)

// TestConsistencyUnderLatestFlips is the acceptance test for "one response
// never mixes two exports": 50 clients fetch manifest → bundle and
// Excititor index → export while latest flips between exports A and B.
// Every bundle and export must hash to the digest that the manifest or
// index of the export named in its own X-Stella-Export-Id declares (read
// from disk), and both exports must actually have been served.
func TestConsistencyUnderLatestFlips(t *testing.T) {
	const (
		clients    = 50
		iterations = 40
		maxFlips   = 5000
		domain     = "primary"
	)
	root := t.TempDir()
	ids := []string{"20260101T000000Z", "20260102T000000Z"}
	// Bundles and exports are larger than the small-file limit, so they are
	// streamed from disk (sendfile) over a real listener.
	for _, id := range ids {
		writeExport(t, root, id, treeOpts{domains: []string{domain}, pad: 8 << 10})
	}
	pointLatest(t, root, ids[0])

	// The truth, from disk: each export's declared digests.
	bundleDigest := map[string]string{}
	vexDigest := map[string]string{}
	for _, id := range ids {
		data, err := os.ReadFile(filepath.Join(root, id, filepath.FromSlash(export.ManifestPath(domain))))
		if err != nil {
			t.Fatal(err)
		}
		m, err := export.ParseManifest(data)
		if err != nil {
			t.Fatal(err)
		}
		bundleDigest[id] = m.Bundle.Digest
		data, err = os.ReadFile(filepath.Join(root, id, filepath.FromSlash(export.ExcititorIndexPath(domain))))
		if err != nil {
			t.Fatal(err)
		}
		xi, err := export.ParseExcititorIndex(data)
		if err != nil {
			t.Fatal(err)
		}
		vexDigest[id] = xi.Export(keyJSONL).Digest
	}
	if bundleDigest[ids[0]] == bundleDigest[ids[1]] || vexDigest[ids[0]] == vexDigest[ids[1]] {
		t.Fatalf("the two exports must differ")
	}

	h := newHarness(t, testConfig(root), options{smallFileMax: 1 << 10})
	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: time.Minute}

	var (
		failures            atomic.Int64
		requests            atomic.Int64
		mu                  sync.Mutex
		bundleSeen, vexSeen = map[string]int{}, map[string]int{}
	)
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	// get fetches path and returns the export it came from and the body.
	get := func(path string) (string, []byte, bool) {
		defer requests.Add(1)
		resp, err := client.Get(h.public.URL + path)
		if err != nil {
			fail("GET %s: %v", path, err)
			return "", nil, false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			fail("GET %s: status %d, err %v", path, resp.StatusCode, err)
			return "", nil, false
		}
		id := resp.Header.Get("X-Stella-Export-Id")
		if _, ok := bundleDigest[id]; !ok {
			fail("GET %s: X-Stella-Export-Id %q names neither export", path, id)
			return "", nil, false
		}
		return id, body, true
	}
	digestOf := func(b []byte) string {
		sum := sha256.Sum256(b)
		return export.DigestPrefix + hex.EncodeToString(sum[:])
	}

	stop := make(chan struct{})
	flipperDone := make(chan int)
	go func() {
		// Flip once per completed request at most, so flips spread over
		// the whole run instead of finishing before the clients start.
		flips, last := 0, int64(-1)
		for flips < maxFlips {
			select {
			case <-stop:
				flipperDone <- flips
				return
			default:
			}
			n := requests.Load()
			if n == last {
				runtime.Gosched()
				continue
			}
			last = n
			if err := swapLatest(root, ids[(flips+1)%2]); err != nil {
				fail("flipping latest: %v", err)
				break
			}
			flips++
		}
		<-stop
		flipperDone <- flips
	}()

	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range iterations {
				if failures.Load() > 10 {
					return
				}
				if id, body, ok := get("/concelier/exports/mirror/" + domain + "/manifest.json"); ok {
					var m export.Manifest
					if err := json.Unmarshal(body, &m); err != nil || m.ExportID != id {
						fail("client %d/%d: manifest from %s names export %q (%v)", c, i, id, m.ExportID, err)
					}
				}
				if id, body, ok := get("/concelier/exports/mirror/" + domain + "/bundle.json"); ok {
					if got := digestOf(body); got != bundleDigest[id] {
						fail("client %d/%d: bundle labelled %s hashes to %s, its manifest declares %s", c, i, id, got, bundleDigest[id])
					}
					mu.Lock()
					bundleSeen[id]++
					mu.Unlock()
				}
				if id, body, ok := get("/excititor/mirror/" + domain + "/index"); ok {
					var xi export.ExcititorIndex
					if err := json.Unmarshal(body, &xi); err != nil || xi.ExportID != id {
						fail("client %d/%d: excititor index from %s names export %q (%v)", c, i, id, xi.ExportID, err)
					}
				}
				if id, body, ok := get("/excititor/mirror/" + domain + "/export/" + keyJSONL); ok {
					if got := digestOf(body); got != vexDigest[id] {
						fail("client %d/%d: export labelled %s hashes to %s, its index declares %s", c, i, id, got, vexDigest[id])
					}
					mu.Lock()
					vexSeen[id]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flips := <-flipperDone

	t.Logf("%d flips; bundles served per export %v; VEX exports %v", flips, bundleSeen, vexSeen)
	if flips == 0 {
		t.Fatalf("latest was never flipped")
	}
	for _, id := range ids {
		if bundleSeen[id] == 0 || vexSeen[id] == 0 {
			t.Errorf("export %s was never served (bundles %v, exports %v)", id, bundleSeen, vexSeen)
		}
	}
	if total := bundleSeen[ids[0]] + bundleSeen[ids[1]]; failures.Load() == 0 && total != clients*iterations {
		t.Errorf("%d bundles checked, want %d", total, clients*iterations)
	}
}

// swapLatest points <root>/latest at id with one atomic rename, without
// testing.T (it runs in a goroutine).
func swapLatest(root, id string) error {
	tmp := filepath.Join(root, ".latest-flip.tmp")
	os.Remove(tmp)
	if err := os.Symlink(id, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(root, export.LatestLink)); err != nil {
		return fmt.Errorf("renaming over latest: %w", err)
	}
	return nil
}
