package e2e

import (
	"net/url"
	"strings"
	"testing"
)

// TestDemoGatewayAcceptance checks the gateway acceptance items against the
// running demo with curl and the demo CA: no credentials → 401 Basic; right
// credentials → 200; primary's user on the community host → 401; the
// community bundle via the primary host → 404. --resolve pins each
// *.localhost name to 127.0.0.1 so curl sends the right SNI.
func TestDemoGatewayAcceptance(t *testing.T) {
	requireTools(t, "curl", "jq")
	dir := t.TempDir()
	p := startDemo(t, dir)
	s := p.state
	if s.CA == "" || len(s.Sites) != 2 || len(s.Users) != 2 || s.GatewayAdmin == "" ||
		s.Configs["origin"] == "" || s.Configs["gateway"] == "" {
		t.Fatalf("demo.json lacks gateway keys: %+v", s)
	}
	prim, comm := s.Sites["primary"], s.Sites["community"]
	pu, cu := s.Users["primary"], s.Users["community"]
	resolve := func(base string) string {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		return u.Hostname() + ":" + u.Port() + ":127.0.0.1"
	}
	env := []string{"CA=" + s.CA, "P=" + prim, "C=" + comm,
		"RP=" + resolve(prim), "RC=" + resolve(comm),
		"PU=" + pu.User + ":" + pu.Password, "CU=" + cu.User + ":" + cu.Password,
		"GA=" + s.GatewayAdmin}
	code := func(t *testing.T, script string) string {
		t.Helper()
		return sh(t, env, `curl -sS -o /dev/null -w '%{http_code}' --cacert "$CA" --resolve "$RP" --resolve "$RC" `+script)
	}
	tests := []struct{ name, args, want string }{
		{"no credentials", `"$P/concelier/exports/index.json"`, "401"},
		{"right credentials", `-u "$PU" "$P/concelier/exports/index.json"`, "200"},
		{"right credentials, own bundle", `-u "$PU" "$P/concelier/exports/mirror/primary/bundle.json"`, "200"},
		{"community user, community bundle", `-u "$CU" "$C/concelier/exports/mirror/community/bundle.json"`, "200"},
		{"primary user on community host", `-u "$PU" "$C/concelier/exports/index.json"`, "401"},
		{"community bundle via primary host", `-u "$PU" "$P/concelier/exports/mirror/community/bundle.json"`, "404"},
		{"community bundle via primary, encoded", `--path-as-is -u "$PU" "$P/concelier/exports/mirror/%63ommunity/bundle.json"`, "404"},
		{"community bundle via primary, dot-dot", `--path-as-is -u "$PU" "$P/concelier/exports/mirror/primary/../community/bundle.json"`, "404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := code(t, tt.args); got != tt.want {
				t.Fatalf("HTTP %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("401 names the Basic realm", func(t *testing.T) {
		got := sh(t, env, `curl -sSI --cacert "$CA" --resolve "$RP" "$P/concelier/exports/index.json" | tr -d '\r' | grep -i '^www-authenticate:'`)
		if !strings.Contains(got, `Basic realm="mirror-primary.localhost"`) {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("served bundle verifies", func(t *testing.T) {
		sh(t, append(env, "W="+t.TempDir(), "BIN="+bin, "PUB="+s.PublicKey), `cd "$W" &&
			curl -fsS --cacert "$CA" --resolve "$RP" -u "$PU" -o bundle.json "$P/concelier/exports/mirror/primary/bundle.json" &&
			curl -fsS --cacert "$CA" --resolve "$RP" -u "$PU" -o bundle.json.jws "$P/concelier/exports/mirror/primary/bundle.json.jws" &&
			"$BIN" verify --public-key "$PUB" bundle.json | grep -q '^OK'`)
	})
	t.Run("user added with htpasswd -B works without restart", func(t *testing.T) {
		requireTools(t, "htpasswd")
		// The demo is another process: poll it, bounded (50 × 0.1 s).
		sh(t, append(env, "HT="+pu.Htpasswd), `htpasswd -B -b "$HT" e2e-added added-pw 2>/dev/null
			for i in $(seq 50); do
				c=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CA" --resolve "$RP" -u e2e-added:added-pw "$P/concelier/exports/index.json")
				[ "$c" = 200 ] && exit 0
				sleep 0.1
			done
			echo "still $c" >&2; exit 1`)
	})
	t.Run("gateway admin", func(t *testing.T) {
		sh(t, env, `curl -fsS "$GA/health/ready" >/dev/null && curl -fsS "$GA/metrics" | grep '^stella_mirror_gateway_requests_total' >/dev/null`)
	})
	t.Run("written configs pass check-config", func(t *testing.T) {
		sh(t, append(env, "BIN="+bin, "OC="+s.Configs["origin"], "GC="+s.Configs["gateway"]),
			`env -u GATEWAY__LISTEN "$BIN" gateway --config "$GC" --check-config | grep -q 'configuration OK' &&
			 "$BIN" origin --config "$OC" --check-config | grep -q 'configuration OK'`)
	})
	if err := p.stop(t); err != nil {
		t.Fatalf("demo did not stop cleanly on SIGINT: %v", err)
	}
}
