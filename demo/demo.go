package demo

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/atomicfile"
	"github.com/stella-ops/stella-mirror/internal/serve"
	"github.com/stella-ops/stella-mirror/origin"
)

// Options configure the demo. The zero value of every field means the
// default written beside it.
type Options struct {
	// Dir holds keys, exports and demo.json; created if missing, reused if
	// present. Default: demo-data (relative to the working directory).
	Dir string
	// OriginListen is the origin's public address. Default: 127.0.0.1:8080.
	OriginListen string
	// OriginAdminListen serves /metrics and health. Default: 127.0.0.1:9090.
	OriginAdminListen string
	// Domains to generate. Default: primary, community.
	Domains []string
	// BundleSize is the approximate size of each advisory bundle. Default: 4 MiB.
	BundleSize int64
	// Logger receives the components' logs. Default: discard.
	Logger *slog.Logger
	// AccessLog receives the origin's access log. Default: none.
	AccessLog *accesslog.Logger
	// Out receives the banner with URLs and curl commands. Default: discard.
	Out io.Writer
	// Ready, if set, is called with the written State once every listener is
	// bound and demo.json is written (tests use it instead of polling).
	Ready func(State)
}

// State is what the demo writes to demo.json.
type State struct {
	// Origin is the origin's public base URL, e.g. http://127.0.0.1:8080.
	Origin string `json:"origin"`
	// OriginAdmin is the origin's admin base URL (/metrics, /health/*).
	OriginAdmin string `json:"originAdmin"`
	// ExportRoots maps "concelier" and "excititor" to their export root folder.
	ExportRoots map[string]string `json:"exportRoots"`
	// PublicKey is the path of the PEM public key that verifies every signature.
	PublicKey string `json:"publicKey"`
	// KeyID is the kid of that key.
	KeyID string `json:"keyId"`
	// Domains lists the demo's domains.
	Domains []string `json:"domains"`
	// ExportID is the active export.
	ExportID string `json:"exportId"`
}

// StateFile is the name of the state file inside the demo directory.
const StateFile = "demo.json"

func (o *Options) setDefaults() {
	if o.Dir == "" {
		o.Dir = "demo-data"
	}
	if o.OriginListen == "" {
		o.OriginListen = "127.0.0.1:8080"
	}
	if o.OriginAdminListen == "" {
		o.OriginAdminListen = "127.0.0.1:9090"
	}
	if len(o.Domains) == 0 {
		o.Domains = []string{"primary", "community"}
	}
	if o.BundleSize == 0 {
		o.BundleSize = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// Run prepares the demo directory and serves until ctx is done.
func Run(ctx context.Context, opts Options) error {
	opts.setDefaults()
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return fmt.Errorf("demo dir %s: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating demo dir: %w", err)
	}
	key, pubPath, kid, err := ensureKey(filepath.Join(dir, "keys"))
	if err != nil {
		return err
	}
	exportRoot := filepath.Join(dir, "exports")
	exportID, err := ensureExport(exportRoot, key, kid, opts)
	if err != nil {
		return err
	}

	cfg := origin.DefaultConfig()
	cfg.Concelier.Mirror.Enabled = true
	cfg.Concelier.Mirror.ExportRoot = exportRoot
	cfg.Excititor.Mirror.Enabled = true
	cfg.Excititor.Artifacts.FileSystem.Root = exportRoot
	cfg.AccessLog = opts.AccessLog
	reg := prometheus.NewRegistry()
	o, err := origin.New(cfg, opts.Logger, reg)
	if err != nil {
		return fmt.Errorf("starting origin: %w", err)
	}
	pub, err := serve.Listen(opts.OriginListen)
	if err != nil {
		return err
	}
	admin, err := serve.Listen(opts.OriginAdminListen)
	if err != nil {
		pub.Close()
		return err
	}
	st := State{
		Origin:      "http://" + pub.Addr().String(),
		OriginAdmin: "http://" + admin.Addr().String(),
		ExportRoots: map[string]string{"concelier": exportRoot, "excititor": exportRoot},
		PublicKey:   pubPath,
		KeyID:       kid,
		Domains:     opts.Domains,
		ExportID:    exportID,
	}
	data, _ := json.MarshalIndent(st, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dir, StateFile), append(data, '\n'), 0o644); err != nil {
		pub.Close()
		admin.Close()
		return fmt.Errorf("writing %s: %w", StateFile, err)
	}
	printBanner(opts.Out, dir, st)
	if opts.Ready != nil {
		opts.Ready(st)
	}
	return serve.Run(ctx, opts.Logger,
		serve.Endpoint{Name: "origin", Listener: pub, Handler: o.Handler()},
		serve.Endpoint{Name: "origin-admin", Listener: admin, Handler: o.AdminHandler()})
}

// ensureKey loads the demo signing key from dir, or creates an ES256 key pair
// there. It returns the key, the public key's path and the kid.
func ensureKey(dir string) (crypto.Signer, string, string, error) {
	privPath := filepath.Join(dir, "signing.key.pem")
	pubPath := filepath.Join(dir, "signing.pub.pem")
	key, err := jws.LoadPrivateKeyPEM(privPath)
	if errors.Is(err, fs.ErrNotExist) {
		if key, err = jws.GenerateKey(jws.ES256); err != nil {
			return nil, "", "", fmt.Errorf("generating demo key: %w", err)
		}
		privPEM, err := jws.MarshalPrivateKeyPEM(key)
		if err != nil {
			return nil, "", "", err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", "", fmt.Errorf("creating key dir: %w", err)
		}
		if err := atomicfile.WriteFile(privPath, privPEM, 0o600); err != nil {
			return nil, "", "", fmt.Errorf("writing demo key: %w", err)
		}
	} else if err != nil {
		return nil, "", "", fmt.Errorf("loading demo key: %w", err)
	}
	pubPEM, err := jws.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return nil, "", "", err
	}
	if err := atomicfile.WriteFile(pubPath, pubPEM, 0o644); err != nil {
		return nil, "", "", fmt.Errorf("writing demo public key: %w", err)
	}
	kid, err := jws.Thumbprint(key.Public())
	if err != nil {
		return nil, "", "", err
	}
	return key, pubPath, kid, nil
}

// ensureExport reuses the export `latest` names when it is complete and holds
// the wanted domains, and writes a fresh fixture export otherwise.
func ensureExport(root string, key crypto.Signer, kid string, opts Options) (string, error) {
	if id, err := os.Readlink(filepath.Join(root, export.LatestLink)); err == nil {
		if data, err := os.ReadFile(filepath.Join(root, id, export.IndexPath)); err == nil {
			if ix, err := export.ParseIndex(data); err == nil && hasDomains(ix, opts.Domains) {
				opts.Logger.Info("reusing demo export", "export_id", id, "root", root)
				return id, nil
			}
		}
	}
	res, err := fixture.Write(root, fixture.Options{
		Domains:    opts.Domains,
		BundleSize: opts.BundleSize,
		Key:        key,
		KeyID:      kid,
		SetLatest:  true,
		Force:      true,
	})
	if err != nil {
		return "", fmt.Errorf("writing demo export: %w", err)
	}
	opts.Logger.Info("wrote demo export", "export_id", res.ExportID, "root", root)
	return res.ExportID, nil
}

func hasDomains(ix *export.Index, want []string) bool {
	for _, d := range want {
		if ix.Domain(d) == nil {
			return false
		}
	}
	return true
}

func printBanner(w io.Writer, dir string, st State) {
	d := st.Domains[0]
	var b strings.Builder
	fmt.Fprintf(&b, "\nstella-mirror demo is up (Ctrl-C stops it)\n\n")
	fmt.Fprintf(&b, "  origin        %s\n", st.Origin)
	fmt.Fprintf(&b, "  origin admin  %s/metrics  %s/health/ready\n", st.OriginAdmin, st.OriginAdmin)
	fmt.Fprintf(&b, "  export        %s (root %s)\n", st.ExportID, st.ExportRoots["concelier"])
	fmt.Fprintf(&b, "  public key    %s (kid %s)\n", st.PublicKey, st.KeyID)
	fmt.Fprintf(&b, "  state         %s\n\n", filepath.Join(dir, StateFile))
	fmt.Fprintf(&b, "Try:\n")
	fmt.Fprintf(&b, "  curl -s %s/concelier/exports/index.json | jq 'keys'\n", st.Origin)
	fmt.Fprintf(&b, "  curl -sI %s/concelier/exports/mirror/%s/manifest.json | grep -i cache-control\n", st.Origin, d)
	fmt.Fprintf(&b, "  curl -s %s/excititor/mirror/%s/index | jq -r '.exports[].exportKey'\n", st.Origin, d)
	fmt.Fprintf(&b, "  curl -so bundle.json %s/concelier/exports/mirror/%s/bundle.json && \\\n", st.Origin, d)
	fmt.Fprintf(&b, "    curl -so bundle.json.jws %s/concelier/exports/mirror/%s/bundle.json.jws && \\\n", st.Origin, d)
	fmt.Fprintf(&b, "    bin/stella-mirror verify --public-key %s bundle.json\n\n", st.PublicKey)
	io.WriteString(w, b.String())
}
