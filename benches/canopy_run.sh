# Sourced by ab.sh and cpu.sh: one canopy-broker run with compare.sh's settings.
#
# start_canopy BIN DIR LOG_LEVEL: writes DIR/c.toml (memory durability, `$SYS` off, 64 in
# flight, 1,000 queued; a free loopback port), starts BIN on CPU 0 and waits up to 5 s for the
# port; sets BROKER_PID and BROKER_PORT. stop_canopy DIR: stops it and removes DIR.

free_port() {
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

start_canopy() {
    local bin=$1 dir=$2 level=$3
    BROKER_PORT=$(free_port)
    cat >"$dir/c.toml" <<T
durability = "memory"
sys_interval = "0s"
log_level = "$level"
data_dir = "$dir/data"
[[listener]]
bind = "127.0.0.1:$BROKER_PORT"
[limits]
max_inflight = 64
max_queued_messages = 1000
T
    taskset -c 0 "$bin" --config "$dir/c.toml" >"$dir/log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 50); do
        (echo >"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null && break
        sleep 0.1
    done
}

stop_canopy() {
    kill "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
    rm -rf "$1"
}
