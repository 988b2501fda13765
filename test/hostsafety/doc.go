// Package hostsafety holds a test that the project's scripts and tests never
// stop or signal processes or services by name (pkill, killall, systemctl
// stop, service … stop): `make test` and `.ci/run` may touch only what they
// started. Its dynamic half, a sentinel process named nginx surviving the
// tests' own nginx start and stop, is TestNginxSentinelSurvives in bench.
package hostsafety
