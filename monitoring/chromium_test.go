package monitoring

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// chromiumTimeout bounds one headless Chromium run.
const chromiumTimeout = 90 * time.Second

// renderInChromium loads url in headless Chromium and returns the PNG
// screenshot's path (under the test's temp dir) and the DOM after
// rendering. It skips (fails under CI) when Chromium is missing or cannot
// start. With STELLA_MIRROR_SCREENSHOT_DIR set, the screenshot is also
// copied there (to look at it).
func renderInChromium(t *testing.T, url string) (string, string) {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		needTool(t, "chromium", "chromium") // skips or fails
	}
	dir := t.TempDir()
	shot := filepath.Join(dir, "status.png")
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--no-first-run", "--disable-extensions", "--hide-scrollbars",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1280,1000"}
		cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, &chromiumError{err: err, stderr: stderr.String()}
		}
		return out, nil
	}
	if _, err := run("--screenshot="+shot, url); err != nil {
		testenv.Missing(t, "chromium cannot start or render here: %v", err)
	}
	dom, err := run("--dump-dom", url)
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	if d := os.Getenv("STELLA_MIRROR_SCREENSHOT_DIR"); d != "" {
		data, _ := os.ReadFile(shot)
		name := filepath.Base(filepath.Dir(filepath.Dir(shot))) + ".png"
		if err := os.WriteFile(filepath.Join(d, name), data, 0o644); err != nil {
			t.Logf("copying the screenshot: %v", err)
		}
	}
	t.Logf("screenshot: %s", shot)
	return shot, string(dom)
}

type chromiumError struct {
	err    error
	stderr string
}

func (e *chromiumError) Error() string {
	s := e.stderr
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return e.err.Error() + ": " + s
}

// checkScreenshot: a PNG of the window's size, not blank: many distinct
// colours (text, coloured header and badges), and not one colour over
// almost all of it.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 800 || b.Dy() < 600 {
		t.Errorf("screenshot %dx%d, want the 1280x1000 window", b.Dx(), b.Dy())
	}
	colours := map[[4]uint32]int{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}]++
		}
	}
	most := 0
	for _, n := range colours {
		most = max(most, n)
	}
	total := b.Dx() * b.Dy()
	t.Logf("screenshot %dx%d: %d distinct colours, the commonest covers %.1f%%", b.Dx(), b.Dy(), len(colours), 100*float64(most)/float64(total))
	if len(colours) < 50 {
		t.Errorf("screenshot has %d distinct colours: blank or nearly", len(colours))
	}
	if float64(most) > 0.97*float64(total) {
		t.Errorf("one colour covers %.1f%% of the screenshot: blank", 100*float64(most)/float64(total))
	}
	_ = image.Point{}
}
