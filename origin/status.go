package origin

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/buildinfo"
	"github.com/stella-ops/stella-mirror/internal/statuspage"
)

// domainTime is one served domain of an export and the generatedAt of the
// index that lists it.
type domainTime struct {
	id          string
	generatedAt time.Time
}

// domainTimes lists the export's domains the product serves (the
// configured ones, or all when none are configured), sorted by id:
// Concelier's carry the mirror index's generatedAt, Excititor's their own
// index's. Domains whose index does not parse are left out.
func (st *exportState) domainTimes(p *product) []domainTime {
	var out []domainTime
	served := func(id string) bool {
		if p.domains == nil {
			return true
		}
		_, ok := p.domains[id]
		return ok
	}
	for id := range st.concelier {
		if served(id) {
			out = append(out, domainTime{id, st.generatedAt})
		}
	}
	for _, id := range st.excititorOrder {
		if d := st.excititor[id]; d.err == nil && served(id) {
			out = append(out, domainTime{id, d.generatedAt})
		}
	}
	slices.SortFunc(out, func(a, b domainTime) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return out
}

// exportGeneratedDesc describes
// stella_mirror_origin_active_export_generated_timestamp_seconds.
var exportGeneratedDesc = prometheus.NewDesc("stella_mirror_origin_active_export_generated_timestamp_seconds",
	"generatedAt of the active export's index listing each served domain (Unix time), by product and domain; compare with stella_mirror_sync_export_generated_timestamp_seconds (the upstream's newest) to alert on a lagging mirror.",
	[]string{"product", "domain"}, nil)

// Status returns the origin's status page: each enabled product's active
// export and its domains, and the last sync run when
// ORIGIN__SYNCMETRICSTEXTFILE is set.
func (o *Origin) Status(_ context.Context) statuspage.Status {
	st := statuspage.Status{Component: "origin", Version: buildinfo.Version(), Now: o.now(), StartedAt: o.started}
	st.Products = o.productStatus()
	if o.syncTextfile != "" {
		s, err := statuspage.ReadSyncTextfile(o.syncTextfile)
		if err != nil {
			st.Problems = append(st.Problems, err.Error())
		} else {
			st.Sync = s
		}
	}
	return st
}

func (o *Origin) productStatus() []statuspage.Product {
	var out []statuspage.Product
	for _, p := range o.products {
		if p == nil {
			continue
		}
		ps := statuspage.Product{Name: p.name, Domains: []statuspage.Domain{}}
		if p.rootMissing() {
			ps.Error = "export root is not configured or missing (" + p.rootKey + ")"
			out = append(out, ps)
			continue
		}
		es, err := p.acquire()
		if err != nil {
			ps.Error = err.Error()
			out = append(out, ps)
			continue
		}
		ps.ExportID = es.id
		for _, d := range es.domainTimes(p) {
			ps.Domains = append(ps.Domains, statuspage.Domain{ID: d.id, GeneratedAt: d.generatedAt.UTC()})
		}
		es.release()
		out = append(out, ps)
	}
	return out
}

func (o *Origin) now() time.Time { return o.clock().UTC() }

// withStatus serves the status page (/status, /status.json) in front of
// the admin router.
func (o *Origin) withStatus(next http.Handler) http.Handler {
	page := statuspage.Handler(o.Status)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status" || r.URL.Path == "/status.json" {
			page.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
