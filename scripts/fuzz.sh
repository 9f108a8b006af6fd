#!/usr/bin/env bash
# Build the libFuzzer harnesses (tests/fuzz) with clang in build-fuzz/ and run each for a fixed
# time on its seed corpus tests/fuzz/corpus/NAME (CI runs this from scripts/test.sh; docs/fuzzing.md).
#   scripts/fuzz.sh                               every harness (net cpu virtio fw_cfg devices), 30 s each
#   scripts/fuzz.sh cpu virtio                    only those
#   M86_FUZZ_SECONDS=3600 scripts/fuzz.sh net     a longer local run of one
# New inputs that reach new code collect in build-fuzz/corpus-NAME (kept between local runs; the
# tree's seeds are not touched). A crash, leak, sanitizer report or timeout fails the script and
# leaves the input in build-fuzz/artifacts/; replay it with build-fuzz/tests/fuzz/fuzz_NAME FILE,
# fix the bug (or guard it, when the fault is in a library), and add the input to the seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${M86_FUZZ_SECONDS:-30}
all=(net cpu virtio fw_cfg devices)
names=("${@:-${all[@]}}")
for n in "${names[@]}"; do
  if [[ ! -d tests/fuzz/corpus/$n ]]; then
    echo "fuzz.sh: no harness '$n' (known: ${all[*]})" >&2
    exit 2
  fi
done
if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found (scripts/setup-deps.sh installs clang)" >&2
  exit 1
fi
[[ -d build-fuzz ]] || CXX=clang++ meson setup build-fuzz -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized >/dev/null
meson compile -C build-fuzz "${names[@]/#/tests/fuzz/fuzz_}" >/dev/null
mkdir -p build-fuzz/artifacts
status=0
for n in "${names[@]}"; do
  work=build-fuzz/corpus-$n log=build-fuzz/fuzz_$n.log
  mkdir -p "$work"
  if build-fuzz/tests/fuzz/fuzz_$n -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="build-fuzz/artifacts/$n-" "$work" "tests/fuzz/corpus/$n" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "ok   fuzz_$n: $runs inputs in $secs s, $cov edges, corpus $(ls "$work" | wc -l) + $(ls "tests/fuzz/corpus/$n" | wc -l) seeds"
  else
    echo "FAIL fuzz_$n (full log: $log):"
    grep -v -E '^#[0-9]+' "$log" | tail -40 | sed 's/^/     | /'
    status=1
  fi
done
exit $status
