#!/usr/bin/env bash
# Publishes spread over a Redis Cluster: sseor-bench starts a cluster of its own (3 masters,
# no replicas), one sseor instance on it with a stream per user, and publishes through the
# library (sseor::Publisher) to random users; then the same on a single Redis. Prints one
# JSON line: publishes/s on each, every delivery counted, each master's share of the
# publishes and of the CPU. See bench/README.md.
#
#   bench/cluster.sh                       # 10,000 users, 100,000 events
#   bench/cluster.sh --users 2000          # where memory is tight
#   bench/cluster.sh --events 20000 --no-single
#
# The JSON line also goes to target/bench/cluster-DATE.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "installing redis-server (redis-server, redis-cli)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

cargo build --release -p sseor-server -p sseor-bench >&2

# One socket per stream in the bench and in the server.
ulimit -n "$(ulimit -Hn)"

mkdir -p target/bench
out="target/bench/cluster-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
echo "Measured $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))" >&2
# sseor-bench stops every process it started on SIGINT and SIGTERM: pass them on.
release=${CARGO_TARGET_DIR:-target}/release
"$release/sseor-bench" --server "$release/sseor" cluster "$@" > >(tee -a "$out") &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait; exit 130' INT TERM
status=0
wait "$child" || status=$?
echo "JSON line: $out" >&2
exit "$status"
