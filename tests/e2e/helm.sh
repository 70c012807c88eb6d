#!/usr/bin/env bash
# Builds helm from the Go module proxy (no binary download) into a cache keyed by
# version, and prints its path. Seconds when already built.
#
#   bash tests/e2e/helm.sh        prints the path of the helm binary
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${HELM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-token-operator/helm}"
exec bash "$here/../go-install.sh" "$CACHE_DIR" helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
