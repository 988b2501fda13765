package origin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/buildinfo"
	"github.com/stella-ops/stella-mirror/internal/filewatch"
	"github.com/stella-ops/stella-mirror/internal/pprofmux"
	"github.com/stella-ops/stella-mirror/internal/serve"
)

// Origin serves the Concelier and Excititor mirror endpoints from export
// trees. Create it with New; it is safe for concurrent use.
type Origin struct {
	logger   *slog.Logger
	access   *accesslog.Logger
	auth     Authorizer
	peers    *peerAuth // ORIGIN__PEERTOKENFILE of the built-in Authorizer; nil: none
	metrics  *metrics
	gatherer prometheus.Gatherer

	// products are Concelier and Excititor, nil when disabled.
	products [2]*product

	public, admin http.Handler

	// Status page (status.go).
	clock        func() time.Time
	started      time.Time
	syncTextfile string
}

// options are knobs for tests; the zero value means production behaviour.
type options struct {
	now          func() time.Time // default time.Now
	smallFileMax int64            // default defaultSmallFileMax
	recheck      time.Duration    // default activeRecheck; negative: every request
	access       accessOptions    // built-in access control; now defaults to now above
}

// New validates cfg and returns an origin serving it. It logs the start-up
// state of each enabled product: "Mirror export root is not configured"
// when a root is unset, "Mirror export root does not exist" (with the path)
// when it is set but missing, the active export otherwise.
//
// logger receives operational logs (nil discards them). reg receives the
// origin's metrics (nil: a private registry); when reg is also a
// prometheus.Gatherer (a *prometheus.Registry is), AdminHandler serves it
// at /metrics, with the sync textfile's stella_mirror_sync_* families when
// ORIGIN__SYNCMETRICSEXPORT is true.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Origin, error) {
	return newOrigin(cfg, logger, reg, options{})
}

func newOrigin(cfg Config, logger *slog.Logger, reg prometheus.Registerer, opts options) (*Origin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid origin configuration: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.recheck == 0 {
		opts.recheck = cfg.LatestRecheck
	}
	if opts.recheck == 0 {
		opts.recheck = activeRecheck
	}
	if opts.smallFileMax == 0 {
		opts.smallFileMax = defaultSmallFileMax
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering origin metrics: %w", err)
	}
	o := &Origin{logger: logger, access: cfg.AccessLog, auth: cfg.Authorizer, metrics: m,
		clock: opts.now, started: opts.now(), syncTextfile: cfg.Origin.SyncMetricsTextfile}
	if o.auth == nil {
		if opts.access.now == nil {
			opts.access.now = opts.now
		}
		ac, err := newAccessControl(&cfg, logger, reg, opts.access)
		if err != nil {
			return nil, fmt.Errorf("invalid origin configuration: %w", err)
		}
		o.auth, o.peers = ac, ac.peers
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		o.gatherer = g
		if cfg.Origin.SyncMetricsExport {
			o.gatherer = prometheus.Gatherers{g, &syncGatherer{path: cfg.Origin.SyncMetricsTextfile, logger: logger, now: opts.now}}
		}
	}
	newProduct := func(name, rootKey, root string, mc *MirrorConfig, marker func(string) (time.Time, bool), load func(*exportState) error) *product {
		if !mc.Enabled {
			return nil
		}
		p := &product{
			name: name, rootKey: rootKey, root: root, pinnedID: mc.ActiveExportID,
			requireAuth: mc.RequireAuthentication,
			marker:      marker, load: load,
			logger: logger, now: opts.now, recheck: opts.recheck, smallMax: opts.smallFileMax, gauge: m.active,
		}
		if root != "" {
			p.latest = filepath.Join(root, export.LatestLink)
		}
		if len(mc.Domains) > 0 {
			p.domains = make(map[string]*bool, len(mc.Domains))
			for _, d := range mc.Domains {
				p.domains[d.ID] = d.RequireAuthentication
			}
		}
		return p
	}
	o.products[0] = newProduct("concelier", KeyConcelierRoot, cfg.Concelier.Mirror.ExportRoot,
		&cfg.Concelier.Mirror, concelierMarker, loadConcelier)
	o.products[1] = newProduct("excititor", KeyExcititorRoot, cfg.Excititor.Artifacts.FileSystem.Root,
		&cfg.Excititor.Mirror, excititorMarker, loadExcititor)
	if err := reg.Register(&exportAge{products: &o.products}); err != nil {
		return nil, fmt.Errorf("registering origin metrics: %w", err)
	}
	o.public, o.admin = o.routes()
	o.admin = o.withStatus(o.admin)
	if cfg.Origin.AdminPprof {
		o.admin = pprofmux.Wrap(o.admin)
	}

	for _, w := range cfg.Warnings() {
		logger.Warn("configuration", "warning", w)
	}
	for _, p := range o.products {
		if p == nil {
			continue
		}
		if p.rootMissing() {
			p.logRootMissing(true)
			continue
		}
		st, err := p.acquire() // logs "active export" on success
		if err != nil {
			logger.Warn("no export can be served yet", "product", p.name, "error", err.Error())
			continue
		}
		st.release()
	}
	return o, nil
}

// Handler returns the public handler: the Concelier and Excititor mirror
// endpoints and /health/live, /health/ready. It never serves /metrics.
func (o *Origin) Handler() http.Handler { return o.public }

// AdminHandler returns the admin handler: /health/live, /health/ready and
// /metrics. Serve it on a loopback or private listener only.
func (o *Origin) AdminHandler() http.Handler { return o.admin }

// Ready reports nil when every enabled product has an active export whose
// indexes parse, and otherwise an error naming each reason.
func (o *Origin) Ready() error {
	reasons := o.notReady()
	if len(reasons) == 0 {
		return nil
	}
	errs := make([]error, len(reasons))
	for i, r := range reasons {
		errs[i] = errors.New(r)
	}
	return errors.Join(errs...)
}

// notReady returns one reason per product that cannot serve.
func (o *Origin) notReady() []string {
	var reasons []string
	for _, p := range o.products {
		if p == nil {
			continue
		}
		if err := p.ready(); err != nil {
			reasons = append(reasons, p.name+": "+err.Error())
		}
	}
	return reasons
}

// Close releases the cached exports. Requests still in flight finish
// first; later requests reopen what they need.
func (o *Origin) Close() error {
	for _, p := range o.products {
		if p != nil {
			p.close()
		}
	}
	return nil
}

// Reload re-reads ORIGIN__PEERTOKENFILE (what SIGHUP and a change of the
// file do); nil when it is not set. An invalid file keeps the tokens in
// service and is returned (and logged, and counted).
func (o *Origin) Reload() error {
	if o.peers == nil {
		return nil
	}
	return o.peers.reload()
}

// watch reloads on SIGHUP and, when ORIGIN__PEERTOKENFILE is set, when the
// file changes, until ctx is done. SIGHUP is caught either way: it must
// not end the origin as it would by default.
func (o *Origin) watch(ctx context.Context) {
	if o.peers != nil {
		if err := filewatch.Watch(ctx, []string{o.peers.path}, o.logger, func(string) { _ = o.Reload() }); err != nil {
			o.logger.Warn("file watching unavailable; reload with SIGHUP", "error", err.Error())
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if o.peers == nil {
					o.logger.Info("SIGHUP: nothing to reload")
					continue
				}
				o.logger.Info("SIGHUP: reloading the peer token file")
				_ = o.Reload()
			}
		}
	}()
}

// Run validates cfg, binds the public (cfg.Origin.Listen) and admin
// (cfg.Origin.AdminListen) listeners and serves both with net/http's server
// until ctx is done, then drains for ORIGIN__SHUTDOWNDELAY (serve.Group.Drain)
// and shuts down gracefully. The peer token file
// (ORIGIN__PEERTOKENFILE) is re-read when it changes and on SIGHUP.
func Run(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger.Info("starting origin", "version", buildinfo.Version(),
		"concelier", cfg.Concelier.Mirror.Enabled, "excititor", cfg.Excititor.Mirror.Enabled)
	o, err := New(cfg, logger, reg)
	if err != nil {
		return err
	}
	defer o.Close()
	pub, err := serve.Listen(cfg.Origin.Listen)
	if err != nil {
		return err
	}
	admin, err := serve.Listen(cfg.Origin.AdminListen)
	if err != nil {
		pub.Close()
		return err
	}
	// The watch (and SIGHUP's handler) lives until Run returns, not until
	// ctx is done: a SIGHUP during the drain or the graceful shutdown
	// after SIGTERM must not end the origin as SIGHUP does by default.
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	o.watch(wctx)
	return serve.RunWith(ctx, serve.Options{Logger: logger, Limits: serve.Limits{MaxConnsPerIP: -1},
		ShutdownDelay: cfg.Origin.ShutdownDelay},
		serve.Endpoint{Name: "origin", Listener: pub, Handler: o.Handler(), Ready: true},
		serve.Endpoint{Name: "origin-admin", Listener: admin, Handler: o.AdminHandler(), Private: true, Ready: true})
}
