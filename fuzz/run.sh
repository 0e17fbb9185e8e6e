#!/usr/bin/env bash
# fuzz/run.sh — build inlet's cargo-fuzz targets and run each for a while.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]     # default 30
#
# Installs cargo-fuzz if `cargo fuzz` is missing, builds every target with AddressSanitizer
# (on the stable toolchain through RUSTC_BOOTSTRAP=1), then runs each target for
# SECONDS_PER_TARGET seconds on the checked-in seeds (fuzz/seeds/<target>/) plus what earlier
# runs found (fuzz/corpus/<target>/, gitignored), with libFuzzer's limits:
# -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10. Prints, per target, the executions and
# whether it crashed; exits 1 if any did. Crashing inputs land in fuzz/artifacts/<target>/,
# full logs in fuzz/target/logs/<target>.log.
#
# Environment: FUZZ_TARGETS="split_events validate" runs only those.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

targets=(${FUZZ_TARGETS:-split_events decompress validate pixel partition translate otlp})

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

# cargo-fuzz passes nightly-only flags (-Zsanitizer, sancov passes); RUSTC_BOOTSTRAP=1 lets
# the stable rustc take them. It also makes Cargo report the sanitizer to build scripts, so the
# `cc` crate compiles zstd-sys's C with -fsanitize=address; librdkafka's ./configure then links
# its test programs against that libzstd with plain gcc and fails ("libzstd ... failed") unless
# its links pull in an ASan runtime too: hence LDFLAGS (read only by librdkafka's mklove build;
# the fuzz binaries themselves are linked by rustc with its own ASan runtime).
export RUSTC_BOOTSTRAP=1
export LDFLAGS="${LDFLAGS:+$LDFLAGS }-fsanitize=address"
echo "building fuzz targets (AddressSanitizer; the first build compiles librdkafka: minutes)"
build_start=$SECONDS
cargo fuzz build --sanitizer address
echo "build took $((SECONDS - build_start)) s"

host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="fuzz/target/$host/release"
mkdir -p fuzz/target/logs

failed=()
printf '\n%-14s %8s %12s  %s\n' target seconds executions result
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    log="fuzz/target/logs/$target.log"
    mkdir -p "$corpus" "$artifacts"
    dict=()
    case "$target" in
        split_events | validate | pixel) dict=(-dict=fuzz/dict/events.dict) ;;
    esac
    status=0
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}" \
        "$bin_dir/$target" "$corpus" "fuzz/seeds/$target" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 "${dict[@]}" \
        >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log" | tail -1)"
    if [[ -z "$runs" ]]; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)/\1/p' "$log" | tail -1)"
    fi
    if ((status == 0)); then
        result="ok, no crash"
    else
        result="CRASH (exit $status)"
        failed+=("$target")
    fi
    printf '%-14s %8s %12s  %s\n' "$target" "$seconds" "${runs:-?}" "$result"
done

if ((${#failed[@]})); then
    for target in "${failed[@]}"; do
        log="fuzz/target/logs/$target.log"
        printf '\n--- %s (full log: %s) ---\n' "$target" "$log"
        # The panic message or sanitizer report and the top of its stack, then the input.
        awk '/panicked at|^==[0-9]+== ?ERROR|ALARM: working on|out-of-memory|-rss_limit_mb/ {p = 1}
             p && n < 30 {print; n++}' "$log"
        grep -E '^SUMMARY|Test unit written|^Base64' "$log" || true
        echo "artifacts:"
        ls -l "fuzz/artifacts/$target/"
    done
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "no crashes"
