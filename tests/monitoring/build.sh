#!/usr/bin/env bash
# Builds promtool from the Prometheus Go module (no binary download) into a cache keyed
# by version, and prints its path. Seconds when already built. Built without the service
# discovery plugins (`remove_all_sd`): checking and testing rules needs none, and their
# cloud SDKs would take most of the build.
#
#   bash tests/monitoring/build.sh        prints the path of the promtool binary
set -euo pipefail
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"   # Prometheus 3.16 (Go module tag)
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${PROMTOOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-token-operator/promtool}"
BIN="$CACHE_DIR/promtool-$PROMETHEUS_VERSION/promtool"
log() { printf '[monitoring/promtool %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ -x "$GO" ]] || { echo "build.sh: no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.build.lock"
flock 9
if [[ ! -x "$BIN" ]]; then
  start=$SECONDS
  log "building promtool $PROMETHEUS_VERSION"
  GOBIN="$(dirname "$BIN").tmp" "$GO" install -trimpath -ldflags "-s -w" -tags remove_all_sd \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2
  rm -rf "$(dirname "$BIN")"
  mv "$(dirname "$BIN").tmp" "$(dirname "$BIN")"
  log "promtool $PROMETHEUS_VERSION built in $((SECONDS - start))s"
fi
echo "$BIN"
