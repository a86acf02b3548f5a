#!/usr/bin/env bash
# Bounded fuzzing of canopy-proto for CI: builds the targets in proto/fuzz with the stable
# toolchain (libFuzzer from the libfuzzer-sys crate, SanitizerCoverage through rustc's stable
# -C flags: no nightly, no cargo-fuzz, no AddressSanitizer, which safe Rust does not need),
# then runs each target for a fixed time from a copy of its committed seeds.
#
# Usage: tests/fuzz/run.sh [SECONDS_PER_TARGET]   (default: $FUZZ_SECONDS or 60)
#
# Targets: decode (every decodable packet re-encodes to itself) and topic (topic name and
# filter validation and matching). A crash stops the run with status 1 and leaves the input
# in $TARGET_DIR/fuzz/artifacts/; fix the bug, then commit that file under
# proto/fuzz/regressions/<target>/ so proto/tests/fuzz_regressions.rs replays it forever.
# Needs a C++ compiler (libFuzzer is C++): apt-get install -y g++.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SECONDS_EACH="${1:-${FUZZ_SECONDS:-60}}"
TARGETS=(decode topic)

die() { echo "fuzz: $*" >&2; exit 2; }
[[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] && [ "$SECONDS_EACH" -gt 0 ] || die "seconds must be a positive integer, not '$SECONDS_EACH'"
command -v c++ >/dev/null 2>&1 || die "no C++ compiler for libFuzzer; install one: apt-get install -y g++"
command -v cargo >/dev/null 2>&1 || die "cargo is not installed"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/fuzz"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
BIN="$TARGET_DIR/$TRIPLE/release"
ARTIFACTS="$TARGET_DIR/artifacts"
mkdir -p "$ARTIFACTS"

echo "fuzz: building ${TARGETS[*]} ($(rustc --version))"
# --target keeps these flags off build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  timeout 1200 cargo build --release --locked \
    --manifest-path "$ROOT/proto/fuzz/Cargo.toml" \
    --target "$TRIPLE" --target-dir "$TARGET_DIR"

failed=()
for t in "${TARGETS[@]}"; do
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cp "$ROOT/proto/fuzz/seeds/$t/"* "$work/"
  if [ -d "$ROOT/proto/fuzz/regressions/$t" ]; then
    find "$ROOT/proto/fuzz/regressions/$t" -type f ! -name .gitkeep -exec cp {} "$work/" \;
  fi
  echo "fuzz: $t for ${SECONDS_EACH}s from $(ls "$work" | wc -l) seeds"
  # libFuzzer's own -max_total_time ends the run; `timeout` only guards against a hang.
  if timeout "$((SECONDS_EACH + 120))" "$BIN/$t" "$work" \
      -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t-" 2>"$TARGET_DIR/$t.log"; then
    grep -E '^stat::number_of_executed_units|^Done' "$TARGET_DIR/$t.log" || true
  else
    echo "fuzz: $t FAILED; log: $TARGET_DIR/$t.log; inputs: $(ls "$ARTIFACTS" | grep "^$t-" | tr '\n' ' ')" >&2
    tail -30 "$TARGET_DIR/$t.log" >&2
    failed+=("$t")
  fi
  rm -rf "$work"
  trap - EXIT
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets ran ${SECONDS_EACH}s each without a failure"
