#!/bin/sh
# cache-tests.sh SUITE [OUT.json] — runs the public HTTP caching suite
# http-tests/cache-tests (a checkout at SUITE, fetched separately, never
# vendored) against the conformance harness bench/cmd/cacheproxy and prints
# the summary (scripts/cache-tests-summary.mjs). Needs node (>= 18) and go.
# ENGINE=std runs the harness on net/http instead of fasthttp. Ports are
# picked free on 127.0.0.1; everything started here is stopped at the end.
set -eu
SUITE=${1:?usage: cache-tests.sh SUITE [OUT.json]}
OUT=${2:-$(mktemp /tmp/cache-tests-results.XXXXXX.json)}
ENGINE=${ENGINE:-fast}
REPO=$(cd "$(dirname "$0")/.." && pwd)
command -v node >/dev/null || { echo "cache-tests: node is not installed" >&2; exit 2; }
[ -f "$SUITE/test-engine/cli.mjs" ] || { echo "cache-tests: $SUITE is not a cache-tests checkout (no test-engine/cli.mjs)" >&2; exit 2; }
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
ORIGIN=$(freeport); PROXY=$(freeport)
BIN=$(mktemp -d /tmp/cacheproxy-bin.XXXXXX)
(cd "$REPO" && go build -o "$BIN/cacheproxy" ./bench/cmd/cacheproxy)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$BIN"; }
trap cleanup EXIT INT TERM
(cd "$SUITE" && npm_config_port=$ORIGIN npm_config_protocol=http npm_config_pidfile="$BIN/server.pid" exec node test-engine/server/server.mjs >"$BIN/server.log" 2>&1) &
PIDS="$PIDS $!"
"$BIN/cacheproxy" --listen "127.0.0.1:$PROXY" --upstream "http://127.0.0.1:$ORIGIN" --engine "$ENGINE" 2>"$BIN/proxy.log" &
PIDS="$PIDS $!"
for i in $(seq 1 100); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$PROXY/config/x" 2>/dev/null || curl -sS -o /dev/null "http://127.0.0.1:$PROXY/" 2>/dev/null; then break; fi
  sleep 0.1
done
(cd "$SUITE" && npm_config_base="http://127.0.0.1:$PROXY" npm_package_config_id="" node --no-warnings test-engine/cli.mjs) >"$OUT"
echo "results: $OUT (suite $(git -C "$SUITE" rev-parse HEAD 2>/dev/null || echo 'commit unknown'))"
node "$REPO/scripts/cache-tests-summary.mjs" "$SUITE" "$OUT" --list
