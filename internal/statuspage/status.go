package statuspage

import (
	"time"
)

// Status is everything the page shows. The origin fills Products and Sync;
// the gateway adds Gateway (and takes Products and Sync from the origin's
// /status.json when it is configured to).
type Status struct {
	// Component is "origin" or "gateway".
	Component string `json:"component"`
	// Version is the build version (internal/buildinfo).
	Version string `json:"version"`
	// Now is when the status was taken.
	Now time.Time `json:"now"`
	// StartedAt is when the process started; UptimeSeconds is Now less it.
	StartedAt     time.Time `json:"startedAt"`
	UptimeSeconds float64   `json:"uptimeSeconds"`
	// Products lists the enabled products with their active export.
	Products []Product `json:"products"`
	// Sync is the last sync run, when a textfile is configured.
	Sync *Sync `json:"sync,omitempty"`
	// Gateway holds the gateway's own parts; nil on the origin.
	Gateway *Gateway `json:"gateway,omitempty"`
	// Problems lists what could not be found out (an unreadable textfile,
	// an origin that did not answer), in words.
	Problems []string `json:"problems,omitempty"`
}

// Product is one product (concelier, excititor) and the export it serves.
type Product struct {
	Name string `json:"name"`
	// ExportID is the active export; empty while none can be served.
	ExportID string `json:"exportId"`
	// Error says why no export is served.
	Error string `json:"error,omitempty"`
	// Domains are the domains of the active export.
	Domains []Domain `json:"domains"`
}

// Domain is one domain of an active export.
type Domain struct {
	ID string `json:"id"`
	// GeneratedAt is the generatedAt of the index the domain is listed in.
	GeneratedAt time.Time `json:"generatedAt"`
	// AgeSeconds is Status.Now less GeneratedAt.
	AgeSeconds float64 `json:"ageSeconds"`
}

// Sync is what the last sync run wrote to its textfile.
type Sync struct {
	// Textfile is the file read.
	Textfile string `json:"textfile"`
	// LastResult is published, unchanged, verify_failed, failed (or
	// another result label the sync writes).
	LastResult string `json:"lastResult"`
	// LastAttempt, LastSuccess and LastPublish are zero when unknown.
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastPublish time.Time `json:"lastPublish,omitzero"`
	// UpstreamGeneratedAt is the generatedAt of the newest export the
	// last successful run found at its source.
	UpstreamGeneratedAt time.Time `json:"upstreamGeneratedAt,omitzero"`
}

// Gateway is the gateway's part of the page.
type Gateway struct {
	// Generations are the export generations the cache answers unversioned
	// requests from, by product (Concelier only today).
	Generations []Generation `json:"generations,omitempty"`
	// Cache is nil when the cache is off.
	Cache *Cache `json:"cache,omitempty"`
	// Sites lists every site with its certificate and budget rejections.
	Sites []Site `json:"sites"`
	// OriginStatus is true when the exports and the sync run come from
	// the origin's /status.json (GATEWAY__ORIGINSTATUSURL is set).
	OriginStatus bool `json:"originStatus"`
}

// Generation is the export one product's unversioned answers come from.
type Generation struct {
	Product  string `json:"product"`
	ExportID string `json:"exportId"`
}

// Cache summarises the gateway cache since the process started.
type Cache struct {
	StoredBytes   int64 `json:"storedBytes"`
	MaxBytes      int64 `json:"maxBytes"`
	StoredObjects int64 `json:"storedObjects"`
	// Requests counts answers through the cache; Hits those with
	// X-Cache-Status HIT; Stale those served stale (STALE, UPDATING).
	Requests int64 `json:"requests"`
	Hits     int64 `json:"hits"`
	Stale    int64 `json:"stale"`
	// HitRatio is Hits/Requests (0 without requests).
	HitRatio float64 `json:"hitRatio"`
}

// Site is one gateway site.
type Site struct {
	Name    string   `json:"name"`
	Hosts   []string `json:"hosts"`
	Domains []string `json:"domains"`
	// Certificate is "file" or "acme"; NotAfter is zero while none is in
	// service; DaysLeft is (NotAfter - Now) in days, rounded down.
	Certificate string    `json:"certificate"`
	NotAfter    time.Time `json:"notAfter,omitzero"`
	DaysLeft    int       `json:"daysLeft"`
	// BudgetRejectionsLastHour counts 429 budget answers in the last hour.
	BudgetRejectionsLastHour int64 `json:"budgetRejectionsLastHour"`
}

// Fill sets the derived fields: UptimeSeconds, each domain's AgeSeconds
// and each site's DaysLeft, from Now.
func (s *Status) Fill() {
	s.UptimeSeconds = s.Now.Sub(s.StartedAt).Seconds()
	for i := range s.Products {
		for j := range s.Products[i].Domains {
			d := &s.Products[i].Domains[j]
			if !d.GeneratedAt.IsZero() {
				d.AgeSeconds = s.Now.Sub(d.GeneratedAt).Seconds()
			}
		}
	}
	if s.Gateway != nil {
		for i := range s.Gateway.Sites {
			st := &s.Gateway.Sites[i]
			if !st.NotAfter.IsZero() {
				st.DaysLeft = int(st.NotAfter.Sub(s.Now).Hours() / 24)
			}
		}
		if c := s.Gateway.Cache; c != nil && c.Requests > 0 {
			c.HitRatio = float64(c.Hits) / float64(c.Requests)
		}
	}
}
