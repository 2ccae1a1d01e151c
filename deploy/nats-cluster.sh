#!/usr/bin/env bash
# Starts, stops or inspects a 3-node NATS JetStream cluster on loopback ports
# from deploy/nats/local-{1,2,3}.conf (clients on 127.0.0.1:14221-14223).
#
#   deploy/nats-cluster.sh start [--sync-always]   # returns once all three are healthy
#   deploy/nats-cluster.sh status
#   deploy/nats-cluster.sh kill N                   # SIGKILL node N (1-3), to try failover
#   deploy/nats-cluster.sh restart N
#   deploy/nats-cluster.sh stop                     # SIGTERM all, wait for them to exit
#
# State (stores, logs, pid files) goes to $NATS_CLUSTER_DIR, default
# ./nats-cluster-data. --sync-always (nats-server 2.10+) runs copies of the
# configs with sync-always.inc in place of sync.inc. The server binary is
# $NATS_SERVER_BIN, else nats-server on PATH, else /usr/sbin/nats-server.
#
# Then, for example:
#   segmentd serve --nats-url nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223 --nats-replicas 3
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
state="${NATS_CLUSTER_DIR:-$PWD/nats-cluster-data}"
bin="${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
patience_s="${NATS_CLUSTER_PATIENCE_S:-30}"

die() { echo "nats-cluster: $*" >&2; exit 1; }

pid_of() { cat "$state/local-$1.pid" 2>/dev/null || true; }

running() {
  local pid
  pid="$(pid_of "$1")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# JetStream-aware health: 200 once the node is up and its JetStream is current.
healthy() {
  local port="1822$1"
  if command -v curl >/dev/null 2>&1; then
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1
  else
    # No curl: a raw HTTP request through bash's /dev/tcp.
    exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
    printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    local status
    IFS= read -r status <&3 || true
    exec 3>&-
    [[ "$status" == *" 200 "* ]]
  fi
}

config_dir() { cat "$state/config-dir" 2>/dev/null || echo "$here/nats"; }

launch() {
  local i="$1" conf
  conf="$(config_dir)/local-$i.conf"
  running "$i" && die "node $i is already running (pid $(pid_of "$i"))"
  # The configs' store_dir is relative: run in the state directory. setsid
  # detaches the server from this shell's job control.
  (cd "$state" && setsid "$bin" -c "$conf" -P "$state/local-$i.pid" >>"$state/local-$i.log" 2>&1 < /dev/null &)
  local waited=0
  until [ -s "$state/local-$i.pid" ] && running "$i"; do
    sleep 0.1; waited=$((waited + 1))
    [ "$waited" -lt $((patience_s * 10)) ] || die "node $i did not start; see $state/local-$i.log"
  done
}

wait_healthy() {
  local waited=0 i
  for i in "$@"; do
    until healthy "$i"; do
      running "$i" || die "node $i exited; see $state/local-$i.log"
      sleep 0.2; waited=$((waited + 1))
      [ "$waited" -lt $((patience_s * 5)) ] || die "node $i not healthy within ${patience_s}s; see $state/local-$i.log"
    done
  done
}

cmd="${1:-}"
shift || true
case "$cmd" in
  start)
    mkdir -p "$state"
    if [ "${1:-}" = "--sync-always" ]; then
      mkdir -p "$state/conf"
      cp "$here"/nats/local-*.conf "$state/conf/"
      cp "$here/nats/sync-always.inc" "$state/conf/sync.inc"
      echo "$state/conf" > "$state/config-dir"
    else
      rm -f "$state/config-dir"
    fi
    for i in 1 2 3; do launch "$i"; done
    wait_healthy 1 2 3
    echo "nats-cluster: 3 nodes healthy; clients: nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223"
    ;;
  status)
    for i in 1 2 3; do
      if running "$i"; then
        if healthy "$i"; then h=healthy; else h="not healthy"; fi
        echo "local-$i: running (pid $(pid_of "$i")), $h"
      else
        echo "local-$i: stopped"
      fi
    done
    ;;
  kill)
    i="${1:?node number 1-3}"
    running "$i" || die "node $i is not running"
    kill -KILL "$(pid_of "$i")"
    echo "nats-cluster: node $i killed"
    ;;
  restart)
    i="${1:?node number 1-3}"
    if running "$i"; then kill -TERM "$(pid_of "$i")"; fi
    while running "$i"; do sleep 0.1; done
    rm -f "$state/local-$i.pid"
    launch "$i"
    wait_healthy "$i"
    echo "nats-cluster: node $i healthy again"
    ;;
  stop)
    for i in 1 2 3; do
      if running "$i"; then kill -TERM "$(pid_of "$i")"; fi
    done
    for i in 1 2 3; do
      waited=0
      while running "$i"; do
        sleep 0.1; waited=$((waited + 1))
        if [ "$waited" -gt $((patience_s * 10)) ]; then kill -KILL "$(pid_of "$i")"; fi
      done
      rm -f "$state/local-$i.pid"
    done
    echo "nats-cluster: stopped"
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
