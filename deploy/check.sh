#!/usr/bin/env bash
# Checks everything in deploy/ with the real tools, as CI does (.ci/run):
#  1. `nats-server -t` accepts every NATS config (deploy/nats/*.conf) with
#     the nats-server here, and, where a nats-server 2.10+ is available
#     ($NATS_SERVER_BIN_SYNC, or the one here if new enough), every config
#     again with sync-always.inc in place of sync.inc (what compose runs);
#  2. the compose file passes `docker compose config` (or docker-compose's);
#  3. the systemd units pass `systemd-analyze verify`, where it exists.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=0

version_of() { "$1" --version | sed -n 's/^nats-server: v\{0,1\}\([0-9][0-9.]*\).*/\1/p'; }
at_least_2_10() {
  local major minor
  IFS=. read -r major minor _ <<<"$1"
  [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }
}

echo "-- nats-server $(version_of "$bin") -t: every config as committed"
for conf in "$here"/nats/*.conf; do
  if ! "$bin" -t -c "$conf" 2>&1; then failed=1; fi
done

sync_bin="${NATS_SERVER_BIN_SYNC:-}"
if [ -z "$sync_bin" ] && at_least_2_10 "$(version_of "$bin")"; then sync_bin="$bin"; fi
if [ -n "$sync_bin" ]; then
  echo "-- nats-server $(version_of "$sync_bin") -t: every config with sync-always.inc as sync.inc"
  cp "$here"/nats/*.conf "$scratch/"
  cp "$here/nats/sync-always.inc" "$scratch/sync.inc"
  grep -q '^sync_interval: always$' "$scratch/sync.inc" || { echo "sync-always.inc lost its setting"; failed=1; }
  for conf in "$scratch"/*.conf; do
    if ! "$sync_bin" -t -c "$conf" 2>&1; then failed=1; fi
  done
else
  echo "-- skipped: no nats-server 2.10+ to check the sync-always variant (set NATS_SERVER_BIN_SYNC)"
fi

echo "-- compose file"
if docker compose version >/dev/null 2>&1; then
  docker compose -f "$here/compose.yaml" config -q || failed=1
  echo "docker compose config: ok"
elif command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f "$here/compose.yaml" config -q || failed=1
  echo "docker-compose $(docker-compose version --short) config: ok"
else
  echo "neither 'docker compose' nor docker-compose is installed"; failed=1
fi

if command -v systemd-analyze >/dev/null 2>&1; then
  echo "-- systemd-analyze verify (binaries stubbed: they are not installed here)"
  mkdir -p "$scratch/units"
  cp "$here"/systemd/*.service "$scratch/units/"
  sed -i 's|/usr/local/bin/segmentd|/bin/true|; s|/usr/sbin/nats-server|/bin/true|g' "$scratch"/units/*.service
  if systemd-analyze verify "$scratch"/units/*.service; then echo "units: ok"; else failed=1; fi
fi

if [ "$failed" -ne 0 ]; then echo "deploy check FAILED"; exit 1; fi
echo "deploy check passed"
