#!/usr/bin/env bash
# The side-by-side comparison of sseor with nchan and Pushpin: installs the peers when
# missing, builds, runs every scenario against every server with the same parameters, and
# prints one markdown table. See bench/README.md.
#
#   bench/compare.sh                      # about 10-15 minutes on 2 cores
#   CONNECTIONS=2000 bench/compare.sh     # a quick run: 2,000 streams per scenario
#   SCALE=1 bench/compare.sh              # also 50,000 streams over 3 sseor instances
#   PIN=0 bench/compare.sh                # no latency runs with the load generator pinned
#   ROUNDS=1 bench/compare.sh             # each latency scenario once rather than 3 times
#
# The latency scenarios run twice: as every other scenario, with the servers and the load
# generator sharing every CPU, and with the servers on CPU 0 and the load generator on the
# others (`taskset`), so that the figure is the server's rather than the machine's
# scheduling (PIN=1, the default on a machine of 2 CPUs or more).
#
# A latency figure moves by tens of percent from one run to the next on a shared machine:
# the latency scenarios run ROUNDS times (3), the servers taking turns, and the table shows
# the median round.
#
# The JSON lines of every run go to target/bench/compare-DATE.jsonl; the table is made from
# them by `sseor-bench table FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-10000}
SERVERS=${SERVERS-"sseor nchan pushpin"}
REDIS_SERVERS=${REDIS_SERVERS-"sseor-redis nchan-redis"}
# An application that embeds the library (sseor-app), served by sseor::serve,
# Manager::serve and axum::serve.
APP_SERVERS=${APP_SERVERS-"app-sseor-serve app-manager-serve app-axum-serve"}
# sseor serving HTTPS: streams over HTTP/1.1 in TLS, and over HTTP/2 (one per connection).
TLS_SERVERS=${TLS_SERVERS-"sseor-tls sseor-h2"}
# sseor-floor, the least a server of streams does: the latency scenarios against it show
# how much of a latency figure is the machine's and the load generator's (FLOOR=0: not run).
FLOOR=${FLOOR:-1}
SCALE=${SCALE:-0}
PIN=${PIN:-1}
ROUNDS=${ROUNDS:-3}
if [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null; then
  PIN=0
fi

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

# sseor-bench's binaries: sseor-bench, sseor-app (the application of the app-* targets) and
# sseor-floor.
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
  run_with "" "$@"
}

# The same, started through $1 (a command prefix such as `taskset -c 1`).
run_with() {
  local prefix=$1
  shift
  echo "== $prefix $*" >&2
  $prefix "$bench" --server "$release/sseor" --app "$release/sseor-app" "$@" > >(tee -a "$out" >&2) &
  child=$!
  wait "$child" || true
  child=
}

# A scenario run with the servers on CPU 0 and the load generator on the other CPUs.
pinned() {
  [ "$PIN" = 1 ] || return 0
  local scenario=$1
  shift
  run_with "taskset -c 1-$(($(nproc) - 1))" "$scenario" --server-cpus 0 "$@"
}

# The four latency scenarios of one target, shared and pinned.
latency() {
  local common=(--target "$1" --connections "$CONNECTIONS" --settle "$2")
  run broadcast "${common[@]}" --label latency --events 25 --rate 5
  pinned broadcast "${common[@]}" --label latency-pinned --events 25 --rate 5
  run targeted "${common[@]}" --rate 2000 --seconds 5
  pinned targeted "${common[@]}" --label pinned --rate 2000 --seconds 5
}

# The latency scenarios' further rounds: every target of $1 in turn, settling $2 s.
more_rounds() {
  local targets=$1 settle=$2
  for ((round = 2; round <= ROUNDS; round++)); do
    for target in $targets; do
      latency "$target" "$settle"
    done
  done
}

scenarios() {
  local target=$1 settle=$2
  local common=(--target "$target" --connections "$CONNECTIONS" --settle "$settle")
  run idle "${common[@]}"
  latency "$target" "$settle"
  run broadcast "${common[@]}" --label saturation --events 250 --rate 50
  run targeted-max "${common[@]}"
  # Only sseor publishes many events in one request.
  if [[ $target == sseor* ]]; then
    run targeted-max "${common[@]}" --label batched --batch 100 --max-rate 200000
  fi
}

floor=
[ "$FLOOR" = 1 ] && floor=floor
for target in $SERVERS; do
  scenarios "$target" 1
done
[ -n "$floor" ] && latency floor 1
# The machine alone: one event written to every connection by bare writes, from one thread
# on CPU 0 (as a pinned server) and from one thread per CPU (FLOOR=0: not run).
if [ -n "$floor" ]; then
  run sends --connections "$CONNECTIONS" --threads "$(nproc)" --label shared
  pinned sends --connections "$CONNECTIONS" --threads 1 --label pinned
fi
more_rounds "$SERVERS $floor" 1
# The application, served three ways: what serving it costs next to the sseor binary.
for target in $APP_SERVERS; do
  common=(--target "$target" --connections "$CONNECTIONS" --settle 1)
  run idle "${common[@]}"
  run broadcast "${common[@]}" --label latency --events 25 --rate 5
  run targeted "${common[@]}" --rate 2000 --seconds 5
done
# Two instances on one Redis: streams on one, publishes on the other. Subscriptions reach
# Redis asynchronously, hence the longer settle time.
for target in $REDIS_SERVERS; do
  scenarios "$target" 2
done
more_rounds "$REDIS_SERVERS" 2
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
echo "Measured $started on $(nproc) CPUs ($cpu), $CONNECTIONS streams per run; sseor and nchan one process each (nginx worker_processes 1); rows that say so ran the servers on CPU 0 and the load generator on the others; latency rows show the median of $ROUNDS rounds."
echo
"$bench" table "$out"
echo
echo "JSON lines: $out"
