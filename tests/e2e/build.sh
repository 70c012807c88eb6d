#!/usr/bin/env bash
# Everything the kind tests (tests/e2e) need, with no container registry:
#   - a Docker engine (engine.sh: used as found, or Debian's docker.io started here);
#   - kind, built from the Go module proxy;
#   - a kind node image. kind's standard kindest/node image when the engine has
#     it or can pull it; otherwise (no registry, as on this project's machines)
#     one built here, "oauth2-token-operator/node:<kubernetes version>", from
#       * the seven Kubernetes binaries and etcd of tests/cluster/build.sh,
#       * CoreDNS (node/coredns) and pause (Kubernetes' own pause.c) built here,
#       * a Debian rootfs (debootstrap) with systemd, containerd, runc and the
#         CNI plugins, plus kind's base-image files from the kind module,
#     the way `kind build node-image` does it, minus its pulls.
# Everything is cached by version (the node image carries a label with the hash
# of its recipe), so a second run takes seconds. The choice is written to
# $KIND_CACHE_DIR/build.json (kind's path, the node image, "standard" or
# "offline"), which tests/e2e/kind.py reads.
#
#   bash tests/e2e/build.sh          build what is missing
#   bash tests/e2e/build.sh --force  rebuild the offline node image
#   bash tests/e2e/build.sh --offline  never pull: build the node image here
#
# Where no container engine can be had (engine.sh exit 3) it exits 0 and the kind tests
# skip, except under CI (CI=true): then it fails, as do the kind tests.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cluster_dir="$(cd "$here/../cluster" && pwd)"
from_versions_file() { sed -n "s/^$1=//p" "$here/versions.env"; }
KUBERNETES_VERSION="${CLUSTER_KUBERNETES_VERSION:-$(sed -n 's/^KUBERNETES_VERSION=//p' "$cluster_dir/versions.env")}"
KIND_VERSION="${KIND_VERSION:-$(from_versions_file KIND_VERSION)}"
DEBIAN_SUITE="${DEBIAN_SUITE:-$(from_versions_file DEBIAN_SUITE)}"
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
export KIND_CACHE_DIR="${KIND_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-token-operator/kind}"
PROJECT=oauth2-token-operator
NODE_IMAGE="$PROJECT/node:$KUBERNETES_VERSION"
KIND_BIN="$KIND_CACHE_DIR/kind-$KIND_VERSION/kind"
RECIPE_LABEL="$PROJECT.recipe"

force=0 offline=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 offline=1 ;;
    --offline) offline=1 ;;
    *) echo "usage: $0 [--force|--offline]" >&2; exit 2 ;;
  esac
done

log() { printf '[e2e/build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# CI set (CI=true, as CI services set it; not "", 0, false or no): the kind tests must
# run, so no engine is a failure there (tests/e2e/kind.py's in_ci() is the same rule).
in_ci() {
  local ci="${CI:-}"
  case "${ci,,}" in "" | 0 | false | no) return 1 ;; *) return 0 ;; esac
}
total=$SECONDS

set +e
bash "$here/engine.sh"
engine=$?
set -e
if [[ $engine == 3 ]]; then
  rm -f "$KIND_CACHE_DIR/build.json"
  if in_ci; then
    log "no container engine under CI=$CI (reason above): the kind tests cannot run, and CI does not skip them;" \
      "start an engine, or run as root where apt-get can install docker.io"
    exit 1
  fi
  log "the kind tests will be skipped (no container engine)"
  exit 0
fi
[[ $engine == 0 ]] || exit "$engine"
mkdir -p "$KIND_CACHE_DIR"

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ -x "$GO" ]] || { echo "build.sh: no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:-} -mod=mod" CGO_ENABLED=0

# One build at a time per cache.
exec 9>"$KIND_CACHE_DIR/.build.lock"
flock 9

# What the tests use (tests/e2e/kind.py reads it).
choose() {
  jq -n --arg kind "$KIND_BIN" --arg image "$1" --arg source "$2" \
    '{kind: $kind, node_image: $image, source: $source}' >"$KIND_CACHE_DIR/build.json"
  log "node image: $1 ($2)"
}

if [[ ! -x "$KIND_BIN" ]]; then
  log "building kind $KIND_VERSION"
  GOBIN="$(dirname "$KIND_BIN")" "$GO" install "sigs.k8s.io/kind@$KIND_VERSION"
fi
kind_src="$("$GO" mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)"

# 1. An image the user already has, or can pull: kind's own default.
standard="$(sed -n 's/^const Image = "\(.*\)"$/\1/p' "$kind_src/pkg/apis/config/defaults/image.go")"
if [[ $offline == 0 && -n "$standard" ]]; then
  if docker image inspect "$standard" >/dev/null 2>&1; then
    choose "$standard" standard
    exit 0
  fi
fi

# 2. The offline image, when built from this very recipe.
recipe="$(cd "$here/.." && find e2e/build.sh e2e/node e2e/versions.env cluster/build.sh cluster/versions.env \
  -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
have="$(docker image inspect -f "{{index .Config.Labels \"$RECIPE_LABEL\"}}" "$NODE_IMAGE" 2>/dev/null || true)"
if [[ $force == 0 && "$have" == "$recipe" ]]; then
  choose "$NODE_IMAGE" offline
  log "cached; done in $((SECONDS - total))s"
  exit 0
fi

# 3. A registry that answers.
if [[ $offline == 0 && -n "$standard" ]]; then
  log "pulling kind's standard node image ${standard%@*}"
  if timeout 600 docker pull "$standard"; then
    choose "$standard" standard
    exit 0
  fi
  log "no registry answered: building the node image here (offline build)"
fi

# 4. The offline build.
[[ $(id -u) == 0 ]] || { echo "build.sh: the offline node image build needs root (debootstrap, chroot)" >&2; exit 1; }
work="$KIND_CACHE_DIR/build"
awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | xargs -r umount -l # a killed run's
rm -rf --one-file-system "$work"
mkdir -p "$work"
# Images made on the way; only the node image stays.
intermediate=("$PROJECT/kind-rootfs:$DEBIAN_SUITE" "$PROJECT/kind-base:$DEBIAN_SUITE"
  "$PROJECT/kube-proxy-rootfs:$DEBIAN_SUITE")
builder="$PROJECT-nodebuild-$$"
cleanup() {
  docker rm -f -v "$builder" >/dev/null 2>&1 || true
  docker rmi "${intermediate[@]}" >/dev/null 2>&1 || true
  if [[ -n "${rootfs_job:-}" ]]; then
    pkill -P "$rootfs_job" 2>/dev/null || true
    kill "$rootfs_job" 2>/dev/null || true
    wait "$rootfs_job" 2>/dev/null || true
  fi
  awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | xargs -r umount -l
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# `docker build` without BuildKit (Debian's docker.io has none); quiet unless it fails.
docker_build() { # tag context|-
  local out
  out="$(DOCKER_BUILDKIT=0 docker build -q -t "$1" "$2" 2>&1)" || { echo "$out" >&2; return 1; }
}

# apt-get inside a rootfs; no service may start there.
chroot_apt() {
  local root=$1
  shift
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc"
  chroot "$root" sh -c "apt-get update -q >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $* >/dev/null &&
    apt-get clean && rm -rf /var/lib/apt/lists/*" </dev/null
  umount "$root/proc"
  rm -f "$root/usr/sbin/policy-rc.d"
  : >"$root/etc/resolv.conf"
}

# Network- and disk-bound: runs in the background while Go compiles.
build_rootfs() {
  local start=$SECONDS
  if ! command -v debootstrap >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
  fi
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$work/rootfs-min" >"$work/debootstrap.log"
  cp -a "$work/rootfs-min" "$work/rootfs-node"
  mv "$work/rootfs-min" "$work/rootfs-proxy"
  # The packages of kind's images/base/Dockerfile that matter here, with Debian's
  # containerd, runc and CNI plugins in place of kind's own builds.
  chroot_apt "$work/rootfs-node" systemd conntrack iptables nftables iproute2 ethtool util-linux \
    mount kmod libseccomp2 pigz bash ca-certificates curl jq procps containerd runc \
    containernetworking-plugins
  chroot_apt "$work/rootfs-proxy" iptables conntrack kmod
  log "rootfs (debootstrap $DEBIAN_SUITE + packages) ready in $((SECONDS - start))s"
}

start=$SECONDS
build_rootfs >"$work/rootfs.log" 2>&1 &
rootfs_job=$!

# CPU-bound: the Go builds (the Kubernetes ones are shared with the control plane).
bash "$cluster_dir/build.sh"
mapfile -t dirs < <(bash "$cluster_dir/build.sh" --print-dirs)
etcd_bin="${dirs[0]}/etcd" kube_dir="${dirs[1]}"
# The image tags kubeadm will ask for.
mapfile -t component_images < <("$kube_dir/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION")
image_tag() { printf '%s\n' "${component_images[@]}" | grep "/$1:" | head -1; }
coredns_image="$(image_tag coredns)" pause_image="$(image_tag pause)"
# These tags are built here, saved into the node image and removed: never over an image
# of the same name that was already in the engine (one pulled from the real registry).
for image in "${component_images[@]}"; do
  if docker image inspect "$image" >/dev/null 2>&1 &&
    [[ "$(docker image inspect -f "{{index .Config.Labels \"$RECIPE_LABEL\"}}" "$image")" == "" ]]; then
    echo "build.sh: $image is already in the engine and not ours; not overwriting it" >&2
    exit 1
  fi
done
intermediate+=("${component_images[@]}")
coredns_version="${coredns_image##*:}"
coredns_bin="$KIND_CACHE_DIR/coredns-$coredns_version/coredns"
if [[ ! -x "$coredns_bin" ]]; then
  t=$SECONDS
  mkdir -p "$work/coredns"
  cp "$here/node/coredns/main.go" "$work/coredns/"
  printf 'module %s.invalid/coredns-build\n\ngo 1.24.0\n\nrequire github.com/coredns/coredns %s\n' \
    "$PROJECT" "$coredns_version" >"$work/coredns/go.mod"
  (cd "$work/coredns" && "$GO" mod tidy && "$GO" build -trimpath -ldflags "-s -w" -o "$coredns_bin" .)
  log "CoreDNS $coredns_version built in $((SECONDS - t))s"
fi
# pause: Kubernetes' own pause.c (in the k8s.io/kubernetes module), static.
mkdir -p "$work/images/pause"
gcc -Os -static -DVERSION="${pause_image##*:}-$PROJECT" -o "$work/images/pause/pause" \
  "$("$GO" env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/build/pause/linux/pause.c"
strip "$work/images/pause/pause"
log "Go builds done in $((SECONDS - start))s; waiting for the rootfs"

if ! wait "$rootfs_job"; then
  rootfs_job=""
  cat "$work/rootfs.log" >&2
  exit 1
fi
rootfs_job=""
tail -1 "$work/rootfs.log" >&2

# Base image: kind's images/base, on the Debian rootfs.
t=$SECONDS
root="$work/rootfs-node" files="$kind_src/images/base/files"
install -m 0755 "$files"/usr/local/bin/* "$root/usr/local/bin/"
mkdir -p "$root/kind/bin" "$root/etc/containerd" "$root/etc/default" "$root/etc/sysctl.d" \
  "$root/etc/systemd/system/kubelet.service.d" "$root/etc/cni/net.d" "$root/opt/cni/bin" \
  "$root/etc/kubernetes/manifests"
install -m 0644 "$files/kind/README.txt" "$root/kind/"
install -m 0755 "$files"/kind/bin/* "$root/kind/bin/"
install -m 0644 "$files/etc/crictl.yaml" "$root/etc/"
install -m 0644 "$files/etc/containerd/config.toml" "$root/etc/containerd/"
install -m 0644 "$files/etc/default/kubelet" "$root/etc/default/"
install -m 0644 "$files"/etc/sysctl.d/* "$root/etc/sysctl.d/"
install -m 0644 "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice \
  "$root/etc/systemd/system/"
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$root/etc/systemd/system/kubelet.service.d/"
# Debian's paths -> the ones kind's units and config use.
ln -sf /usr/bin/containerd "$root/usr/local/bin/containerd"
for f in "$root"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/${f##*/}" "$root/opt/cni/bin/"; done
# containerd: no fuse-overlayfs proxy plugin (not installed); the pause tag kubeadm
# expects; restrict_oom_score_adj, because without CAP_SYS_RESOURCE runc cannot
# give the pause container oom_score_adj -998 and every pod sandbox fails
# ("can't get final child's PID from pipe: EOF").
sed -i '/^\[proxy_plugins\]/,/^  address = /d' "$root/etc/containerd/config.toml"
sed -i -e 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' \
  -e "s#registry.k8s.io/pause:[0-9.]*#$pause_image#" "$root/etc/containerd/config.toml"
grep -q 'restrict_oom_score_adj = true' "$root/etc/containerd/config.toml"
chroot "$root" ctr oci spec |
  jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
  jq 'del(.process.rlimits)' >"$root/etc/containerd/cri-base.json"
chroot "$root" sh -ec '
  find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
  rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
    /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
    /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
  echo ReadKMsg=no >> /etc/systemd/journald.conf
  ln -sf /usr/lib/systemd/systemd /sbin/init
  systemctl enable kubelet.service containerd.service undo-mount-hacks.service
  systemctl mask systemd-binfmt.service' 2>/dev/null
# One node, so one bridge is the whole pod network (the kind config disables kindnetd).
install -m 0644 "$here/node/10-bridge.conflist" "$root/etc/cni/net.d/"
tar -C "$root" -c . | docker import - "$PROJECT/kind-rootfs:$DEBIAN_SUITE" >/dev/null
printf 'FROM %s\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\n' \
  "$PROJECT/kind-rootfs:$DEBIAN_SUITE" | docker_build "$PROJECT/kind-base:$DEBIAN_SUITE" -
# kube-proxy's runtime: iptables and conntrack behind the iptables wrapper.
proxy="$work/rootfs-proxy"
install -m 0755 "$here/node/iptables-wrapper" "$proxy/usr/sbin/iptables-wrapper"
for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf iptables-wrapper "$proxy/usr/sbin/$c"
done
tar -C "$proxy" -c . | docker import - "$PROJECT/kube-proxy-rootfs:$DEBIAN_SUITE" >/dev/null
rm -rf "$work/rootfs-node" "$work/rootfs-proxy"
log "base images in $((SECONDS - t))s"

# Component images, tagged as kubeadm asks for them.
t=$SECONDS
component_image() { # tag binary [base]
  local ctx="$work/images/${1//[\/:]/_}" name="${2##*/}"
  mkdir -p "$ctx"
  cp "$2" "$ctx/$name"
  {
    echo "FROM ${3:-scratch}"
    echo "LABEL $RECIPE_LABEL=$recipe"
    echo "COPY $name /usr/local/bin/$name"
    echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    if [[ -z "${3:-}" ]]; then echo "ENTRYPOINT [\"/usr/local/bin/$name\"]"; fi
  } >"$ctx/Dockerfile"
  docker_build "$1" "$ctx"
}
for image in "${component_images[@]}"; do
  case "$image" in
    */kube-proxy:*) component_image "$image" "$kube_dir/kube-proxy" "$PROJECT/kube-proxy-rootfs:$DEBIAN_SUITE" ;;
    */kube-*:*) name="${image##*/}"; component_image "$image" "$kube_dir/${name%%:*}" ;;
    */etcd:*) component_image "$image" "$etcd_bin" ;; # etcd of tests/cluster, under kubeadm's tag
    */coredns:*) component_image "$image" "$coredns_bin" ;;
    */pause:*)
      printf 'FROM scratch\nLABEL %s=%s\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' \
        "$RECIPE_LABEL" "$recipe" >"$work/images/pause/Dockerfile"
      docker_build "$image" "$work/images/pause"
      ;;
    *) echo "build.sh: no recipe for $image" >&2; exit 1 ;;
  esac
done
docker save "${component_images[@]}" -o "$work/images.tar"
log "component images in $((SECONDS - t))s: ${component_images[*]}"

# Node image: what `kind build node-image` does, with the images above.
t=$SECONDS
docker run -d --name "$builder" --privileged --security-opt seccomp=unconfined \
  --entrypoint=sleep "$PROJECT/kind-base:$DEBIAN_SUITE" infinity >/dev/null
for b in kubelet kubeadm kubectl; do docker cp "$kube_dir/$b" "$builder:/usr/bin/$b"; done
docker exec "$builder" sh -c "chown root:root /usr/bin/kube* && chmod 0755 /usr/bin/kube* &&
  printf %s $KUBERNETES_VERSION > /kind/version"
docker exec "$builder" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &
  for _ in $(seq 100); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1'
# The flags of kind's own importer (pkg/build/nodeimage/imageimporter.go).
docker exec -i "$builder" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
  --all-platforms --no-unpack --digests - <"$work/images.tar" >/dev/null
# (the builder's PID 1 is sleep, which reaps nothing: wait for containerd to be a zombie)
docker exec "$builder" sh -c 'pkill containerd; while pgrep -r R,S,D containerd >/dev/null; do sleep 0.1; done
  rm -rf /tmp/*'
previous="$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE" 2>/dev/null || true)"
docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' \
  --change "LABEL $RECIPE_LABEL=$recipe" "$builder" "$NODE_IMAGE" >/dev/null
docker rm -f -v "$builder" >/dev/null
# The image this one replaces, unless a container still uses it.
[[ -n "$previous" ]] && docker rmi "$previous" >/dev/null 2>&1 || true
log "node image in $((SECONDS - t))s: $(docker image inspect -f '{{.Size}}' "$NODE_IMAGE" | numfmt --to=iec)"
choose "$NODE_IMAGE" offline
log "offline build done in $((SECONDS - total))s"
