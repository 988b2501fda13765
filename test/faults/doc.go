// Package faults is the fault suite of issue 16: the real stella-mirror
// binary under an operator's bad day. Syncs from every source kind that runs
// here (local directory, rsync daemon, gofakes3 S3, an upstream origin, and
// that origin behind a TLS gateway) are
// SIGKILLed at file-system-observed points while a reader verifies every
// set ROOT/latest names; a small tmpfs fills up; sources serve missing and
// oversized objects; backups are SIGKILLed and SIGTERMed; forged archives
// are restored.
//
// `go test ./test/faults` (and `make test`) runs the quick cases: 3 kills
// per source. `make faults` sets STELLA_MIRROR_FAULTS=full for the whole
// suite: 30 kills per source. It has no Go API.
package faults
