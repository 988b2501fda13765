//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stella-ops/stella-mirror/bench"
	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/internal/atomicfile"
)

// SyncFile is where the sync cases are written, beside results.json.
const SyncFile = "sync.json"

// syncResult is one sync case: our sync against an anchor tool on the same
// data in the same run.
type syncResult struct {
	Case       string  `json:"case"`
	Transport  string  `json:"transport"`
	Unit       string  `json:"unit"`
	Ours       float64 `json:"ours"`
	Anchor     float64 `json:"anchor,omitempty"`
	AnchorName string  `json:"anchorName,omitempty"`
	Target     string  `json:"target,omitempty"`
	Verdict    string  `json:"verdict,omitempty"`
}

// syncBench measures `stella-mirror sync` from an rsync daemon and from an
// S3 server (gofakes3, in this process, on 127.0.0.1) against `rsync -a`
// and `aws s3 sync` on the same fixture: first sync MB/s, no-op re-sync
// wall time, and the re-sync after one bundle changed (same size).
func syncBench(ctx context.Context, o options, tmp string, logf func(string, ...any)) ([]syncResult, error) {
	// Debian's aws CLI first: a pyenv or pip shim on PATH may be another version.
	awsBin := "/usr/bin/aws"
	if !fileExists(awsBin) {
		p, err := exec.LookPath("aws")
		if err != nil {
			return nil, errors.New("aws CLI not found: apt-get install awscli")
		}
		awsBin = p
	}
	rsyncBin, err := exec.LookPath("rsync")
	if err != nil {
		return nil, errors.New("rsync not found: apt-get install rsync")
	}
	src := filepath.Join(tmp, "sync-src")
	logf("sync: writing fixture (2 domains × %s bundles) into %s", fixture.FormatSize(o.syncBundleSize), src)
	if _, _, err := runTool(ctx, "fixture", o.bin, "fixture", "--out", src, "--domains", "primary,community",
		"--bundle-size", o.syncBundleSizeArg, "--seed", "1"); err != nil {
		return nil, err
	}
	id, err := os.Readlink(filepath.Join(src, export.LatestLink))
	if err != nil {
		return nil, err
	}
	var total int64
	filepath.WalkDir(filepath.Join(src, id), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	pub := filepath.Join(src, fixture.PublicKeyFile)

	// The peers: an rsync daemon and an S3 server counting object bytes.
	rsyncURL, stopRsync, err := startRsyncd(ctx, rsyncBin, tmp, src)
	if err != nil {
		return nil, err
	}
	defer stopRsync()
	var served atomic.Int64
	s3srv := &http.Server{Handler: countBytes(gofakes3.New(s3mem.New()).Server(), &served), ReadHeaderTimeout: 10 * time.Second}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go s3srv.Serve(l)
	defer s3srv.Close()
	endpoint := "http://" + l.Addr().String()
	awsEnv := append(inheritedEnv(), "AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench", "AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL="+endpoint, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=",
		"HOME="+tmp)
	aws := func(args ...string) (time.Duration, error) {
		return timed(ctx, "aws", awsEnv, awsBin, append([]string{"--endpoint-url", endpoint}, args...)...)
	}
	logf("sync: uploading the fixture to S3 with aws s3 sync")
	if _, err := aws("s3", "mb", "s3://bench"); err != nil {
		return nil, err
	}
	if _, err := aws("s3", "sync", "--only-show-errors", "--no-follow-symlinks", src, "s3://bench/exports"); err != nil {
		return nil, err
	}

	type side struct {
		transport, source string
		ours              string // export root
		anchorName        string
		anchor            func() (time.Duration, int64, error)
	}
	metricsFile := filepath.Join(tmp, "sync.prom")
	// ours runs one sync and returns its wall time, the export-file bytes
	// it fetched (its own count, indexes excluded) and, for S3, every
	// object byte the server sent (indexes included).
	ours := func(source, dest string) (time.Duration, int64, int64, error) {
		s0 := served.Load()
		d, err := timed(ctx, "sync", awsEnv, o.bin, "sync", "--source", source, "--dest", dest, "--public-key", pub,
			"--metrics-textfile", metricsFile, "--log-format", "json")
		if err != nil {
			return 0, 0, 0, err
		}
		n, err := metricValue(metricsFile, "stella_mirror_sync_last_downloaded_bytes")
		wire := int64(-1)
		if strings.HasPrefix(source, "s3://") {
			wire = served.Load() - s0
		}
		return d, int64(n), wire, err
	}
	anchorRsync := filepath.Join(tmp, "anchor-rsync")
	anchorS3 := filepath.Join(tmp, "anchor-s3", id)
	sides := []side{
		{"rsync", rsyncURL, filepath.Join(tmp, "ours-rsync"), "rsync -a", func() (time.Duration, int64, error) {
			d, err := timed(ctx, "rsync", inheritedEnv(), rsyncBin, "-a", rsyncURL+"/"+id+"/", anchorRsync+"/")
			return d, -1, err
		}},
		{"s3", "s3://bench/exports", filepath.Join(tmp, "ours-s3"), "aws s3 sync", func() (time.Duration, int64, error) {
			s0 := served.Load()
			d, err := aws("s3", "sync", "--only-show-errors", "s3://bench/exports/"+id, anchorS3)
			return d, served.Load() - s0, err
		}},
	}
	var results []syncResult
	mbps := func(d time.Duration) float64 { return float64(total) / 1e6 / d.Seconds() }
	for _, s := range sides {
		od, _, _, err := ours(s.source, s.ours)
		if err != nil {
			return nil, err
		}
		ad, _, err := s.anchor()
		if err != nil {
			return nil, err
		}
		logf("sync %s: first sync %v (ours) vs %v (%s)", s.transport, od, ad, s.anchorName)
		results = append(results, syncResult{Case: "first sync", Transport: s.transport, Unit: "MB/s",
			Ours: round2(mbps(od)), Anchor: round2(mbps(ad)), AnchorName: s.anchorName})
		od, on, wire, err := ours(s.source, s.ours)
		if err != nil {
			return nil, err
		}
		ad, _, err = s.anchor()
		if err != nil {
			return nil, err
		}
		logf("sync %s: no-op %v, %d export-file bytes, %d bytes on the wire incl. indexes (ours) vs %v (%s)", s.transport, od, on, wire, ad, s.anchorName)
		results = append(results, syncResult{Case: "no-op re-sync", Transport: s.transport, Unit: "s",
			Ours: round3(od.Seconds()), Anchor: round3(ad.Seconds()), AnchorName: s.anchorName,
			Target: "<= 1 s, 0 bytes", Verdict: verdict(od <= time.Second && on == 0)})
	}

	// One bundle changes in place, same size, re-signed; the S3 copy is
	// updated with aws s3 sync.
	changed, err := mutateBundle(filepath.Join(src, id), "primary")
	if err != nil {
		return nil, err
	}
	if _, err := aws("s3", "sync", "--only-show-errors", "--no-follow-symlinks", src, "s3://bench/exports"); err != nil {
		return nil, err
	}
	want, _, err := export.DigestFile(filepath.Join(src, id, filepath.FromSlash(export.BundlePath("primary"))))
	if err != nil {
		return nil, err
	}
	// Did the upload carry the change? (aws s3 sync compares size and time.)
	s0 := served.Load()
	if resp, err := http.Get(endpoint + "/bench/exports/" + id + "/" + export.BundlePath("primary")); err == nil {
		got, _, _ := export.DigestReader(resp.Body)
		resp.Body.Close()
		if got != want {
			logf("note: sync s3: the upload with aws s3 sync did not replace the changed bundle (same size): the bucket still has the old one")
		} else {
			logf("sync s3: the bucket holds the changed bundle")
		}
	}
	served.Store(s0) // this check is not part of any case's byte count
	anchorDirs := map[string]string{"rsync": anchorRsync, "s3": anchorS3}
	for _, s := range sides {
		od, on, wire, err := ours(s.source, s.ours)
		if err != nil {
			return nil, err
		}
		ad, an, err := s.anchor()
		if err != nil {
			return nil, err
		}
		logf("sync %s: after one change %v, %d export-file bytes, %d on the wire (ours) vs %v, %d on the wire (%s); the bundle is %d bytes",
			s.transport, od, on, wire, ad, an, s.anchorName, changed)
		for who, dir := range map[string]string{oursName: filepath.Join(s.ours, id), s.anchorName: anchorDirs[s.transport]} {
			if got, _, _ := export.DigestFile(filepath.Join(dir, filepath.FromSlash(export.BundlePath("primary")))); got != want {
				logf("note: sync %s: after %s the primary bundle is the OLD one: the same-size change was missed", s.transport, who)
			}
		}
		results = append(results,
			syncResult{Case: "re-sync after one changed bundle", Transport: s.transport, Unit: "s",
				Ours: round3(od.Seconds()), Anchor: round3(ad.Seconds()), AnchorName: s.anchorName},
			syncResult{Case: "bytes fetched after one change", Transport: s.transport, Unit: "bytes",
				Ours: float64(on), Anchor: float64(an), AnchorName: s.anchorName,
				Target: fmt.Sprintf("= bundle %d", changed), Verdict: verdict(on >= changed && on < changed+changed/100+64<<10)})
	}
	return results, nil
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// timed runs a child with env in its own process group and returns its
// wall time.
func timed(ctx context.Context, name string, env []string, bin string, args ...string) (time.Duration, error) {
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	p, err := bench.StartProcess(name, cmd)
	if err != nil {
		return 0, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Stop(5 * time.Second)
		return 0, ctx.Err()
	}
	d := time.Since(start)
	if err := p.ExitErr(); err != nil {
		return d, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.Bytes())
	}
	return d, nil
}

// countBytes counts response body bytes of GET requests.
func countBytes(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w = &countingWriter{ResponseWriter: w, n: n}
		}
		h.ServeHTTP(w, r)
	})
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(k))
	return k, err
}

// startRsyncd runs an rsync daemon on 127.0.0.1 exporting dir.
func startRsyncd(ctx context.Context, bin, tmp, dir string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(tmp, "rsyncd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("use chroot = no\nreverse lookup = no\nuid = %d\ngid = %d\npid file = %s\n[exports]\npath = %s\nread only = yes\n",
		os.Getuid(), os.Getgid(), filepath.Join(tmp, "rsyncd.pid"), dir)), 0o644)
	cmd := exec.Command(bin, "--daemon", "--no-detach", "--config="+conf, fmt.Sprintf("--port=%d", port), "--address=127.0.0.1",
		"--log-file="+filepath.Join(tmp, "rsyncd.log"))
	p, err := bench.StartProcess("rsyncd", cmd)
	if err != nil {
		return "", nil, err
	}
	stop := func() { p.Stop(stopGrace) }
	url := fmt.Sprintf("rsync://127.0.0.1:%d/exports", port)
	deadline := time.Now().Add(readyTimeout)
	for exec.CommandContext(ctx, bin, "--list-only", url+"/").Run() != nil {
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("rsync daemon not ready")
		}
		time.Sleep(readyInterval)
	}
	return url, stop, nil
}

// metricValue reads one gauge from a Prometheus textfile.
func metricValue(path, name string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		return 0, err
	}
	mf, ok := mfs[name]
	if !ok || len(mf.Metric) == 0 {
		return 0, fmt.Errorf("%s: no %s", path, name)
	}
	return mf.Metric[0].GetGauge().GetValue(), nil
}

// mutateBundle changes one byte of domain's bundle (same size), re-signs
// it with the fixture's key (seed 1) and updates the manifest and index.
// It returns the bundle's size.
func mutateBundle(dir, domain string) (int64, error) {
	bundle := filepath.Join(dir, filepath.FromSlash(export.BundlePath(domain)))
	data, err := os.ReadFile(bundle)
	if err != nil {
		return 0, err
	}
	i := len(data) / 2
	for data[i] < 'a' || data[i] > 'y' {
		i++
	}
	data[i]++
	if err := atomicfile.WriteFile(bundle, data, 0o644); err != nil {
		return 0, err
	}
	ixPath := filepath.Join(dir, filepath.FromSlash(export.IndexPath))
	raw, err := os.ReadFile(ixPath)
	if err != nil {
		return 0, err
	}
	ix, err := export.ParseIndex(raw)
	if err != nil {
		return 0, err
	}
	d := ix.Domain(domain)
	sig, err := jws.SignFile(bundle, fixture.DerivedKey(1), d.Bundle.Signature.KeyID)
	if err != nil {
		return 0, err
	}
	if err := atomicfile.WriteFile(bundle+export.SignatureSuffix, sig, 0o644); err != nil {
		return 0, err
	}
	d.Bundle.Digest = export.Digest(data)
	d.Bundle.Signature.SignedAt = time.Now().UTC().Truncate(time.Second)
	mPath := filepath.Join(dir, filepath.FromSlash(export.ManifestPath(domain)))
	mraw, err := os.ReadFile(mPath)
	if err != nil {
		return 0, err
	}
	m, err := export.ParseManifest(mraw)
	if err != nil {
		return 0, err
	}
	m.Bundle = d.Bundle
	mdata, _ := json.MarshalIndent(m, "", "  ")
	mdata = append(mdata, '\n')
	if err := atomicfile.WriteFile(mPath, mdata, 0o644); err != nil {
		return 0, err
	}
	d.Manifest.Digest, d.Manifest.SizeBytes = export.Digest(mdata), int64(len(mdata))
	ixdata, _ := json.MarshalIndent(ix, "", "  ")
	return int64(len(data)), atomicfile.WriteFile(ixPath, append(ixdata, '\n'), 0o644)
}

// writeSyncTable prints the sync cases.
func writeSyncTable(w io.Writer, rs []syncResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "sync case\ttransport\tunit\tours\tanchor\ttarget\tverdict\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v (%s)\t%s\t%s\t\n", r.Case, r.Transport, r.Unit, r.Ours, r.Anchor, r.AnchorName, r.Target, r.Verdict)
	}
	return tw.Flush()
}

// writeSyncResults writes sync.json into dir.
func writeSyncResults(dir string, rs []syncResult) error {
	data, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, SyncFile), append(data, '\n'), 0o644)
}
