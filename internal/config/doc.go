// Package config is the one configuration loader every stella-mirror
// component uses: it fills a component's settings struct from an optional
// YAML file (--config) and then from the environment, the environment
// winning, and it rejects everything it does not understand.
//
// # Keys
//
// Keys follow the .NET-style runbook operators already hold:
// SECTION__KEY__N, for example
//
//	CONCELIER__MIRROR__ENABLED=true
//	CONCELIER__MIRROR__DOMAINS__0__ID=primary
//	CONCELIER__AUTHORITY__BYPASSNETWORKS__0=10.0.0.0/8
//
// A struct field's key segment is its name upper-cased, or the name in a
// `config:"NAME"` tag; `config:"-"` skips the field. Nested structs join with
// "__"; slices are indexed __0, __1, …; an embedded struct without a tag
// contributes its fields to the enclosing level. Matching is
// case-insensitive everywhere; errors and [Keys] print keys upper-cased.
//
// The YAML file has the same structure: nested mappings for sections (keys
// in any case, e.g. exportRoot), sequences for indexed slices. A YAML
// sequence replaces the slice's current value. Anchors, aliases and merge
// keys (<<) work; an alias or a merge inside the node it refers to is an
// error, and so is a document that expands to more than 131072 nodes. A
// null value (`key:`, `key: ~`) clears pointers and slices
// and sets strings to ""; on a section it changes nothing.
//
// Only environment variables whose first segment names a top-level field of
// the struct are considered; PATH, HOME and the rest are ignored. In the
// environment, KEY__N sets or overrides element N of the slice as it stands
// after the file and the caller's defaults (DOMAINS__0__ID changes only the
// ID of element 0), and N equal to the current length appends an element.
// Indexes must stay contiguous from 0, so a gap is an error. An empty
// variable on a list key (CONCELIER__AUTHORITY__BYPASSNETWORKS=) empties the
// list before indexed variables apply, the only way to shrink a list from
// the environment.
//
// Fields that neither source mentions keep the values the struct already
// has: callers set defaults before calling [Load].
//
// # Values
//
// Leaves may be string, bool, any int or uint kind, float32/float64,
// time.Duration, any type whose pointer implements encoding.TextUnmarshaler
// (netip.Prefix, netip.Addr, slog.Level, …), or a pointer to one of these.
// Surrounding white space is trimmed from everything except strings.
//
//   - bool: true, false, yes, no, 1, 0, in any case. Nothing else (no on/off).
//   - integers: base-10 only, with an optional sign; no 0x, no underscores, and
//     a leading 0 does not mean octal. Values outside the field's range are
//     errors, never truncated.
//   - floats: strconv syntax; NaN and infinities are rejected.
//   - time.Duration: Go syntax (30s, 1m30s, 250ms, 0) or the .NET TimeSpan
//     form [-][d.]hh:mm[:ss[.fffffffff]] used by the runbook (00:00:30,
//     1.12:00:00), with hours 0-23 and minutes and seconds 0-59. A bare
//     number other than 0 is rejected rather than guessed at: operators mean
//     seconds, but .NET reads "30" as thirty days.
//   - pointer leaves (*bool, *int, …): nil means "not set" (e.g. a mirror
//     domain inherits the global RequireAuthentication); an empty value or a
//     YAML null sets the pointer back to nil.
//
// # Errors
//
// Errors are the product: Load reports every problem it finds, joined with
// errors.Join and sorted, each naming the full upper-case key and, for bad
// values, the value:
//
//	CONCELIER__MIRROR__ENABLED: invalid boolean "maybe"
//	CONCELIER__MIRROR__EXPORTROT: unknown key (did you mean CONCELIER__MIRROR__EXPORTROOT?)
//	CONCELIER__MIRROR__DOMAINS__2: index out of sequence (have 0..0)
//	CONCELIER__MIRROR__ENABLED: expected a value, got a mapping (mirror.yaml:3)
//
// Problems found in the file end with (file:line). Values of keys whose last
// name segment contains SECRET, PASSWORD or TOKEN are printed as
// <redacted>, and so is any parser detail that could echo them. When Load
// returns an error it leaves dst untouched.
//
// # What it is not
//
// It is not a general configuration library: there are no map fields, no
// command-line flags, no JSON, TOML or .env-file parsing, no reloading, and
// no defaults or semantic validation (required settings, ranges, "domains
// need an ID"). Components set defaults before Load and validate after it.
// It does not read the process environment itself; pass os.Environ(). It
// does not store or fetch secrets; it only keeps them out of error text.
package config
