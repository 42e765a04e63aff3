// Waiting: min_wait batching (IORING_FEAT_MIN_TIMEOUT, 6.12), registered
// wait regions (IORING_REGISTER_MEM_REGION + IORING_ENTER_EXT_ARG_REG, 6.13)
// and NAPI busy-poll registration (6.9). Each: in effect where the kernel
// has it, and its fallback when hidden or absent.
#define BOOST_TEST_MODULE ring_wait
#include <boost/test/unit_test.hpp>

#include <zerg/uring/operations.hpp>
#include <zerg/uring/ring.hpp>

#include <support/kernel_version.hpp>
#include <support/skip.hpp>

#include <chrono>

namespace uring = zerg::uring;
using namespace std::chrono_literals;

namespace {

void one_nop(uring::ring& r, std::uint64_t tag) {
    io_uring_sqe* sqe = r.get_sqe();
    uring::prep_nop(sqe);
    sqe->user_data = tag;
}

unsigned reap(uring::ring& r) {
    return r.for_each_completion([](const io_uring_cqe&) {});
}

uring::ring_options batching() {
    uring::ring_options o;
    o.entries = 16;
    o.min_wait = 1ms;
    return o;
}

}  // namespace

// Asked for 8 completions with only one coming, the wait ends once min_wait
// has passed (not at the 20 s timeout): that is the kernel honouring
// min_wait_usec. Without it the same call falls back to waiting for one.
BOOST_AUTO_TEST_CASE(min_wait_ends_a_batch_wait_with_fewer_completions) {
    uring::ring r(batching());
    bool has = r.has_kernel_feature(IORING_FEAT_MIN_TIMEOUT);
    BOOST_TEST(r.min_timeout() == has);
    BOOST_TEST(r.fell_back(uring::feature::min_timeout) == !has);
    BOOST_TEST(r.min_wait() == 1ms);
    if (zerg::test::kernel_at_least(6, 12)) BOOST_TEST(has);
    one_nop(r, 1);
    auto start = std::chrono::steady_clock::now();
    int res = r.submit_and_wait_batch(8, 20s);
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(res == 0);
    BOOST_TEST(reap(r) == 1u);
    // A bound on a hang, not a speed check: 20 s would mean min_wait was ignored.
    BOOST_TEST(took < 10s);
    if (!has) std::cout << "SKIPPED min_wait in effect: the running kernel lacks IORING_FEAT_MIN_TIMEOUT (Linux 6.12); fallback checked\n";
}

BOOST_AUTO_TEST_CASE(min_wait_without_a_timeout_and_full_batches) {
    uring::ring r(batching());
    // A full batch is there at once: no min_wait to sit out.
    for (unsigned i = 0; i < 8; ++i) one_nop(r, i);
    BOOST_TEST(r.submit_and_wait_batch(8) == 0);
    BOOST_TEST(reap(r) == 8u);
    one_nop(r, 9);
    BOOST_TEST(r.submit_and_wait_batch(8) == 0);  // no timeout: min_wait (or the first CQE) ends it
    BOOST_TEST(reap(r) == 1u);
}

BOOST_AUTO_TEST_CASE(hidden_min_timeout_waits_for_the_first_completion) {
    uring::scoped_hide hide(uring::feature::min_timeout);
    uring::ring r(batching());
    BOOST_TEST(!r.min_timeout());
    BOOST_TEST(!r.has_kernel_feature(IORING_FEAT_MIN_TIMEOUT));
    BOOST_TEST(r.fell_back(uring::feature::min_timeout));
    one_nop(r, 1);
    BOOST_TEST(r.submit_and_wait_batch(8, 20s) == 0);
    BOOST_TEST(reap(r) == 1u);
    // Not asked for, not reported.
    uring::ring plain;
    BOOST_TEST(!plain.fell_back(uring::feature::min_timeout));
}

// The wait region carries the timeout: a wait with nothing in flight must
// end with -ETIME, and one with a completion must see it.
void timeouts_work(uring::ring& r) {
    BOOST_TEST(r.submit_and_wait_for(1, 20ms) == -ETIME);
    one_nop(r, 1);
    BOOST_TEST(r.submit_and_wait_for(1, 5s) == 0);
    BOOST_TEST(reap(r) == 1u);
    BOOST_TEST(r.submit_and_wait_for(1, 1ms) == -ETIME);  // rewritten for each wait
    if (r.min_timeout()) {
        one_nop(r, 2);
        BOOST_TEST(r.submit_and_wait_min(4, 1ms, 20s) == 0);
        BOOST_TEST(reap(r) == 1u);
    }
}

BOOST_AUTO_TEST_CASE(waits_read_their_argument_from_the_registered_region) {
    uring::ring r;
    if (zerg::test::kernel_at_least(6, 13)) {
        BOOST_TEST(r.wait_region());
        BOOST_TEST(!r.fell_back(uring::feature::wait_region));
    } else {
        BOOST_TEST(!r.wait_region());
        BOOST_TEST(r.fell_back(uring::feature::wait_region));
        std::cout << "SKIPPED wait region in effect: the running kernel lacks IORING_REGISTER_MEM_REGION "
                     "(Linux 6.13); fallback checked\n";
    }
    // Registering needs a disabled ring; the ring must come out enabled.
    BOOST_TEST(!r.has_setup_flag(IORING_SETUP_R_DISABLED));
    timeouts_work(r);
}

BOOST_AUTO_TEST_CASE(hidden_wait_region_copies_the_argument_in) {
    uring::scoped_hide hide(uring::feature::wait_region);
    uring::ring r;
    BOOST_TEST(!r.wait_region());
    BOOST_TEST(r.fell_back(uring::feature::wait_region));
    timeouts_work(r);
}

BOOST_AUTO_TEST_CASE(start_disabled_ring_keeps_its_region_and_waits_after_enable) {
    uring::ring_options o;
    o.start_disabled = true;
    uring::ring r(o);
    BOOST_TEST(r.has_setup_flag(IORING_SETUP_R_DISABLED));
    BOOST_TEST(r.enable() == 0);
    timeouts_work(r);
}

// NAPI does nothing on loopback; what can be checked is that the kernel
// took the registration (6.9) or that the ring says it did not.
BOOST_AUTO_TEST_CASE(napi_busy_poll_registers_where_the_kernel_has_it) {
    uring::ring_options o;
    o.napi_busy_poll_us = 50;
    o.napi_prefer_busy_poll = true;
    uring::ring r(o);
    if (zerg::test::kernel_at_least(6, 9)) {
        BOOST_TEST(r.napi_registered());
        BOOST_TEST(r.napi_busy_poll_us() == 50u);
        BOOST_TEST(!r.fell_back(uring::feature::napi));
        // Registered a second time, the kernel hands back the first settings.
        uring::abi::napi again{};
        again.busy_poll_to = 7;
        BOOST_TEST(r.register_op(IORING_REGISTER_NAPI, &again, 1) == 0);
        BOOST_TEST(again.busy_poll_to == 50u);
        BOOST_TEST(again.prefer_busy_poll == 1u);
    } else {
        BOOST_TEST(!r.napi_registered());
        BOOST_TEST(r.fell_back(uring::feature::napi));
        std::cout << "SKIPPED napi in effect: the running kernel lacks IORING_REGISTER_NAPI (Linux 6.9); fallback checked\n";
    }
    one_nop(r, 1);
    BOOST_TEST(r.submit_and_wait_for(1, 5s) == 0);
    BOOST_TEST(reap(r) == 1u);
}

BOOST_AUTO_TEST_CASE(hidden_napi_is_reported_and_not_registered) {
    uring::scoped_hide hide(uring::feature::napi);
    uring::ring_options o;
    o.napi_busy_poll_us = 50;
    uring::ring r(o);
    BOOST_TEST(!r.napi_registered());
    BOOST_TEST(r.fell_back(uring::feature::napi));
    uring::ring off;  // not asked for: nothing registered, nothing reported
    BOOST_TEST(!off.napi_registered());
    BOOST_TEST(!off.fell_back(uring::feature::napi));
}
