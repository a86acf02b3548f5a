#!/usr/bin/env bash
# A/B of two canopy-broker builds with canopy-bench, interleaved: fan-in QoS 0 and 1, fan-out,
# and 5,000 idle connections (bytes each, connect rate). Broker pinned to CPU 0, generator to
# CPU 1, loopback only, every run bounded. Prints one JSON line per run.
# Usage: benches/ab.sh OLD_BROKER NEW_BROKER CANOPY_BENCH [ROUNDS]
set -u
A=$1; B=$2; BENCH=$3; ROUNDS=${4:-3}
ulimit -n 20000
. "$(dirname "$0")/canopy_run.sh"
run() { # build scenario args...
  local bin=$1; shift; local dir; dir=$(mktemp -d)
  start_canopy "$bin" "$dir" info
  taskset -c 1 timeout 120 $BENCH "$@" --port $BROKER_PORT --broker-pid $BROKER_PID --no-progress 2>/dev/null
  stop_canopy "$dir"
}
for r in $(seq $ROUNDS); do
  for tag in A B; do
    bin=$A; [ $tag = B ] && bin=$B
    echo "{\"tag\":\"$tag\",\"r\":$r,\"s\":\"fanin0\",\"res\":$(run $bin fanin --qos 0 --duration 4s)}"
    echo "{\"tag\":\"$tag\",\"r\":$r,\"s\":\"fanin1\",\"res\":$(run $bin fanin --qos 1 --duration 4s)}"
    echo "{\"tag\":\"$tag\",\"r\":$r,\"s\":\"fanout\",\"res\":$(run $bin fanout --duration 4s)}"
    echo "{\"tag\":\"$tag\",\"r\":$r,\"s\":\"conns\",\"res\":$(run $bin connections --connections 5000)}"
  done
done
