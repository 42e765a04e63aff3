#define BOOST_TEST_MODULE faults_hidden_env
#include <boost/test/unit_test.hpp>

// ZERG_URING_HIDE, the environment form of zerg::uring::hide: read once,
// before the first ring is made, so this binary has one test case and sets
// the variable before anything in zerg looks at it. Every listed feature is
// then treated as missing: the fallbacks are reported and echo is still
// byte-exact. (matrix_test.cpp hides them one at a time with scoped_hide.)

#include <faults/common.hpp>
#include <support/server_checks.hpp>

#include <cstdlib>
#include <iostream>

using namespace std::chrono_literals;
namespace faults = zerg::faults;

BOOST_AUTO_TEST_CASE(zerg_uring_hide_from_the_environment) {
    BOOST_REQUIRE(::setenv("ZERG_URING_HIDE", "msg_ring,buf_ring_incremental,defer_taskrun,registered_ring_fd", 1) == 0);
    namespace uring = zerg::uring;
    BOOST_TEST(uring::is_hidden(uring::feature::msg_ring));
    BOOST_TEST(uring::is_hidden(uring::feature::buf_ring_incremental));
    BOOST_TEST(uring::is_hidden(uring::feature::defer_taskrun));
    BOOST_TEST(uring::is_hidden(uring::feature::registered_ring_fd));
    BOOST_TEST(!uring::is_hidden(uring::feature::single_issuer));

    using R = zerg::reactor<faults::sequence_echo, zerg::buffers<zerg::incremental_buffers<>>,
                            zerg::handoff<zerg::msg_ring_handoff>>;
    zerg::server<R> s(faults::loopback_config(2));
    s.start();
    auto has = [&](const char* prefix) {
        for (auto const& fb : s.fallbacks())
            if (fb.rfind(prefix, 0) == 0) return true;
        return false;
    };
    std::cout << "zerg_uring_hide_from_the_environment: " << R::policy_names() << " (" << faults::build_kind << ")\n";
    for (auto const& [who, what] : s.fallbacks_by_component()) std::cout << "  " << who << ": " << what << '\n';
    BOOST_TEST(has("handoff: "));
    BOOST_TEST(has("buffers: "));
    BOOST_TEST(has("defer_taskrun: "));
    BOOST_TEST(has("registered_ring_fd: "));
    BOOST_TEST(!(s.reactor(0).ring_flags() & IORING_SETUP_DEFER_TASKRUN));
    unsigned conns = faults::scaled(32u, 8u);
    zerg::test::check(zerg::test::run_echo({s.port(), conns, 5000, 12, 30s}), std::uint64_t{conns} * 5000 * 12);
    zerg::test::check_clean(s);
    s.stop();
}
