// Package systemd holds the systemd units that run stella-mirror natively
// (stella-mirror-sync@.service and .timer, stella-mirror-origin.service,
// stella-mirror-gateway.service, stella-mirror-backup.service and .timer)
// and the test that verifies them with
// systemd-analyze. It has no Go API; see docs/operations.md for the
// install steps.
package systemd
