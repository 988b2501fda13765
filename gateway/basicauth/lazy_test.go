package basicauth

import (
	"os"
	"os/exec"
	"testing"
)

// TestNoBcryptAtInit: importing the package computes no bcrypt hash (every
// stella-mirror command, healthcheck included, would pay for it at start);
// the timing equaliser's dummy hash is made on first use. The check runs in
// a fresh process (this test binary again), where only package
// initialisation has run before the test function.
func TestNoBcryptAtInit(t *testing.T) {
	if os.Getenv("BASICAUTH_INIT_CHECK") == "1" {
		n := 0
		dummies.Range(func(any, any) bool { n++; return true })
		if n != 0 {
			t.Fatalf("%d bcrypt dummy hashes exist before first use", n)
		}
		dummyHash(4)
		if _, ok := dummies.Load(4); !ok {
			t.Fatal("dummyHash(4) did not store its hash")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoBcryptAtInit$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BASICAUTH_INIT_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fresh process: %v\n%s", err, out)
	}
}
