#!/usr/bin/env bash
# A Python base image made from Debian packages, for engines that cannot pull the
# Dockerfile's default (python:3.12-slim): debootstrap --variant=minbase plus python3,
# python3-venv (pip for the build stage) and ca-certificates, imported as an image.
# Cached: the image carries the hash of this script and is rebuilt only when it changes.
# What it was made from is recorded in it: /usr/share/oauth2-token-operator/base.txt
# (the suite, its Release file's date and version, every Debian package with its version,
# and the recipe hash); the label oauth2-token-operator.base-packages is that list's hash.
# The operator image is FROM this one, so it carries the file and the label too.
#
#   bash deploy/image/base.sh        prints the tag once the image is there
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE="${DEBIAN_SUITE:-trixie}"
TAG="${BASE_IMAGE_TAG:-oauth2-token-operator.local/python-base:$SUITE}"
LABEL=oauth2-token-operator.recipe
log() { printf '[image/base %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

recipe="$(cat "$here/base.sh" /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-16)-$SUITE"
have="$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$TAG" 2>/dev/null || true)"
if [[ "$have" == "$recipe" ]]; then
  echo "$TAG"
  exit 0
fi
[[ $(id -u) == 0 ]] || { echo "base.sh: debootstrap needs root" >&2; exit 1; }
if ! command -v debootstrap >/dev/null; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/python-base.XXXXXX")"
trap 'rm -rf --one-file-system "$work"' EXIT
start=$SECONDS
log "debootstrap $SUITE + python3 (about a minute and a half)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$work/root" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
# Nothing a container needs: package lists and caches, documentation, locales.
# A site's own CAs (/usr/local/share/ca-certificates: a TLS-inspecting egress proxy, a
# private mirror) are trusted here as on the host, so that pip in the build stage works
# on the same network; python:3.12-slim users add theirs the usual way.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$work/root/usr/local/share/ca-certificates/"
  chroot "$work/root" update-ca-certificates >/dev/null 2>&1
fi
record=/usr/share/oauth2-token-operator/base.txt
mkdir -p "$work/root$(dirname "$record")"
release="$(ls "$work/root"/var/lib/apt/lists/*_InRelease "$work/root"/var/lib/apt/lists/*_Release 2>/dev/null | head -1)"
packages="$(chroot "$work/root" dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort)"
{
  echo "# The Python base of the operator image, made by deploy/image/base.sh (debootstrap)."
  echo "suite: $SUITE"
  [[ -z "$release" ]] || grep -E '^(Date|Version|Codename):' "$release" | sed 's/^/release-/' || true
  echo "recipe: $recipe"
  echo "packages:"
  echo "$packages"
} >"$work/root$record"
packages_hash="$(sha256sum <<<"$packages" | cut -c1-16)"
rm -rf "$work/root"/var/lib/apt/lists/* "$work/root"/var/cache/apt/*.bin \
  "$work/root"/var/cache/apt/archives/*.deb "$work/root"/usr/share/doc/* \
  "$work/root"/usr/share/man/* "$work/root"/usr/share/info/* "$work/root"/var/log/*
: >"$work/root/etc/resolv.conf"
tar -C "$work/root" -c . | docker import \
  --change "LABEL $LABEL=$recipe oauth2-token-operator.base-packages=$packages_hash" \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$TAG" >/dev/null
log "$TAG ($(grep -c '=' "$work/root$record") Debian packages, $(grep -m1 '^python3=' "$work/root$record")) in $((SECONDS - start))s: $(docker image inspect -f '{{.Size}}' "$TAG" | numfmt --to=iec)"
echo "$TAG"
