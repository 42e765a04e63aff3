// The check every prep_* gets: an SQE full of stale bytes (a reused ring
// slot) comes out the same as a zeroed one, so no field of an earlier
// operation leaks into the next. user_data is the caller's to set.
#pragma once

#include <boost/test/unit_test.hpp>

#include <liburing.h>

#include <cstring>
#include <functional>
#include <utility>
#include <vector>

namespace zerg::test {

using named_prep = std::pair<const char*, std::function<void(io_uring_sqe*)>>;

inline void check_preps_overwrite_stale_sqes(const std::vector<named_prep>& preps) {
    for (auto const& [name, prep] : preps) {
        io_uring_sqe clean;
        io_uring_sqe stale;
        std::memset(&clean, 0, sizeof clean);
        std::memset(&stale, 0xa5, sizeof stale);
        prep(&clean);
        prep(&stale);
        clean.user_data = stale.user_data = 0;
        BOOST_TEST(std::memcmp(&clean, &stale, sizeof clean) == 0, "prep_" << name << " leaves stale bytes");
    }
}

}  // namespace zerg::test
