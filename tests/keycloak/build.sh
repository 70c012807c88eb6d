#!/usr/bin/env bash
# Fetches Keycloak's server distribution, org.keycloak:keycloak-quarkus-dist:<v>:zip, with
# Maven (strict checksums) and unpacks it into a cache keyed by version:
#   $KEYCLOAK_CACHE_DIR/keycloak-<v>/bin/kc.sh
# (default KEYCLOAK_CACHE_DIR: ${XDG_CACHE_HOME:-~/.cache}/oauth2-token-operator/keycloak).
# Idempotent: returns at once when it is there.
#
#   bash tests/keycloak/build.sh              fetch what is missing
#   bash tests/keycloak/build.sh --print-dir  print the distribution's directory
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="${KEYCLOAK_VERSION:-$(sed -n 's/^KEYCLOAK_VERSION=//p' "$here/versions.env")}"
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${KEYCLOAK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-token-operator/keycloak}"
DIST="$CACHE_DIR/keycloak-$VERSION"

case "${1:-}" in
  --print-dir) echo "$DIST"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
esac

log() { printf '[keycloak/build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if [[ -x "$DIST/bin/kc.sh" && -f "$DIST/.complete" ]]; then
  exit 0
fi
command -v mvn >/dev/null || { echo "keycloak/build: mvn (Maven) is needed" >&2; exit 1; }
command -v java >/dev/null || { echo "keycloak/build: java (17 or later) is needed" >&2; exit 1; }
artifact="org.keycloak:keycloak-quarkus-dist:$VERSION:zip"
log "fetching $artifact"
mkdir -p "$CACHE_DIR"
staging="$(mktemp -d "$CACHE_DIR/.unpack.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
mvn --batch-mode --quiet --strict-checksums -Dstyle.color=never dependency:copy \
  -Dartifact="$artifact" -DoutputDirectory="$staging"
zip="$staging/keycloak-quarkus-dist-$VERSION.zip"
python3 -m zipfile -e "$zip" "$staging"
chmod +x "$staging/keycloak-$VERSION/bin/"*.sh
rm -rf "$DIST"
mv "$staging/keycloak-$VERSION" "$DIST"
touch "$DIST/.complete"
log "Keycloak $VERSION in $DIST"
