#define BOOST_TEST_MODULE ring
#include <boost/test/unit_test.hpp>

#include <zerg/uring/operations.hpp>
#include <zerg/uring/probe.hpp>
#include <zerg/uring/ring.hpp>

#include <support/skip.hpp>
#include <support/sockets.hpp>

#include <chrono>
#include <set>

namespace uring = zerg::uring;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_CASE(default_ring_uses_single_issuer_and_defer_taskrun) {
    auto k = uring::probe_kernel();
    if (zerg::test::skip_unless(k.accepts(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN),
                                "SINGLE_ISSUER and DEFER_TASKRUN (Linux 6.1)"))
        return;
    uring::ring r;
    BOOST_TEST(r.has_setup_flag(IORING_SETUP_SINGLE_ISSUER));
    BOOST_TEST(r.has_setup_flag(IORING_SETUP_DEFER_TASKRUN));
    BOOST_TEST(!r.fell_back(uring::feature::defer_taskrun));
    BOOST_TEST(r.ring_fd_registered());
}

BOOST_AUTO_TEST_CASE(hidden_defer_taskrun_falls_back_to_coop_taskrun) {
    uring::scoped_hide hide(uring::feature::defer_taskrun);
    uring::ring r;
    BOOST_TEST(!r.has_setup_flag(IORING_SETUP_DEFER_TASKRUN));
    BOOST_TEST(r.has_setup_flag(IORING_SETUP_COOP_TASKRUN));
    BOOST_TEST(r.fell_back(uring::feature::defer_taskrun));
    // The fallback ring still works.
    uring::prep_nop(r.get_sqe());
    auto c = zerg::test::wait_for(r, 1);
    BOOST_TEST(c.front().res == 0);
}

BOOST_AUTO_TEST_CASE(hidden_single_issuer_drops_defer_taskrun_too) {
    uring::scoped_hide hide(uring::feature::single_issuer);
    uring::ring r;
    BOOST_TEST(!r.has_setup_flag(IORING_SETUP_SINGLE_ISSUER));
    BOOST_TEST(!r.has_setup_flag(IORING_SETUP_DEFER_TASKRUN));
    BOOST_TEST(r.fell_back(uring::feature::single_issuer));
    BOOST_TEST(r.fell_back(uring::feature::defer_taskrun));
}

BOOST_AUTO_TEST_CASE(hidden_registered_ring_fd_still_submits) {
    uring::scoped_hide hide(uring::feature::registered_ring_fd);
    uring::ring r;
    BOOST_TEST(!r.ring_fd_registered());
    BOOST_TEST(r.fell_back(uring::feature::registered_ring_fd));
    uring::prep_nop(r.get_sqe());
    uring::prep_nop(r.get_sqe());
    BOOST_TEST(zerg::test::wait_for(r, 2).size() == 2u);
}

BOOST_AUTO_TEST_CASE(kernel_refusal_is_attributed_to_the_refused_flag) {
    // An SQ_AFF cpu that does not exist makes the kernel refuse SQPOLL's
    // setup (EINVAL); the ring must drop SQPOLL, say so, and keep the rest.
    uring::ring_options o;
    o.sqpoll = true;
    o.sqpoll_cpu = 4095;
    uring::ring r(o);
    BOOST_TEST(!r.has_setup_flag(IORING_SETUP_SQPOLL));
    BOOST_TEST(r.fell_back(uring::feature::sqpoll));
    BOOST_TEST(!r.fell_back(uring::feature::single_issuer));
    uring::prep_nop(r.get_sqe());
    BOOST_TEST(zerg::test::wait_for(r, 1).size() == 1u);
}

BOOST_AUTO_TEST_CASE(sqpoll_ring_submits_without_enter) {
    uring::ring_options o;
    o.sqpoll = true;
    o.sqpoll_cpu = 0;
    o.sqpoll_idle_ms = 50;
    uring::ring r(o);
    if (zerg::test::skip_unless(r.has_setup_flag(IORING_SETUP_SQPOLL), "SQPOLL for this user")) return;
    BOOST_TEST(!r.has_setup_flag(IORING_SETUP_DEFER_TASKRUN));  // not combinable
    BOOST_TEST(r.fell_back(uring::feature::defer_taskrun));
    for (int i = 0; i < 10; ++i) {
        auto* sqe = r.get_sqe();
        uring::prep_nop(sqe);
        uring::set_user_data(sqe, 100 + i);
    }
    auto all = zerg::test::wait_for(r, 10);
    BOOST_TEST(all.size() == 10u);
}

BOOST_AUTO_TEST_CASE(full_sq_is_submitted_not_reported_as_null) {
    uring::ring_options o;
    o.entries = 4;
    uring::ring r(o);
    BOOST_TEST(r.sq_entries() == 4u);
    for (std::uint64_t i = 0; i < 50; ++i) {
        std::error_code ec;
        io_uring_sqe* sqe = r.get_sqe(ec);
        BOOST_REQUIRE_MESSAGE(sqe, "get_sqe failed: " << ec.message());
        uring::prep_nop(sqe);
        uring::set_user_data(sqe, i);
        // Reap as we go so the CQ (8 entries) never has to hold all 50.
        if (r.sq_space_left() == 0) r.for_each_completion([](const io_uring_cqe&) {});
    }
    std::set<std::uint64_t> seen;
    unsigned got = 0;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    // Some CQEs were consumed above; the rest must all arrive.
    while (std::chrono::steady_clock::now() < deadline && r.sq_ready() + r.cq_ready() > 0) {
        r.submit_and_wait_for(1, 100ms);
        got += r.for_each_completion([&](const io_uring_cqe& c) { seen.insert(c.user_data); });
    }
    BOOST_TEST(r.sq_ready() == 0u);
    BOOST_TEST(seen.count(49) == 1u);  // the last one made it through
}

BOOST_AUTO_TEST_CASE(sqe_failure_is_an_error_not_a_crash) {
    // A ring that is not enabled yet refuses io_uring_enter with EBADFD: once
    // its SQ is full, get_sqe cannot make room and must say why.
    uring::ring_options o;
    o.entries = 2;
    o.start_disabled = true;
    uring::ring r(o);
    uring::prep_nop(r.get_sqe());
    uring::prep_nop(r.get_sqe());
    std::error_code ec;
    BOOST_TEST(r.get_sqe(ec) == nullptr);
    BOOST_TEST(ec.value() == EBADFD);
    BOOST_CHECK_THROW(r.get_sqe(), std::system_error);
    BOOST_TEST(r.enable() == 0);
    BOOST_TEST(zerg::test::wait_for(r, 2).size() == 2u);
}

BOOST_AUTO_TEST_CASE(cq_overflow_is_detected_and_nothing_is_lost) {
    uring::ring_options o;
    o.entries = 8;
    o.cq_entries = 8;
    uring::ring r(o);
    if (zerg::test::skip_unless(r.has_kernel_feature(IORING_FEAT_NODROP), "IORING_FEAT_NODROP (Linux 5.5)")) return;
    BOOST_TEST(r.cq_entries() == 8u);
    constexpr unsigned total = 40;
    for (unsigned i = 0; i < total; ++i) {
        auto* sqe = r.get_sqe();  // submits every 8 without reaping
        uring::prep_nop(sqe);
        uring::set_user_data(sqe, i);
    }
    BOOST_TEST(r.submit() >= 0);
    BOOST_TEST(r.cq_overflow_pending());
    std::set<std::uint64_t> seen;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (seen.size() < total && std::chrono::steady_clock::now() < deadline) {
        r.for_each_completion([&](const io_uring_cqe& c) { seen.insert(c.user_data); });
        if (seen.size() < total) r.submit_and_wait_for(1, 100ms);  // flushes held-back CQEs
    }
    BOOST_TEST(seen.size() == total);
    BOOST_TEST(!r.cq_overflow_pending());
    BOOST_TEST(r.cq_dropped() == 0u);
}

BOOST_AUTO_TEST_CASE(batch_reaping_respects_the_limit) {
    uring::ring r;
    for (unsigned i = 0; i < 20; ++i) uring::prep_nop(r.get_sqe());
    BOOST_TEST(r.submit_and_wait(20) >= 0);
    BOOST_TEST(r.cq_ready() == 20u);
    BOOST_TEST(r.for_each_completion([](const io_uring_cqe&) {}, 8) == 8u);
    BOOST_TEST(r.cq_ready() == 12u);
    BOOST_TEST(r.for_each_completion([](const io_uring_cqe&) {}) == 12u);
}

static void check_wait_timeout(uring::ring& r) {
    auto start = std::chrono::steady_clock::now();
    int res = r.submit_and_wait_for(1, 50ms);
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(res == -ETIME);
    BOOST_TEST(took >= 40ms);
    BOOST_TEST(r.cq_ready() == 0u);  // no timeout CQE leaks to the user
    for (std::uint64_t tag : {7, 8}) {
        auto* sqe = r.get_sqe();
        uring::prep_nop(sqe);
        uring::set_user_data(sqe, tag);
    }
    auto all = zerg::test::wait_for(r, 2);
    for (auto& c : all) BOOST_TEST(c.user_data != LIBURING_UDATA_TIMEOUT);
}

BOOST_AUTO_TEST_CASE(wait_with_timeout_uses_ext_arg) {
    uring::ring r;
    if (zerg::test::skip_unless(r.has_kernel_feature(IORING_FEAT_EXT_ARG), "IORING_FEAT_EXT_ARG (Linux 5.11)")) return;
    check_wait_timeout(r);
}

BOOST_AUTO_TEST_CASE(wait_with_timeout_falls_back_to_timeout_sqe) {
    uring::scoped_hide hide(uring::feature::ext_arg);
    uring::ring r;
    BOOST_TEST(!r.has_kernel_feature(IORING_FEAT_EXT_ARG));
    BOOST_TEST(r.fell_back(uring::feature::ext_arg));
    check_wait_timeout(r);
}

BOOST_AUTO_TEST_CASE(moved_ring_keeps_working) {
    uring::ring a;
    uring::ring b(std::move(a));
    BOOST_TEST(!a.is_open());
    BOOST_TEST(b.is_open());
    uring::prep_nop(b.get_sqe());
    BOOST_TEST(zerg::test::wait_for(b, 1).size() == 1u);
}

BOOST_AUTO_TEST_CASE(setup_flag_names_are_readable) {
    BOOST_TEST(uring::setup_flag_names(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) ==
               "SINGLE_ISSUER|DEFER_TASKRUN");
    BOOST_TEST(uring::setup_flag_names(0) == "none");
}
