#!/usr/bin/env bash
# Installs zerg into a fresh temporary prefix (`b2 install --prefix`) and
# builds the consumer in this folder three ways, as a user's project would:
#   1. CMake:      find_package(zerg CONFIG REQUIRED), zerg::zerg (liburing through
#                  pkg-config, and again through find_library alone)
#   2. pkg-config: g++ echo_consumer.cpp $(pkg-config --cflags --libs zerg)
#   3. b2:         use-project /zerg : <checkout>
# Each binary starts an echo server on 127.0.0.1 and checks one round trip.
# Exit status 0 when all three pass; 77 when cmake or pkg-config is missing.
#   test/consumers/run.sh [ZERG_ROOT]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "${1:-$here/../..}" && pwd)

for tool in b2 g++ cmake pkg-config; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIPPED consumers: $tool not installed (Debian package ${tool/g++/g++})"
        exit 77
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/zerg-consumers-XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
failed=0

# Runs "$@" with its output in $work/$name.log, shown only when it fails.
step() {
    local name=$1
    shift
    if timeout 300 "$@" >"$work/$name.log" 2>&1; then
        echo "ok: $name"
    else
        echo "FAILED: $name ($*)"
        sed 's/^/    /' "$work/$name.log"
        failed=1
        return 1
    fi
}

# Own build directory: the b2 running this test may be building the same
# targets in the checkout's build/ at this moment.
step install sh -c "cd '$root' && b2 -q -j1 --build-dir='$work/zerg-build' --prefix='$prefix' install" || exit 1
for f in include/zerg/zerg.hpp include/zerg/prometheus.hpp lib/cmake/zerg/zergConfig.cmake \
         lib/cmake/zerg/zergConfigVersion.cmake lib/pkgconfig/zerg.pc bin/uring-info; do
    [ -e "$prefix/$f" ] || { echo "FAILED: install: $prefix/$f missing"; failed=1; }
done

# The consumer's sources, copied out so nothing of the checkout is near them.
src=$work/consumer
mkdir -p "$src"
cp "$here/echo_consumer.cpp" "$here/CMakeLists.txt" "$here/Jamroot" "$src/"

# 1. CMake
if step cmake-configure cmake -S "$src" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release &&
   step cmake-build cmake --build "$work/cmake-build"; then
    step cmake-run "$work/cmake-build/echo_consumer"
fi

# 1b. CMake without pkg-config: liburing through find_library
if step cmake-nopc-configure cmake -S "$src" -B "$work/cmake-nopc" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON &&
   step cmake-nopc-build cmake --build "$work/cmake-nopc"; then
    step cmake-nopc-run "$work/cmake-nopc/echo_consumer"
fi

# 2. pkg-config
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
if step pkg-config-build sh -c "g++ -O2 -Wall -Wextra -o '$work/pc-echo_consumer' '$src/echo_consumer.cpp' \$(pkg-config --cflags --libs zerg)"; then
    step pkg-config-run "$work/pc-echo_consumer"
fi

# 3. b2, with the checkout as a sub-project
if step b2-build sh -c "cd '$src' && b2 -q -j1 --zerg='$root' --build-dir='$work/b2-build' echo_consumer"; then
    exe=$(find "$work/b2-build" -type f -name echo_consumer -perm -u+x | head -1)
    step b2-run "$exe"
fi

[ "$failed" -eq 0 ] && echo "consumers: all passed"
exit "$failed"
