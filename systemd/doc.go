// Package systemd holds the systemd units that run stella-mirror natively
// (stella-mirror-sync@.service and .timer, stella-mirror-origin.service,
// stella-mirror-gateway.service, stella-mirror-backup.service and .timer),
// the sysusers.d and tmpfiles.d snippets for the service user and its
// directories, the example gateway.yaml the gateway unit starts with, and
// the tests that verify them: systemd-analyze (verify, and security
// --offline: no unit's exposure score may rise above the one
// docs/operations.md records), systemd-sysusers/systemd-tmpfiles --root on
// the snippets, and the gateway unit's start, sd_notify readiness and reload
// of rotated files under a temporary root. It has no Go API; see
// docs/operations.md for the install steps.
package systemd
