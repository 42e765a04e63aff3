#!/bin/sh
# Builds the libFuzzer targets in test/fuzz (the HTTP and RESP parsers,
# buffer_sequence) with clang (Debian: clang,
# libclang-rt-14-dev) under AddressSanitizer and UndefinedBehaviorSanitizer
# and runs each for a bounded time over the seed corpus in test/fuzz/corpus.
#   test/fuzz/run.sh [SECONDS-PER-TARGET]     (default 30, or $ZERG_FUZZ_SECONDS)
# Exits non-zero when a target crashes or breaks an invariant (the input is
# saved in the work directory, whose path is printed). Prints one line
# "SKIPPED fuzz-parsers: ..." and exits 0 when clang or libFuzzer is missing.
# The seed corpus is only read; what the fuzzer finds goes to the work
# directory ($ZERG_FUZZ_DIR, or a new one under /tmp), so a longer run can
# resume from it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-${ZERG_FUZZ_SECONDS:-30}}
cxx=${ZERG_FUZZ_CXX:-}
if [ -z "$cxx" ]; then
    for c in clang++ clang++-14 clang++-15 clang++-16; do
        if command -v "$c" >/dev/null 2>&1; then cxx=$c; break; fi
    done
fi
if [ -z "$cxx" ]; then
    echo "SKIPPED fuzz-parsers: clang++ not installed (Debian: clang libclang-rt-14-dev)"
    exit 0
fi
if [ -n "${ZERG_FUZZ_DIR:-}" ]; then
    work=$ZERG_FUZZ_DIR
    mkdir -p "$work"
else
    work=$(mktemp -d /tmp/zerg-fuzz.XXXXXX)
    trap 'if [ "$status" -eq 0 ]; then rm -rf "$work"; fi' EXIT  # kept when something was found
fi
status=0
flags="-std=c++20 -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I$root/include"

# libFuzzer itself: a program that links with -fsanitize=fuzzer (the
# runtime is in libclang-rt-N-dev, which clang does not pull in).
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > "$work/probe.cpp"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$work/probe.cpp" -o "$work/probe" >"$work/probe.log" 2>&1; then
    echo "SKIPPED fuzz-parsers: $cxx cannot link -fsanitize=fuzzer,address,undefined (Debian: libclang-rt-14-dev): $(head -c 300 "$work/probe.log")"
    exit 0
fi

for target in http_request resp_command buffer_sequence; do
    if ! "$cxx" $flags "$here/${target}_fuzz.cpp" -o "$work/${target}_fuzz" 2>"$work/$target.build.log"; then
        cat "$work/$target.build.log"
        echo "FAILED fuzz-parsers: $target does not build"
        status=1
        continue
    fi
    mkdir -p "$work/$target.corpus"
    # -timeout: an input that takes ten seconds is a finding (generous: CI machines are shared).
    # -rss_limit_mb: libFuzzer's default, spelled out (ASan's quarantine alone grows past 512 MB in minutes).
    (cd "$work" && "./${target}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$work/$target-" \
        "$work/$target.corpus" "$here/corpus/$target" >"$work/$target.log" 2>&1)
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log")
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$work/$target.log"
        echo "FAILED fuzz-parsers: $target exited $rc after ${runs:-?} runs; input saved as $work/$target-*"
        status=1
    else
        echo "fuzz-parsers: $target ${runs:-?} runs in ${seconds}s without a finding"
    fi
done
exit $status
