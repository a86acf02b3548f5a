#!/usr/bin/env bash
# Canopy-only interop checks, run by run.sh when the broker under test is Canopy:
#  - `canopy pub -V 3.1.1` to `mosquitto_sub -V mqttv5` (QoS 2, retained included);
#  - the DNS status listener answered by a real resolver (`dig`, Debian's dnsutils);
#  - an event-activated subscription registered by mosquitto_sub's SUBSCRIBE user properties.
# Needs MQTT_HOST, MQTT_PORT, DNS_PORT and CANOPY_CLI (the `canopy` binary) from run.sh.
# Prints "canopy_extras: N passed, M failed". Every wait is bounded.
set -u
H="$MQTT_HOST"; P="$MQTT_PORT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/canopy-extras.XXXXXX")"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT
PASSED=0; FAILED=0; RUN="x$$"
pass() { PASSED=$((PASSED + 1)); echo "ok - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $1: $2"; }
wait_line() { for _ in $(seq 50); do grep -qxF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# 1. canopy pub (3.1.1) -> mosquitto_sub (5.0), QoS 2, retained included.
CASE="mosquitto_sub -V mqttv5 receives what canopy pub -V 3.1.1 publishes at QoS 2, retained included"
if [ -x "${CANOPY_CLI:-}" ]; then
  T="ce/$RUN/a"
  timeout 10 "$CANOPY_CLI" pub -h "$H" -p "$P" -V 3.1.1 -q 2 -r -t "$T/ret" -m kept
  timeout 15 mosquitto_sub -h "$H" -p "$P" -V mqttv5 -t "$T/#" -q 2 -v -C 3 -W 12 >"$WORK/s.out" 2>&1 &
  pid=$!; PIDS+=("$pid")
  if wait_line "$WORK/s.out" "$T/ret kept"; then
    timeout 10 "$CANOPY_CLI" pub -h "$H" -p "$P" -V 3.1.1 -q 2 -t "$T/x" -m one
    echo two | timeout 10 "$CANOPY_CLI" pub -h "$H" -p "$P" -V 3.1.1 -q 2 -t "$T/y/z"
    wait "$pid"
    got="$(cat "$WORK/s.out")"
    want="$T/ret kept
$T/x one
$T/y/z two"
    if [ "$got" = "$want" ]; then pass "$CASE"; else fail "$CASE" "got: $got"; fi
  else
    fail "$CASE" "retained message not received: $(cat "$WORK/s.out")"
  fi
  timeout 10 "$CANOPY_CLI" pub -h "$H" -p "$P" -q 1 -r -t "$T/ret" -n
else
  fail "$CASE" "canopy CLI not found at '${CANOPY_CLI:-}'"
fi

# 2. DNS: A good_ip while connected, bad_ip after; TXT carries the status document.
CASE="dig answers <client-id>.status.<zone> from the broker's status"
if command -v dig >/dev/null 2>&1; then
  id="dev$RUN"
  q() { timeout 5 dig @127.0.0.1 -p "$DNS_PORT" "$id.status.canopy.local" "$1" +short +tries=1 +time=2; }
  timeout 20 mosquitto_sub -h "$H" -p "$P" -i "$id" -t "ce/$RUN/none" -W 15 >/dev/null 2>&1 &
  pid=$!; PIDS+=("$pid")
  up=""; for _ in $(seq 50); do up="$(q A)"; [ "$up" = "127.0.0.1" ] && break; sleep 0.1; done
  txt="$(q TXT)"
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  down=""; for _ in $(seq 50); do down="$(q A)"; [ "$down" = "127.0.0.2" ] && break; sleep 0.1; done
  if [ "$up" = "127.0.0.1" ] && [ "$down" = "127.0.0.2" ] && echo "$txt" | grep -q '\\"state\\":\\"online\\"\|"state":"online"\|state.:.online'; then
    pass "$CASE"
  else
    fail "$CASE" "connected: '$up', TXT: '$txt', after: '$down'"
  fi
else
  fail "$CASE" "dig not installed (apt-get install -y dnsutils)"
fi

# 3. Event activation through SUBSCRIBE user properties set by mosquitto_sub.
CASE="mosquitto_sub with -D subscribe user-property activate-on gets nothing until the event"
T="ce/$RUN/act"
timeout 15 mosquitto_sub -h "$H" -p "$P" -V mqttv5 -t "$T/data/#" -v -C 1 -W 12 \
  -D subscribe user-property activate-on "$T/on" >"$WORK/a.out" 2>&1 &
pid=$!; PIDS+=("$pid")
sleep 0.5
timeout 10 mosquitto_pub -h "$H" -p "$P" -t "$T/data/1" -m before
timeout 10 mosquitto_pub -h "$H" -p "$P" -t "$T/on" -m go
timeout 10 mosquitto_pub -h "$H" -p "$P" -t "$T/data/2" -m after
wait "$pid"
got="$(cat "$WORK/a.out")"
if [ "$got" = "$T/data/2 after" ]; then pass "$CASE"; else fail "$CASE" "got: $got"; fi

echo "canopy_extras: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
