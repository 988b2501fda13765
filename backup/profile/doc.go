// Package profile loads a deployment's configuration files the way the
// components do and runs the checks restore needs on them; it is the half
// of backup and restore that knows the components.
//
// Load reads each --config file (YAML or env) with the origin's, gateway's
// and sync's own loaders and lists every path the settings reference:
// certificates and keys, htpasswd files, secrets, verification keys, the
// ACME storage, the sync state in each export root. LoadInventory hands
// that to package backup as plain data (inventory.Inventory).
//
// After a restore, References lists what the restored configurations
// reference (restore refuses any other entry), LoadRestored loads them
// with every path rebased onto the restore root, ValidateRestored runs
// `stella-mirror validate` (package deploy/validate) on them,
// ProbeGateways starts each restored gateway on loopback (the drill) and
// Checklist says what an operator verifies once the services run.
//
// It writes nothing. Package backup does not import it (nor any
// component): the command injects LoadInventory and References into
// backup.Options and backup.RestoreOptions.
package profile
