package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// requireTool returns the path of a systemd tool, skipping the test when it
// is missing (failing when CI is set).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.Tool(t, name, "systemd")
}

// TestSysusersAndTmpfiles applies stella-mirror.sysusers.conf and
// stella-mirror.tmpfiles.conf to an empty root directory with the real
// systemd-sysusers and systemd-tmpfiles (--root: nothing on the host
// changes) and checks the user, the group and every directory's mode and
// owner, including those the units name (ReadWritePaths=, ReadOnlyPaths=,
// the gateway's /etc/stella-mirror files).
func TestSysusersAndTmpfiles(t *testing.T) {
	sysusers := requireTool(t, "systemd-sysusers")
	tmpfiles := requireTool(t, "systemd-tmpfiles")
	testenv.Root(t, "systemd-tmpfiles chowns the directories it creates, so this test")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	if out, err := exec.Command(sysusers, "--root="+root, abs("stella-mirror.sysusers.conf")).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	uid, gid := lookup(t, filepath.Join(root, "etc", "passwd"), "stella-mirror", 2), lookup(t, filepath.Join(root, "etc", "group"), "stella-mirror", 2)
	if home := lookupField(t, filepath.Join(root, "etc", "passwd"), "stella-mirror", 5); home != "/srv/stella-mirror" {
		t.Errorf("home %q, want /srv/stella-mirror", home)
	}
	out, err := exec.Command(tmpfiles, "--root="+root, "--create", abs("stella-mirror.tmpfiles.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	for _, d := range []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{"/etc/stella-mirror", 0o750, 0, gid},
		{"/etc/stella-mirror/tls", 0o750, 0, gid},
		{"/etc/stella-mirror/secrets", 0o750, 0, gid},
		{"/etc/stella-mirror/sync", 0o750, 0, 0},
		{"/etc/stella-mirror/credentials", 0o700, 0, 0},
		{"/srv/stella-mirror/exports", 0o755, uid, gid},
		{"/var/backups/stella-mirror", 0o700, 0, 0},
	} {
		fi, err := os.Stat(filepath.Join(root, d.path))
		if err != nil {
			t.Errorf("%s: %v", d.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || fi.Mode().Perm() != d.mode || int(st.Uid) != d.uid || int(st.Gid) != d.gid {
			t.Errorf("%s: dir %v mode %o owner %d:%d, want mode %o owner %d:%d", d.path, fi.IsDir(), fi.Mode().Perm(), st.Uid, st.Gid, d.mode, d.uid, d.gid)
		}
	}
	// Every directory the units write or read (ReadWritePaths=,
	// ReadOnlyPaths=, optional "-" ones included, and the gateway's
	// configuration) is one the snippet makes; and a unit running as the
	// service user can write its ReadWritePaths= (owner or group), e.g. the
	// sync's --metrics-textfile directory: sync refuses to run when that
	// directory is missing, and Debian's prometheus-node-exporter makes it
	// root:root 0755.
	conf, _ := os.ReadFile("stella-mirror.tmpfiles.conf")
	dirs := []string{"/etc/stella-mirror/tls", "/etc/stella-mirror/secrets"}
	writable := map[string]bool{}
	for _, u := range units {
		asService := len(unitSettings(t, u, "User")) > 0 && unitSettings(t, u, "User")[0] == "stella-mirror"
		for _, key := range []string{"ReadWritePaths", "ReadOnlyPaths"} {
			for _, v := range unitSettings(t, u, key) {
				for _, p := range strings.Fields(v) {
					p = strings.TrimPrefix(p, "-")
					dirs = append(dirs, p)
					if key == "ReadWritePaths" && asService {
						writable[p] = true
					}
				}
			}
		}
	}
	for _, p := range dirs {
		if !strings.Contains(string(conf), " "+p+" ") {
			t.Errorf("tmpfiles snippet lacks %s", p)
		}
	}
	for p := range writable {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s (ReadWritePaths= of a unit run as stella-mirror): %v", p, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !(int(st.Uid) == uid && fi.Mode().Perm()&0o200 != 0) && !(int(st.Gid) == gid && fi.Mode().Perm()&0o020 != 0) {
			t.Errorf("%s: mode %o owner %d:%d, not writable by stella-mirror (%d:%d), whose unit writes it", p, fi.Mode().Perm(), st.Uid, st.Gid, uid, gid)
		}
	}
}

// lookupField returns field n (0-based) of name's line in a passwd or
// group file.
func lookupField(t *testing.T, file, name string, n int) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if fields[0] == name && len(fields) > n {
			return fields[n]
		}
	}
	t.Fatalf("%s: no entry %s", file, name)
	return ""
}

func lookup(t *testing.T, file, name string, n int) int {
	t.Helper()
	id, err := strconv.Atoi(lookupField(t, file, name, n))
	if err != nil {
		t.Fatalf("%s: %s: %v", file, name, err)
	}
	return id
}
