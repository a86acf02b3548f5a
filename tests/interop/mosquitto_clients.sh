#!/usr/bin/env bash
# Interop checks with mosquitto's own command-line clients (mosquitto_pub/mosquitto_sub)
# across MQTT 3.1, 3.1.1 and 5.0: QoS 2 delivery, retained messages, -C counts, 5.0 user
# properties, wills. Run by run.sh with MQTT_HOST/MQTT_PORT set; prints one line per case
# and a final "mosquitto_clients: N passed, M failed".
#
# Readiness without sleeping: each subscriber first receives a retained marker, which
# proves its subscription is in place before the live messages are published.
# Every client runs under `timeout` and with -W, so nothing here can hang.
set -u

H="${MQTT_HOST:-127.0.0.1}"
P="${MQTT_PORT:?MQTT_PORT is not set: run through tests/interop/run.sh}"
for tool in mosquitto_pub mosquitto_sub timeout; do
  command -v "$tool" >/dev/null 2>&1 || { echo "mosquitto_clients: $tool not found (apt-get install -y mosquitto-clients)" >&2; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/canopy-clients.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

PASSED=0
FAILED=0
RUN="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
CASE=""
NUM=0

pub() { timeout 10 mosquitto_pub -h "$H" -p "$P" "$@"; }

# start_sub NAME ARGS...: mosquitto_sub in the background, output in $WORK/NAME.out
start_sub() {
  local name=$1; shift
  timeout 15 mosquitto_sub -h "$H" -p "$P" -W 12 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  SUB_PID=$!
}

# wait_line FILE TEXT: wait up to 5 s for a line equal to TEXT
wait_line() {
  for _ in $(seq 50); do
    grep -qxF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# wait_exit PID: wait for a background client (already bounded by timeout); sets EXIT_CODE
wait_exit() {
  wait "$1"
  EXIT_CODE=$?
}

begin() {
  NUM=$((NUM + 1))
  CASE="$1"
  T="itc/$RUN/$NUM"
}
pass() { PASSED=$((PASSED + 1)); echo "ok - $CASE"; }
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL - $CASE: $1"
  for f in "$WORK"/*.out "$WORK"/*.err; do
    [ -s "$f" ] && { echo "  --- $(basename "$f")"; sed 's/^/  | /' "$f" | head -n 20; }
  done
}
expect_output() { # FILE EXPECTED-TEXT
  local got
  got="$(cat "$1")"
  if [ "$got" = "$2" ]; then pass; else fail "output differs; expected:
$2"; fi
}
reset_outputs() { rm -f "$WORK"/*.out "$WORK"/*.err; }

# cross_version PUB_VERSION SUB_VERSION: subscriber on a/# at QoS 2 with -v gets a retained
# message and two live QoS 2 messages published by the other protocol version.
cross_version() {
  local pv=$1 sv=$2
  begin "mosquitto_sub -V $sv receives QoS 2 and retained from mosquitto_pub -V $pv"
  reset_outputs
  pub -V "$pv" -q 2 -r -t "$T/a/ret" -m retained || { fail "retained publish failed"; return; }
  start_sub s -V "$sv" -t "$T/a/#" -q 2 -v -C 3
  local pid=$SUB_PID
  wait_line "$WORK/s.out" "$T/a/ret retained" || { fail "retained message not received"; return; }
  pub -V "$pv" -q 2 -t "$T/a/x" -m one && pub -V "$pv" -q 2 -t "$T/a/b/c" -m two \
    || { fail "publish failed"; return; }
  wait_exit "$pid"
  [ "$EXIT_CODE" -eq 0 ] || { fail "mosquitto_sub exited $EXIT_CODE before 3 messages"; return; }
  expect_output "$WORK/s.out" "$T/a/ret retained
$T/a/x one
$T/a/b/c two"
  pub -V "$pv" -q 1 -r -t "$T/a/ret" -n
}

cross_version mqttv311 mqttv5
cross_version mqttv5 mqttv311
cross_version mqttv31 mqttv5
cross_version mqttv5 mqttv31
cross_version mqttv311 mqttv31

begin "mosquitto_sub -C 5 stops after exactly 5 messages"
reset_outputs
pub -V mqttv311 -q 1 -r -t "$T/c/ready" -m ready
start_sub s -V mqttv5 -t "$T/c/#" -q 1 -C 5
pid=$SUB_PID
if wait_line "$WORK/s.out" ready; then
  printf '%s\n' m1 m2 m3 m4 m5 m6 m7 | pub -V mqttv5 -q 1 -t "$T/c/x" -l
  wait_exit "$pid"
  if [ "$EXIT_CODE" -ne 0 ]; then fail "exit $EXIT_CODE"; else expect_output "$WORK/s.out" "ready
m1
m2
m3
m4"; fi
else
  fail "marker not received"
fi
pub -q 1 -r -t "$T/c/ready" -n

begin "100 QoS 2 messages from mosquitto_pub -l arrive once each, in order"
reset_outputs
pub -V mqttv5 -q 2 -r -t "$T/q/ready" -m ready
start_sub s -V mqttv311 -t "$T/q/#" -q 2 -C 101
pid=$SUB_PID
if wait_line "$WORK/s.out" ready; then
  seq 1 100 | pub -V mqttv311 -q 2 -t "$T/q/x" -l
  wait_exit "$pid"
  if [ "$EXIT_CODE" -ne 0 ]; then fail "exit $EXIT_CODE (fewer than 101 messages)"; else expect_output "$WORK/s.out" "ready
$(seq 1 100)"; fi
else
  fail "marker not received"
fi
pub -q 1 -r -t "$T/q/ready" -n

begin "a retained message cleared with -r -n is not delivered"
reset_outputs
pub -V mqttv311 -q 1 -r -t "$T/r" -m kept && pub -V mqttv5 -q 1 -r -t "$T/r" -n
timeout 10 mosquitto_sub -h "$H" -p "$P" -V mqttv311 -t "$T/r" -W 2 >"$WORK/s.out" 2>"$WORK/s.err"
if [ -s "$WORK/s.out" ]; then fail "got a cleared retained message"; else pass; fi

begin "5.0 user properties pass from mosquitto_pub -D to mosquitto_sub -F %P"
reset_outputs
pub -V mqttv5 -q 1 -r -t "$T/u/ready" -m ready
start_sub s -V mqttv5 -t "$T/u/#" -q 1 -C 2 -F '%t|%P|%p'
pid=$SUB_PID
if wait_line "$WORK/s.out" "$T/u/ready||ready"; then
  pub -V mqttv5 -q 1 -t "$T/u/x" -m payload -D publish user-property colour blue
  wait_exit "$pid"
  expect_output "$WORK/s.out" "$T/u/ready||ready
$T/u/x|colour:blue|payload"
else
  fail "marker not received"
fi
pub -V mqttv5 -q 1 -r -t "$T/u/ready" -n

for v in mqttv31 mqttv311 mqttv5; do
  begin "will of a killed mosquitto_sub -V $v is delivered"
  reset_outputs
  pub -V mqttv311 -q 1 -r -t "$T/w/ready" -m ready
  start_sub w -V mqttv311 -t "$T/w/#" -q 1 -C 2
  watcher=$SUB_PID
  # Not under `timeout`, so that SIGKILL reaches mosquitto_sub itself; -W bounds it.
  mosquitto_sub -h "$H" -p "$P" -W 12 -V "$v" -t "$T/w/ready" -q 1 --will-topic "$T/w/will" \
    --will-payload "bye $v" --will-qos 1 >"$WORK/d.out" 2>"$WORK/d.err" &
  dying=$!
  PIDS+=("$dying")
  if wait_line "$WORK/w.out" ready && wait_line "$WORK/d.out" ready; then
    kill -KILL "$dying" 2>/dev/null
    wait "$dying" 2>/dev/null
    wait_exit "$watcher"
    expect_output "$WORK/w.out" "ready
bye $v"
  else
    fail "marker not received"
  fi
  pub -q 1 -r -t "$T/w/ready" -n
done

echo "mosquitto_clients: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
