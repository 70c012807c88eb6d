#!/usr/bin/env bash
# Makes a Docker engine reachable for the kind tests, touching as little as it can:
#   1. an engine that answers `docker info` is used as it is (never reconfigured:
#      it may be a developer's own);
#   2. otherwise, as root, Debian's docker.io (+ jq) is installed when dockerd is
#      missing, and dockerd is started in the background with this project's
#      own config file (never /etc/docker/daemon.json). When the capability
#      bounding set lacks CAP_SYS_RESOURCE, that config makes the runc wrapper
#      node/runc-nosysres the default runtime (privileged containers fail without it).
# The dockerd it starts keeps running after the tests (other runs reuse it); its
# pid and log are in $KIND_CACHE_DIR/dockerd.{pid,log}.
#
# Exit status: 0 engine reachable; 3 no engine and none can be started here
# (the reason is printed; the kind tests then skip with it, or fail under CI=true);
# other: failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR="${KIND_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2-token-operator/kind}"
log() { printf '[e2e/engine %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
unavailable() { log "no container engine: $*"; exit 3; }

engine_up() { docker info >/dev/null 2>&1; }

if command -v docker >/dev/null && engine_up; then
  log "using the running engine: $(docker info --format 'dockerd {{.ServerVersion}}, default runtime {{.DefaultRuntime}}')"
  exit 0
fi
[[ -n "${DOCKER_HOST:-}" ]] && unavailable "DOCKER_HOST=$DOCKER_HOST does not answer"
[[ $(id -u) == 0 ]] || unavailable "no engine answers and installing or starting one needs root"

start=$SECONDS
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null || ! command -v jq >/dev/null; then
  command -v apt-get >/dev/null || unavailable "no engine answers and there is no apt-get to install docker.io"
  log "installing Debian's docker.io and jq"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io jq >/dev/null
  log "installed in $((SECONDS - start))s"
fi
# Installing may have started an engine through its init script; then use it.
if engine_up; then
  log "engine started by the package: $(docker info --format 'dockerd {{.ServerVersion}}')"
  exit 0
fi

mkdir -p "$CACHE_DIR" /lib/modules # kind bind-mounts /lib/modules into its nodes
config="$CACHE_DIR/daemon.json"
# CAP_SYS_RESOURCE is capability 24.
if (($(awk '/^CapBnd/ {print "0x" $2}' /proc/self/status) >> 24 & 1)); then
  echo '{}' >"$config"
else
  log "the capability bounding set lacks CAP_SYS_RESOURCE: using the runc wrapper"
  install -m 0755 "$here/node/runc-nosysres" "$CACHE_DIR/runc-nosysres"
  cat >"$config" <<JSON
{
  "runtimes": { "runc-nosysres": { "path": "$CACHE_DIR/runc-nosysres" } },
  "default-runtime": "runc-nosysres"
}
JSON
fi
# Nothing answers, so pid files left by an engine that was killed are stale (dockerd
# refuses to start while its pid file names a process, even a zombie or a reused pid).
remove_stale_pidfile() { # file command-name
  local pid state
  [[ -f "$1" ]] || return 0
  pid="$(cat "$1")"
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" && "$state" != Z ]]; then
    log "$2 (pid $pid) runs but no engine answers: not starting another"
    exit 1
  fi
  log "removing the stale $1"
  rm -f "$1"
}
remove_stale_pidfile /var/run/docker.pid dockerd
remove_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
log "starting dockerd (config $config, log $CACHE_DIR/dockerd.log)"
setsid nohup dockerd --config-file "$config" >"$CACHE_DIR/dockerd.log" 2>&1 </dev/null &
echo $! >"$CACHE_DIR/dockerd.pid"
for _ in $(seq 240); do
  engine_up && break
  kill -0 "$(cat "$CACHE_DIR/dockerd.pid")" 2>/dev/null || {
    tail -20 "$CACHE_DIR/dockerd.log" >&2
    log "dockerd exited"
    exit 1
  }
  sleep 0.25
done
engine_up || { tail -20 "$CACHE_DIR/dockerd.log" >&2; log "dockerd did not answer in 60s"; exit 1; }
log "dockerd $(docker info --format '{{.ServerVersion}}') up (pid $(cat "$CACHE_DIR/dockerd.pid"), default runtime $(docker info --format '{{.DefaultRuntime}}')) after $((SECONDS - start))s"
