// Package validate checks a deployment profile before it goes live (or
// after a restore): the env files and YAML configurations of the origin,
// the gateway and sync, loaded exactly as those components load them, and
// every file they reference.
//
// Profile reports findings, each an error or a warning naming the file and
// the configuration key it concerns:
//
//   - configuration: unknown keys, malformed values and the components' own
//     Validate errors and warnings;
//   - referenced files exist; secrets (htpasswd files, the Authority client
//     secret, sync credentials) are not world-readable, private keys not
//     group- or world-readable;
//   - certificates parse, match their keys, cover the site's hostnames and do
//     not expire within MinValidity (14 days);
//   - htpasswd files parse and every user is bcrypt (htpasswd -B): apr1 (-m),
//     SHA (-s) and the rest are errors naming the user (apr1 and SHA are
//     warnings with GATEWAY__ALLOWLEGACYHASHES=true, as the gateway then
//     loads them);
//   - the export roots hold an active export whose indexes parse (the origin's
//     own resolution: ACTIVEEXPORTID, latest, newest complete export);
//   - Excititor export keys: an exportKey's bytes never change across
//     exports, so two exports of an export root (the origin's Excititor root,
//     SYNC__DEST) that declare one key with different digests are an error
//     naming the key and both exports (see excititorKeyFindings);
//   - the active export of sync's export root (and of the origin's Concelier
//     and Excititor roots when one differs or pins an export) verifies with
//     sync's configured PEM public keys: every Concelier bundle's and every
//     Excititor export's JWS under the kid its index declares (see
//     activeExportKeyFindings);
//   - budgets are sane (see budgetFindings);
//   - exposure: a domain that requires authentication at the origin but is
//     reachable through an anonymous gateway site, and an authenticated site
//     behind a CDN (GATEWAY__TRUSTEDPROXIES) that may cache its `public`
//     responses and serve them to clients without credentials (see
//     exposureFindings).
//
// A profile with no error is deployable; warnings are worth reading.
//
// What it is not: it does not start servers, contact the network or hash
// whole bundles (the origin verifies digests as it serves; `stella-mirror
// smoke` checks a live deployment).
package validate
