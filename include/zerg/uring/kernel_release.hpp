// The running kernel's release, for the few behaviours no probe can see.
//
// io_uring reports most of what it can do (opcodes through the probe,
// features in the setup parameters, flags a call refuses with EINVAL). A few
// changes of behaviour leave no trace there: incremental buffer rings take
// part in bundle receives from Linux 6.15, with nothing that says so. For
// those the release string decides. It can only err on the safe side: a
// kernel that reports an older release (a backport) keeps the older
// behaviour.
//
// Any thread.
#pragma once

#include <sys/utsname.h>

#include <cstddef>
#include <string_view>

namespace zerg::uring {

struct kernel_release {
    unsigned major = 0;
    unsigned minor = 0;

    // "6.18.0-1-amd64" -> {6, 18}; {0, 0} when the string has no "N.N".
    static constexpr kernel_release parse(std::string_view release) noexcept {
        std::size_t at = 0;
        auto number = [&](unsigned& out) {
            std::size_t start = at;
            out = 0;
            while (at < release.size() && release[at] >= '0' && release[at] <= '9' && at - start < 6)
                out = out * 10 + static_cast<unsigned>(release[at++] - '0');
            return at > start;
        };
        kernel_release out;
        if (!number(out.major) || at >= release.size() || release[at++] != '.' || !number(out.minor)) return {};
        return out;
    }

    // What uname(2) reports for the running kernel.
    static kernel_release running() noexcept {
        utsname u{};
        if (::uname(&u) != 0) return {};
        return parse(u.release);
    }

    constexpr bool at_least(unsigned want_major, unsigned want_minor) const noexcept {
        return major > want_major || (major == want_major && minor >= want_minor);
    }
};

static_assert(kernel_release::parse("6.18.0-1-amd64").major == 6 && kernel_release::parse("6.18.0-1-amd64").minor == 18);
static_assert(kernel_release::parse("x").major == 0 && kernel_release::parse("6").minor == 0);

}  // namespace zerg::uring
