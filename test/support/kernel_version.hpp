// The running kernel's version, for tests that must tell "the kernel lacks
// it" (expect the fallback) from "the kernel has it" (expect it in effect).
#pragma once

#include <sys/utsname.h>

#include <cstdio>

namespace zerg::test {

// True when uname's release is at least major.minor ("6.13.0-1-amd64").
inline bool kernel_at_least(int major, int minor) {
    utsname u{};
    if (::uname(&u) != 0) return false;
    int ma = 0, mi = 0;
    if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
    return ma > major || (ma == major && mi >= minor);
}

}  // namespace zerg::test
