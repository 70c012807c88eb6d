#!/usr/bin/env bash
# Builds the Kubernetes binaries of the tests from Go modules (no binary downloads):
#   etcd                  from go.etcd.io/etcd/server/v3
#   the seven binaries    from k8s.io/kubernetes/cmd/... in one `go build`:
#     kube-apiserver, kube-controller-manager (the control plane of tests/cluster),
#     kube-scheduler, kube-proxy, kubelet, kubeadm, kubectl (the kind node image
#     of tests/e2e, which also reuses etcd)
# into a cache keyed by version:
#   $CLUSTER_CACHE_DIR/etcd-<v>/etcd
#   $CLUSTER_CACHE_DIR/kubernetes-<v>/{kube-apiserver,kube-controller-manager,...}
# (default CLUSTER_CACHE_DIR: ${XDG_CACHE_HOME:-~/.cache}/oauth2-token-operator/cluster).
# Idempotent: returns in well under a second when the binaries are there.
#
#   bash tests/cluster/build.sh              build what is missing
#   bash tests/cluster/build.sh --print-dirs print the two binary directories
#   bash tests/cluster/build.sh --force      rebuild even if present
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
from_versions_file() { sed -n "s/^$1=//p" "$here/versions.env"; }
ETCD_VERSION="${CLUSTER_ETCD_VERSION:-$(from_versions_file ETCD_VERSION)}"
KUBERNETES_VERSION="${CLUSTER_KUBERNETES_VERSION:-$(from_versions_file KUBERNETES_VERSION)}"
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${CLUSTER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-token-operator/cluster}"
ETCD_DIR="$CACHE_DIR/etcd-$ETCD_VERSION"
KUBE_DIR="$CACHE_DIR/kubernetes-$KUBERNETES_VERSION"
KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl)

force=0
case "${1:-}" in
  --print-dirs) printf '%s\n%s\n' "$ETCD_DIR" "$KUBE_DIR"; exit 0 ;;
  --force) force=1 ;;
  "") ;;
  *) echo "usage: $0 [--print-dirs|--force]" >&2; exit 2 ;;
esac

log() { printf '[cluster/build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

have_kubernetes() {
  local cmd
  for cmd in "${KUBE_COMMANDS[@]}"; do [[ -x "$KUBE_DIR/$cmd" ]] || return 1; done
}
have_all() { [[ -x "$ETCD_DIR/etcd" ]] && have_kubernetes; }
sizes() {
  local f
  for f in "$ETCD_DIR/etcd" "${KUBE_COMMANDS[@]/#/$KUBE_DIR/}"; do
    [[ -e "$f" ]] && log "$(du -h --apparent-size "$f" | cut -f1)  $f"
  done
  return 0
}

if [[ $force == 0 ]] && have_all; then
  log "cached: etcd $ETCD_VERSION, kubernetes $KUBERNETES_VERSION in $CACHE_DIR"
  sizes
  exit 0
fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ -x "$GO" ]] || { echo "build.sh: no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }
# The machine's Go; a newer toolchain would be a download, which is not allowed here.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

mkdir -p "$CACHE_DIR"
# One build at a time per cache (two pytest runs or make targets at once).
exec 9>"$CACHE_DIR/.build.lock"
flock 9

work="$(mktemp -d "${TMPDIR:-/tmp}/cluster-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "go: $("$GO" version); GOTOOLCHAIN=$GOTOOLCHAIN; work dir $work"

# `go` directive of a module's go.mod as served by the proxy.
go_directive() { sed -n 's/^go \([0-9.]*\).*/\1/p' "$1" | head -1; }
# Path of the go.mod the proxy serves for module@version (downloads the module).
served_gomod() {
  (cd "$work" && "$GO" mod download -json "$1@$2") | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}

build_etcd() {
  local start=$SECONDS mod=go.etcd.io/etcd/server/v3 dir="$work/etcd" gomod
  [[ $force == 0 && -x "$ETCD_DIR/etcd" ]] && return 0
  log "building etcd $ETCD_VERSION"
  gomod="$(served_gomod "$mod" "$ETCD_VERSION")"
  mkdir -p "$dir"
  # The module has replace directives (../api ...), so `go install mod@v` refuses it:
  # a throw-away main module that requires it builds it with the published siblings.
  cat >"$dir/go.mod" <<MOD
module oauth2-token-operator.invalid/etcd-build

go $(go_directive "$gomod")

require $mod $ETCD_VERSION
MOD
  (cd "$dir" && "$GO" get "$mod@$ETCD_VERSION" &&
    "$GO" build -trimpath -o "$dir/etcd" \
      -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD_VERSION" "$mod")
  mkdir -p "$ETCD_DIR"
  mv -f "$dir/etcd" "$ETCD_DIR/etcd"
  log "etcd built in $((SECONDS - start))s: $("$ETCD_DIR/etcd" --version | head -1)"
}

build_kubernetes() {
  local start=$SECONDS mod=k8s.io/kubernetes dir="$work/kubernetes" gomod staging
  [[ $force == 0 ]] && have_kubernetes && return 0
  log "building ${KUBE_COMMANDS[*]} $KUBERNETES_VERSION"
  gomod="$(served_gomod "$mod" "$KUBERNETES_VERSION")"
  # k8s.io/kubernetes requires each staging module at v0.0.0 and replaces it with
  # ./staging/src/...; the proxy serves them as v0.<minor>.<patch>. Take the list
  # from the replace directives of the go.mod the proxy serves for this version.
  staging="$(awk '
    /^replace[[:space:]]*\($/ { inblock = 1; next }
    inblock && /^\)/ { inblock = 0; next }
    inblock && $2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }
    /^replace[[:space:]]/ && $3 == "=>" && $4 ~ /^\.\/staging\// { print $2 }
  ' "$gomod")"
  [[ -n "$staging" ]] || { echo "build.sh: no staging replaces found in $gomod" >&2; exit 1; }
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$dir"
  {
    echo "module oauth2-token-operator.invalid/kubernetes-build"
    echo
    echo "go $(go_directive "$gomod")"
    # Keep the GODEBUG defaults Kubernetes itself is built with.
    sed -n 's/^\(godebug .*\)/\1/p' "$gomod"
    echo
    echo "require $mod $KUBERNETES_VERSION"
    echo
    echo "replace ("
    local m
    for m in $staging; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >"$dir/go.mod"
  log "$(wc -w <<<"$staging") staging modules replaced with $staging_version"

  local major minor
  major="${KUBERNETES_VERSION#v}"; major="${major%%.*}"
  minor="${KUBERNETES_VERSION#v*.}"; minor="${minor%%.*}"
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major"
    ldflags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  local pkgs=("${KUBE_COMMANDS[@]/#/$mod/cmd/}")
  (cd "$dir" && "$GO" get "${pkgs[@]/%/@$KUBERNETES_VERSION}")
  # One build of all seven: each package compiles once, and the Go build cache
  # shares it with any earlier build of the same module versions and flags.
  # The tags are those of Kubernetes' own release builds (hack/lib/golang.sh).
  local t=$SECONDS
  mkdir -p "$dir/bin"
  (cd "$dir" && "$GO" build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" \
    -o "$dir/bin/" "${pkgs[@]}")
  log "${#pkgs[@]} commands compiled in $((SECONDS - t))s"
  mkdir -p "$KUBE_DIR"
  mv -f "$dir"/bin/* "$KUBE_DIR/"
  log "kubernetes built in $((SECONDS - start))s: $("$KUBE_DIR/kube-apiserver" --version)"
}

total=$SECONDS
build_etcd
build_kubernetes
log "build finished in $((SECONDS - total))s"
sizes
