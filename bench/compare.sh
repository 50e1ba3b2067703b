#!/usr/bin/env bash
# The side-by-side comparison of sseor with nchan and Pushpin: installs the peers when
# missing, builds, runs every scenario against every server with the same parameters, and
# prints one markdown table. See bench/README.md.
#
#   bench/compare.sh                      # about 10-15 minutes on 2 cores
#   CONNECTIONS=2000 bench/compare.sh     # a quick run: 2,000 streams per scenario
#   SCALE=1 bench/compare.sh              # also 50,000 streams over 3 sseor instances
#
# The JSON lines of every run go to target/bench/compare-DATE.jsonl; the table is made from
# them by `sseor-bench table FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-10000}
SERVERS=${SERVERS-"sseor nchan pushpin"}
REDIS_SERVERS=${REDIS_SERVERS-"sseor-redis nchan-redis"}
# sseor serving HTTPS: streams over HTTP/1.1 in TLS, and over HTTP/2 (one per connection).
TLS_SERVERS=${TLS_SERVERS-"sseor-tls sseor-h2"}
SCALE=${SCALE:-0}

# The peers and Redis the chosen servers need, from Debian's packages, when missing.
wanted=" $SERVERS $REDIS_SERVERS "
missing=()
if [[ $wanted == *" nchan"* ]]; then
  command -v nginx >/dev/null || missing+=(nginx)
  [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
fi
[[ $wanted == *" pushpin "* ]] && ! command -v pushpin >/dev/null && missing+=(pushpin)
if [[ $wanted == *"-redis "* || $SCALE = 1 ]]; then
  command -v redis-server >/dev/null || missing+=(redis-server)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release -p sseor-server -p sseor-bench >&2

# Every server and the load generator hold thousands of sockets.
ulimit -n "$(ulimit -Hn)"

mkdir -p target/bench
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
out="target/bench/compare-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
release=${CARGO_TARGET_DIR:-target}/release
bench=$release/sseor-bench
# sseor-bench stops every process it started on SIGINT and SIGTERM: pass them on, then stop.
child=
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait; echo "interrupted; partial results in $out" >&2; exit 130' INT TERM

# One scenario against one server: its JSON line to the file and to stderr. A failed run
# writes a line with "error" and the comparison goes on.
run() {
  echo "== $*" >&2
  "$bench" --server "$release/sseor" "$@" > >(tee -a "$out" >&2) &
  child=$!
  wait "$child" || true
  child=
}

scenarios() {
  local target=$1 settle=$2
  local common=(--target "$target" --connections "$CONNECTIONS" --settle "$settle")
  run idle "${common[@]}"
  run broadcast "${common[@]}" --label latency --events 25 --rate 5
  run broadcast "${common[@]}" --label saturation --events 250 --rate 50
  run targeted "${common[@]}" --rate 2000 --seconds 5
  run targeted-max "${common[@]}"
}

for target in $SERVERS; do
  scenarios "$target" 1
done
# Two instances on one Redis: streams on one, publishes on the other. Subscriptions reach
# Redis asynchronously, hence the longer settle time.
for target in $REDIS_SERVERS; do
  scenarios "$target" 2
done
# sseor over TLS: the memory of idle streams, and a broadcast's latency.
for target in $TLS_SERVERS; do
  run idle --target "$target" --connections "$CONNECTIONS"
  run broadcast --target "$target" --connections "$CONNECTIONS" --label latency --events 25 --rate 5
done
# Redis's time per publish (INFO commandstats) on a fresh Redis: 40 users, 8,000 events.
for target in $REDIS_SERVERS; do
  run publish-cost --target "$target"
done
if [ "$SCALE" = 1 ]; then
  run scale --connections 50000 --instances 3 --clients 3 --events 20 --rate 5 --settle 2
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo
echo "Measured $started on $(nproc) CPUs ($cpu), $CONNECTIONS streams per run; sseor and nchan one process each (nginx worker_processes 1)."
echo
"$bench" table "$out"
echo
echo "JSON lines: $out"
