// zerg's own ring mapping (io_uring_setup + mmap, no liburing setup), the
// setup flags it makes usable with liburing 2.3 (NO_SQARRAY 6.6, NO_MMAP
// 6.5), and growing the CQ on overflow (RESIZE_RINGS 6.13). Each feature:
// in effect where the kernel has it, fallback when hidden or absent.
#define BOOST_TEST_MODULE ring_mapping
#include <boost/test/unit_test.hpp>

#include <zerg/uring/operations.hpp>
#include <zerg/uring/ring.hpp>

#include <support/kernel_version.hpp>
#include <support/skip.hpp>
#include <support/sockets.hpp>

#include <set>

namespace uring = zerg::uring;

namespace {

// Submits `n` NOPs tagged 1..n, reaps them all, and checks each came back
// exactly once with res 0: the SQ and CQ mappings agree with the kernel.
void nops_round_trip(uring::ring& r, unsigned n) {
    for (unsigned i = 1; i <= n; ++i) {
        io_uring_sqe* sqe = r.get_sqe();
        uring::prep_nop(sqe);
        sqe->user_data = i;
    }
    auto got = zerg::test::wait_for(r, n);
    std::set<std::uint64_t> tags;
    for (auto const& c : got) {
        BOOST_TEST(c.res == 0);
        tags.insert(c.user_data);
    }
    BOOST_TEST(tags.size() == n);
    BOOST_TEST(*tags.begin() == 1u);
    BOOST_TEST(*tags.rbegin() == n);
    BOOST_TEST(r.sq_ready() == 0u);
    BOOST_TEST(r.cq_ready() == 0u);
}

}  // namespace

BOOST_AUTO_TEST_CASE(own_mapping_round_trips_more_than_one_ring_of_sqes) {
    uring::ring_options o;
    o.entries = 8;
    uring::ring r(o);
    BOOST_TEST(r.sq_entries() == 8u);
    BOOST_TEST(r.cq_entries() >= 16u);
    BOOST_TEST(r.ring_bytes() > 0u);
    // Three times around the SQ: head and tail wrap past the mask.
    for (int round = 0; round < 3; ++round) nops_round_trip(r, 8);
    // More than the SQ holds in one go: get_sqe submits when it is full.
    nops_round_trip(r, 13);
}

BOOST_AUTO_TEST_CASE(no_sqarray_is_used_where_the_kernel_has_it) {
    uring::ring r;
    if (zerg::test::kernel_at_least(6, 6)) {
        BOOST_TEST(r.has_setup_flag(IORING_SETUP_NO_SQARRAY));
        BOOST_TEST(!r.fell_back(uring::feature::no_sqarray));
    } else {
        // 6.1: the kernel refuses the flag; the ring says so and works.
        BOOST_TEST(!r.has_setup_flag(IORING_SETUP_NO_SQARRAY));
        BOOST_TEST(r.fell_back(uring::feature::no_sqarray));
        std::cout << "SKIPPED no_sqarray in effect: the running kernel lacks NO_SQARRAY (Linux 6.6); fallback checked\n";
    }
    nops_round_trip(r, 20);
}

BOOST_AUTO_TEST_CASE(hidden_no_sqarray_maps_and_fills_the_index_array) {
    uring::scoped_hide hide(uring::feature::no_sqarray);
    uring::ring_options o;
    o.entries = 8;
    uring::ring r(o);
    BOOST_TEST(!r.has_setup_flag(IORING_SETUP_NO_SQARRAY));
    BOOST_TEST(r.fell_back(uring::feature::no_sqarray));
    for (int round = 0; round < 3; ++round) nops_round_trip(r, 8);
}

BOOST_AUTO_TEST_CASE(no_mmap_puts_small_rings_in_user_memory) {
    uring::ring_options o;
    o.entries = 8;
    o.no_mmap = true;
    uring::ring r(o);
    if (zerg::test::kernel_at_least(6, 5)) {
        BOOST_TEST(r.user_memory());
        BOOST_TEST(r.has_setup_flag(IORING_SETUP_NO_MMAP));
        BOOST_TEST(!r.fell_back(uring::feature::no_mmap));
    } else {
        BOOST_TEST(!r.user_memory());
        BOOST_TEST(r.fell_back(uring::feature::no_mmap));
        std::cout << "SKIPPED no_mmap in effect: the running kernel lacks NO_MMAP (Linux 6.5); fallback checked\n";
    }
    for (int round = 0; round < 3; ++round) nops_round_trip(r, 8);
}

BOOST_AUTO_TEST_CASE(hidden_no_mmap_maps_kernel_memory) {
    uring::scoped_hide hide(uring::feature::no_mmap);
    uring::ring_options o;
    o.entries = 8;
    o.no_mmap = true;
    uring::ring r(o);
    BOOST_TEST(!r.user_memory());
    BOOST_TEST(!r.has_setup_flag(IORING_SETUP_NO_MMAP));
    BOOST_TEST(r.fell_back(uring::feature::no_mmap));
    nops_round_trip(r, 8);
}

BOOST_AUTO_TEST_CASE(moved_ring_keeps_its_mapping) {
    uring::ring_options o;
    o.entries = 8;
    uring::ring a(o);
    nops_round_trip(a, 5);
    uring::ring b(std::move(a));
    BOOST_TEST(!a.is_open());
    nops_round_trip(b, 11);
}

namespace {

// Overflows a ring's CQ with NOPs it does not reap (a CQ of 8, 40 NOPs),
// then reaps: every CQE must come back once, whether the CQ grew or the
// kernel's held-back list was drained.
void overflow_and_reap(uring::ring& r, unsigned n) {
    for (unsigned i = 1; i <= n; ++i) {
        io_uring_sqe* sqe = r.get_sqe();  // submits (without reaping) when the SQ is full
        uring::prep_nop(sqe);
        sqe->user_data = i;
    }
    BOOST_TEST(r.submit() >= 0);
    // The next enter sees the overflow: it grows the CQ or lets the kernel flush.
    BOOST_TEST(r.submit_and_get_events() >= 0);
    std::set<std::uint64_t> tags;
    for (int tries = 0; tries < 100 && tags.size() < n; ++tries) {
        r.for_each_completion([&](const io_uring_cqe& c) { tags.insert(c.user_data); });
        if (tags.size() < n) r.submit_and_wait_for(1, std::chrono::milliseconds(100));
    }
    BOOST_TEST(tags.size() == n);
    BOOST_TEST(r.cq_dropped() == 0u);
    BOOST_TEST(r.cq_overflows() >= 1u);
}

uring::ring_options small_cq() {
    uring::ring_options o;
    o.entries = 4;
    o.cq_entries = 8;
    o.cq_max_entries = 32;
    return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(cq_overflow_grows_the_cq_where_the_kernel_can) {
    uring::ring r(small_cq());
    if (zerg::test::skip_unless(r.has_setup_flag(IORING_SETUP_DEFER_TASKRUN), "DEFER_TASKRUN (Linux 6.1)")) return;
    if (zerg::test::kernel_at_least(6, 13)) {
        BOOST_TEST(r.can_resize_cq());
        BOOST_TEST(!r.fell_back(uring::feature::resize_rings));
    } else {
        BOOST_TEST(!r.can_resize_cq());
        BOOST_TEST(r.fell_back(uring::feature::resize_rings));
    }
    BOOST_TEST(r.cq_entries() == 8u);
    overflow_and_reap(r, 40);
    if (r.can_resize_cq()) {
        BOOST_TEST(r.cq_resizes() >= 1u);
        BOOST_TEST(r.cq_entries() > 8u);
        BOOST_TEST(r.cq_entries() <= 32u);  // bounded by cq_max_entries
    } else {
        BOOST_TEST(r.cq_resizes() == 0u);
        std::cout << "SKIPPED CQ resize in effect: the running kernel lacks IORING_REGISTER_RESIZE_RINGS "
                     "(Linux 6.13); drain fallback checked\n";
    }
    nops_round_trip(r, 6);  // the ring still works at its new size
}

BOOST_AUTO_TEST_CASE(hidden_resize_drains_the_overflow_instead) {
    uring::scoped_hide hide(uring::feature::resize_rings);
    uring::ring r(small_cq());
    BOOST_TEST(!r.can_resize_cq());
    BOOST_TEST(r.fell_back(uring::feature::resize_rings));
    overflow_and_reap(r, 40);
    BOOST_TEST(r.cq_resizes() == 0u);
    BOOST_TEST(r.cq_entries() == 8u);
}

BOOST_AUTO_TEST_CASE(resize_keeps_pending_completions) {
    uring::ring r(small_cq());
    if (zerg::test::skip_unless(r.can_resize_cq(), "IORING_REGISTER_RESIZE_RINGS (Linux 6.13)")) return;
    for (unsigned i = 1; i <= 5; ++i) {
        io_uring_sqe* sqe = r.get_sqe();
        uring::prep_nop(sqe);
        sqe->user_data = i;
    }
    BOOST_TEST(r.submit_and_wait(4) >= 0);
    BOOST_TEST(r.resize_cq(64) == 0);
    BOOST_TEST(r.cq_entries() == 64u);
    std::set<std::uint64_t> tags;
    for (int tries = 0; tries < 50 && tags.size() < 5; ++tries) {
        r.for_each_completion([&](const io_uring_cqe& c) { tags.insert(c.user_data); });
        if (tags.size() < 5) r.submit_and_wait_for(1, std::chrono::milliseconds(100));
    }
    BOOST_TEST(tags.size() == 5u);
    // Not while completions are being handled: the loop holds CQ pointers.
    io_uring_sqe* sqe = r.get_sqe();
    uring::prep_nop(sqe);
    sqe->user_data = 9;
    r.submit_and_wait(1);
    int inside = 0;
    r.for_each_completion([&](const io_uring_cqe&) { inside = r.resize_cq(128); });
    BOOST_TEST(inside == -EBUSY);
    BOOST_TEST(r.cq_entries() == 64u);
}
