// Package systemd holds the systemd units that run stella-mirror natively
// (stella-mirror-sync@.service and .timer, stella-mirror-origin.service,
// stella-mirror-gateway.service, stella-mirror-backup.service and .timer)
// and the tests that verify them with
// systemd-analyze (verify, and security --offline: no unit's exposure
// score may rise above the one docs/operations.md records). It has no Go API; see docs/operations.md for the
// install steps.
package systemd
