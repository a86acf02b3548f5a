#!/usr/bin/env bash
# Canopy side by side with Mosquitto and (when installed) rumqttd, on this machine.
#
# Builds canopy-broker and canopy-bench (release), then for every scenario and round starts
# each broker fresh on a free loopback port with equivalent settings (in-memory, QoS 1
# outgoing window 64, 1000 queued messages per session), runs canopy-bench against it and
# stops it. Brokers run A B A B interleaved; the table shows medians over the rounds and the
# ratio of Canopy to each peer. Everything is bounded by `timeout`.
#
# Fan-in runs twice per QoS: closed loop (each publisher keeps at most 100 messages in
# flight end to end) and open loop (`--rate`: the publishers offer a fixed rate whatever
# the subscriber receives, OPEN_Q0 and OPEN_Q1 msgs/s, default 400,000 and 150,000). Every
# throughput row has its loss row next to it: messages published (for QoS 1: acknowledged by
# the broker) that the subscriber never received.
#
# Usage: benches/compare.sh [--rounds N] [--unpinned] [--quick] [--only LIST] [--out FILE]
#                            [--json FILE]
#   --rounds N   rounds per scenario (default 3)
#   --only LIST  run only these scenarios (comma-separated keys: fanin_q0, fanin_q1,
#                fanin_q0_open, fanin_q1_open, fanout, latency, connections, wildcard,
#                retained, durable)
#   --unpinned   do not pin: broker and generator share both cores (default: broker on
#                CPU 0, generator on CPU 1, with taskset)
#   --quick      short runs and small sizes, one round: a smoke test of this script
#   --out FILE   also write the table to FILE
#   --json FILE  also write the table as JSON to FILE (what `compare-plot` draws:
#                cargo run -p canopy-bench --bin compare-plot -- FILE OUT.svg)
# Environment: CARGO_TARGET_DIR (default ./target), RUMQTTD (path to rumqttd), MOSQUITTO,
#   CANOPY_BASE (another canopy-broker binary, say a build of main, run as the extra
#   broker `canopy-base` with Canopy's settings: a before/after comparison in one run),
#   OPEN_Q0, OPEN_Q1 (open-loop offered rates, msgs/s).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
rounds=3
pinned=1
quick=0
out=""
json=""
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --unpinned) pinned=0; shift ;;
        --quick) quick=1; shift ;;
        --out) out=$2; shift 2 ;;
        --json) json=$2; shift 2 ;;
        --only) only=",$2,"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

if [ "$quick" = 1 ]; then
    duration=1s; connections=500; filters=1000; retained=5000; drain=1s
    [ "$rounds" = 3 ] && rounds=1
else
    duration=5s; connections=10000; filters=10000; retained=100000; drain=2s
fi
export OPEN_Q0=${OPEN_Q0:-400000} OPEN_Q1=${OPEN_Q1:-150000}

log() { echo "compare.sh: $*" >&2; }

# --- tools ---------------------------------------------------------------------------
for tool in python3 timeout ss; do
    command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done
if [ "$pinned" = 1 ] && ! command -v taskset >/dev/null; then
    log "taskset is required for pinned runs (util-linux), or use --unpinned"; exit 1
fi
if [ "$pinned" = 1 ] && [ "$(nproc)" -lt 2 ]; then
    log "pinned runs need 2 CPUs; use --unpinned"; exit 1
fi
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || true)}
if [ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ]; then MOSQUITTO=/usr/sbin/mosquitto; fi
if [ -z "$MOSQUITTO" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing mosquitto"
    timeout 300 apt-get install -y mosquitto >/dev/null 2>&1 \
        || { timeout 300 apt-get update >/dev/null 2>&1 && timeout 300 apt-get install -y mosquitto >/dev/null 2>&1; } \
        || log "could not install mosquitto"
    MOSQUITTO=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
fi
RUMQTTD=${RUMQTTD:-$(command -v rumqttd || true)}
if [ -z "$RUMQTTD" ] && [ -x "$HOME/.cargo/bin/rumqttd" ]; then RUMQTTD=$HOME/.cargo/bin/rumqttd; fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log "building canopy-broker and canopy-bench (release)"
(cd "$ROOT" && timeout 3600 cargo build --release --quiet -p canopy-broker -p canopy-bench)
CANOPY=$TARGET_DIR/release/canopy-broker
BENCH=$TARGET_DIR/release/canopy-bench

brokers=(canopy)
CANOPY_BASE=${CANOPY_BASE:-}
if [ -n "$CANOPY_BASE" ]; then
    [ -x "$CANOPY_BASE" ] || { log "CANOPY_BASE=$CANOPY_BASE is not an executable"; exit 1; }
    brokers+=(canopy-base)
fi
[ -n "$MOSQUITTO" ] && brokers+=(mosquitto) || log "mosquitto not found: skipped"
[ -n "$RUMQTTD" ] && brokers+=(rumqttd) || log "rumqttd not found: skipped (cargo install rumqttd)"

# 10,000 idle connections need as many descriptors in the broker and the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/canopy-compare.XXXXXX")
BPID=""
cleanup() {
    if [ -n "$BPID" ]; then kill "$BPID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$pinned" = 1 ]; then
    PIN_BROKER=(taskset -c 0); PIN_GEN=(taskset -c 1); mode="pinned: broker on CPU 0, generator on CPU 1"
else
    PIN_BROKER=(); PIN_GEN=(); mode="unpinned: both on $(nproc) CPUs"
fi

# A port below the ephemeral range (10,000 client connections leave many ephemeral ports in
# TIME_WAIT) that no socket uses, in any state.
free_port() {
    local p low span
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    span=$((low > 12000 ? low - 12000 : 1000))
    for _ in $(seq 1 200); do
        p=$((10000 + RANDOM % span))
        if [ -z "$(ss -Htan "sport = :$p")" ]; then echo "$p"; return 0; fi
    done
    return 1
}

# start_broker NAME PORT [DURABILITY]: starts it in the background, sets BPID.
start_broker() {
    local name=$1 port=$2 durability=${3:-memory} dir="$WORK/$1-$2"
    mkdir -p "$dir"
    case "$name" in
        canopy|canopy-base)
            local bin=$CANOPY
            [ "$name" = canopy-base ] && bin=$CANOPY_BASE
            cat >"$dir/canopy.toml" <<EOF
durability = "$durability"
data_dir = "$dir/data"
sys_interval = "0s"
log_level = "warn"
[[listener]]
bind = "127.0.0.1:$port"
[limits]
max_inflight = 64
max_queued_messages = 1000
EOF
            "${PIN_BROKER[@]}" "$bin" --config "$dir/canopy.toml" >"$dir/log" 2>&1 &
            ;;
        mosquitto)
            cat >"$dir/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
max_inflight_messages 64
max_queued_messages 1000
log_dest none
EOF
            "${PIN_BROKER[@]}" "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/log" 2>&1 &
            ;;
        rumqttd)
            cat >"$dir/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
EOF
            "${PIN_BROKER[@]}" "$RUMQTTD" -q -c "$dir/rumqttd.toml" >"$dir/log" 2>&1 &
            ;;
    esac
    BPID=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    log "$name did not start on port $port"; tail -5 "$dir/log" >&2 || true
    return 1
}

stop_broker() {
    [ -n "$BPID" ] || return 0
    kill "$BPID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$BPID" 2>/dev/null || true
    wait "$BPID" 2>/dev/null || true
    BPID=""
}

# run_one SCENARIO_KEY BROKER ROUND DURABILITY -- canopy-bench args...
run_one() {
    local key=$1 name=$2 round=$3 durability=$4; shift 5
    local port file="$WORK/results/$key.$name.$round.json"
    port=$(free_port)
    mkdir -p "$WORK/results"
    if ! start_broker "$name" "$port" "$durability"; then
        stop_broker
        port=$(free_port)
        if ! start_broker "$name" "$port" "$durability"; then stop_broker; return 0; fi
    fi
    if ! timeout 300 "${PIN_GEN[@]}" "$BENCH" "$@" --port "$port" --broker-pid "$BPID" \
            --no-progress --drain "$drain" --label "$name" >"$file" 2>"$file.err"; then
        log "$key on $name round $round failed: $(tail -1 "$file.err")"
        rm -f "$file"
    else
        log "  $(python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read()); print("msgs/s %.0f deliveries/s %.0f lost %d p99 %.0fus" % (r["msgs_per_s"], r["deliveries_per_s"], r["lost"], r["latency"]["p99_us"]))' "$file" 2>/dev/null || true)"
    fi
    stop_broker
}

wanted() { [ -z "$only" ] || [[ "$only" == *",$1,"* ]]; }

scenario() { # KEY ARGS...: every broker, A B A B
    local key=$1; shift
    wanted "$key" || return 0
    for round in $(seq 1 "$rounds"); do
        for b in "${brokers[@]}"; do
            log "$key round $round/$rounds: $b"
            run_one "$key" "$b" "$round" memory -- "$@"
        done
    done
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
scenario fanin_q0 fanin --qos 0 --duration "$duration"
scenario fanin_q1 fanin --qos 1 --duration "$duration"
scenario fanin_q0_open fanin --qos 0 --rate "$OPEN_Q0" --duration "$duration"
scenario fanin_q1_open fanin --qos 1 --rate "$OPEN_Q1" --duration "$duration"
scenario fanout fanout --duration "$duration"
scenario latency latency --duration "$duration"
scenario connections connections --connections "$connections"
scenario wildcard wildcard --filters "$filters" --duration "$duration"
scenario retained retained --retained "$retained"
for round in $(seq 1 "$rounds"); do
    wanted durable || break
    for d in memory batched sync; do
        log "durable round $round/$rounds: canopy $d"
        run_one "durable_$d" canopy "$round" "$d" -- durable --duration "$duration"
    done
done

load_start=${load_start:-}
mode="$mode; load average $load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
table=$(python3 - "$WORK/results" "$mode" "$rounds" "$duration" "$json" "${brokers[@]}" <<'PY'
import json, os, statistics, sys
res, mode, rounds, duration, json_out, brokers = (
    sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
doc = {"mode": mode, "rounds": int(rounds), "duration": duration, "brokers": brokers, "rows": []}
def load(key, broker):
    out = []
    if not os.path.isdir(res):
        return out
    for f in sorted(os.listdir(res)):
        if f.startswith(key + "." + broker + ".") and f.endswith(".json"):
            try:
                with open(os.path.join(res, f)) as fh:
                    out.append(json.loads(fh.read().strip().splitlines()[-1]))
            except (ValueError, IndexError):
                pass
    return out
def get(r, path):
    for p in path.split("."):
        r = r.get(p) if isinstance(r, dict) else None
    return r
q0, q1 = (f"{int(os.environ[k]):,}/s" for k in ("OPEN_Q0", "OPEN_Q1"))
# (label, result key, json path, scale, higher is better, format); a time is compared only
# between runs that delivered everything (a faster partial delivery is no win).
rows = [
    ("fanin QoS 0, msgs/s", "fanin_q0", "msgs_per_s", 1, True, "{:,.0f}"),
    ("fanin QoS 0, lost", "fanin_q0", "lost", 1, False, "{:,.0f}"),
    ("fanin QoS 0, broker peak RSS MiB", "fanin_q0", "rss.peak_kib", 1/1024, False, "{:,.1f}"),
    ("fanin QoS 1, msgs/s", "fanin_q1", "msgs_per_s", 1, True, "{:,.0f}"),
    ("fanin QoS 1, lost", "fanin_q1", "lost", 1, False, "{:,.0f}"),
    (f"fanin QoS 0 open loop, {q0} offered, delivered msgs/s", "fanin_q0_open", "deliveries_per_s", 1, True, "{:,.0f}"),
    (f"fanin QoS 0 open loop, {q0} offered, lost", "fanin_q0_open", "lost", 1, False, "{:,.0f}"),
    (f"fanin QoS 1 open loop, {q1} offered, delivered msgs/s", "fanin_q1_open", "deliveries_per_s", 1, True, "{:,.0f}"),
    (f"fanin QoS 1 open loop, {q1} offered, acknowledged but lost", "fanin_q1_open", "lost", 1, False, "{:,.0f}"),
    ("fanout (1 -> 100), deliveries/s", "fanout", "deliveries_per_s", 1, True, "{:,.0f}"),
    ("fanout (1 -> 100), lost", "fanout", "lost", 1, False, "{:,.0f}"),
    ("latency at 1k msg/s, p50 us", "latency", "latency.p50_us", 1, False, "{:,.1f}"),
    ("latency at 1k msg/s, p99 us", "latency", "latency.p99_us", 1, False, "{:,.1f}"),
    ("latency at 1k msg/s, p999 us", "latency", "latency.p999_us", 1, False, "{:,.1f}"),
    ("idle connection with a subscription, bytes", "connections", "extra.rss_per_conn_bytes", 1, False, "{:,.0f}"),
    ("connect rate, conn/s", "connections", "extra.connect_per_s", 1, True, "{:,.0f}"),
    ("wildcard filters, warm msgs/s", "wildcard", "msgs_per_s", 1, True, "{:,.0f}"),
    ("wildcard, first publish to each topic, ms", "wildcard", "extra.first_publish_ms", 1, False, "{:,.1f}"),
    ("retained to a new r/# subscriber, received", "retained", "delivered", 1, True, "{:,.0f}"),
    ("retained to a new r/# subscriber, ms", "retained", "extra.all_retained_ms", 1, False, "{:,.1f}"),
    ("durable QoS 1 fan-in, memory, msgs/s", "durable_memory", "msgs_per_s", 1, True, "{:,.0f}"),
    ("durable QoS 1 fan-in, batched, msgs/s", "durable_batched", "msgs_per_s", 1, True, "{:,.0f}"),
    ("durable QoS 1 fan-in, sync, msgs/s", "durable_sync", "msgs_per_s", 1, True, "{:,.0f}"),
]
peers = [b for b in brokers if b != "canopy"]
print(f"Mode: {mode}; medians of {rounds} round(s), {duration} per throughput run.")
print("Ratios: Canopy's advantage over the peer (> 1 means Canopy is better, whichever way the row counts).")
print()
head = "| scenario | " + " | ".join(brokers) + " | " + " | ".join(f"vs {p}" for p in peers) + " |"
print(head)
print("|" + "---|" * (1 + len(brokers) + len(peers)))
for label, key, path, scale, higher, fmt in rows:
    med = {}
    ratios = {}
    cells = []
    for b in brokers:
        vals = [get(r, path) for r in load(key, b)]
        vals = [v * scale for v in vals if isinstance(v, (int, float))]
        if vals:
            med[b] = statistics.median(vals)
            n = "" if len(vals) == int(rounds) else f" ({len(vals)}/{rounds})"
            cells.append(fmt.format(med[b]) + n)
        else:
            cells.append("–")
    if not med:
        continue  # a scenario left out with --only
    for p in peers:
        c, v = med.get("canopy"), med.get(p)
        partial = any(
            statistics.median([r.get("lost", 0) for r in load(key, b)] or [0]) > 0
            for b in ("canopy", p)
        )
        if c is None or v is None or key.startswith("durable") or "lost" in label:
            cells.append("–")
        elif partial and path.endswith("_ms"):
            cells.append("– (incomplete)")
        elif higher:
            cells.append(f"{c / v:.2f}×" if v else "∞")
            ratios[p] = c / v if v else None
        else:
            cells.append(f"{v / c:.2f}×" if c else "∞")
            ratios[p] = v / c if c else None
    print(f"| {label} | " + " | ".join(cells) + " |")
    doc["rows"].append({"scenario": label, "higher_is_better": higher, "values": med,
                        "ratios": ratios})
if json_out:
    with open(json_out, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
PY
)
echo "$table"
if [ -n "$out" ]; then echo "$table" >"$out"; fi
