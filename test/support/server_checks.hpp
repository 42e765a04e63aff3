// Checks shared by the suites that run zerg servers.
#pragma once

#include <boost/test/unit_test.hpp>

#include <zerg/server.hpp>

#include <support/echo_client.hpp>

#include <cstdint>

namespace zerg::test {

// Every connection closed, every slot free, every buffer back in the kernel.
template <class R>
void check_clean(const zerg::server<R>& s) {
    bool clean = eventually([&] {
        auto t = s.totals();
        return t.open_connections == 0 && t.busy_slots == 0 && t.buffers_in_use == 0;
    });
    auto t = s.totals();
    BOOST_TEST(clean, "open " << t.open_connections << ", busy slots " << t.busy_slots << ", buffers in use "
                              << t.buffers_in_use);
    BOOST_TEST(t.stale_completions == 0u);
}

// The echo run finished, in time, with every byte back and right.
inline void check(const echo_outcome& o, std::uint64_t expected_bytes) {
    BOOST_TEST(o.error.empty(), o.error);
    BOOST_TEST(!o.timed_out);
    BOOST_TEST(o.mismatches == 0u);
    BOOST_TEST(o.bytes_verified == expected_bytes);
}

}  // namespace zerg::test
