#!/usr/bin/env bash
# Builds actionlint from its Go module (no binary download) into a cache keyed by
# version, and prints its path. Seconds when already built. actionlint runs shellcheck
# on every `run:` script when shellcheck is on PATH: as root, Debian's shellcheck is
# installed here when missing (elsewhere the workflows are checked without it).
#
#   bash tests/packaging/actionlint.sh      prints the path of the actionlint binary
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${ACTIONLINT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-token-operator/actionlint}"
log() { printf '[packaging/actionlint %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if ! command -v shellcheck >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  log "installing Debian's shellcheck"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends shellcheck >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends shellcheck >/dev/null; }; } ||
    log "shellcheck could not be installed: actionlint runs without it"
fi
exec bash "$here/../go-install.sh" "$CACHE_DIR" actionlint "$ACTIONLINT_VERSION" \
  github.com/rhysd/actionlint/cmd/actionlint "-X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"
