package main

import "runtime/debug"

// serverGCPercent is the garbage collector's target for the long-running
// servers (origin, gateway, demo) when the operator has not set GOGC.
//
// Go's default, 100, collects each time the heap doubles. A server of
// small responses allocates a few KiB per request and keeps little, so at
// 100 the collector ran often enough to cost 10% of the gateway's requests
// per second over HTTP/2 (h2load, memory-tier hits). At 400 the gateway's
// peak RSS with 1,000 bundle downloads in flight rose from 167 to 208 MiB
// (make bench), under the 256 MiB budget. GOGC and GOMEMLIMIT in the
// environment take precedence, as everywhere in Go.
const serverGCPercent = 400

// serverMemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit)
// tuneGC sets with serverGCPercent unless GOMEMLIMIT is set: at 400 the
// heap may grow to five times what is live before a collection, and the
// garbage of an attack made of many short requests took the gateway past
// the 256 MiB RSS budget (make dos h2-rapid-reset: peak RSS 150-269 MiB
// over five runs). Near the limit the collector runs as often as needed;
// far from it, serverGCPercent alone decides.
const serverMemoryLimit = 192 << 20

// serverCommands are the commands tuneGC applies to.
var serverCommands = map[string]bool{"origin": true, "gateway": true, "demo": true}

// tuneGC sets serverGCPercent unless GOGC is set, and then
// serverMemoryLimit unless GOMEMLIMIT is set; it reports whether it set
// the GC percent.
func tuneGC(getenv func(string) string) bool {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(serverGCPercent)
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serverMemoryLimit)
	}
	return true
}

// memoryLimitFor raises the soft limit tuneGC set by what the process is
// configured to keep live on purpose (the gateway cache's memory tier,
// GATEWAY__CACHE__MEMORYMAXSIZE): with a memory tier larger than the
// limit the live heap alone would pass it and the collector would run
// back to back. It does nothing when tuneGC set no limit (GOGC or
// GOMEMLIMIT set by the operator) or for a non-positive extra.
func memoryLimitFor(extra int64, getenv func(string) string) {
	if extra <= 0 || getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(serverMemoryLimit + extra)
}
