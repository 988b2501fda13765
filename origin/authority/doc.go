// Package authority validates OAuth2 bearer access tokens issued by Stella
// Ops Authority (or any OpenID Connect issuer) for the origin: JWTs signed
// with the issuer's keys and carrying a product scope such as
// concelier.mirror.read.
//
// Keys come from one of three places, in this order of preference: a PEM
// public key file (SigningKeyFile, for air-gapped sites), a JWKS URL
// (JWKSURL), or discovery ({Issuer}/.well-known/openid-configuration →
// jwks_uri). Fetched keys are cached; a token naming an unknown kid triggers
// a refresh at most once per MinRefreshInterval, keys are refreshed when
// older than MaxKeyAge, and when the issuer cannot be reached the last good
// keys stay in use.
//
// A token is accepted only when its signature verifies with one of those
// keys under an allow-listed asymmetric algorithm (RS*, PS*, ES*, EdDSA —
// never "none", never HMAC), "iss" equals the configured issuer, "aud"
// names one of the configured audiences, "exp" is present and, like "nbf",
// holds within a small leeway. The required scope is looked up in the
// space-separated "scope" claim or the "scp" array. A verified token is
// remembered (bounded, keyed by the token) until it expires, so repeated
// requests with the same token cost a hash and a map lookup, not a
// signature check. A cached token stays accepted until its "exp" even if
// its key disappears from the JWKS meanwhile; keep token lifetimes short.
//
// What it is not: it does not decide policy (which paths need a token,
// bypass networks, anonymous fallback, budgets — the origin does), it does
// not obtain tokens, and it does not validate opaque tokens by
// introspection or JWE-encrypted tokens.
package authority
