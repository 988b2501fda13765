// Command stella-mirror is the edge mirror for Stella Ops vulnerability-data
// exports: one static binary whose subcommands serve, sign, generate and
// (in later releases) sync and guard export trees.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/stella-ops/stella-mirror/internal/buildinfo"
)

// command is one subcommand: its name, a one-line summary for the top-level
// help, and the function that parses its own flags and runs it.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists every subcommand in the order `stella-mirror help` shows them.
var commands = []command{
	{"origin", "serve export trees (Concelier + Excititor mirror endpoints)", runOrigin},
	{"gateway", "TLS edge: per-host Basic Auth, domain policy, budgets, reverse proxy to the origin", runGateway},
	{"sync", "pull, verify and atomically publish the newest export from S3, rsync, a directory or an upstream mirror", runSync},
	{"demo", "origin + TLS gateway on localhost with generated, signed data, a local CA and demo users (what `make run` starts)", runDemo},
	{"fixture", "write a realistic, signed export tree", runFixture},
	{"sign", "write a detached JWS (RFC 7515 appendix F) over a file", runSign},
	{"verify", "verify a detached JWS over a file", runVerify},
	{"keygen", "create a signing key pair (PEM) for sign and fixture", runKeygen},
	{"validate", "check a deployment profile: configs, secrets' permissions, TLS, htpasswd, export roots, budgets", runValidate},
	{"smoke", "the runbook's smoke tests against a live site (one PASS/FAIL/SKIP line per check)", runSmoke},
	{"nginx-conf", "render the nginx front (equivalent to the gateway) from the gateway's configuration", runNginxConfig},
	{"purge", "purge the gateway's cache through its admin listener (token from GATEWAY__ADMINTOKENFILE)", runPurge},
	{"status", "print the gateway's status page (/status.json on its admin listener)", runStatus},
	{"healthcheck", "probe a /health endpoint once; exit 0 when it answers 200 (container HEALTHCHECK)", runHealthcheck},
	{"passwd", "add, remove or rotate htpasswd users (bcrypt), written atomically", runPasswd},
	{"dev-certs", "create a development CA and per-site TLS certificates", runDevCerts},
	{"backup", "hot backup of configuration, secrets, TLS material and sync state (age-encrypted, with retention)", runBackup},
	{"restore", "verified restore of a backup archive; --drill rehearses it in a temporary root", runRestore},
	{"version", "print the version", runVersion},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command-line mistake: the command already printed why, and
// the process exits with status 2.
var errUsage = errors.New("usage error")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 {
			return run([]string{args[1], "--help"}, stdout, stderr)
		}
		printUsage(stdout)
		return 0
	}
	if args[0] == "--version" {
		args[0] = "version"
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		if serverCommands[c.name] {
			tuneGC(os.Getenv)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		// --help asked for is not a mistake: parseFlags sends that usage
		// to stdout (exit 0), as the top-level help does; everything else
		// the command reports, usage errors included, goes to stderr.
		errOut := &stderrWithHelp{Writer: stderr, help: stdout}
		err := c.run(ctx, args[1:], stdout, errOut)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		case errors.As(err, new(loggedError)):
			// Already logged as one structured line; not printed twice.
			var ee *exitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			return 1
		case errors.As(err, new(*exitError)):
			// Only the project's own type: *exec.ExitError also has an
			// ExitCode method, and a child's status must not leak.
			var ee *exitError
			errors.As(err, &ee)
			fmt.Fprintf(stderr, "stella-mirror %s: %v\n", c.name, err)
			return ee.ExitCode()
		default:
			fmt.Fprintf(stderr, "stella-mirror %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "stella-mirror: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return 2
}

// stderrWithHelp is the stderr a subcommand gets: writes go to stderr, and
// parseFlags sends a usage that was asked for (-h, --help, --help=true,
// parsed as such by the flag package) to help, the command's stdout. The
// routing follows the parse's outcome, not a scan for "--help": a bad flag
// before it, or "--help" taken as a flag's value, is a mistake on stderr.
type stderrWithHelp struct {
	io.Writer           // stderr
	help      io.Writer // stdout
}

// parseRouted is fs.Parse with its output (usage, flag errors) buffered and
// then written to the help writer when help was asked for, else to fs's
// output.
func parseRouted(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(out)
	dst := out
	if h, ok := out.(*stderrWithHelp); ok && errors.Is(err, flag.ErrHelp) {
		dst = h.help
	}
	dst.Write(buf.Bytes())
	return err
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "stella-mirror %s: edge mirror for Stella Ops vulnerability-data exports\n\n", buildinfo.Version())
	fmt.Fprintln(w, "Usage: stella-mirror <command> [flags]   (stella-mirror <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nQuick start: `make run` starts the demo; see README.md and docs/.")
}

// newFlagSet returns a flag set for a subcommand whose --help prints the given
// synopsis and explanation before the flag list. Parse errors are reported
// once and turned into errUsage by parseFlags.
func newFlagSet(name, synopsis, explain string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: stella-mirror %s %s\n\n%s\n\nFlags:\n", name, synopsis, explain)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping a bad flag to errUsage and --help to
// flag.ErrHelp (exit 0). Stray positional arguments are a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseRouted(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "stella-mirror %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "", "Print the version of this binary.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stella-mirror %s\n", buildinfo.Version())
	return nil
}
