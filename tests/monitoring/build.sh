#!/usr/bin/env bash
# Builds promtool from the Prometheus Go module (no binary download) into a cache keyed
# by version, and prints its path. Seconds when already built. Built without the service
# discovery plugins (`remove_all_sd`): checking and testing rules needs none, and their
# cloud SDKs would take most of the build.
#
#   bash tests/monitoring/build.sh        prints the path of the promtool binary
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"   # Prometheus 3.16 (Go module tag)
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${PROMTOOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-token-operator/promtool}"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-tags=remove_all_sd"
exec bash "$here/../go-install.sh" "$CACHE_DIR" promtool "$PROMETHEUS_VERSION" \
  github.com/prometheus/prometheus/cmd/promtool
