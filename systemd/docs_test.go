package systemd

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsCreateWhatUnitsRequire: every file a unit cannot start without —
// an EnvironmentFile= without "-", a LoadCredential= source — is written by
// a command in docs/operations.md (`cat > PATH`, `install … PATH`,
// `printf … > PATH`), templates instantiated as the docs' "primary". The
// origin unit's origin.env was once required and never shown, so
// `systemctl enable --now stella-mirror-origin.service` failed as documented.
func TestDocsCreateWhatUnitsRequire(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var written []string
	writes := regexp.MustCompile(`(?m)^(?:cat\s*>\s*(\S+)|install\s.*\s(\S+)\s*$|printf\s.*>\s*(\S+)\s*$)`)
	for _, m := range writes.FindAllStringSubmatch(string(doc), -1) {
		written = append(written, m[1]+m[2]+m[3])
	}
	if len(written) < 5 {
		t.Fatalf("found only %d file-writing commands in docs/operations.md: %q", len(written), written)
	}
	isWritten := func(p string) bool {
		for _, w := range written {
			if w == p {
				return true
			}
		}
		return false
	}
	for _, u := range units {
		var required []string
		for _, v := range unitSettings(t, u, "EnvironmentFile") {
			if !strings.HasPrefix(v, "-") {
				required = append(required, v)
			}
		}
		for _, v := range unitSettings(t, u, "LoadCredential") {
			if _, src, ok := strings.Cut(v, ":"); ok {
				required = append(required, src)
			}
		}
		for _, p := range required {
			p = strings.ReplaceAll(p, "%i", "primary")
			if !isWritten(p) {
				t.Errorf("%s needs %s, which no command in docs/operations.md writes (cat >, install, printf >)", u, p)
			}
		}
	}
}
