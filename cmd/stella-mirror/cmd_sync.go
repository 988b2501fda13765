package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/internal/logging"
	"github.com/stella-ops/stella-mirror/internal/loopname"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/localsrc"
	"github.com/stella-ops/stella-mirror/mirrorsync/upstream"
)

// Sync's exit statuses: exactly these, whatever fails (see
// docs/operations.md, "Sync exit codes").
const (
	// exitFailed: the run failed; nothing new was published.
	exitFailed = 1
	// exitConfig: the command line or configuration is invalid.
	exitConfig = 2
	// exitLocked: another run holds the lock (EX_TEMPFAIL); nothing was
	// changed, try later.
	exitLocked = 75
)

// exitError carries a specific exit status to run(). It is the only error
// whose status run() honours: an error of a library or a child process
// that happens to have an ExitCode method (*exec.ExitError) is status 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

func runSync(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlagSet("sync", "--source URL --dest ROOT [--public-key PEM]... [flags]",
		`Pull the newest export from a source, verify every digest and detached
JWS, and publish it atomically into the export root the origin serves:
ROOT/.staging/<exportId> → ROOT/<exportId>, then ROOT/latest is swapped with
one rename. Unchanged files are hard-linked from published exports; an
interrupted run resumes, a half-downloaded file from where it stopped (HTTP
Range, S3 ranged GET); a second concurrent run exits with status 75.
Nothing new upstream (same fingerprint) means no work: exit 0. A newer
export that is incomplete or fails verification exits 1 (with
--s3-upload-grace, an S3 export missing objects counts as an upload in
progress for that long). At least 2
exports are kept (--keep), so the previous one's pinned URLs keep answering
after a switch. An export that lists an Excititor exportKey of a kept export
with other bytes is refused (a key's bytes never change across exports).

Sources:
  s3://bucket/prefix        S3 or any S3-compatible store (--s3-endpoint or
                            AWS_ENDPOINT_URL; credentials from the AWS chain
                            or --s3-credentials-file)
  rsync://host/module/path  an rsync daemon; host:path over ssh (the rsync binary;
                            RSYNC_PASSWORD or ssh keys). Files are size-checked
                            against the index before copying; symlinks are
                            refused; rsync's exit status is reported, never
                            passed on; no rsync outlives sync
  https://mirror.example    an upstream Stella Ops mirror (http:// for loopback):
                            the index names the export; its files are fetched
                            by their pinned URLs /concelier/exports/{exportId}/…
                            so a switch upstream mid-run cannot mix exports (an
                            upstream without them: unversioned URLs, one warning)
  /srv/incoming/exports     a local directory laid out like an export root

Settings also come from a YAML file (--config) and the environment (keys
below), environment over file, flags over both. The runbook's connector
names (CONCELIER__SOURCES__STELLAOPSMIRROR__…) are read unchanged.

Before downloading, a run checks the export root's free space against what
the new export still needs; when short it prunes exports beyond --keep,
then the oldest kept ones (never the active or the previous export), and
logs each; when still short it fails naming the bytes needed and free.
Plan for keep+1 exports of space.

Repeating (--every, SYNC__EVERY; for a sidecar container, which has no
timer: on hosts the systemd timer, and in compose the one-shot service,
remain the way): a run at once, then each run DURATION plus a random 0-10 %
after the previous one started (right after it, if it took longer; never
two at once). Each run is a run as above (logs, metrics textfile, lock)
followed by one "next sync run" line with its result and the time of the
next. A failed or locked run is logged and the loop goes on; an invalid
configuration exits 2 before the first run. SIGTERM/SIGINT while waiting
exits 0; during a run it stops that run as it stops a single one (the
staged files stay for the next run to resume, the lock is released,
latest is untouched) and exits with that run's status.

Exit status (nothing else): 0 published or nothing new; 1 failure
(verification failures name the file and the reason; nothing is published);
2 usage or invalid configuration; 75 another run holds the lock. The
metrics textfile records every outcome (published, unchanged,
verify_failed, no_space, failed, locked, and killed for a run killed
before it finished, seen by the next run).

Keys ({n} is a list index: 0, 1, ...):
  `+strings.Join(mirrorsync.ConfigKeys(), "\n  ")+`

Examples:
  stella-mirror sync --source https://mirror.stella-ops.org --dest /srv/exports \
    --public-key /etc/stella-mirror/signing.pub.pem --bearer-token-file /run/credentials/x/token
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 stella-mirror sync --source s3://exports/stella \
    --dest /srv/exports --public-key signing.pub.pem --metrics-textfile /var/lib/node_exporter/stella_sync.prom
  SYNC__EVERY=5m stella-mirror sync --source https://mirror.stella-ops.org --dest /exports \
    --public-key /etc/stella-mirror/signing.pub.pem      (a sidecar writing an emptyDir)`, stderr)
	configPath := fs.String("config", "", "YAML configuration `file` (environment variables override it)")
	source := fs.String("source", "", "source `URL` or directory (SYNC__SOURCE)")
	dest := fs.String("dest", "", "export `root` to publish into (SYNC__DEST)")
	keep := fs.Int("keep", 0, "exports to keep, the published one included, at least 2 (SYNC__KEEP; default 3)")
	var pubKeys, domains stringList
	fs.Var(&pubKeys, "public-key", "trusted PEM public key `file`; repeatable (SYNC__PUBLICKEYS__{n})")
	fs.Var(&domains, "domain", "sync only this `domain`; repeatable (SYNC__DOMAINS__{n}; default all)")
	jwksURL := fs.String("jwks-url", "", "key registry `URL` (JWKS); the PEM keys are the fallback (SYNC__JWKSURL)")
	keyID := fs.String("key-id", "", "reject signatures under any other `kid` (…__SIGNATURE__KEYID)")
	force := fs.Bool("force", false, "re-verify everything even when the upstream fingerprint is unchanged")
	metricsFile := fs.String("metrics-textfile", "", "write Prometheus textfile metrics to `file` (SYNC__METRICSTEXTFILE)")
	timeout := fs.Duration("http-timeout", 0, "per-request `timeout` for headers and body stalls (SYNC__HTTPTIMEOUT; default 30s)")
	basicFile := fs.String("basic-auth-file", "", "`file` with user:password for the upstream (SYNC__BASICAUTHFILE)")
	bearerFile := fs.String("bearer-token-file", "", "`file` with a bearer token for the upstream (SYNC__BEARERTOKENFILE)")
	caFile := fs.String("ca-file", "", "PEM `bundle` of extra trusted CAs (SYNC__CAFILE)")
	s3Endpoint := fs.String("s3-endpoint", "", "S3 endpoint `URL` (SYNC__S3__ENDPOINT; default AWS_ENDPOINT_URL)")
	s3Region := fs.String("s3-region", "", "S3 `region` (SYNC__S3__REGION; default AWS_REGION or us-east-1)")
	s3PathStyle := fs.String("s3-path-style", "", "`true|false`: path-style bucket addressing (default true with a custom endpoint)")
	s3Profile := fs.String("s3-profile", "", "AWS shared-config `profile` (SYNC__S3__PROFILE)")
	s3Creds := fs.String("s3-credentials-file", "", "AWS shared credentials `file` (SYNC__S3__CREDENTIALSFILE)")
	s3Grace := fs.Duration("s3-upload-grace", 0, "treat an S3 export with missing objects whose index is younger than `duration` as an upload in progress and sync the previous one (SYNC__S3__UPLOADGRACE; default 0: a failure)")
	rsyncPath := fs.String("rsync", "", "rsync `binary` (SYNC__RSYNCPATH; default rsync)")
	every := fs.Duration("every", 0, "repeat: a run at once, then one `duration` (plus 0-10 % jitter) after the previous run started; at least "+minEvery.String()+"; for sidecars (SYNC__EVERY; default 0: one run)")
	logFormat := fs.String("log-format", "json", "log `format`: json (default; the same fields as origin and gateway) or text")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	checkConfig := fs.Bool("check-config", false, "validate the configuration and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	defer func() {
		// A bug must not leak Go's panic status (2, which means usage).
		if p := recover(); p != nil {
			err = &exitError{code: exitFailed, err: fmt.Errorf("internal error: %v\n%s", p, debug.Stack())}
		}
	}()

	var flagErr error
	cfg, err := loadConfig(fs, *configPath, mirrorsync.LoadConfig, map[string]func(*mirrorsync.Config){
		"source":     func(c *mirrorsync.Config) { c.Sync.Source = *source },
		"dest":       func(c *mirrorsync.Config) { c.Sync.Dest = *dest },
		"keep":       func(c *mirrorsync.Config) { c.Sync.Keep = *keep },
		"public-key": func(c *mirrorsync.Config) { c.Sync.PublicKeys = pubKeys },
		"domain":     func(c *mirrorsync.Config) { c.Sync.Domains = domains },
		"jwks-url":   func(c *mirrorsync.Config) { c.Sync.JWKSURL = *jwksURL },
		"key-id": func(c *mirrorsync.Config) {
			c.Concelier.Sources.StellaOpsMirror.Signature.KeyID = *keyID
		},
		"metrics-textfile":  func(c *mirrorsync.Config) { c.Sync.MetricsTextfile = *metricsFile },
		"http-timeout":      func(c *mirrorsync.Config) { c.Sync.HTTPTimeout = *timeout },
		"basic-auth-file":   func(c *mirrorsync.Config) { c.Sync.BasicAuthFile = *basicFile },
		"bearer-token-file": func(c *mirrorsync.Config) { c.Sync.BearerTokenFile = *bearerFile },
		"ca-file":           func(c *mirrorsync.Config) { c.Sync.CAFile = *caFile },
		"s3-endpoint":       func(c *mirrorsync.Config) { c.Sync.S3.Endpoint = *s3Endpoint },
		"s3-region":         func(c *mirrorsync.Config) { c.Sync.S3.Region = *s3Region },
		"s3-upload-grace":   func(c *mirrorsync.Config) { c.Sync.S3.UploadGrace = *s3Grace },
		"s3-path-style": func(c *mirrorsync.Config) {
			v, ok := map[string]bool{"true": true, "false": false}[*s3PathStyle]
			if !ok {
				flagErr = fmt.Errorf("--s3-path-style %q: want true or false", *s3PathStyle)
			}
			c.Sync.S3.PathStyle = &v
		},
		"s3-profile":          func(c *mirrorsync.Config) { c.Sync.S3.Profile = *s3Profile },
		"s3-credentials-file": func(c *mirrorsync.Config) { c.Sync.S3.CredentialsFile = *s3Creds },
		"rsync":               func(c *mirrorsync.Config) { c.Sync.RsyncPath = *rsyncPath },
		"every":               func(c *mirrorsync.Config) { c.Sync.Every = *every },
	})
	if err != nil {
		return configError(err)
	}
	if flagErr != nil {
		return configError(flagErr)
	}
	// Secret file paths may name systemd's credentials directory
	// (LoadCredential=), which only exists at run time.
	for _, p := range []*string{&cfg.Sync.BasicAuthFile, &cfg.Sync.BearerTokenFile, &cfg.Sync.CAFile, &cfg.Sync.S3.CredentialsFile} {
		*p = expandCredentialsDir(*p)
	}
	if err := validateSync(&cfg); err != nil {
		if p := cfg.Sync.MetricsTextfile; p != "" {
			// Best effort: monitoring sees a broken configuration too.
			var st mirrorsync.State
			if cfg.Sync.Dest != "" {
				st, _ = mirrorsync.ReadState(cfg.Sync.Dest)
			}
			mirrorsync.WriteMetrics(p, &mirrorsync.Result{Started: time.Now()}, err, st)
		}
		return configError(err)
	}
	if *checkConfig {
		printConfigOK(stdout, nil)
		return nil
	}
	logger, err := logging.NewComponent(stderr, *logFormat, *logLevel, "sync")
	if err != nil {
		return configError(err)
	}
	once := func(ctx context.Context) (string, error) {
		return syncOnce(ctx, &cfg, *force, logger)
	}
	if cfg.Sync.Every > 0 {
		return syncEvery(ctx, cfg.Sync.Every, logger, once, jitter)
	}
	_, err = once(ctx)
	return err
}

// syncOnce is one sync run: a source and keys built for it, mirrorsync.Run,
// the metrics textfile written for its outcome, one log line. It returns
// the textfile's result and the run's error, whose exit status is sync's
// (1, 2 or 75). Whatever the run opened is closed when it returns (the
// idle connections of its HTTP clients too), so runs can repeat (--every).
func syncOnce(ctx context.Context, cfg *mirrorsync.Config, force bool, logger *slog.Logger) (result string, err error) {
	started := time.Now()
	// writeMetrics records every outcome in the textfile. A textfile that
	// cannot be written (a full disk) is logged and changes neither the
	// run's error nor its exit status.
	writeMetrics := func(res *mirrorsync.Result, runErr error) {
		if cfg.Sync.MetricsTextfile == "" {
			return
		}
		st, _ := mirrorsync.ReadState(cfg.Sync.Dest)
		if err := mirrorsync.WriteMetrics(cfg.Sync.MetricsTextfile, res, runErr, st); err != nil {
			logger.Error("writing metrics textfile", "file", cfg.Sync.MetricsTextfile, "error", err)
		}
	}
	fail := func(err error) (string, error) {
		res := &mirrorsync.Result{Started: started, Duration: time.Since(started)}
		writeMetrics(res, err)
		return mirrorsync.ResultOf(res, err), err
	}
	src, err := newSyncSource(ctx, cfg, logger)
	if errors.Is(err, errUnknownScheme) {
		return mirrorsync.ResultFailed, configError(err)
	}
	if err != nil {
		r, err := fail(err)
		return r, syncFailure(err)
	}
	if c, ok := src.(interface{ CloseIdleConnections() }); ok {
		defer c.CloseIdleConnections()
	}
	conn := cfg.Concelier.Sources.StellaOpsMirror
	opts := mirrorsync.Options{
		Root:           cfg.Sync.Dest,
		Source:         src,
		SkipSignatures: !cfg.SignaturesEnabled(),
		ExpectKeyID:    conn.Signature.KeyID,
		ExpectProvider: conn.Signature.Provider,
		Domains:        cfg.EffectiveDomains(),
		Keep:           cfg.Sync.Keep,
		Force:          force,
		Logger:         logger,
		Started: func(res *mirrorsync.Result) {
			// Before the big work: a killed run is visible at once.
			if res.PreviousRunKilled {
				writeMetrics(&mirrorsync.Result{Started: res.PreviousRunStarted, PreviousRunKilled: true}, mirrorsync.ErrKilled)
			}
		},
	}
	if cfg.SignaturesEnabled() {
		client, err := jwksClient(cfg.Sync.CAFile, cfg.EffectiveTimeout())
		if err != nil {
			return fail(err)
		}
		defer client.CloseIdleConnections()
		if opts.Keys, err = mirrorsync.KeySource(cfg.PublicKeyPaths(), cfg.Sync.JWKSURL, client, conn.Signature.KeyID, logger); err != nil {
			return fail(err)
		}
	}
	res, runErr := mirrorsync.Run(ctx, opts)
	writeMetrics(res, runErr)
	result = mirrorsync.ResultOf(res, runErr)
	if errors.Is(runErr, mirrorsync.ErrLocked) {
		return result, &exitError{code: exitLocked, err: runErr}
	}
	logResult(logger, res, runErr)
	if runErr == nil {
		return result, nil
	}
	return result, syncFailure(loggedError{runErr})
}

// configError marks err as an invalid command line or configuration
// (exit status 2; the message is printed, unlike errUsage's).
func configError(err error) error {
	if errors.Is(err, errUsage) {
		return err
	}
	return &exitError{code: exitConfig, err: err}
}

// validateSync is cfg.Validate plus what only the command checks: the
// metrics textfile's directory exists (a typo there would otherwise show
// only as a logged error on every run).
func validateSync(cfg *mirrorsync.Config) error {
	err := cfg.Validate()
	if cfg.EffectiveSource() != "" {
		err = errors.Join(err, checkSourceSyntax(cfg))
	}
	if e := cfg.Sync.Every; e != 0 && e < minEvery {
		err = errors.Join(err, fmt.Errorf("SYNC__EVERY (--every): %s, must be at least %s (or 0 for one run)", e, minEvery))
	}
	if p := cfg.Sync.MetricsTextfile; p != "" {
		if fi, serr := os.Stat(filepath.Dir(p)); serr != nil || !fi.IsDir() {
			err = errors.Join(err, fmt.Errorf("SYNC__METRICSTEXTFILE (--metrics-textfile): %q: its directory %s does not exist", p, filepath.Dir(p)))
		} else if fi, serr := os.Stat(p); serr == nil && fi.IsDir() {
			err = errors.Join(err, fmt.Errorf("SYNC__METRICSTEXTFILE (--metrics-textfile): %q is a folder; name the file (e.g. %s)", p, filepath.Join(p, "stella_mirror_sync.prom")))
		}
	}
	return err
}

// errUnknownScheme is a source URL of no supported kind.
var errUnknownScheme = errors.New("unknown scheme (want s3://, rsync://, https:// or a directory)")

// loggedError is an error its command already logged (sync's one "sync
// failed" line): run() exits non-zero without printing it again.
type loggedError struct{ err error }

func (e loggedError) Error() string { return e.err.Error() }
func (e loggedError) Unwrap() error { return e.err }

func logResult(logger *slog.Logger, res *mirrorsync.Result, err error) {
	attrs := []any{"result", mirrorsync.ResultOf(res, err), "export_id", res.ExportID,
		"downloaded_bytes", res.BytesDownloaded, "index_bytes", res.IndexBytes,
		"files_downloaded", res.FilesDownloaded, "files_reused", res.FilesReused, "files_resumed", res.FilesResumed,
		logging.KeyDuration, res.Duration.Seconds()}
	if len(res.Removed) > 0 {
		attrs = append(attrs, "removed", res.Removed)
	}
	if err != nil {
		logger.Error("sync failed", append(attrs, "error", err)...)
		return
	}
	logger.Info("sync done", attrs...)
}

// newSyncSource picks the source implementation from the source string.
func newSyncSource(ctx context.Context, cfg *mirrorsync.Config, logger *slog.Logger) (mirrorsync.Source, error) {
	s := cfg.EffectiveSource()
	conn := cfg.Concelier.Sources.StellaOpsMirror
	switch {
	case strings.HasPrefix(s, "https://"), strings.HasPrefix(s, "http://"):
		return upstream.New(upstream.Options{
			BaseURL: s, IndexPath: conn.IndexPath, Timeout: cfg.EffectiveTimeout(),
			BasicAuthFile: cfg.Sync.BasicAuthFile, BearerTokenFile: cfg.Sync.BearerTokenFile,
			CAFile: cfg.Sync.CAFile, Logger: logger,
		})
	case strings.HasPrefix(s, "s3://"):
		return newS3Source(ctx, cfg, logger)
	case strings.HasPrefix(s, "rsync://"), isRemoteShellPath(s):
		return newRsyncSource(cfg, logger)
	case strings.Contains(s, "://"):
		return nil, fmt.Errorf("source %q: %w", s, errUnknownScheme)
	}
	return localsrc.New(s)
}

// isRemoteShellPath reports whether s is rsync's host:path form: a colon
// before the first slash, not a URL (scheme://), and not a local path.
func isRemoteShellPath(s string) bool {
	i := strings.IndexByte(s, ':')
	return i > 0 && !strings.HasPrefix(s[i:], "://") && !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, ".") && !strings.Contains(s[:i], "/")
}

// jwksClient is the HTTP client for the key registry.
func jwksClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates found", caFile)
		}
		tlsConf.RootCAs = pool
	}
	return &http.Client{Timeout: timeout, CheckRedirect: upstream.CheckRedirect, Transport: &http.Transport{TLSClientConfig: tlsConf, Proxy: loopname.NoProxy(http.ProxyFromEnvironment),
		DialContext: loopname.Wrap((&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext)}}, nil
}

// expandCredentialsDir replaces ${CREDENTIALS_DIRECTORY} (or
// $CREDENTIALS_DIRECTORY) in p with systemd's credentials directory.
func expandCredentialsDir(p string) string {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	return strings.NewReplacer("${CREDENTIALS_DIRECTORY}", dir, "$CREDENTIALS_DIRECTORY", dir).Replace(p)
}
