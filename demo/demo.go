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
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/gateway"
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
	// GatewayListen is the gateway's HTTPS address. Default: 127.0.0.1:8443.
	GatewayListen string
	// GatewayAdminListen serves the gateway's /metrics and health.
	// Default: 127.0.0.1:9091.
	GatewayAdminListen string
	// Domains to generate. Default: primary, community.
	Domains []string
	// BundleSize is the approximate size of each advisory bundle. Default: 4 MiB.
	BundleSize int64
	// Logger receives the components' logs. Default: discard.
	Logger *slog.Logger
	// AccessLog receives the origin's and the gateway's access logs.
	// Default: none.
	AccessLog *accesslog.Logger
	// Out receives the banner with URLs and curl commands. Default: discard.
	Out io.Writer
	// Ready, if set, is called with the written State once every listener is
	// bound and demo.json is written (tests use it instead of polling).
	Ready func(State)
	// PickFreePorts moves a listener whose address was left at its default
	// to a free port on the same host when the default port is taken; the
	// banner says which. Addresses set explicitly never move: a taken one
	// fails Run with a *ListenError.
	PickFreePorts bool
	// Bin is the stella-mirror binary the banner's commands run. Default:
	// bin/stella-mirror.
	Bin string

	// defaulted marks the listeners (in listenerNames order) whose
	// address setDefaults filled in.
	defaulted [4]bool
}

// Listener names, in the order Run binds them; ListenError.Name is one of
// these.
var listenerNames = [4]string{"origin", "origin-admin", "gateway", "gateway-admin"}

// ListenError is returned when a listener cannot bind its address.
type ListenError struct {
	// Name is "origin", "origin-admin", "gateway" or "gateway-admin".
	Name string
	// Addr is the address that could not be bound.
	Addr string
	// Err is the cause (e.g. "address already in use").
	Err error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("demo %s listener on %s: %v", e.Name, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

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
	// Sites maps each domain to its gateway base URL, e.g.
	// https://mirror-primary.localhost:8443 (*.localhost is loopback).
	Sites map[string]string `json:"sites"`
	// GatewayAdmin is the gateway's admin base URL (/metrics, /health/*).
	GatewayAdmin string `json:"gatewayAdmin"`
	// CA is the PEM certificate of the demo CA that signed the sites'
	// certificates (curl --cacert).
	CA string `json:"ca"`
	// Users maps each domain to its demo user.
	Users map[string]User `json:"users"`
	// Configs maps "origin" and "gateway" to the YAML files the demo runs
	// with (stella-mirror origin|gateway --config FILE starts the same).
	Configs map[string]string `json:"configs"`
	// CacheDir is the gateway cache's directory (DIR/cache).
	CacheDir string `json:"cacheDir"`
	// AdminTokenFile holds the bearer token of the gateway's admin purge
	// endpoint (GatewayAdmin + /admin/cache/purge).
	AdminTokenFile string `json:"adminTokenFile"`
}

// StateFile is the name of the state file inside the demo directory.
const StateFile = "demo.json"

func (o *Options) setDefaults() {
	if o.Dir == "" {
		o.Dir = "demo-data"
	}
	for i, f := range []struct {
		addr *string
		def  string
	}{{&o.OriginListen, "127.0.0.1:8080"}, {&o.OriginAdminListen, "127.0.0.1:9090"},
		{&o.GatewayListen, "127.0.0.1:8443"}, {&o.GatewayAdminListen, "127.0.0.1:9091"}} {
		if *f.addr == "" {
			*f.addr = f.def
			o.defaulted[i] = true
		}
	}
	if o.Bin == "" {
		o.Bin = "bin/stella-mirror"
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

	ca, caPath, err := ensureCA(dir)
	if err != nil {
		return err
	}
	adminToken, err := ensureAdminToken(dir)
	if err != nil {
		return err
	}
	var sites []demoSite
	for _, d := range opts.Domains {
		st, err := ensureSite(dir, ca, d)
		if err != nil {
			return fmt.Errorf("demo site %s: %w", d, err)
		}
		sites = append(sites, st)
	}

	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	var moved []string
	for i, addr := range []string{opts.OriginListen, opts.OriginAdminListen, opts.GatewayListen, opts.GatewayAdminListen} {
		// The gateway is reached as https://mirror-<domain>.localhost:PORT,
		// and *.localhost is 127.0.0.1 and ::1 (clients may try ::1 first):
		// a default port another process holds on [::1] counts as taken.
		localhostNamed := listenerNames[i] == "gateway" && opts.PickFreePorts && opts.defaulted[i]
		l, err := net.Listen("tcp", addr)
		why := ""
		if err == nil && localhostNamed && heldOnIPv6Loopback(l.Addr()) {
			l.Close()
			err = syscall.EADDRINUSE
			why = fmt.Sprintf("%s is free but [::1]:%d is in use (*.localhost clients may try it first)", addr, l.Addr().(*net.TCPAddr).Port)
		}
		if err != nil && opts.PickFreePorts && opts.defaulted[i] && errors.Is(err, syscall.EADDRINUSE) {
			host, _, _ := net.SplitHostPort(addr)
			for try := 0; try < 20; try++ { // bounded: a port free on both loopbacks
				if l, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil || !localhostNamed || !heldOnIPv6Loopback(l.Addr()) {
					break
				}
				l.Close()
			}
			if err == nil {
				if why == "" {
					why = addr + " was taken"
				}
				moved = append(moved, fmt.Sprintf("%s: %s, using %s", listenerNames[i], why, l.Addr()))
			}
		}
		if err != nil {
			closeAll()
			return &ListenError{Name: listenerNames[i], Addr: addr, Err: err}
		}
		listeners = append(listeners, l)
	}
	pub, admin, gwLn, gwAdmin := listeners[0], listeners[1], listeners[2], listeners[3]

	// The configuration files the demo runs with (real addresses, so that
	// `stella-mirror origin|gateway --config` starts the same stack).
	originPath := filepath.Join(dir, "origin.yaml")
	gatewayPath := filepath.Join(dir, "gateway.yaml")
	var oy originYAML
	oy.Concelier.Mirror.Enabled = true
	oy.Concelier.Mirror.ExportRoot = exportRoot
	oy.Excititor.Mirror.Enabled = true
	oy.Excititor.Artifacts.FileSystem.Root = exportRoot
	oy.Origin.Listen = pub.Addr().String()
	oy.Origin.AdminListen = admin.Addr().String()
	oy.Origin.LogFormat = "text"
	var gy gatewayYAML
	gy.Gateway.Listen = gwLn.Addr().String()
	gy.Gateway.HTTPListen = ""
	gy.Gateway.AdminListen = gwAdmin.Addr().String()
	gy.Gateway.Origin = "http://" + pub.Addr().String()
	gy.Gateway.LogFormat = "text"
	gy.Gateway.Cache.Dir = filepath.Join(dir, "cache")
	gy.Gateway.AdminTokenFile = adminToken
	gy.Gateway.OriginStatusURL = "http://" + admin.Addr().String() + "/status.json"
	for _, st := range sites {
		gy.Gateway.Sites = append(gy.Gateway.Sites, gatewaySiteY{Hosts: []string{st.host}, Domains: []string{st.domain},
			CertFile: st.certFile, KeyFile: st.keyFile, HtpasswdFile: st.user.Htpasswd})
	}
	if err := writeYAML(originPath, "# Written by `stella-mirror demo`: the origin it runs.\n# Start it alone with: stella-mirror origin --config "+originPath+"\n", &oy); err != nil {
		closeAll()
		return err
	}
	if err := writeYAML(gatewayPath, "# Written by `stella-mirror demo`: the gateway it runs.\n# Start it alone with: stella-mirror gateway --config "+gatewayPath+"\n", &gy); err != nil {
		closeAll()
		return err
	}

	cfg, err := origin.LoadConfig(originPath, nil)
	if err != nil {
		closeAll()
		return err
	}
	cfg.AccessLog = opts.AccessLog
	o, err := origin.New(cfg, opts.Logger, prometheus.NewRegistry())
	if err != nil {
		closeAll()
		return fmt.Errorf("starting origin: %w", err)
	}
	defer o.Close()
	gcfg, err := gateway.LoadConfig(gatewayPath, nil)
	if err != nil {
		closeAll()
		return err
	}
	gw, err := gateway.New(gcfg, gateway.Options{Logger: opts.Logger, AccessLog: opts.AccessLog, Registerer: prometheus.NewRegistry()})
	if err != nil {
		closeAll()
		return fmt.Errorf("starting gateway: %w", err)
	}

	_, gwPort, _ := net.SplitHostPort(gwLn.Addr().String())
	st := State{
		Origin:         "http://" + pub.Addr().String(),
		OriginAdmin:    "http://" + admin.Addr().String(),
		ExportRoots:    map[string]string{"concelier": exportRoot, "excititor": exportRoot},
		PublicKey:      pubPath,
		KeyID:          kid,
		Domains:        opts.Domains,
		ExportID:       exportID,
		Sites:          map[string]string{},
		GatewayAdmin:   "http://" + gwAdmin.Addr().String(),
		CA:             caPath,
		Users:          map[string]User{},
		Configs:        map[string]string{"origin": originPath, "gateway": gatewayPath},
		CacheDir:       gcfg.Gateway.Cache.Dir,
		AdminTokenFile: adminToken,
	}
	for _, s := range sites {
		st.Sites[s.domain] = "https://" + s.host + ":" + gwPort
		st.Users[s.domain] = s.user
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() {
		errc <- serve.Run(ctx, opts.Logger,
			serve.Endpoint{Name: "origin", Listener: pub, Handler: o.Handler()},
			serve.Endpoint{Name: "origin-admin", Listener: admin, Handler: o.AdminHandler(), Private: true})
		cancel()
	}()
	gwUp := make(chan struct{})
	go func() {
		errc <- gw.Serve(ctx, gateway.Listeners{HTTPS: gwLn, Admin: gwAdmin}, func() { close(gwUp) })
		cancel()
	}()
	var first error
	pending := 2
	select {
	case <-gwUp:
		data, _ := json.MarshalIndent(st, "", "  ")
		if err := atomicfile.WriteFile(filepath.Join(dir, StateFile), append(data, '\n'), 0o644); err != nil {
			cancel()
			first = fmt.Errorf("writing %s: %w", StateFile, err)
			break
		}
		printBanner(opts.Out, dir, opts.Bin, moved, st)
		if opts.Ready != nil {
			opts.Ready(st)
		}
	case first = <-errc:
		pending--
		cancel()
	}
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
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

func printBanner(w io.Writer, dir, bin string, moved []string, st State) {
	d := st.Domains[0]
	u := st.Users[d]
	var b strings.Builder
	fmt.Fprintf(&b, "\nstella-mirror demo is up (Ctrl-C stops it)\n\n")
	for _, m := range moved {
		fmt.Fprintf(&b, "  port moved     %s\n", m)
	}
	for _, dom := range st.Domains {
		fmt.Fprintf(&b, "  site %-9s %s  (user %s, password %s)\n", dom, st.Sites[dom], st.Users[dom].User, st.Users[dom].Password)
	}
	fmt.Fprintf(&b, "  gateway admin  %s/metrics  %s/health/ready\n", st.GatewayAdmin, st.GatewayAdmin)
	fmt.Fprintf(&b, "  status page    %s/status  (origin's: %s/status; JSON: …/status.json)\n", st.GatewayAdmin, st.OriginAdmin)
	fmt.Fprintf(&b, "  demo CA        %s\n", st.CA)
	fmt.Fprintf(&b, "  origin         %s  (admin %s)\n", st.Origin, st.OriginAdmin)
	fmt.Fprintf(&b, "  export         %s (root %s)\n", st.ExportID, st.ExportRoots["concelier"])
	fmt.Fprintf(&b, "  public key     %s (kid %s)\n", st.PublicKey, st.KeyID)
	fmt.Fprintf(&b, "  configs        %s, %s\n", st.Configs["origin"], st.Configs["gateway"])
	fmt.Fprintf(&b, "  gateway cache  %s (purge: curl -sS -X POST -H \"Authorization: Bearer $(cat %s)\" '%s/admin/cache/purge?all=true')\n",
		st.CacheDir, st.AdminTokenFile, st.GatewayAdmin)
	fmt.Fprintf(&b, "  state          %s\n\n", filepath.Join(dir, StateFile))
	fmt.Fprintf(&b, "Try (through the gateway: TLS + Basic Auth; *.localhost is loopback):\n")
	fmt.Fprintf(&b, "  curl -s --cacert %s -u %s:%s %s/concelier/exports/index.json | jq 'keys'\n", st.CA, u.User, u.Password, st.Sites[d])
	fmt.Fprintf(&b, "  curl -sI --cacert %s %s/concelier/exports/index.json | grep -i www-authenticate\n", st.CA, st.Sites[d])
	fmt.Fprintf(&b, "  curl -sI --cacert %s -u %s:%s %s/concelier/exports/mirror/%s/manifest.json | grep -i x-cache-status   # MISS, then HIT\n", st.CA, u.User, u.Password, st.Sites[d], d)
	fmt.Fprintf(&b, "  T=$(mktemp -d) && curl -so \"$T/bundle.json\" --cacert %s -u %s:%s %s/concelier/exports/mirror/%s/bundle.json && \\\n", st.CA, u.User, u.Password, st.Sites[d], d)
	fmt.Fprintf(&b, "    curl -so \"$T/bundle.json.jws\" --cacert %s -u %s:%s %s/concelier/exports/mirror/%s/bundle.json.jws && \\\n", st.CA, u.User, u.Password, st.Sites[d], d)
	fmt.Fprintf(&b, "    %s verify --public-key %s \"$T/bundle.json\"\n", bin, st.PublicKey)
	fmt.Fprintf(&b, "  %s smoke --base %s --domain %s --user %s --password-file %s --cacert %s --public-key %s\n",
		bin, st.Sites[d], d, u.User, filepath.Join(dir, "auth", d+".password"), st.CA, st.PublicKey)
	fmt.Fprintf(&b, "The origin directly (no auth): curl -s %s/excititor/mirror/%s/index | jq -r '.exports[].exportKey'\n\n", st.Origin, d)
	io.WriteString(w, b.String())
}

// heldOnIPv6Loopback reports whether another socket holds a's port on
// [::1] (a probe bind, released at once). Without IPv6 it reports false.
func heldOnIPv6Loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsLoopback() || ta.IP.To4() == nil {
		return false
	}
	l, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(ta.Port)))
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	l.Close()
	return false
}
