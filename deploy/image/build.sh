#!/usr/bin/env bash
# Builds the operator image (plain `docker build`, no BuildKit) and prints its tag.
# The Python base: $PYTHON_IMAGE (default: the Dockerfile's, python:3.12-slim pinned by
# digest) when the engine has it or can pull it; otherwise one made here from Debian
# packages (base.sh, cached), whose image ID the image's base.digest label records.
#
#   bash deploy/image/build.sh [TAG]      default tag: oauth2-token-operator:<version>
#   NO_CACHE=1 bash deploy/image/build.sh TAG   every step again (tests/packaging)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml")"
TAG="${1:-${IMAGE:-oauth2-token-operator:$version}}"
PYTHON_IMAGE="${PYTHON_IMAGE:-$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$root/Dockerfile")}"
log() { printf '[image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if docker image inspect "$PYTHON_IMAGE" >/dev/null 2>&1; then
  base="$PYTHON_IMAGE"
elif [[ "${IMAGE_OFFLINE:-0}" != 1 ]] && timeout 300 docker pull -q "$PYTHON_IMAGE" >/dev/null 2>&1; then
  base="$PYTHON_IMAGE"
else
  log "$PYTHON_IMAGE cannot be pulled: using a Python base made from Debian packages"
  base="$(bash "$here/base.sh")"
fi
base_digest=""
[[ "$base" == *@sha256:* ]] || base_digest="$(docker image inspect -f '{{.Id}}' "$base")"
no_cache=()
[[ "${NO_CACHE:-0}" != 1 ]] || no_cache=(--no-cache)
revision="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
start=$SECONDS
out="$(DOCKER_BUILDKIT=0 docker build -q "${no_cache[@]}" --build-arg "PYTHON_IMAGE=$base" \
  --build-arg "BASE_DIGEST=$base_digest" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" -t "$TAG" "$root" 2>&1)" ||
  { echo "$out" >&2; exit 1; }
log "$TAG (base $base) in $((SECONDS - start))s: $(docker image inspect -f '{{.Size}}' "$TAG" | numfmt --to=iec)"
echo "$TAG"
