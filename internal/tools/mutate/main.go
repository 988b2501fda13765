// Command mutate is `make mutate`: it checks that the tests of `make test`
// kill a curated list of mutations of the security- and integrity-critical
// code (authentication, the domain policy, the cache's store and serve
// decisions, digest and signature checks, the restore checks, the sync
// publish). Each mutation (mutations.go) is data: the file, the exact
// original snippet, its replacement, and the packages whose tests must
// fail with it.
//
// It copies the repository's tracked and untracked-but-not-ignored files
// to a temporary directory (the work tree is never touched), checks that
// every snippet occurs exactly once, runs the named packages' tests once on
// the unchanged copy (they must pass: a failure there would make every
// kill meaningless), then applies one mutation at a time, runs
// `go test -count=1 -failfast -timeout` of its packages (no -race, to stay
// quick), and restores the file. A mutation is killed when the tests fail,
// survived when they pass; one that does not build is an error of the
// list. It prints a table and exits 1 if any mutation survived or was
// invalid.
//
// Usage:
//
//	go run ./internal/tools/mutate [-run REGEXP] [-list] [-keep] [-timeout 10m] [-json FILE]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Edit replaces Old, which must occur exactly once in File, with New.
type Edit struct {
	File string // slash-separated, relative to the repository root
	Old  string
	New  string
}

// Mutation is one deliberate bug.
type Mutation struct {
	Name     string   // short id, unique
	What     string   // the behaviour it breaks
	Edits    []Edit   // applied together
	Packages []string // `go test` packages whose tests must fail
}

// Outcome of one mutation.
type Outcome struct {
	Name     string        `json:"name"`
	What     string        `json:"what"`
	Packages []string      `json:"packages"`
	Result   string        `json:"result"` // killed, survived, invalid
	Killer   string        `json:"killer,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

func main() {
	runRE := flag.String("run", "", "only the mutations whose name matches this regular expression")
	list := flag.Bool("list", false, "list the mutations and exit")
	keep := flag.Bool("keep", false, "keep the temporary copy")
	timeout := flag.Duration("timeout", 10*time.Minute, "go test -timeout for each run")
	jsonOut := flag.String("json", "", "also write the outcomes as JSON to this file")
	flag.Parse()
	if err := run(*runRE, *list, *keep, *timeout, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
}

func run(runRE string, list, keep bool, timeout time.Duration, jsonOut string) error {
	re, err := regexp.Compile(runRE)
	if err != nil {
		return fmt.Errorf("-run: %w", err)
	}
	var todo []Mutation
	seen := map[string]bool{}
	for _, m := range mutations {
		if seen[m.Name] {
			return fmt.Errorf("mutation %s listed twice", m.Name)
		}
		seen[m.Name] = true
		if re.MatchString(m.Name) {
			todo = append(todo, m)
		}
	}
	if list {
		for _, m := range todo {
			fmt.Printf("%-34s %-40s %s\n", m.Name, strings.Join(m.Packages, " "), m.What)
		}
		return nil
	}
	if len(todo) == 0 {
		return fmt.Errorf("no mutation matches %q", runRE)
	}
	root, err := gitRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "stella-mirror-mutate-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("copy in", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if err := copyTree(root, tmp); err != nil {
		return err
	}
	// Every snippet must be found exactly once before anything runs: a
	// stale list is an error, not a kill.
	for _, m := range todo {
		for _, e := range m.Edits {
			b, err := os.ReadFile(filepath.Join(tmp, filepath.FromSlash(e.File)))
			if err != nil {
				return fmt.Errorf("mutation %s: %w", m.Name, err)
			}
			if n := bytes.Count(b, []byte(e.Old)); n != 1 {
				return fmt.Errorf("mutation %s: the original snippet occurs %d times in %s (want 1); update internal/tools/mutate/mutations.go:\n%s",
					m.Name, n, e.File, e.Old)
			}
		}
	}
	env := childEnv()
	// Baseline: the packages' tests pass on the unchanged copy.
	pkgSet := map[string]bool{}
	for _, m := range todo {
		for _, p := range m.Packages {
			pkgSet[p] = true
		}
	}
	pkgs := make([]string, 0, len(pkgSet))
	for p := range pkgSet {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	fmt.Printf("baseline: go test %s\n", strings.Join(pkgs, " "))
	start := time.Now()
	if out, err := goTest(tmp, env, timeout, pkgs); err != nil {
		os.Stdout.Write(tail(out, 60))
		return fmt.Errorf("the baseline (no mutation) fails: %v; fix the tests first", err)
	}
	fmt.Printf("baseline passed in %s\n\n", time.Since(start).Round(time.Second))

	var outcomes []Outcome
	for i, m := range todo {
		fmt.Printf("[%d/%d] %s (%s) ... ", i+1, len(todo), m.Name, strings.Join(m.Packages, " "))
		o := mutateOnce(tmp, env, timeout, m)
		fmt.Printf("%s in %s %s\n", strings.ToUpper(o.Result), o.Duration.Round(time.Second), o.Killer)
		outcomes = append(outcomes, o)
	}
	killed, bad := 0, 0
	fmt.Println()
	for _, o := range outcomes {
		fmt.Printf("%-9s %-34s %s\n", o.Result, o.Name, o.What)
		switch o.Result {
		case "killed":
			killed++
		default:
			bad++
		}
	}
	fmt.Printf("\nkilled %d of %d mutations (%.0f%%)\n", killed, len(outcomes), 100*float64(killed)/float64(len(outcomes)))
	if jsonOut != "" {
		b, _ := json.MarshalIndent(outcomes, "", "  ")
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d mutation(s) survived or are invalid", bad)
	}
	return nil
}

// mutateOnce applies m in dir, runs its packages' tests and restores the
// files.
func mutateOnce(dir string, env []string, timeout time.Duration, m Mutation) (o Outcome) {
	o = Outcome{Name: m.Name, What: m.What, Packages: m.Packages}
	start := time.Now()
	defer func() { o.Duration = time.Since(start) }()
	originals := map[string][]byte{}
	defer func() {
		for f, b := range originals {
			if err := os.WriteFile(f, b, 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "mutate: restoring", f, err)
				os.Exit(2)
			}
		}
	}()
	for _, e := range m.Edits {
		f := filepath.Join(dir, filepath.FromSlash(e.File))
		b, err := os.ReadFile(f)
		if err != nil {
			o.Result, o.Killer = "invalid", err.Error()
			return o
		}
		if _, ok := originals[f]; !ok {
			originals[f] = b
		}
		if bytes.Count(b, []byte(e.Old)) != 1 {
			o.Result, o.Killer = "invalid", "snippet not found once in "+e.File
			return o
		}
		if err := os.WriteFile(f, bytes.Replace(b, []byte(e.Old), []byte(e.New), 1), 0o644); err != nil {
			o.Result, o.Killer = "invalid", err.Error()
			return o
		}
	}
	// It must build (tests included), or the "kill" is the compiler's.
	vet := exec.Command("go", append([]string{"test", "-count=1", "-run", "^$"}, m.Packages...)...)
	vet.Dir, vet.Env = dir, env
	if out, err := vet.CombinedOutput(); err != nil {
		o.Result, o.Killer = "invalid", "does not build: "+firstLine(out)
		return o
	}
	out, err := goTest(dir, env, timeout, m.Packages)
	if err == nil {
		o.Result = "survived"
		return o
	}
	o.Result, o.Killer = "killed", "by "+strings.Join(failedTests(out), ", ")
	return o
}

func goTest(dir string, env []string, timeout time.Duration, pkgs []string) ([]byte, error) {
	args := append([]string{"test", "-count=1", "-failfast", "-timeout", timeout.String()}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env = dir, env
	return cmd.CombinedOutput()
}

// failedTests lists the top-level tests that failed (at most three).
func failedTests(out []byte) []string {
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, "--- FAIL: "); ok {
			name, _, _ = strings.Cut(name, " ")
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return []string{"a failing test binary: " + firstLine(tail(out, 5))}
	}
	if len(names) > 3 {
		names = append(names[:3], "…")
	}
	return names
}

// childEnv is this process's environment without STELLA_MIRROR_BIN, so
// the tests that run the binary build it from the mutated copy.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STELLA_MIRROR_BIN=") {
			env = append(env, kv)
		}
	}
	return env
}

func gitRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("finding the repository (git rev-parse): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// copyTree copies the tracked and untracked, not ignored, files of the
// repository at root (as they are in the work tree) to dst.
func copyTree(root, dst string) error {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	for _, name := range strings.Split(string(out), "\x00") {
		if name == "" {
			continue
		}
		src := filepath.Join(root, name)
		fi, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree
		}
		if err != nil {
			return err
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(src, to, fi.Mode().Perm()); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func tail(b []byte, lines int) []byte {
	parts := bytes.Split(b, []byte("\n"))
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return bytes.Join(parts, []byte("\n"))
}
