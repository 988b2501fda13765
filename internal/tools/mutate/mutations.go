package main

// mutations is the curated list `make mutate` checks: each must be killed
// by the tests of its packages (all of them run in `make test`). Snippets
// are exact, tabs included, and must occur once in their file; when the
// code they quote changes, update them here.
var mutations = []Mutation{
	// The domain policy (gateway/policy).
	{
		Name: "policy-excititor-other-domain",
		What: "a site reaches another domain's /excititor/mirror/<other>/export/…",
		Edits: []Edit{{File: "gateway/policy/policy.go",
			Old: `		if !ok || !p.domains[d] {
			return Decision{}
		}
		if tail == "index" {`,
			New: `		if !ok || (!p.domains[d] && tail == "index") {
			return Decision{}
		}
		if tail == "index" {`}},
		Packages: []string{"./gateway/policy"},
	},
	{
		Name: "policy-concelier-other-domain",
		What: "no domain check on the Concelier file paths",
		Edits: []Edit{{File: "gateway/policy/policy.go",
			Old: `	d, file, ok := strings.Cut(rest, "/")
	if !ok || !p.domains[d] {`,
			New: `	d, file, ok := strings.Cut(rest, "/")
	if !ok {`}},
		Packages: []string{"./gateway/policy"},
	},
	{
		Name: "policy-percent-escape",
		What: "a percent-escaped path (a second spelling of another domain's) is canonical",
		Edits: []Edit{{File: "gateway/policy/policy.go",
			Old: `c >= '0' && c <= '9', c == '-', c == '_', c == '.':`,
			New: `c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '%':`}},
		Packages: []string{"./gateway/policy"},
	},
	{
		Name: "policy-dot-segments",
		What: `"." and ".." segments are canonical`,
		Edits: []Edit{{File: "gateway/policy/policy.go",
			Old: `		case "", ".", "..":`,
			New: `		case "":`}},
		Packages: []string{"./gateway/policy"},
	},
	{
		Name: "policy-pinned-any-id",
		What: "any export id (.staging, latest, …) is admitted in a pinned path",
		Edits: []Edit{{File: "gateway/policy/policy.go",
			Old: `if !ok || !export.ValidExportID(id) {`,
			New: `if !ok {`}},
		Packages: []string{"./gateway/policy"},
	},

	// Authentication (gateway admission, gateway/basicauth).
	{
		Name: "auth-skipped-for-head",
		What: "Basic Auth skipped for HEAD requests",
		Edits: []Edit{{File: "gateway/admit.go",
			Old: `	if st.auth != nil {`,
			New: `	if st.auth != nil && in.method != http.MethodHead {`}},
		Packages: []string{"./gateway"},
	},
	{
		Name: "auth-skipped-for-site",
		What: "Basic Auth skipped for a whole site",
		Edits: []Edit{{File: "gateway/admit.go",
			Old: `	if st.auth != nil {`,
			New: `	if st.auth != nil && !strings.HasPrefix(st.name, "mirror-primary") {`}},
		Packages: []string{"./gateway"},
	},
	{
		Name: "basicauth-unknown-user",
		What: "an unknown user name is accepted",
		Edits: []Edit{{File: "gateway/basicauth/authenticator.go",
			Old: `	case !known:
		f.compare(t.dummy, pw)
		return false`,
			New: `	case !known:
		f.compare(t.dummy, pw)
		return true`}},
		Packages: []string{"./gateway/basicauth"},
	},
	{
		Name: "basicauth-wrong-password",
		What: "a wrong password is accepted for a bcrypt user",
		Edits: []Edit{{File: "gateway/basicauth/authenticator.go",
			Old: `		return f.compare(u.bcrypt, pw) == nil`,
			New: `		f.compare(u.bcrypt, pw)
		return true`}},
		Packages: []string{"./gateway/basicauth"},
	},

	// The cache's store and serve decisions (gateway/cache).
	{
		Name: "cache-truncation",
		What: "a short upstream body is stored (io.ErrUnexpectedEOF taken as the end, no length check)",
		Edits: []Edit{
			{File: "gateway/cache/fill.go",
				Old: `		if rerr == io.EOF {`,
				New: `		if rerr == io.EOF || errors.Is(rerr, io.ErrUnexpectedEOF) {`},
			{File: "gateway/cache/fill.go",
				Old: `	if err == nil && f.size >= 0 && f.written < f.size {`,
				New: `	if false && err == nil && f.size >= 0 && f.written < f.size {`},
		},
		Packages: []string{"./gateway/cache"},
	},
	{
		Name: "cache-digest-etag",
		What: "a body that does not match its sha256 ETag is stored",
		Edits: []Edit{{File: "gateway/cache/fill.go",
			Old: `	if err == nil && f.wantSHA != "" && sum != f.wantSHA {`,
			New: `	if false && err == nil && f.wantSHA != "" && sum != f.wantSHA {`}},
		Packages: []string{"./gateway/cache"},
	},
	{
		Name: "cache-client-no-store",
		What: "a client's no-store ignored with HonourClientNoCache on",
		Edits: []Edit{{File: "gateway/cache/cache.go",
			Old: `		if d.noStore {`,
			New: `		if false && d.noStore {`}},
		Packages: []string{"./gateway/cache"},
	},
	{
		Name: "cache-store-no-store",
		What: "a response with Cache-Control: no-store is stored",
		Edits: []Edit{{File: "gateway/cache/freshness.go",
			Old: `	if !storableStatus(code) || d.noStore || d.private {`,
			New: `	if !storableStatus(code) || d.private {`}},
		Packages: []string{"./gateway/cache"},
	},
	{
		Name: "cache-store-private",
		What: "a response with Cache-Control: private is stored",
		Edits: []Edit{{File: "gateway/cache/freshness.go",
			Old: `	if !storableStatus(code) || d.noStore || d.private {`,
			New: `	if !storableStatus(code) || d.noStore {`}},
		Packages: []string{"./gateway/cache"},
	},
	{
		Name: "cache-store-5xx",
		What: "a status the cache must not store (5xx, 206, 304) is stored",
		Edits: []Edit{{File: "gateway/cache/freshness.go",
			Old: `	if !storableStatus(code) || d.noStore || d.private {`,
			New: `	if d.noStore || d.private {`}},
		Packages: []string{"./gateway/cache"},
	},
	{
		Name: "cache-store-coherence-non-200",
		What: "an answer other than 200 for the index or a Concelier manifest/bundle/signature is stored",
		Edits: []Edit{{File: "gateway/cache/freshness.go",
			Old: `	if code != http.StatusOK && coherenceKey(key) {`,
			New: `	if false && code != http.StatusOK && coherenceKey(key) {`}},
		Packages: []string{"./gateway/cache"},
	},
	{
		Name: "cache-store-vary-star",
		What: "a response with Vary: * (or any Vary on an export coherence key) is stored",
		Edits: []Edit{{File: "gateway/cache/freshness.go",
			Old: `	if varyStar(h) || (coherenceKey(key) && len(h["Vary"]) > 0) {`,
			New: `	if false {`}},
		Packages: []string{"./gateway/cache"},
	},
	{
		Name: "cache-serve-stale-as-hit",
		What: "a stale entry is served as a HIT without revalidation",
		Edits: []Edit{{File: "gateway/cache/cache.go",
			Old: `		if (!force && c.acceptable(req, &e.fresh, now)) || (e.fresh.immutable && e.fresh.fresh(now)) {`,
			New: `		if !force || e.fresh.immutable {`}},
		Packages: []string{"./gateway/cache"},
	},
	{
		Name: "cache-fastpath-stale-hit",
		What: "the fast path (LookupHit) answers from a stale entry",
		Edits: []Edit{{File: "gateway/cache/hit.go",
			Old: `	if e == nil || e.meta.Vary != nil || !e.fresh.fresh(now) || `,
			New: `	if e == nil || e.meta.Vary != nil || `}},
		Packages: []string{"./gateway/cache", "./gateway"},
	},

	// Digest and signature checks.
	{
		Name: "origin-digest",
		What: "the origin serves a file whose digest differs from the index",
		Edits: []Edit{{File: "origin/exportstate.go",
			Old: `	if e.digest != "" && e.digest != export.DigestPrefix+hex.EncodeToString(sum) {`,
			New: `	if false && e.digest != "" && e.digest != export.DigestPrefix+hex.EncodeToString(sum) {`}},
		Packages: []string{"./origin"},
	},
	{
		Name: "sync-digest",
		What: "sync keeps a downloaded file whose digest differs from the index",
		Edits: []Edit{{File: "mirrorsync/staging.go",
			Old: `	case f.digest != "" && got != f.digest:`,
			New: `	case false && f.digest != "" && got != f.digest:`}},
		Packages: []string{"./mirrorsync"},
	},
	{
		Name: "sync-jws-skipped",
		What: "sync publishes without checking the signatures",
		Edits: []Edit{{File: "mirrorsync/verify.go",
			Old: `	if r.opts.SkipSignatures {`,
			New: `	if true {`}},
		Packages: []string{"./mirrorsync"},
	},
	{
		Name: "sync-publish-unverified",
		What: "sync publishes an export that failed verification",
		Edits: []Edit{{File: "mirrorsync/engine.go",
			Old: `	if err := r.verify(ctx, id, p); err != nil {`,
			New: `	if err := r.verify(ctx, id, p); err != nil && false {`}},
		Packages: []string{"./mirrorsync"},
	},
	{
		Name: "jws-verify",
		What: "jws.Verify accepts a signature that does not verify",
		Edits: []Edit{{File: "export/jws/jws.go",
			Old: `	if !ok {
		return Header{}, fmt.Errorf("%w: payload or signature altered`,
			New: `	if false && !ok {
		return Header{}, fmt.Errorf("%w: payload or signature altered`}},
		Packages: []string{"./export/jws"},
	},

	// The restore checks (backup).
	{
		Name: "restore-manifest-vs-sums",
		What: "restore skips the MANIFEST.json vs SHA256SUMS check",
		Edits: []Edit{{File: "backup/archive.go",
			Old: `	if got := sha256.Sum256(mb); hex.EncodeToString(got[:]) != sums[ManifestName] {`,
			New: `	if got := sha256.Sum256(mb); false && hex.EncodeToString(got[:]) != sums[ManifestName] {`}},
		Packages: []string{"./backup"},
	},
	{
		Name: "restore-member-sha256",
		What: "restore skips the member sha256 vs SHA256SUMS check",
		Edits: []Edit{{File: "backup/archive.go",
			Old: `		case got.sha256 != e.SHA256:`,
			New: `		case false && got.sha256 != e.SHA256:`}},
		Packages: []string{"./backup"},
	},
	{
		Name: "restore-sums-vs-manifest",
		What: "restore skips the SHA256SUMS vs manifest agreement",
		Edits: []Edit{{File: "backup/archive.go",
			Old: `		case sums[mem] != e.SHA256:`,
			New: `		case false && sums[mem] != e.SHA256:`}},
		Packages: []string{"./backup"},
	},
	{
		Name: "restore-unexpected-member",
		What: "restore accepts a member neither the manifest nor SHA256SUMS lists",
		Edits: []Edit{{File: "backup/archive.go",
			Old: `		if v.files[mem] == nil {`,
			New: `		if false && v.files[mem] == nil {`}},
		Packages: []string{"./backup"},
	},
	{
		Name: "restore-signature",
		What: "restore accepts an archive signed by an untrusted key",
		Edits: []Edit{{File: "backup/sign.go",
			Old: `		if ed25519.Verify(k, msg, s.Value) {`,
			New: `		if ed25519.Verify(k, msg, s.Value) || true {`}},
		Packages: []string{"./backup"},
	},
	{
		Name: "restore-unsigned",
		What: "restore accepts an unsigned archive without --allow-unsigned",
		Edits: []Edit{{File: "backup/archive.go",
			Old: `	case sigb == nil && !o.allowUnsigned:`,
			New: `	case false && sigb == nil && !o.allowUnsigned:`}},
		Packages: []string{"./backup"},
	},
	{
		Name: "restore-secret-mode",
		What: "restore writes a secret with the (lying) manifest's mode",
		Edits: []Edit{{File: "backup/restore.go",
			Old: `func secretPerm(perm fs.FileMode) fs.FileMode { return perm & 0o640 }`,
			New: `func secretPerm(perm fs.FileMode) fs.FileMode { return perm }`}},
		Packages: []string{"./backup"},
	},

	// Cancellation in the gateway's upstream transport (the tests that
	// replaced timing bounds with events).
	{
		Name: "transport-cancel-after-write",
		What: "a cancellation just after the request is written is overridden by the header deadline",
		Edits: []Edit{{File: "gateway/proxy/transport.go",
			Old: `		// The new deadline may have replaced the one a cancellation set.
		if err := ctx.Err(); err != nil {`,
			New: `		// The new deadline may have replaced the one a cancellation set.
		if err := ctx.Err(); false && err != nil {`}},
		Packages: []string{"./gateway/proxy"},
	},
	{
		Name: "transport-cancel-during-body",
		What: "a cancellation during the body is overridden by the per-read deadline",
		Edits: []Edit{{File: "gateway/proxy/transport.go",
			Old: `		if c.ctx != nil && c.ctx.Err() != nil {`,
			New: `		if false && c.ctx != nil && c.ctx.Err() != nil {`}},
		Packages: []string{"./gateway/proxy"},
	},
}
