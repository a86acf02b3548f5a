#!/usr/bin/env bash
# Scale-out test in network namespaces (docs/cluster-scaleout.md, issue 13).
#
# Five release brokers as five hosts on one Linux bridge: canopy-h1 (10.77.0.1, the root,
# name service on port 53, rebalancer) and canopy-h2..h5 (10.77.0.2-5, joined to the root),
# plus a load host canopy-gen (10.77.0.100). The bridge lives in its own namespace
# (canopy-sw), each host is joined to it by a veth pair, so nothing touches the host's own
# network. `cluster-load` opens --clients connections through the name service: MQTT 5.0
# ones follow Server References, the last --v311 are 3.1.1 and get proxied by the node they
# reach. It checks the spread against capacity, SIGKILLs canopy-h3's broker and
# measures the time until every client is connected again. Bounded: every step has a
# timeout, the whole run is limited by --deadline.
#
# Needs root and `ip netns` (iproute2). Without them it FAILS, unless CANOPY_SKIP_NETNS=1:
# then it prints SKIPPED and exits 0.
#
#   tests/cluster/run.sh [--plain] [--clients N] [--v311 N] [--bin-dir DIR] [--keep]
#
#   --plain     no cluster: the generator connects round-robin to the five brokers
#               (checks the namespace plumbing and the generator alone)
#   --clients   connections (default 10000)
#   --v311      how many of them speak MQTT 3.1.1 and are proxied (default 1000)
#   --bin-dir   where canopy-broker and cluster-load are (default: built with cargo --release)
#   --keep      leave the namespaces, configurations and logs for inspection
set -euo pipefail
cd "$(dirname "$0")/../.."

clients=10000
v311=1000
plain=0
keep=0
bin_dir=""
deadline=180
while [ $# -gt 0 ]; do
  case "$1" in
    --plain) plain=1 ;;
    --keep) keep=1 ;;
    --clients) clients="$2"; shift ;;
    --v311) v311="$2"; shift ;;
    --bin-dir) bin_dir="$2"; shift ;;
    --deadline) deadline="$2"; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

skip_or_fail() {
  if [ "${CANOPY_SKIP_NETNS:-}" = 1 ]; then
    echo "SKIPPED: $1 (CANOPY_SKIP_NETNS=1)"
    exit 0
  fi
  echo "FAIL: $1" >&2
  echo "This test needs root and network namespaces (apt-get install iproute2; run as root)." >&2
  echo "Set CANOPY_SKIP_NETNS=1 to skip it where namespaces cannot be created." >&2
  exit 1
}

command -v ip >/dev/null 2>&1 || skip_or_fail "the ip command (iproute2) is not installed"
[ "$(id -u)" = 0 ] || skip_or_fail "not running as root"
probe="canopy-probe-$$"
ip netns add "$probe" 2>/dev/null || skip_or_fail "ip netns add does not work here"
ip netns del "$probe"

if [ -z "$bin_dir" ]; then
  echo "==> building release binaries (canopy-broker, cluster-load)"
  cargo build --release --locked -p canopy-broker --bin canopy-broker
  cargo build --release --locked -p canopy-bench --bin cluster-load
  target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  bin_dir="$target_dir/release"
fi
broker="$bin_dir/canopy-broker"
load="$bin_dir/cluster-load"
for b in "$broker" "$load"; do
  [ -x "$b" ] || { echo "FAIL: $b is missing" >&2; exit 1; }
done

# Enough descriptors for 10,000 connections on one side and a node's share on the other.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((clients + 1000)) ]; then
  echo "FAIL: ulimit -n is $(ulimit -n); $((clients + 1000)) descriptors are needed" >&2
  exit 1
fi

work=$(mktemp -d /tmp/canopy-scaleout.XXXXXX)
hosts=(h1 h2 h3 h4 h5)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then
    echo "kept: namespaces canopy-*, files in $work"
    return
  fi
  for ns in canopy-sw canopy-gen "${hosts[@]/#/canopy-}"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> namespaces: bridge canopy-sw, hosts ${hosts[*]/#/canopy-}, load host canopy-gen"
for ns in canopy-sw canopy-gen "${hosts[@]/#/canopy-}"; do
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n canopy-sw link add br0 type bridge
ip -n canopy-sw link set br0 up
attach() { # namespace, address
  local ns=$1 addr=$2 port="p-${1#canopy-}"
  ip link add "$port" netns canopy-sw type veth peer name eth0 netns "$ns"
  ip -n canopy-sw link set "$port" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
}
for i in 1 2 3 4 5; do attach "canopy-h$i" "10.77.0.$i"; done
attach canopy-gen 10.77.0.100

echo "==> brokers ($([ "$plain" = 1 ] && echo plain || echo cluster)), $clients clients"
for i in 1 2 3 4 5; do
  cfg="$work/n$i.toml"
  {
    echo "node_id = \"n$i\""
    echo "data_dir = \"$work/n$i\""
    echo "durability = \"memory\""
    echo "[[listener]]"
    echo "bind = \"10.77.0.$i:1883\""
    echo "[auth]"
    echo "allow_anonymous = true"
    echo "[limits]"
    echo "max_connections = $((clients * 2))"
    if [ "$plain" = 0 ]; then
      echo "[cluster]"
      echo "advertise = \"10.77.0.$i:1883\""
      echo "capacity = 10000"
      echo "load_interval = \"1s\""
      if [ "$i" = 1 ]; then
        echo "rebalance = true"
        echo "[dns]"
        echo "listen = \"10.77.0.1:53\""
        echo "zone = \"canopy.local\""
      else
        echo "join = \"mqtt://10.77.0.1:1883\""
      fi
    fi
  } >"$cfg"
  RUST_LOG=warn ip netns exec "canopy-h$i" "$broker" --config "$cfg" >"$work/n$i.log" 2>&1 &
  pids+=($!)
  disown
  # The root first: the others join it.
  if [ "$i" = 1 ]; then sleep 0.5; fi
done
for i in 1 2 3 4 5; do
  ok=0
  for _ in $(seq 100); do
    if ip netns exec canopy-gen timeout 1 bash -c "exec 3<>/dev/tcp/10.77.0.$i/1883" 2>/dev/null; then
      ok=1; break
    fi
    sleep 0.1
  done
  if [ "$ok" = 0 ]; then
    echo "FAIL: broker n$i is not reachable at 10.77.0.$i:1883 from canopy-gen; its log:" >&2
    cat "$work/n$i.log" >&2
    exit 1
  fi
done
if [ "$plain" = 0 ]; then
  # Let the joins settle and the first load records reach the root.
  sleep 3
fi

nodes="10.77.0.1:1883,10.77.0.2:1883,10.77.0.3:1883,10.77.0.4:1883,10.77.0.5:1883"
args=(--nodes "$nodes" --clients "$clients" --deadline "$deadline"
      --kill-pid "${pids[2]}" --kill-node 10.77.0.3:1883)
if [ "$plain" = 1 ]; then
  # Round-robin: after the kill, n3's clients go back to n3's address and fail until the
  # generator's limit; the plain run therefore only checks the spread.
  args=(--nodes "$nodes" --clients "$clients" --deadline "$deadline" --direct "$nodes")
else
  args+=(--dns 10.77.0.1:53 --name mqtt.canopy.local --v311 "$v311")
fi
echo "==> cluster-load ${args[*]}"
start=$(date +%s)
set +e
ip netns exec canopy-gen timeout "$((deadline + 10))" "$load" "${args[@]}"
rc=$?
set -e
echo "==> run took $(( $(date +%s) - start )) s, exit $rc"
for i in 1 2 3 4 5; do
  if grep -q -i "panic" "$work/n$i.log"; then
    echo "FAIL: broker n$i panicked:" >&2
    grep -i -A5 panic "$work/n$i.log" >&2
    rc=1
  fi
done
exit "$rc"
