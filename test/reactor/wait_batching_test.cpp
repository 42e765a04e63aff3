// server_config::min_wait: a reactor whose wait batches completions
// (IORING_FEAT_MIN_TIMEOUT, 6.12) echoes exactly as one that wakes at every
// first completion; without the feature (hidden, or an older kernel) it says
// so in fallbacks() and echoes all the same. Also: the CQ-overflow counters
// the reactor publishes exist and start at 0 on a CQ sized for the load.
#define BOOST_TEST_MODULE reactor_wait_batching
#include <boost/test/unit_test.hpp>

#include <zerg/zerg.hpp>

#include <support/echo_client.hpp>
#include <support/kernel_version.hpp>
#include <support/server_checks.hpp>

#include <chrono>
#include <iostream>
#include <string>

namespace {

struct echo {
    void on_data(zerg::connection<echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};

zerg::server_config batching_config() {
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.port = 0;
    config.reactors = 2;
    config.ring_entries = 256;
    config.max_connections = 256;
    config.stop_deadline = std::chrono::milliseconds(2000);
    config.min_wait = std::chrono::microseconds(200);
    config.min_wait_completions = 16;
    return config;
}

bool has_fallback(const zerg::server<zerg::reactor<echo>>& s, const std::string& prefix) {
    for (auto const& fb : s.fallbacks())
        if (fb.rfind(prefix, 0) == 0) return true;
    return false;
}

void echo_through(zerg::server<zerg::reactor<echo>>& s) {
    zerg::test::check(zerg::test::run_echo({s.port(), 16, 500, 8}), 16ull * 500 * 8);
    zerg::test::check_clean(s);
    // A CQ of twice the SQ holds everything this load produces.
    BOOST_TEST(s.totals().cq_overflows == 0u);
    BOOST_TEST(s.totals().cq_resizes == 0u);
}

}  // namespace

BOOST_AUTO_TEST_CASE(min_wait_batches_where_the_kernel_can_and_echo_is_exact) {
    zerg::server<zerg::reactor<echo>> s(batching_config());
    s.start();
    for (auto const& fb : s.fallbacks()) std::cout << "fallback " << fb << '\n';
    bool batching = zerg::test::kernel_at_least(6, 12);
    BOOST_TEST(has_fallback(s, "min_timeout: ") == !batching);
    if (!batching)
        std::cout << "SKIPPED min_wait in effect: the running kernel lacks IORING_FEAT_MIN_TIMEOUT (Linux 6.12); "
                     "fallback checked\n";
    echo_through(s);
    s.stop();
}

BOOST_AUTO_TEST_CASE(hidden_min_timeout_is_reported_and_echo_is_exact) {
    zerg::uring::scoped_hide hide(zerg::uring::feature::min_timeout);
    zerg::server<zerg::reactor<echo>> s(batching_config());
    s.start();
    BOOST_TEST(has_fallback(s, "min_timeout: "));
    echo_through(s);
    s.stop();
}

BOOST_AUTO_TEST_CASE(no_min_wait_no_fallback) {
    auto config = batching_config();
    config.min_wait = std::chrono::microseconds(0);
    zerg::server<zerg::reactor<echo>> s(config);
    s.start();
    BOOST_TEST(!has_fallback(s, "min_timeout: "));
    echo_through(s);
    s.stop();
}
