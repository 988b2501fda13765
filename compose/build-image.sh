#!/usr/bin/env bash
# Build the stella-mirror image from a static binary without pulling anything:
#   compose/build-image.sh BINARY TAG [VERSION]
# `make image` calls it with bin/stella-mirror; test/e2e with the binary under
# test. The build context is a temporary directory holding the binary, the
# build host's CA bundle (CA_BUNDLE, default Debian's), passwd/group files for
# the non-root user 65532, and an empty directory for the image's state dirs.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 BINARY TAG [VERSION]" >&2
  exit 2
fi
bin=$1 tag=$2 version=${3:-devel}
here=$(cd "$(dirname "$0")" && pwd)
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -x "$bin" ] || { echo "build-image: $bin is not an executable (run make build)" >&2; exit 1; }
[ -r "$ca_bundle" ] || { echo "build-image: no CA bundle at $ca_bundle (apt-get install ca-certificates, or CA_BUNDLE=...)" >&2; exit 1; }
if command -v file >/dev/null 2>&1 && ! file -L "$bin" | grep -q 'statically linked'; then
  echo "build-image: $bin is not statically linked (build with CGO_ENABLED=0)" >&2
  exit 1
fi
ctx=$(mktemp -d "${TMPDIR:-/tmp}/stella-mirror-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
install -m 0755 "$bin" "$ctx/stella-mirror"
install -m 0644 "$ca_bundle" "$ctx/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nstella-mirror:x:65532:65532:stella-mirror:/:/sbin/nologin\n' >"$ctx/passwd"
printf 'root:x:0:\nstella-mirror:x:65532:\n' >"$ctx/group"
chmod 0644 "$ctx/passwd" "$ctx/group"
mkdir -m 0755 "$ctx/empty"
# BuildKit needs the buildx plugin; without it the classic builder does the
# same job (FROM scratch pulls nothing either way).
if [ -z "${DOCKER_BUILDKIT:-}" ]; then
  if docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=1; else export DOCKER_BUILDKIT=0; fi
fi
docker build --pull=false --build-arg VERSION="$version" -f "$here/Dockerfile" -t "$tag" "$ctx"
