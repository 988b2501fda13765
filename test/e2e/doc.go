// Package e2e holds the end-to-end suite: it runs the real stella-mirror
// binary as a separate process and talks to it with real clients (curl, jq,
// an independent JOSE implementation), the way an operator's runbook does.
//
// The binary is taken from $STELLA_MIRROR_BIN (set by `make test`) or built
// once into a temporary directory.
package e2e
