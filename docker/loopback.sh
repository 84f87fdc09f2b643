#!/usr/bin/env bash
# The layout of docker/compose.yml without Docker: three simulator app nodes, a Redis of its
# own and two frontdoor nodes sharing it, all on loopback ports. The frontdoor config is
# docker/frontdoor.toml with the compose addresses replaced by loopback ones (one file per
# node, since two processes on one host cannot share a listen port); nothing else differs.
#
#   cargo build && bash docker/loopback.sh        # Ctrl-C stops everything
#
# Settings (environment; defaults in brackets):
#   FRONTDOOR_BIN               the frontdoor binary [target/release/frontdoor if built, else target/debug/frontdoor]
#   LOOPBACK_STATE              folder for configs, logs, pid and port files [a new temporary folder, removed on exit; a given one is kept]
#   LOOPBACK_APP_PORTS          the three simulators' ports ["3001 3002 3003"]
#   LOOPBACK_HTTPS_PORTS        frontdoor a and b, HTTPS ["8443 8444"]
#   LOOPBACK_HTTP_PORTS         frontdoor a and b, HTTP (redirects) ["8080 8081"]
#   LOOPBACK_ADMIN_PORTS        frontdoor a and b, admin (/metrics) ["9901 9902"]
#   LOOPBACK_REDIS_PORT         the Redis started here [6380, so a system Redis on 6379 is left alone]
#   LOOPBACK_WORKERS            workers per simulator [4, as in compose.yml]
#   LOOPBACK_SERVICE_MS         simulator service time [25, as in compose.yml]
#   LOOPBACK_MANUAL_UPDATE_MS   simulator manual update time [3000, the simulator's default]
#   LOOPBACK_VISIBILITY_TIMEOUT [jobs] visibility-timeout [as in frontdoor.toml]
#
# The state folder, for scripts and tests that drive the layout:
#   layout.env        NAME=VALUE lines: APP_1..APP_3, REDIS, FRONTDOOR_{A,B}_{HTTPS,HTTP,ADMIN} (host:port)
#   pids/<name>       the pid of app-1..app-3, redis, frontdoor-a, frontdoor-b (kill one to fail it)
#   ready             written once every listener accepts
#   frontdoor-{a,b}.toml, tls/cert.pem, tls/key.pem (a certificate already there is kept), *.log
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

bin=${FRONTDOOR_BIN:-}
if [ -z "$bin" ]; then
  bin="$root/target/debug/frontdoor"
  [ -x "$root/target/release/frontdoor" ] && bin="$root/target/release/frontdoor"
fi
[ -x "$bin" ] || { echo "loopback: no frontdoor binary at $bin (cargo build, or set FRONTDOOR_BIN)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "loopback: redis-server not found (bash .ci/setup installs it)" >&2; exit 1; }

read -r -a app_ports <<<"${LOOPBACK_APP_PORTS:-3001 3002 3003}"
read -r -a https_ports <<<"${LOOPBACK_HTTPS_PORTS:-8443 8444}"
read -r -a http_ports <<<"${LOOPBACK_HTTP_PORTS:-8080 8081}"
read -r -a admin_ports <<<"${LOOPBACK_ADMIN_PORTS:-9901 9902}"
redis_port=${LOOPBACK_REDIS_PORT:-6380}
[ ${#app_ports[@]} -eq 3 ] && [ ${#https_ports[@]} -eq 2 ] && [ ${#http_ports[@]} -eq 2 ] &&
  [ ${#admin_ports[@]} -eq 2 ] || { echo "loopback: three app ports and two of each frontdoor port" >&2; exit 1; }

state=${LOOPBACK_STATE:-}
made_state=""
if [ -z "$state" ]; then state=$(mktemp -d); made_state=1; fi
mkdir -p "$state/pids" "$state/tls" "$state/redis"
rm -f "$state/ready" "$state"/pids/*

pids=()
# SIGINT is frontdoor's (Pingora's) fast shutdown; SIGTERM would drain for the config's
# grace period. The simulators and Redis stop at once on either.
stop() {
  local rc=$?
  trap - EXIT
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$state/ready"
  if [ -n "$made_state" ]; then rm -rf "$state"; fi
  exit "$rc"
}
trap stop EXIT
trap 'exit 0' INT TERM

# start NAME COMMAND...: runs COMMAND in the background, logging to NAME.log.
start() {
  local name=$1; shift
  "$@" >"$state/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$state/pids/$name"
}

# Waits up to 20 s for a listener on 127.0.0.1:PORT; on failure shows NAME's log.
wait_port() {
  for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done
  echo "loopback: $2 never listened on 127.0.0.1:$1" >&2
  cat "$state/$2.log" >&2 || true
  exit 1
}

"$bin" dev-cert "$state/tls/cert.pem" "$state/tls/key.pem" >/dev/null
start redis redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$state/redis"
for i in 1 2 3; do
  start "app-$i" "$bin" simulate --listen "127.0.0.1:${app_ports[i - 1]}" \
    --workers "${LOOPBACK_WORKERS:-4}" --service-ms "${LOOPBACK_SERVICE_MS:-25}" \
    --manual-update-ms "${LOOPBACK_MANUAL_UPDATE_MS:-3000}"
done

# docker/frontdoor.toml with loopback addresses for node $1 (index 0 or 1). The certificate
# paths stay as they are: relative to the config, which lives in $state beside tls/.
config() {
  local sed_args=(
    -e "s|^https = \"[^\"]*\"|https = \"127.0.0.1:${https_ports[$1]}\"|"
    -e "s|^http = \"[^\"]*\"|http = \"127.0.0.1:${http_ports[$1]}\"|"
    -e "s|^admin = \"[^\"]*\"|admin = \"127.0.0.1:${admin_ports[$1]}\"|"
    -e "s|^redis-url = \"[^\"]*\"|redis-url = \"redis://127.0.0.1:$redis_port/0\"|"
  )
  for i in 1 2 3; do sed_args+=(-e "s|\"app-$i:3000\"|\"127.0.0.1:${app_ports[i - 1]}\"|"); done
  if [ -n "${LOOPBACK_VISIBILITY_TIMEOUT:-}" ]; then
    sed_args+=(-e "s|^visibility-timeout = \"[^\"]*\"|visibility-timeout = \"$LOOPBACK_VISIBILITY_TIMEOUT\"|")
  fi
  sed "${sed_args[@]}" "$here/frontdoor.toml"
}
for node in a b; do
  n=0; [ "$node" = b ] && n=1
  config "$n" >"$state/frontdoor-$node.toml"
  # Every compose address must have been replaced; fail here rather than bind 0.0.0.0.
  if grep -nE '0\.0\.0\.0|"app-[0-9]|redis://redis' "$state/frontdoor-$node.toml" >&2; then
    echo "loopback: docker/frontdoor.toml has addresses this script does not replace (above)" >&2
    exit 1
  fi
  "$bin" check "$state/frontdoor-$node.toml" >/dev/null
done

wait_port "$redis_port" redis
for i in 1 2 3; do wait_port "${app_ports[i - 1]}" "app-$i"; done
for node in a b; do
  start "frontdoor-$node" "$bin" run "$state/frontdoor-$node.toml"
done
for n in 0 1; do
  node=$([ "$n" = 0 ] && echo a || echo b)
  wait_port "${https_ports[$n]}" "frontdoor-$node"
  wait_port "${admin_ports[$n]}" "frontdoor-$node"
done

{
  for i in 1 2 3; do echo "APP_$i=127.0.0.1:${app_ports[i - 1]}"; done
  echo "REDIS=127.0.0.1:$redis_port"
  for n in 0 1; do
    node=$([ "$n" = 0 ] && echo A || echo B)
    echo "FRONTDOOR_${node}_HTTPS=127.0.0.1:${https_ports[$n]}"
    echo "FRONTDOOR_${node}_HTTP=127.0.0.1:${http_ports[$n]}"
    echo "FRONTDOOR_${node}_ADMIN=127.0.0.1:${admin_ports[$n]}"
  done
} >"$state/layout.env"
touch "$state/ready"

cat <<EOF
frontdoor loopback layout (state in $state; Ctrl-C stops everything)
  frontdoor-a  https://localhost:${https_ports[0]}/  admin http://127.0.0.1:${admin_ports[0]}/metrics  pid $(cat "$state/pids/frontdoor-a")
  frontdoor-b  https://localhost:${https_ports[1]}/  admin http://127.0.0.1:${admin_ports[1]}/metrics  pid $(cat "$state/pids/frontdoor-b")
  app-1..3     http://127.0.0.1:${app_ports[0]}/ http://127.0.0.1:${app_ports[1]}/ http://127.0.0.1:${app_ports[2]}/  (/_sim/stats)
  redis        127.0.0.1:$redis_port
  logs         $state/*.log; pids in $state/pids/ (kill -9 one to fail that node)
  try          curl -k -X POST https://localhost:${https_ports[1]}/courses/mit/physics/manual_update
EOF

# Until Ctrl-C or TERM: a node that dies (or is killed by the caller) leaves the others up.
wait
