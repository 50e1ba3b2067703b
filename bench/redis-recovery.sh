#!/usr/bin/env bash
# Measures how long a release sseor (default settings) takes to be ready again after Redis
# restarts. Run from the repository root after `cargo build --release -p sseor-server`.
# Uses ports 17100 (Redis) and 17101 (sseor).
set -u
P=17100; SP=17101
redis-server --port $P --save "" --appendonly no --daemonize yes --logfile /tmp/rec-redis.log --dir /tmp
REDIS_URL=redis://127.0.0.1:$P/0 target/release/sseor --port $SP --log-format json > /tmp/rec-sseor.log 2>&1 &
S=$!
until curl -sf http://127.0.0.1:$SP/readyz >/dev/null; do sleep 0.05; done
(curl -sN "http://127.0.0.1:$SP/api/v1/sse?user_id=r" > /tmp/rec-client.out &)
sleep 0.5
for down in 1 5; do
  redis-cli -p $P shutdown nosave >/dev/null 2>&1
  until ! curl -sf http://127.0.0.1:$SP/readyz >/dev/null; do sleep 0.05; done
  sleep $down
  redis-server --port $P --save "" --appendonly no --daemonize yes --logfile /tmp/rec-redis.log --dir /tmp
  t0=$(date +%s.%N)
  until curl -sf http://127.0.0.1:$SP/readyz >/dev/null; do sleep 0.02; done
  t1=$(date +%s.%N)
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:$SP/api/v1/publish -H 'Content-Type: application/json' -d '{"user_id":"r","event":{"type":"after-restart"}}')
  echo "down ${down}s: ready again $(echo "$t1 - $t0" | bc) s after Redis restarted; publish -> $code"
done
sleep 0.3; grep -c after-restart /tmp/rec-client.out
kill $S; redis-cli -p $P shutdown nosave >/dev/null 2>&1
