#!/usr/bin/env bash
# Builds helm from the Go module proxy (no binary download) into a cache keyed by
# version, and prints its path. Seconds when already built.
#
#   bash tests/e2e/helm.sh        prints the path of the helm binary
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${HELM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-token-operator/helm}"
BIN="$CACHE_DIR/helm-$HELM_VERSION/helm"
log() { printf '[e2e/helm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ -x "$GO" ]] || { echo "helm.sh: no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.build.lock"
flock 9
if [[ ! -x "$BIN" ]]; then
  start=$SECONDS
  log "building helm $HELM_VERSION"
  GOBIN="$(dirname "$BIN").tmp" "$GO" install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  rm -rf "$(dirname "$BIN")"
  mv "$(dirname "$BIN").tmp" "$(dirname "$BIN")"
  log "helm $HELM_VERSION built in $((SECONDS - start))s"
fi
echo "$BIN"
