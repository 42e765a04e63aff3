// A test that cannot run on this kernel says so, in its output, and why.
#pragma once

#include <boost/test/unit_test.hpp>

#include <iostream>
#include <string_view>

namespace zerg::test {

// Prints "SKIPPED <test>: <reason>" and returns true when !available; use as
//   if (zerg::test::skip_unless(k.buf_ring_incremental, "IOU_PBUF_RING_INC (Linux 6.12)")) return;
inline bool skip_unless(bool available, std::string_view needs) {
    if (available) return false;
    std::cout << "SKIPPED " << boost::unit_test::framework::current_test_case().p_name.get()
              << ": the running kernel lacks " << needs << '\n';
    BOOST_TEST_MESSAGE("skipped: kernel lacks " << needs);
    return true;
}

}  // namespace zerg::test
