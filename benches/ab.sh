#!/usr/bin/env bash
# A/B of two canopy-broker builds with canopy-bench, interleaved: fan-in QoS 0 and 1, fan-out,
# and 5,000 idle connections (bytes each, connect rate). Broker pinned to CPU 0, generator to
# CPU 1, loopback only, every run bounded. Prints one JSON line per run.
# Usage: benches/ab.sh OLD_BROKER NEW_BROKER CANOPY_BENCH [ROUNDS]
set -u
A=$1; B=$2; BENCH=$3; ROUNDS=${4:-3}
ulimit -n 20000
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
run() { # build scenario args...
  local bin=$1; shift; local port; port=$(free_port); local dir; dir=$(mktemp -d)
  cat > $dir/c.toml <<T
durability = "memory"
sys_interval = "0s"
data_dir = "$dir/data"
[[listener]]
bind = "127.0.0.1:$port"
[limits]
max_inflight = 64
max_queued_messages = 1000
T
  taskset -c 0 $bin --config $dir/c.toml > $dir/log 2>&1 & local pid=$!
  for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  taskset -c 1 timeout 120 $BENCH "$@" --port $port --broker-pid $pid --no-progress 2>/dev/null
  kill $pid; wait $pid 2>/dev/null; rm -rf $dir
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
