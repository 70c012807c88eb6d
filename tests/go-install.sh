#!/usr/bin/env bash
# Builds a command from its Go module (no binary download) into a cache keyed by version,
# and prints the binary's path; seconds when already built. Several runs at once build
# it once (a lock file in the cache). Used by tests/e2e/helm.sh and
# tests/packaging/actionlint.sh.
#
#   bash tests/go-install.sh CACHE_DIR NAME VERSION PACKAGE [EXTRA_LDFLAGS]
#     -> CACHE_DIR/NAME-VERSION/NAME, from `go install PACKAGE@VERSION`
set -euo pipefail
[[ $# -ge 4 ]] || { echo "usage: $0 CACHE_DIR NAME VERSION PACKAGE [EXTRA_LDFLAGS]" >&2; exit 2; }
CACHE_DIR="$1" NAME="$2" VERSION="$3" PACKAGE="$4" LDFLAGS="${5:-}"
BIN="$CACHE_DIR/$NAME-$VERSION/$NAME"
log() { printf '[go-install %s %(%H:%M:%S)T] %s\n' "$NAME" -1 "$*" >&2; }

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ -x "$GO" ]] || { echo "go-install.sh: no Go toolchain to build $NAME (set GO=/path/to/go)" >&2; exit 1; }
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.build.lock"
flock 9
if [[ ! -x "$BIN" ]]; then
  start=$SECONDS
  log "building $NAME $VERSION"
  GOBIN="$(dirname "$BIN").tmp" "$GO" install -trimpath -ldflags "-s -w $LDFLAGS" \
    "$PACKAGE@$VERSION" >&2
  rm -rf "$(dirname "$BIN")"
  mv "$(dirname "$BIN").tmp" "$(dirname "$BIN")"
  log "$NAME $VERSION built in $((SECONDS - start))s"
fi
echo "$BIN"
