#define BOOST_TEST_MODULE update_operations
#include <boost/test/unit_test.hpp>

// Changing a pending request in place (zerg/uring/operations.hpp):
// timeout_update, link_timeout_update and poll_update, through a real ring.

#include <zerg/uring/operations.hpp>

#include "support/stale_sqe.hpp"
#include "support/op_ring.hpp"
#include "support/sockets.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

namespace {

namespace zu = zerg::uring;
using namespace std::chrono_literals;
using zerg::test::op_ring;

}  // namespace

BOOST_AUTO_TEST_CASE(every_update_prep_overwrites_a_stale_sqe) {
    static __kernel_timespec ts{};
    const std::vector<std::pair<const char*, std::function<void(io_uring_sqe*)>>> preps = {
        {"timeout_update", [](io_uring_sqe* s) { zu::prep_timeout_update(s, zu::user_data(5), &ts); }},
        {"link_timeout_update", [](io_uring_sqe* s) { zu::prep_link_timeout_update(s, zu::user_data(5), &ts); }},
        {"poll_update", [](io_uring_sqe* s) { zu::prep_poll_update(s, zu::user_data(5), zu::user_data(6), POLLIN); }},
    };
    zerg::test::check_preps_overwrite_stale_sqes(preps);
}

BOOST_AUTO_TEST_CASE(timeout_update_rearms_a_pending_timeout) {
    op_ring r;
    auto hour = zu::to_timespec(3600s);
    zu::prep_timeout(r.sqe(1), &hour);
    BOOST_REQUIRE_EQUAL(r.ring.submit(), 1);
    // Brought forward from an hour to 20 ms: the timeout fires, well within
    // the 5 s the wait allows.
    auto soon = zu::to_timespec(20ms);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_timeout_update(s, zu::user_data(1), &soon); }, 2).res == 0);
    BOOST_TEST(r.next(1).res == -ETIME);
    // Nothing pending under that tag any more.
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_timeout_update(s, zu::user_data(1), &soon); }, 3).res == -ENOENT);
}

BOOST_AUTO_TEST_CASE(link_timeout_update_gives_the_linked_request_a_new_deadline) {
    op_ring r;
    auto [a, b] = zerg::test::unix_pair();
    std::array<std::byte, 16> buf{};
    auto hour = zu::to_timespec(3600s);
    io_uring_sqe* recv = r.sqe(1);
    zu::prep_recv(recv, b.get(), buf);
    zu::link_next(recv);
    zu::prep_link_timeout(r.sqe(2), &hour);
    BOOST_REQUIRE_EQUAL(r.ring.submit(), 2);
    auto soon = zu::to_timespec(20ms);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_link_timeout_update(s, zu::user_data(2), &soon); }, 3).res == 0);
    BOOST_TEST(r.next(2).res == -ETIME);
    BOOST_TEST(r.next(1).res == -ECANCELED);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_link_timeout_update(s, zu::user_data(2), &soon); }, 4).res ==
               -ENOENT);
}

BOOST_AUTO_TEST_CASE(poll_update_changes_mask_and_tag) {
    op_ring r;
    auto [a, b] = zerg::test::unix_pair();
    // POLLPRI never comes on a Unix socket: the poll stays pending.
    zu::prep_poll_add(r.sqe(1), b.get(), POLLPRI);
    BOOST_REQUIRE_EQUAL(r.ring.submit(), 1);
    BOOST_TEST(r.unclaimed() == 0u);
    // Now ask for POLLOUT, which is ready at once, under a new tag.
    auto c = r.run(
        [&](io_uring_sqe* s) {
            zu::prep_poll_update(s, zu::user_data(1), zu::user_data(9), POLLOUT,
                                 IORING_POLL_UPDATE_EVENTS | IORING_POLL_UPDATE_USER_DATA);
        },
        2);
    BOOST_TEST(c.res == 0);
    auto fired = r.next(9);
    BOOST_TEST((fired.res & POLLOUT) != 0);
    BOOST_TEST(r.unclaimed() == 0u);  // nothing under the old tag

    // Events only: the tag stays.
    zu::prep_poll_add(r.sqe(4), b.get(), POLLPRI);
    BOOST_REQUIRE_EQUAL(r.ring.submit(), 1);
    c = r.run([&](io_uring_sqe* s) { zu::prep_poll_update(s, zu::user_data(4), zu::user_data(99), POLLOUT); }, 5);
    BOOST_TEST(c.res == 0);
    BOOST_TEST((r.next(4).res & POLLOUT) != 0);
    BOOST_TEST(r.unclaimed() == 0u);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_poll_update(s, zu::user_data(1), zu::user_data(9), POLLIN); }, 3).res ==
               -ENOENT);
}
