#!/usr/bin/env bash
# Broker CPU time for a fixed amount of work: the firmer A/B measure where throughput swings
# between runs on a shared machine. Each broker build is started fresh (settings as
# compare.sh), pinned to CPU 0; canopy-bench, pinned to CPU 1, sends a fixed --count; the
# broker's utime + stime is read from /proc/<pid>/stat before it is stopped. Builds are
# interleaved round by round. Loopback only; every run is bounded by --count and `timeout`.
#
# Usage: benches/cpu.sh BENCH ROUNDS SCENARIO COUNT BROKER... [-- CANOPY_BENCH_ARGS...]
#   benches/cpu.sh target/release/canopy-bench 3 fanin 1500000 old/canopy-broker \
#       target/release/canopy-broker -- --qos 0
# Prints one JSON line per run, then each build's CPU seconds sorted.
set -u
if [ $# -lt 5 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
BENCH=$1 ROUNDS=$2 SCENARIO=$3 COUNT=$4
shift 4
BROKERS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do BROKERS+=("$1"); shift; done
[ $# -gt 0 ] && shift
EXTRA=("$@")
for b in "$BENCH" "${BROKERS[@]}"; do
    [ -x "$b" ] || { echo "cpu.sh: $b is not an executable" >&2; exit 2; }
done
TICK=$(getconf CLK_TCK)
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
. "$(dirname "$0")/canopy_run.sh"

# run BROKER ROUND: one run, one JSON line.
run() {
    local bin=$1 round=$2 dir out cpu
    dir=$(mktemp -d)
    start_canopy "$bin" "$dir" warn
    out=$(taskset -c 1 timeout 300 "$BENCH" "$SCENARIO" --count "$COUNT" --port "$BROKER_PORT" \
        --no-progress "${EXTRA[@]}" 2>/dev/null | grep '^{' | tail -1)
    cpu=$(awk -v t="$TICK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$BROKER_PID/stat" 2>/dev/null)
    stop_canopy "$dir"
    python3 - "$bin" "$round" "${cpu:-null}" "${out:-{\}}" <<'PY'
import json, sys
bin_, rnd, cpu, out = sys.argv[1:5]
r = json.loads(out) if out.strip() else {}
print(json.dumps({"broker": bin_, "round": int(rnd), "cpu_s": None if cpu == "null" else float(cpu),
                  "delivered": r.get("delivered"), "lost": r.get("lost"),
                  "deliveries_per_s": r.get("deliveries_per_s")}))
PY
}

for r in $(seq "$ROUNDS"); do
    for b in "${BROKERS[@]}"; do
        run "$b" "$r" | tee -a "$RESULTS"
    done
done
python3 - "$RESULTS" <<'PY'
import json, sys
by = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    by.setdefault(d["broker"], []).append(d)
for b, runs in by.items():
    cpu = sorted(x["cpu_s"] for x in runs if x["cpu_s"] is not None)
    lost = sum(x["lost"] or 0 for x in runs)
    print(f"{b}: CPU s {', '.join(f'{c:.2f}' for c in cpu)}; lost {lost}")
PY
