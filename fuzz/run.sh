#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer on the stable toolchain and runs them one after another.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 600 s each, every target)
#   FEATURES=idx fuzz/run.sh 60 bundle idx            (build only what those targets need)
#
# cargo-fuzz needs nightly only for its sanitizer flags; the coverage instrumentation libFuzzer
# feeds on is stable rustc (`-Cpasses=sancov-module` and `-Cllvm-args`), so this script passes
# those itself: no nightly, no cargo-fuzz, no clang (libfuzzer-sys builds libFuzzer with the
# system C++ compiler). Without AddressSanitizer, safe Rust's own checks (bounds, overflow —
# kept on in the fuzz profile — and panics) are what finds bugs. New inputs are added to
# fuzz/corpus/<target>; crashes land in fuzz/artifacts/<target>. Each run's last status line
# (executions, coverage, corpus size) is appended to fuzz/runs.log.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(idx savedmodel bundle json_gcloud json_tf_serving)
fi
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$PWD/target"
# An explicit --target keeps RUSTFLAGS (the instrumentation) off build scripts and proc macros,
# which would otherwise need libFuzzer's symbols too.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --target "$host" --bins ${FEATURES:+--no-default-features --features "$FEATURES"}
python3 seed-corpus.py > /dev/null
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="target/$target.log"
    started=$(date +%s)
    status=0
    "target/$host/release/$target" "corpus/$target" -artifact_prefix="artifacts/$target/" \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=20 \
        -print_final_stats=1 > "$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - started ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    files=$(find "corpus/$target" -type f | wc -l)
    bytes=$(du -sb "corpus/$target" | cut -f1)
    line="$(date -u +%FT%TZ) $target: ${elapsed}s, exit $status, $execs execs, corpus $files files ($bytes bytes); $last"
    echo "$line" | tee -a runs.log
done
