package cache

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's Prometheus series, stella_mirror_cache_*.
type metrics struct {
	requests       map[Status]prometheus.Counter
	servedCache    prometheus.Counter
	servedUpstream prometheus.Counter
	upstream       prometheus.Counter
	storedBytes    prometheus.Gauge
	storedObjects  prometheus.Gauge
	memoryBytes    prometheus.Gauge
	memoryObjects  prometheus.Gauge
	evictDisk      prometheus.Counter
	evictMemory    prometheus.Counter
	fillsInFlight  prometheus.Gauge
	fillFailures   prometheus.Counter
	fillsAbandoned prometheus.Counter

	generationSwitches prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "stella_mirror", "cache"
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "requests_total", Help: "Requests answered through the cache, by X-Cache-Status."}, []string{"cache_status"})
	served := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "served_bytes_total", Help: "Body bytes sent to clients, by source: cache (stored objects and joined fills) or upstream (the request that fetched them)."}, []string{"source"})
	upstream := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "upstream_requests_total", Help: "Requests the cache sent upstream (fills, revalidations, pass-through)."})
	storedBytes := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
		Name: "stored_bytes", Help: "Body bytes of the objects in the disk tier."})
	storedObjects := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
		Name: "stored_objects", Help: "Objects in the disk tier."})
	memoryBytes := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
		Name: "memory_bytes", Help: "Body bytes held in the memory tier."})
	memoryObjects := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
		Name: "memory_objects", Help: "Objects held in the memory tier."})
	evictions := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "evictions_total", Help: "Objects evicted to keep a tier within its size bound, by tier (disk, memory)."}, []string{"tier"})
	fills := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
		Name: "fills_in_flight", Help: "Upstream fetches (fills and revalidations) in progress."})
	failures := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "fill_failures_total", Help: "Fills that failed (upstream error, truncated body, digest mismatch, disk error) and were not stored."})
	abandoned := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "fills_abandoned_total", Help: "Upstream fetches cancelled because every client waiting for them went away; nothing of them is stored."})
	switches := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "generation_switches_total", Help: "Times the Concelier export generation the unversioned files are answered from changed (an index with a new X-Stella-Export-Id)."})
	m := &metrics{
		generationSwitches: switches,
		requests:           map[Status]prometheus.Counter{},
		servedCache:        served.WithLabelValues("cache"),
		servedUpstream:     served.WithLabelValues("upstream"),
		upstream:           upstream,
		storedBytes:        storedBytes,
		storedObjects:      storedObjects,
		memoryBytes:        memoryBytes,
		memoryObjects:      memoryObjects,
		evictDisk:          evictions.WithLabelValues("disk"),
		evictMemory:        evictions.WithLabelValues("memory"),
		fillsInFlight:      fills,
		fillFailures:       failures,
		fillsAbandoned:     abandoned,
	}
	for _, s := range Statuses {
		m.requests[s] = requests.WithLabelValues(string(s))
	}
	if reg != nil {
		var errs []error
		for _, c := range []prometheus.Collector{requests, served, upstream, storedBytes, storedObjects,
			memoryBytes, memoryObjects, evictions, fills, failures, abandoned, switches} {
			errs = append(errs, reg.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return m, nil
}
