#!/usr/bin/env bash
# The real-kernel job: boots Debian's cloud kernels under qemu with the
# statically linked suites in an initramfs, runs every suite on each kernel,
# prints one table (suite x kernel) and fails if a suite failed anywhere.
#
#   test/kernels/run.sh [--init FILE] [--out FILE] -- PROGRAM...
#
# b2 calls it from test/kernels/Jamfile (target real-kernels.log); doc/testing.md
# says how to run it by hand. A program named uring-info is run first on each
# kernel and its report kept; every other program is a Boost.Test suite.
#
# Environment:
#   ZERG_KERNELS        kernel series to boot, in order (default "6.1 6.12")
#   ZERG_KERNEL_CACHE   where fetched kernels are kept (default build/kernels)
#   ZERG_SUITE_TIMEOUT  seconds one suite may take inside the VM (default 300)
#   ZERG_QEMU_ACCEL     tcg (default) or kvm
#   ZERG_QEMU_SMP       virtual CPUs (default 2)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
init=$here/init
out=
while [ $# -gt 0 ]; do
    case $1 in
        --init) init=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "usage: $0 [--init FILE] [--out FILE] -- PROGRAM..." >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "real-kernels: no programs given" >&2; exit 2; }
programs=("$@")

kernels=${ZERG_KERNELS:-6.1 6.12}
cache=${ZERG_KERNEL_CACHE:-$root/build/kernels}
suite_timeout=${ZERG_SUITE_TIMEOUT:-300}
accel=${ZERG_QEMU_ACCEL:-tcg}
smp=${ZERG_QEMU_SMP:-2}
logs=${out:+$out.d}
logs=${logs:-$root/build/real-kernels.d}

fail() { echo "real-kernels: $*" >&2; exit 1; }

# What the job needs on the host. .ci/run installs these; a machine without
# them fails here, naming the package, rather than skipping silently.
for tool in qemu-system-x86_64:qemu-system-x86 cpio:cpio gzip:gzip dpkg-deb:dpkg apt-get:apt; do
    command -v "${tool%%:*}" >/dev/null || fail "${tool%%:*} not found (Debian package ${tool#*:})"
done
busybox=
for b in /bin/busybox /usr/bin/busybox; do
    # Only a static busybox runs in an initramfs without a libc.
    if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then busybox=$b; break; fi
done
[ -n "$busybox" ] || fail "no static busybox (Debian package busybox-static)"

# ---- kernels: the newest linux-image-<series>.*-cloud-amd64 the apt lists
# know, unpacked once into the cache; never installed.
kernel_image() {
    local series=$1 pattern pkg dir tmp
    pattern="^linux-image-${series//./\\.}\\.[0-9][^ ]*-cloud-amd64\$"
    pkg=$(apt-cache pkgnames "linux-image-$series." 2>/dev/null | grep -E "$pattern" | sort -V | tail -n 1)
    if [ -z "$pkg" ]; then
        # No apt lists (offline): fall back to the newest kernel already cached.
        dir=$(ls -d "$cache"/linux-image-"$series".[0-9]*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)
        [ -n "$dir" ] || { echo "real-kernels: no $series cloud kernel in the apt lists or in $cache (apt-get update?)" >&2; return 1; }
        pkg=${dir##*/}
    fi
    dir=$cache/$pkg
    if ! ls "$dir"/vmlinuz-* >/dev/null 2>&1; then
        echo "real-kernels: fetching $pkg" >&2
        mkdir -p "$cache"
        tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
        # apt-get download drops privileges to _apt, which cannot write to a
        # root-owned directory; as root, keep root.
        local opts=()
        [ "$(id -u)" = 0 ] && opts=(-o APT::Sandbox::User=root)
        if ! (cd "$tmp" && apt-get download -qq "${opts[@]}" "$pkg" >&2 &&
              dpkg-deb --fsys-tarfile ./*.deb | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' './boot/config-*'); then
            rm -rf "$tmp"
            echo "real-kernels: could not fetch $pkg" >&2
            return 1
        fi
        mkdir -p "$dir"
        mv "$tmp"/boot/* "$dir"/
        rm -rf "$tmp"
    fi
    ls "$dir"/vmlinuz-* | head -n 1
}

# ---- the initramfs, shared by every kernel.
rm -rf "$logs"
mkdir -p "$logs"
stage=$(mktemp -d "${TMPDIR:-/tmp}/zerg-real-kernels.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/root/{bin,suites}
cp "$busybox" "$stage"/root/bin/busybox
cp "$init" "$stage"/root/init
chmod 755 "$stage"/root/init
names=()
for p in "${programs[@]}"; do
    n=$(basename "$p")
    cp "$p" "$stage/root/suites/$n"
    strip "$stage/root/suites/$n" 2>/dev/null || true
    # uring-info first: its report heads each kernel's log.
    if [ "$n" = uring-info ]; then names=("$n" "${names[@]}"); else names+=("$n"); fi
done
{
    echo "SUITE_TIMEOUT=$suite_timeout"
    echo "SUITES='${names[*]}'"
} > "$stage"/root/job.conf
(cd "$stage"/root && find . | cpio -o -H newc --quiet | gzip -1) > "$stage"/initrd.gz

# ---- boot each kernel and keep its console.
bios=()
# qboot (Debian's qemu-system-data) starts a -kernel boot in a fraction of SeaBIOS's time.
[ -f /usr/share/qemu/qboot.rom ] && bios=(-bios qboot.rom)
if [ "$accel" = kvm ]; then cpu=(-accel kvm -cpu host); else cpu=(-accel tcg -cpu max); fi
vm_limit=$(( (${#names[@]} + 1) * suite_timeout + 60 ))
declare -A release
job_start=$(date +%s)
for k in $kernels; do
    vmlinuz=$(kernel_image "$k") || { echo "@@zerg no-kernel" > "$logs/$k.console"; continue; }
    release[$k]=$(basename "$vmlinuz" | sed 's/^vmlinuz-//')
    echo "real-kernels: booting ${release[$k]} ($accel, $smp CPUs)" >&2
    t0=$(date +%s)
    timeout -k 10 "$vm_limit" qemu-system-x86_64 "${cpu[@]}" -smp "$smp" -m 2048 \
        -nographic -no-reboot -nic none "${bios[@]}" \
        -kernel "$vmlinuz" -initrd "$stage"/initrd.gz \
        -append "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init" \
        </dev/null > "$logs/$k.console" 2>&1
    # Written straight to the file (a pipe would hold the tail back while
    # watching a run); the serial console's CRs go afterwards.
    sed -i 's/\r$//' "$logs/$k.console"
    echo "real-kernels: ${release[$k]} took $(( $(date +%s) - t0 )) s" >&2
done
job_seconds=$(( $(date +%s) - job_start ))

# ---- one table: suite x kernel.
# A cell: pass/FAIL/TIMEOUT/NOT RUN, the test cases passed of those run, how
# many said SKIPPED, and the seconds the suite took inside the VM.
cell() {  # kernel suite -> sets cell_text, cell_ok, writes the suite's output to a file
    local log=$logs/$1.console section rc seconds cases skipped
    section=$(awk -v s="$2" '$0 == "@@zerg begin " s { on = 1; next }
                             on && index($0, "@@zerg end " s " ") == 1 { print; exit }
                             on { print }' "$log")
    printf '%s\n' "$section" > "$logs/$1.$2.log"
    local end
    end=$(printf '%s\n' "$section" | tail -n 1)
    if [[ $end != "@@zerg end $2 "* ]]; then
        cell_text="NOT RUN"; cell_ok=0; return
    fi
    rc=$(sed -n 's/.* rc=\([0-9]*\).*/\1/p' <<<"$end")
    seconds=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$end")
    skipped=$(grep -c '^SKIPPED ' <<<"$section")
    cases=$(grep -oE '[0-9]+ test cases? out of [0-9]+' <<<"$section" | head -n 1 | awk '{ print $1 "/" $NF }')
    case $rc in
        0) cell_text="pass"; cell_ok=1 ;;
        137) cell_text="TIMEOUT"; cell_ok=0 ;;
        *) cell_text="FAIL rc=$rc"; cell_ok=0 ;;
    esac
    [ -n "$cases" ] && [ "$2" != uring-info ] && cell_text+=" $cases"
    [ "$skipped" -gt 0 ] && cell_text+=" ($skipped skipped)"
    cell_text+=" ${seconds}s"
}

ok=1
failed_cells=()
{
    echo "real-kernel job: ${#names[@]} programs on $kernels under qemu ($accel, $smp CPUs), ${job_seconds} s in all"
    for k in $kernels; do echo "  $k: ${release[$k]:-no kernel}"; done
    echo "  slow loops cut down inside the VM (ZERG_TEST_UNDER_QEMU=1); per-suite timeout ${suite_timeout} s"
    printf '%-24s' suite
    for k in $kernels; do printf ' | %-34s' "$k"; done
    echo
    for n in "${names[@]}"; do
        printf '%-24s' "$n"
        for k in $kernels; do
            cell "$k" "$n"
            printf ' | %-34s' "$cell_text"
            if [ "$cell_ok" = 0 ]; then ok=0; failed_cells+=("$k:$n"); fi
        done
        echo
    done
    for k in $kernels; do
        [ -f "$logs/$k.uring-info.log" ] || continue
        echo
        echo "-- $k: paths zerg takes (uring-info)"
        sed -n '/paths zerg takes/,$p' "$logs/$k.uring-info.log" | sed '1d; /^@@zerg/d'
        echo "-- $k: tests that skipped"
        cat "$logs/$k".*.log | grep '^SKIPPED ' | sed 's/^/  /' | sort -u
    done
} > "$logs/table"
cat "$logs/table"

for c in "${failed_cells[@]+"${failed_cells[@]}"}"; do
    k=${c%%:*} n=${c#*:}
    echo
    echo "==== $n on $k: last 60 lines (all of it in $logs/$k.$n.log) ===="
    if [ -s "$logs/$k.$n.log" ]; then tail -n 60 "$logs/$k.$n.log"; else tail -n 30 "$logs/$k.console"; fi
done

if [ "$ok" = 1 ]; then
    [ -n "$out" ] && cp "$logs/table" "$out"
    exit 0
fi
# .ci/run reads this list to put the failed checks at the end of its log.
printf '%s\n' "${failed_cells[@]}" > "$logs/failed"
echo "real-kernels: failed on a real kernel: ${failed_cells[*]}" >&2
exit 1
