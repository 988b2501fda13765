# stella-mirror — build, run the demo, test, benchmark.
# `make run` and `make test` are the two commands that matter on a fresh machine.

GO      ?= go
BIN     := bin/stella-mirror
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X github.com/stella-ops/stella-mirror/internal/buildinfo.version=$(VERSION)
# Extra arguments for `make dos`, e.g. DOSARGS="--scenarios idle-fd --engines std".
DOSARGS ?=
# Extra arguments for `make run`, e.g. make run ARGS="--dir /tmp/demo".
ARGS    ?=

export PATH := $(PATH):/usr/local/go/bin

# Container image tag `make image` builds (compose/ runs ${MIRROR_IMAGE:-stella-mirror:local}).
IMAGE   ?= stella-mirror:local
# Sites for `make dev-certs`, NAME=HOST[,HOST...] separated by spaces.
SITES   ?= primary=mirror-primary.localhost community=mirror-community.localhost

.PHONY: all deps build run test test-short e2e-twonode e2e-cluster bench dos faults fuzz mutate lint fmt clean image dev-certs

all: build

## build: static binary at bin/stella-mirror (CGO_ENABLED=0)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stella-mirror

## image: FROM scratch container image $(IMAGE) of the static binary (pulls nothing)
image: build
	compose/build-image.sh $(BIN) $(IMAGE) $(VERSION)

## dev-certs: development CA + per-site certificates in tls/ (SITES="primary=host ...")
dev-certs: build
	$(BIN) dev-certs --out tls $(foreach s,$(SITES),--site $(s))

## run: the embedded demo (origin + generated, signed data on localhost); Ctrl-C stops it
run: build
	$(BIN) demo $(ARGS)

## deps: install the Debian packages the tests use, if missing (scripts/test-deps)
deps:
	scripts/test-deps

## test: install missing test packages, lint, then unit + integration + end-to-end tests with the race detector (beside a sentinel process named nginx that must survive: scripts/with-sentinel)
test: deps lint build
	STELLA_MIRROR_BIN=$(CURDIR)/$(BIN) scripts/with-sentinel $(GO) test -race -count=1 -timeout 12m ./...

## test-short: the same without the race detector, for quick iteration
test-short: build
	STELLA_MIRROR_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 ./...

## e2e-twonode: only the two-node compose test (two edge nodes behind a round-robin nginx, ~3 min, needs Docker); also part of `make test`
e2e-twonode: build
	STELLA_MIRROR_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 10m -run '^TestComposeTwoNodes$$' -v ./test/e2e/

## e2e-cluster: three edge nodes (compose, own caches, S3 sync from a gofakes3 container) behind a round-robin nginx, a node stopped and restarted and a new export published mid-run (~2.5 min, needs Docker, nginx, awscli); not part of `make test`, which skips it naming this target
e2e-cluster: build
	STELLA_MIRROR_BIN=$(CURDIR)/$(BIN) STELLA_MIRROR_CLUSTER=1 $(GO) test -count=1 -timeout 15m -run '^TestComposeCluster$$' -v ./test/e2e/

## bench: origin and gateway vs nginx on the same files; table + bench/out/results.json
bench: build
	$(GO) run ./bench/cmd/benchrun --bin $(BIN) --out bench/out

## dos: denial-of-service suite against the gateway on loopback (< 10 min); table + test/dos/out/results.json; fails if any scenario fails
dos: build
	$(GO) run ./test/dos/cmd/dosrun --bin $(BIN) --out test/dos/out $(DOSARGS)

## faults: the fault suite (test/faults, ~2 min, root for the tmpfs cases): 30 SIGKILLed syncs per source kind with a verifying reader, full disk, hostile sources, stopped backups, forged archives; its quick cases (3 kills per kind) run in `make test`
faults: build
	STELLA_MIRROR_BIN=$(CURDIR)/$(BIN) STELLA_MIRROR_FAULTS=full $(GO) test -count=1 -timeout 20m -v ./test/faults/

## cache-tests: the public HTTP caching suite (http-tests/cache-tests, a checkout at CACHE_TESTS=/path, never vendored) against bench/cmd/cacheproxy; prints the summary (ENGINE=std for net/http). Not part of make test.
.PHONY: cache-tests
cache-tests:
	@test -n "$(CACHE_TESTS)" || { echo "cache-tests: set CACHE_TESTS=/path/to/a/cache-tests/checkout (see docs/cache.md, Conformance)"; exit 2; }
	./scripts/cache-tests.sh "$(CACHE_TESTS)"

# Time each fuzz target runs in `make fuzz`, and extra `go test` flags
# (e.g. FUZZFLAGS=-parallel=1 on a shared machine).
FUZZTIME  ?= 30s
FUZZFLAGS ?=
# package:target; -fuzz takes one target per run, so each gets its own.
FUZZ_TARGETS := \
	./internal/fastserve:FuzzHTTP1 \
	./gateway/policy:FuzzCheck \
	./gateway/cache:FuzzResponseFields \
	./internal/config:FuzzLoad \
	./export:FuzzParseIndex \
	./internal/httprange:FuzzParseContentRange \
	./export:FuzzParseManifest \
	./export:FuzzParseExcititorIndex \
	./export:FuzzReadBundle \
	./export/jws:FuzzVerify \
	./export/jws:FuzzHeader \
	./export/jws:FuzzSignVerify \
	./gateway/basicauth:FuzzParseBasic \
	./gateway/basicauth:FuzzParseHtpasswd \
	./internal/htpasswdfile:FuzzSetIsAcceptedByTheGateway \
	./backup:FuzzReadArchive \
	./backup:FuzzParseManifest \
	./backup:FuzzParseSums

## fuzz: run every fuzz target for FUZZTIME each (seed corpora alone run in `make test`); a crasher lands in the package's testdata/fuzz
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $(FUZZFLAGS) $$pkg; \
	done

# Extra arguments for `make mutate`, e.g. MUTATEARGS="-run cache-".
MUTATEARGS ?=

## mutate: apply each mutation of internal/tools/mutate/mutations.go (auth, policy, cache, digests, signatures, restore, sync publish) to a temporary copy, one at a time; each must be killed by its packages' tests (~4 min; not part of `make test`)
mutate:
	$(GO) run ./internal/tools/mutate $(MUTATEARGS)

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin bench/out test/dos/out demo-data
