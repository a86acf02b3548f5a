#!/usr/bin/env bash
# Interop suite runner: starts a broker (Canopy or mosquitto) on a free loopback port,
# runs the paho-mqtt tests (pytest) and the mosquitto_pub/mosquitto_sub checks against
# it, stops the broker, and prints a final "N passed, M failed" line.
#
# Usage: tests/interop/run.sh [--broker canopy|mosquitto] [--bin PATH] [-- PYTEST-ARGS...]
#   --broker  which broker to start (default: canopy)
#   --bin     canopy-broker binary (default: target/release/canopy-broker, built by the caller)
#   --cli     the `canopy` client binary for the Canopy-only checks (default: next to --bin)
#   after --  extra pytest arguments, e.g. -- -k retained
#
# Installs nothing: the caller (.ci/run) provides mosquitto, mosquitto-clients, python3
# with paho-mqtt 2.x and pytest. Everything is bounded in time.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BROKER=canopy
BIN=""
CLI=""
PYTEST_EXTRA=()

die() { echo "interop: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --broker) [ $# -ge 2 ] || die "--broker needs a value"; BROKER="$2"; shift 2 ;;
    --broker=*) BROKER="${1#*=}"; shift ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a value"; BIN="$2"; shift 2 ;;
    --bin=*) BIN="${1#*=}"; shift ;;
    --cli) [ $# -ge 2 ] || die "--cli needs a value"; CLI="$2"; shift 2 ;;
    --) shift; PYTEST_EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

# ---- prerequisites (checked, never installed here)
missing=()
for tool in mosquitto_pub mosquitto_sub python3 timeout; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (install: apt-get install -y mosquitto-clients python3 coreutils)"
python3 - <<'EOF' || die "python modules missing or too old: need paho-mqtt>=2 and pytest (pip install 'paho-mqtt>=2' pytest)"
import sys
try:
    import pytest  # noqa: F401
    import paho.mqtt
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: F401
except ImportError as e:
    print(f"interop: {e}", file=sys.stderr)
    sys.exit(1)
if int(paho.mqtt.__version__.split(".")[0]) < 2:
    print(f"interop: paho-mqtt {paho.mqtt.__version__} is older than 2.0", file=sys.stderr)
    sys.exit(1)
EOF

case "$BROKER" in
  canopy)
    BIN="${BIN:-$ROOT/target/release/canopy-broker}"
    [ -x "$BIN" ] || die "canopy-broker binary not found at $BIN (build it: cargo build --release -p canopy-broker, or pass --bin PATH)"
    ;;
  mosquitto)
    if [ -z "$BIN" ]; then
      BIN="$(command -v mosquitto || true)"
      [ -n "$BIN" ] || { [ -x /usr/sbin/mosquitto ] && BIN=/usr/sbin/mosquitto; }
    fi
    [ -n "$BIN" ] && [ -x "$BIN" ] || die "mosquitto broker not found (apt-get install -y mosquitto, or pass --bin PATH)"
    ;;
  *) die "--broker must be canopy or mosquitto, not '$BROKER'" ;;
esac

# ---- broker
WORK="$(mktemp -d "${TMPDIR:-/tmp}/canopy-interop.XXXXXX")"
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
HOST=127.0.0.1
DNS_PORT="$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

if [ "$BROKER" = canopy ]; then
  CONF="$WORK/canopy.toml"
  cat >"$CONF" <<EOF
data_dir = "$WORK/canopy-data"
durability = "memory"

[[listener]]
bind = "$HOST:$PORT"

[dns]
listen = "127.0.0.1:$DNS_PORT"
EOF
  "$BIN" --config "$CONF" >"$WORK/broker.log" 2>&1 &
else
  CONF="$WORK/mosquitto.conf"
  cat >"$CONF" <<EOF
listener $PORT $HOST
allow_anonymous true
persistence false
EOF
  "$BIN" -c "$CONF" >"$WORK/broker.log" 2>&1 &
fi
BROKER_PID=$!

ready=0
for _ in $(seq 100); do
  if ! kill -0 "$BROKER_PID" 2>/dev/null; then break; fi
  if python3 -c "import socket,sys; socket.create_connection(('$HOST', $PORT), 0.2).close()" 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.1
done
if [ "$ready" -ne 1 ]; then
  echo "interop: $BROKER broker ($BIN) did not accept connections on $HOST:$PORT within 10 s; its log:" >&2
  tail -n 40 "$WORK/broker.log" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
echo "interop: $BROKER broker ($BIN) listening on $HOST:$PORT"

export MQTT_HOST="$HOST" MQTT_PORT="$PORT" INTEROP_BROKER="$BROKER" PYTHONDONTWRITEBYTECODE=1

# ---- python tests
JUNIT="$WORK/pytest.xml"
( cd "$HERE" && timeout 300 python3 -m pytest -p no:cacheprovider -q -rfE \
    --junitxml="$JUNIT" "${PYTEST_EXTRA[@]}" . )
PYTEST_RC=$?
read -r PY_PASSED PY_FAILED PY_SKIPPED < <(python3 - "$JUNIT" "$PYTEST_RC" <<'EOF'
import sys
import xml.etree.ElementTree as ET
path, rc = sys.argv[1], int(sys.argv[2])
try:
    root = ET.parse(path).getroot()
except (OSError, ET.ParseError):
    print(0, 1, 0)  # pytest died or timed out before writing its report
    sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
tests = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
passed = tests - failed - skipped
if rc not in (0, 1) and failed == 0:
    failed = 1  # interrupted, timed out or usage error: never report a clean run
print(passed, failed, skipped)
EOF
)

# ---- command-line clients (skipped when pytest arguments narrow the run)
SH_PASSED=0
SH_FAILED=0
if [ ${#PYTEST_EXTRA[@]} -eq 0 ]; then
  timeout 120 bash "$HERE/mosquitto_clients.sh" | tee "$WORK/shell.out"
  SH_RC=${PIPESTATUS[0]}
  line="$(grep -E '^mosquitto_clients: [0-9]+ passed, [0-9]+ failed$' "$WORK/shell.out" | tail -n 1)"
  if [ -n "$line" ]; then
    SH_PASSED="$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')"
    SH_FAILED="$(echo "$line" | sed -E 's/.* ([0-9]+) failed/\1/')"
  fi
  if [ "$SH_RC" -ne 0 ] && [ "$SH_FAILED" -eq 0 ]; then SH_FAILED=1; fi
  if [ "$BROKER" = canopy ]; then
    CANOPY_CLI="${CLI:-$(dirname "$BIN")/canopy}" DNS_PORT="$DNS_PORT" \
      timeout 120 bash "$HERE/canopy_extras.sh" | tee "$WORK/extras.out"
    EX_RC=${PIPESTATUS[0]}
    line="$(grep -E '^canopy_extras: [0-9]+ passed, [0-9]+ failed$' "$WORK/extras.out" | tail -n 1)"
    if [ -n "$line" ]; then
      SH_PASSED=$((SH_PASSED + $(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')))
      SH_FAILED=$((SH_FAILED + $(echo "$line" | sed -E 's/.* ([0-9]+) failed/\1/')))
    elif [ "$EX_RC" -ne 0 ]; then
      SH_FAILED=$((SH_FAILED + 1))
    fi
  fi
fi

if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  echo "interop: the broker exited during the run; its log:" >&2
  tail -n 40 "$WORK/broker.log" >&2
  SH_FAILED=$((SH_FAILED + 1))
fi

PASSED=$((PY_PASSED + SH_PASSED))
FAILED=$((PY_FAILED + SH_FAILED))
echo "interop ($BROKER): pytest $PY_PASSED passed, $PY_FAILED failed, $PY_SKIPPED skipped or xfailed;" \
  "mosquitto clients $SH_PASSED passed, $SH_FAILED failed"
if [ "$PY_SKIPPED" -gt 0 ]; then
  echo "$PASSED passed, $FAILED failed, $PY_SKIPPED skipped"
else
  echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ]
