#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another,
# with coverage-guided libFuzzer via cargo-fuzz on the stable toolchain
# (`--sanitizer none`: the sanitizers need nightly; the targets assert the
# invariants themselves). Usage: fuzz/run.sh [SECONDS] [--dev]
#   --dev  build unoptimised (quicker to build; CI's smoke run uses it)
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
profile=()
[[ "${2:-}" == "--dev" ]] && profile=(--dev)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
for target in bearer request_body account_endpoints; do
  mkdir -p "corpus/$target"
  echo "== fuzz $target for ${seconds}s"
  log="target/fuzz-$target.log"
  mkdir -p target
  if ! cargo fuzz run "${profile[@]}" --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -max_len=16384 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz $target failed; the input that broke it is in fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E "^#[0-9]+ +(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^Done" "$log"
  echo "corpus: $(ls "corpus/$target" | wc -l) inputs"
done
