package gateway

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/stella-ops/stella-mirror/gateway/basicauth"
	"github.com/stella-ops/stella-mirror/internal/ratelimit"
)

// Log lines about failed and throttled logins are limited to a burst of
// authLogBurst, then one per authLogEvery: a password flood must not become
// a log flood. The next line written says how many were left out.
const (
	authLogEvery = time.Second
	authLogBurst = 10
)

// logLimiter decides which login log lines are written.
type logLimiter struct {
	now        func() time.Time
	mu         sync.Mutex
	lim        *rate.Limiter
	suppressed int64
}

func newLogLimiter(now func() time.Time) *logLimiter {
	return &logLimiter{now: now, lim: rate.NewLimiter(rate.Every(authLogEvery), authLogBurst)}
}

// allow reports whether a line may be written, and how many were
// suppressed since the last one written.
func (l *logLimiter) allow() (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lim.AllowN(l.now(), 1) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// logAuthFailure logs wrong credentials: the user name sanitised and
// bounded (basicauth.SafeUser), never the password.
func (g *Gateway) logAuthFailure(st *site, client, user string) {
	if ok, n := g.authLog.allow(); ok {
		g.logger.Warn("login failed", "site", st.name, "client", client, "user", basicauth.SafeUser(user),
			"suppressed", n)
	}
}

// logThrottled logs a request refused by the login throttle.
func (g *Gateway) logThrottled(st *site, client string, wait time.Duration) {
	if ok, n := g.authLog.allow(); ok {
		g.logger.Warn("login throttled", "site", st.name, "client", client,
			"retry_after_s", ratelimit.RetryAfterSeconds(wait), "suppressed", n)
	}
}
