// Package hostsafety holds a test that the project's scripts and tests never
// stop or signal processes or services by name (pkill, killall, systemctl
// stop, service … stop): `make test` and `.ci/run` may touch only what they
// started. Its dynamic half: `make test` runs `go test` under
// scripts/with-sentinel, which keeps a sentinel process named nginx alive
// and fails the run when it was stopped (TestWithSentinel checks the
// script), and TestNginxSentinelSurvives in bench checks the tests' own
// nginx start and stop.
package hostsafety
