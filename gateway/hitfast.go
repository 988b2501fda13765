package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/gateway/cache"
	"github.com/stella-ops/stella-mirror/gateway/fasthit"
)

// serveHitFast is fasthit.Serve: the gateway's fasthttp hit path (a
// package of its own so that the conformance harness runs the same code).
func serveHitFast(c *cache.Cache, fc *fasthttp.RequestCtx, key string, done func(bytes int64, aborted bool)) bool {
	return fasthit.Serve(c, fc, key, done)
}
