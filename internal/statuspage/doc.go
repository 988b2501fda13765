// Package statuspage renders the admin listeners' status page: /status,
// one self-contained HTML page (inline CSS, no script, no external asset)
// for a person, and /status.json with the same facts for machines.
//
// It holds no state of its own beyond what the pages need: the data types
// (Status and its parts), the handler that renders a Status built per
// request by the component (origin or gateway), ReadSyncTextfile, which
// reads the facts a sync run wrote to its Prometheus textfile, and Window,
// a bounded one-hour event count. What the page shows is documented in
// docs/operations.md, "Monitoring".
package statuspage
