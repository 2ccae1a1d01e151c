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
# Other ports (so that several clusters can run at once, as the fault tests
# do): NATS_CLUSTER_PORTS="C1,C2,C3 R1,R2,R3 M1,M2,M3" (client, route and
# monitoring port of each node) at start runs copies of the configs with
# those ports; later commands on the same $NATS_CLUSTER_DIR find them.
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

# The monitoring port of node $1: as started (see NATS_CLUSTER_PORTS).
http_port() {
  local ports
  if ports="$(cat "$state/ports" 2>/dev/null)"; then
    echo "$ports" | awk -v i="$1" '{ split($3, m, ","); print m[i] }'
  else
    echo "1822$1"
  fi
}

# JetStream-aware health: 200 once the node is up and its JetStream is current.
healthy() {
  local port
  port="$(http_port "$1")"
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

client_urls() {
  local ports
  ports="$(cat "$state/ports" 2>/dev/null || echo "14221,14222,14223")"
  echo "$ports" | awk '{ n = split($1, c, ","); for (i = 1; i <= n; i++) printf "%snats://127.0.0.1:%s", (i > 1 ? "," : ""), c[i]; print "" }'
}

config_dir() { cat "$state/config-dir" 2>/dev/null || echo "$here/nats"; }

launch() {
  local i="$1" conf
  conf="$(config_dir)/local-$i.conf"
  running "$i" && die "node $i is already running (pid $(pid_of "$i"))"
  # The configs' store_dir is relative: run in the state directory. setsid
  # detaches the server from this shell's job control; the redirections are
  # the whole subshell's, so nothing keeps the caller's stdout open (a
  # caller reading it to the end would wait forever).
  (cd "$state" && exec setsid "$bin" -c "$conf" -P "$state/local-$i.pid") >>"$state/local-$i.log" 2>&1 </dev/null &
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
    rm -f "$state/config-dir" "$state/ports"
    if [ "${1:-}" = "--sync-always" ] || [ -n "${NATS_CLUSTER_PORTS:-}" ]; then
      mkdir -p "$state/conf"
      cp "$here"/nats/local-*.conf "$here/nats/sync.inc" "$state/conf/"
      if [ "${1:-}" = "--sync-always" ]; then cp "$here/nats/sync-always.inc" "$state/conf/sync.inc"; fi
      if [ -n "${NATS_CLUSTER_PORTS:-}" ]; then
        read -r clients routes monitors <<<"$NATS_CLUSTER_PORTS"
        IFS=, read -r c1 c2 c3 <<<"$clients"
        IFS=, read -r r1 r2 r3 <<<"$routes"
        IFS=, read -r m1 m2 m3 <<<"$monitors"
        for p in "$c1" "$c2" "$c3" "$r1" "$r2" "$r3" "$m1" "$m2" "$m3"; do
          [[ "$p" =~ ^[0-9]+$ ]] || die "NATS_CLUSTER_PORTS must be \"C1,C2,C3 R1,R2,R3 M1,M2,M3\", not \"$NATS_CLUSTER_PORTS\""
        done
        sed -i "s/:14221\b/:$c1/; s/:14222\b/:$c2/; s/:14223\b/:$c3/; s/:16221\b/:$r1/g; s/:16222\b/:$r2/g;
                s/:16223\b/:$r3/g; s/:18221\b/:$m1/; s/:18222\b/:$m2/; s/:18223\b/:$m3/" "$state"/conf/local-*.conf
        echo "$NATS_CLUSTER_PORTS" > "$state/ports"
      fi
      echo "$state/conf" > "$state/config-dir"
    fi
    for i in 1 2 3; do launch "$i"; done
    wait_healthy 1 2 3
    echo "nats-cluster: 3 nodes healthy; clients: $(client_urls)"
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
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
