#!/usr/bin/env bash
# Runs every example of examples/README.md with its one command
# (`cargo run -p canopy-examples --example NAME`) and checks that it exits 0 within its time
# limit and that its output shows what its header promises (the extended regular expressions
# below, each of which must match a line). Every example in examples/Cargo.toml must have an
# entry here, so a new example cannot go unchecked.
#
# Usage: tests/examples/run.sh [NAME ...]     (default: every example)
# Exits 1 when any example fails, printing its output.
set -uo pipefail
cd "$(dirname "$0")/../.."

# name|seconds|expected line|expected line|...
CHECKS=(
  'map_broadcast|90|^published 64 segments|^map complete after .*gaps filled by the carousel'
  'special_effects|60|^root: published 10 frames|^user: fx/rumble-soft \{"intensity":0\.2,"source":"fx/rumble","ts":1160\}|^user received 5 of 5 expected frames'
  'device_status_dns|60|monitor +\$status/sensor-7: online \(connected\)|dns +A +sensor-7\.status\.canopy\.local\. -> 127\.0\.0\.1$|dns +TXT +sensor-7\.status\.canopy\.local\. -> \{"state":"online"|dns +A +x--nnuxiy3imvxc643fnzzw64rage\.status\.canopy\.local\. -> 127\.0\.0\.1$|dns +A +never-seen\.status\.canopy\.local\. -> 127\.0\.0\.2$|monitor +\$status/sensor-7: offline \(connection lost\)'
  'config_documents|60|dev1 +\$config/dev1 \[stored\]: \{"rate":5|dev2 +\$config/dev2 \[stored\]: \{"rate":60|dev2 +subscribes to \$config/dev1: granted = false|dev2 +\$config/dev2 \[live\]: \{"rate":30|dev1 +settings now: \{"rate":10,"log":"debug"\}|dev2 +settings now: \{"rate":1,"log":"info"\}'
  'activated_subscriptions|60|viewer +receives nothing|inactive = 1$|viewer +receives camera/7/frames/snapshot \[stored\]|viewer +receives camera/7/frames/5 \[live\]: frame-5|inactive = 0$|viewer +received in all: snapshot-during-quiet, frame-4, frame-5, frame-6$'
  'presence|60|alice +sees \$presence/alice/requests/bob: .*"state":"pending"|bob +alice is available / active \(laptop=available, phone=busy\)|bob +alice is busy / idle \(laptop=offline, phone=busy\)'
  'license_pool|60|worker-5 +queued at position 1$|^granted in order: workers \[1, 2, 3, 4, 5\], grants \[1, 2, 3, 4, 5\]'
  'review_comments|60|alice +c1 \[live, alice.s list\]|bob +subscribes to review/design/comments/alice/#: granted = false, received 0 messages|bob +subscribes to review/design/comments/#: granted = true, received 2 messages, 0 of them not his|alice +c4 withdrawn|carol +c2 \[stored, carol.s list\]|alice +final list: c1$|bob +final list: c2, c4$|carol +final list: c2, c3$'
  'cluster_redirect|60|cluster +every node sees root, n1, n2 up|sensor-7 +n1 answers CONNACK 0x9C, Server Reference 127\.0\.0\.1:[0-9]+$|^redirected to 127\.0\.0\.1:[0-9]+ \(Use another server \(0x9C\)\)|sensor-7 +connected to 127\.0\.0\.1:[0-9]+ \(n2\)$|sensor-7 +reads \$status/sensor-7: online at node n2$|legacy-9 +\(3\.1\.1\) connected through n1; \$status/legacy-9: online at node n2$'
  'name_service|60|dns +A mqtt\.canopy\.local\. -> 127\.0\.0\.2 \(n1\)$|root +view after n1.s next load record: n1 has 30 connections|dns +A mqtt\.canopy\.local\. -> 127\.0\.0\.3 \(n2\)$|root +view: n2 is draining|dns +A mqtt\.canopy\.local\. -> 127\.0\.0\.1 \(root\)$|dns +n2 was never named while draining'
)

declare -A checked=()
for c in "${CHECKS[@]}"; do checked["${c%%|*}"]=1; done
missing=0
for name in $(sed -n 's/^name = "\(.*\)"$/\1/p' examples/Cargo.toml | grep -vx canopy-examples); do
  if [ -z "${checked[$name]:-}" ]; then
    echo "FAIL $name: in examples/Cargo.toml but not checked by $0 (add its expected lines)"
    missing=1
  fi
done

echo "building the examples"
cargo build --locked -q -p canopy-examples --examples || exit 1

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failed=$missing
for c in "${CHECKS[@]}"; do
  IFS='|' read -r -a f <<<"$c"
  name=${f[0]} limit=${f[1]}
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
  start=$(date +%s)
  timeout "$limit" cargo run --locked -q -p canopy-examples --example "$name" >"$out/$name.log" 2>&1
  code=$?
  took=$(($(date +%s) - start))
  problems=()
  [ "$code" -eq 124 ] && problems+=("did not finish within ${limit} s")
  [ "$code" -ne 0 ] && [ "$code" -ne 124 ] && problems+=("exit status $code")
  for want in "${f[@]:2}"; do
    grep -Eq -- "$want" "$out/$name.log" || problems+=("no line matching: $want")
  done
  if [ ${#problems[@]} -eq 0 ]; then
    echo "ok   $name (${took} s)"
  else
    failed=1
    echo "FAIL $name (${took} s):"
    printf '       %s\n' "${problems[@]}"
    echo "     --- output of cargo run -p canopy-examples --example $name ---"
    sed 's/^/     | /' "$out/$name.log" | tail -60
  fi
done
[ "$failed" -eq 0 ] && echo "all examples ok"
exit "$failed"
