#!/usr/bin/env bash
# Fuzzes every parser that reads untrusted bytes with cargo-fuzz (libFuzzer + AddressSanitizer),
# each target for a bounded time (docs/reliability.md).
#
#   scripts/fuzz.sh TARGET|all|parsers SECONDS     e.g. scripts/fuzz.sh all 300  (the long pass)
#
# Targets (fuzz/fuzz_targets/, fuzz/api/fuzz_targets/): frames, fingerprints, tls_sni,
# quic_initial, dns_answer, capture, policy, swarms, and api. `parsers` is every target but api (whose build
# compiles the daemon and its kernel programs): what CI runs, 15 s each (scripts/test.sh).
#
# Seeds are made fresh each run (fuzz/seeds/, not committed) from ../shared/corpus's pcaps, the
# project's own captures (classifier/tests), the example policies and a few API queries; what
# libFuzzer finds grows fuzz/corpus/TARGET (kept between runs, not committed). A crash leaves
# its input in fuzz/artifacts/TARGET/ and makes this script fail; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...  (in fuzz/)
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z sanitizer flags. FUZZ_SANITIZER=none
# builds without AddressSanitizer (faster, still catches panics and overflows).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

PARSERS=(frames fingerprints tls_sni quic_initial dns_answer capture policy swarms)
what=${1:?usage: scripts/fuzz.sh TARGET|all|parsers SECONDS}
secs=${2:?usage: scripts/fuzz.sh TARGET|all|parsers SECONDS}
case $what in
  all) targets=("${PARSERS[@]}" api) ;;
  parsers) targets=("${PARSERS[@]}") ;;
  *) targets=("$what") ;;
esac

command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz missing (scripts/setup.sh installs it)" >&2; exit 1; }
SAN=(-s "${FUZZ_SANITIZER:-address}")
TARGET_DIR=$ROOT/fuzz/target
fuzz_dir() { if [ "$1" = api ]; then echo "$ROOT/fuzz/api"; else echo "$ROOT/fuzz"; fi; }

# Seeds: captures (nDPI's corpus when it is there, and the project's own), policies, queries.
SEEDS=$ROOT/fuzz/seeds
rm -rf "$SEEDS"
mkdir -p "$SEEDS"/{policy,api}
captures=()
for d in "$ROOT/../shared/corpus/ndpi/pcap" "$ROOT/classifier/tests/fixtures/lab" "$ROOT/classifier/tests/data"; do
  [ -d "$d" ] && captures+=("$d"/*.pcap "$d"/*.pcapng)
done
(cd fuzz && cargo run -q --release --example seeds -- "$SEEDS" "${captures[@]}" 2>/dev/null) \
  || (cd fuzz && cargo run -q --release --example seeds -- "$SEEDS" "${captures[@]}")
cp policies/examples/*.yaml "$SEEDS/policy/"
# api: the first byte picks the route (see fuzz/api/fuzz_targets/api.rs), the rest is its
# query or body.
i=0
for s in '\000window=60s' '\000window=5m&by=label' '\001window=1h&step=10s' \
         '\002limit=10&label=bittorrent&class=p2p&subscriber=alice' \
         '\002cursor=000000000000000104060000000000000000000000000000000000000000000000000000000000000000000000' \
         '\003limit=5&window=60' '\006alice' '\010{"now":"2026-11-26T20:00:00Z"}' \
         '\010{"offset_seconds":3600}'; do
  printf "$s" >"$SEEDS/api/seed$i"; i=$((i + 1))
done
printf '\007' | cat - policies/examples/lab.yaml >"$SEEDS/api/put-policy"

status=0
for t in "${targets[@]}"; do
  dir=$(fuzz_dir "$t")
  mkdir -p "$ROOT/fuzz/corpus/$t" "$ROOT/fuzz/artifacts/$t" "$SEEDS/$t"
  max_len=4096
  [ "$t" = capture ] && max_len=65536
  [ "$t" = quic_initial ] && max_len=16384
  log=$ROOT/fuzz/artifacts/$t/last-run.log
  echo "fuzz: $t for ${secs}s"
  if ! cargo fuzz run --fuzz-dir "$dir" --target-dir "$TARGET_DIR" "${SAN[@]}" -O --debug-assertions "$t" \
      "$ROOT/fuzz/corpus/$t" "$SEEDS/$t" -- \
      -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$ROOT/fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    echo "fuzz: $t FAILED (input and log in fuzz/artifacts/$t/):" >&2
    grep -E "panicked|ERROR: |SUMMARY|Test unit written" "$log" | head -20 >&2 || tail -30 "$log" >&2
    status=1
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1 ft \2 corpus \3/p')
  echo "fuzz: $t ok: $runs runs, $rate exec/s, $cov"
done
exit $status
