#!/usr/bin/env bash
# Builds (once) fake-gcs-server, a local emulator of Google Cloud Storage's JSON API used by the integration tests of
# gs:// artifacts, and prints the path of its binary on stdout; progress goes to stderr.
#
#   scripts/fake-gcs-server.sh      # -> /path/to/repo/.tern/go/bin/fake-gcs-server
#
# `go install` fetches the pinned version's module and its dependencies from the Go module proxy into .tern/go (its own
# GOPATH, module cache and build cache, so nothing lands in ~/go) and compiles it: several minutes the first time on
# a busy 2-core machine, at once afterwards (the version is kept beside the binary). Concurrent calls wait for each
# other (flock). Needs Go 1.26+ on PATH (TERN_GO names another go command).
set -euo pipefail

version="v1.56.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
go="${TERN_GO:-go}"
base="$root/.tern/go"
bin="$base/bin/fake-gcs-server"

if [[ -x "$bin" && "$(cat "$bin.version" 2>/dev/null)" == "$version" ]]; then
  echo "$bin"
  exit 0
fi
if ! command -v "$go" >/dev/null 2>&1; then
  echo "fake-gcs-server: $go not found: the gs:// integration tests need Go 1.26+ to build fake-gcs-server (install Go, or set TERN_GO)" >&2
  exit 1
fi

mkdir -p "$base/bin"
exec 9>"$base/fake-gcs-server.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
# Another call may have built it while this one waited for the lock.
if [[ -x "$bin" && "$(cat "$bin.version" 2>/dev/null)" == "$version" ]]; then
  echo "$bin"
  exit 0
fi

echo "fake-gcs-server: building github.com/fsouza/fake-gcs-server@$version with $("$go" version) into $base/bin (first time only)" >&2
export GOPATH="$base" GOBIN="$base/bin" GOMODCACHE="$base/pkg/mod" GOCACHE="$base/cache"
# "go: downloading ..." lines show the fetch, -v names each package as it compiles: a long first build shows it moves.
# -modcacherw: the module cache stays deletable (rm -rf .tern) without chmod.
if ! "$go" install -v -modcacherw "github.com/fsouza/fake-gcs-server@$version" >&2; then
  echo "fake-gcs-server: go install github.com/fsouza/fake-gcs-server@$version failed (see above)" >&2
  exit 1
fi
echo "$version" >"$bin.version"
# The sources and the build cache (over 1 GB) are needed only to build it again: a new version starts from scratch.
"$go" clean -cache -modcache >&2 || true
echo "fake-gcs-server: $version ready" >&2
echo "$bin"
