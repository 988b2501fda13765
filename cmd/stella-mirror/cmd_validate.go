package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/stella-ops/stella-mirror/deploy/validate"
)

func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", "[--env-file F]... [--compose-file F] [--origin-config F] [--gateway-config F] [--sync-config F] [--map FROM=TO]...",
		`Check a deployment profile before it goes live (or after a restore): the
env files and YAML configurations, loaded exactly as origin, gateway and
sync load them, and every file they reference. A component is checked when
its --…-config is given or an env file sets one of its keys (CONCELIER__MIRROR__,
EXCITITOR__, ORIGIN__ → origin; GATEWAY__ → gateway; SYNC__ → sync).

Checks:
  configuration    unknown keys, malformed values, the components' own checks
  files            every referenced file exists; secrets (htpasswd, Authority
                   client secret, sync credentials) are not world-readable;
                   private keys are readable by their owner only
  certificates     parse, match their keys, cover the site's hostnames, do not
                   expire within --min-validity
  htpasswd         parses as the gateway parses it; every user is bcrypt
                   (htpasswd -B); apr1 (-m), SHA (-s) and crypt are errors
                   (apr1 and SHA warnings with GATEWAY__ALLOWLEGACYHASHES)
  export roots     hold an active export whose indexes parse (ACTIVEEXPORTID,
                   else latest, else the newest complete export)
  export keys      the active export of SYNC__DEST (and of the origin's root
                   when it differs or is pinned) verifies with sync's
                   configured public keys; the error names key and export
  budgets          a download budget below 3 (manifest, bundle, signature)
                   is an error; below the index budget, a warning
  exposure         warnings: an anonymous site over a domain the origin
                   protects; an authenticated site behind a CDN
                   (GATEWAY__TRUSTEDPROXIES) that may serve its public,
                   cacheable responses to clients without credentials
                   (silence with --cdn-forwards-authorization once the CDN
                   forwards Authorization and does not share cached copies)

Each finding is one line, "error: FILE: KEY: message" or "warning: …".
Exit status: 1 when any error was found, 0 with warnings only, 2 on a usage
error. The process environment is ignored unless --use-environment is given.

With --compose-file, the origin, gateway and sync services are checked as
docker compose runs them with the --env-file files: ${VAR:-default}
interpolated, each service's env_file read, its environment entries applied
last, its bind mounts checked at their host paths, and its group_add groups
allowed to read secrets and private keys (0640).

Examples:
  # the compose profile, as `+"`docker compose --env-file … up`"+` would run it
  stella-mirror validate --compose-file compose/docker-compose.mirror.yaml \
    --env-file compose/env/mirror.env
  # env files written for containers, container paths mapped to the host
  stella-mirror validate --env-file mirror.env \
    --map /run/secrets=./secrets --map /etc/stella-mirror/tls=./tls \
    --map /srv/stella-mirror/exports=/srv/exports`, stderr)
	var envFiles, maps stringList
	fs.Var(&envFiles, "env-file", "env `file` of KEY=VALUE lines (repeatable; later files override earlier ones)")
	composeFile := fs.String("compose-file", "", "compose `file` whose origin, gateway and sync services to check (with --env-file as its --env-file)")
	originConfig := fs.String("origin-config", "", "the origin's YAML `file` (its --config)")
	gatewayConfig := fs.String("gateway-config", "", "the gateway's YAML `file` (its --config)")
	syncConfig := fs.String("sync-config", "", "sync's YAML `file` (its --config)")
	fs.Var(&maps, "map", "`FROM=TO`: check files under path prefix FROM at TO instead (repeatable), e.g. /run/secrets=./secrets")
	minValidity := fs.Duration("min-validity", validate.DefaultMinValidity, "how long certificates must remain `valid`")
	cdnForwards := fs.Bool("cdn-forwards-authorization", false, "the CDN in front forwards Authorization and never serves one client's cached response to another")
	useEnv := fs.Bool("use-environment", false, "apply this process's environment after the env files")
	quiet := fs.Bool("quiet", false, "print findings only, not what was checked")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts := validate.Options{EnvFiles: envFiles, ComposeFile: *composeFile, OriginConfig: *originConfig, GatewayConfig: *gatewayConfig,
		SyncConfig: *syncConfig, MinValidity: *minValidity, CDNForwardsAuthorization: *cdnForwards}
	for _, m := range maps {
		pm, err := validate.ParsePathMapping(m)
		if err != nil {
			fmt.Fprintf(stderr, "stella-mirror validate: --map: %v\n", err)
			return errUsage
		}
		opts.PathMap = append(opts.PathMap, pm)
	}
	if *useEnv {
		opts.Environ = os.Environ()
	}
	rep, err := validate.Profile(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "stella-mirror validate: %v\n", err)
		fs.Usage()
		return errUsage
	}
	if !*quiet {
		for _, c := range rep.Checked {
			fmt.Fprintf(stdout, "ok: %s\n", c)
		}
	}
	for _, f := range rep.Findings {
		fmt.Fprintln(stdout, f.String())
	}
	errs, warns := len(rep.Errors()), len(rep.Warnings())
	if errs > 0 {
		return fmt.Errorf("profile has %d errors and %d warnings", errs, warns)
	}
	fmt.Fprintf(stdout, "profile OK (%d warnings)\n", warns)
	return nil
}
