#define BOOST_TEST_MODULE wait_operations
#include <boost/test/unit_test.hpp>

// futex wait/wake/waitv, waitid (zerg/uring/wait_operations.hpp) and
// epoll_ctl/epoll_wait (zerg/uring/epoll_operations.hpp) through a real
// ring: futexes woken from the ring and from another thread, a child
// process reaped, an epoll set filled and waited on.

#include <zerg/uring/compat.hpp>
#include <zerg/uring/epoll_operations.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/wait_operations.hpp>

#include "support/stale_sqe.hpp"
#include "support/op_ring.hpp"
#include "support/skip.hpp"
#include "support/sockets.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <thread>
#include <utility>
#include <vector>

namespace {

namespace zu = zerg::uring;
using namespace std::chrono_literals;
using zerg::test::fd_guard;
using zerg::test::kernel;
using zerg::test::op_ring;
using zerg::test::skip_unless;

bool skip_without_futex() {
    return skip_unless(kernel().supports(zu::opcode::futex_wait) && kernel().supports(zu::opcode::futex_wake) &&
                           kernel().supports(zu::opcode::futex_waitv),
                       "IORING_OP_FUTEX_WAIT / FUTEX_WAKE / FUTEX_WAITV (Linux 6.7)");
}

std::pair<fd_guard, fd_guard> make_pipe() {
    int p[2];
    zerg::test::check(::pipe2(p, O_CLOEXEC) == 0, "pipe2");
    return {fd_guard(p[0]), fd_guard(p[1])};
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_wait_prep_overwrites_a_stale_sqe) {
    static std::uint32_t word = 0;
    static futex_waitv waiters[2]{};
    static siginfo_t info{};
    static epoll_event events[4]{};
    const std::vector<std::pair<const char*, std::function<void(io_uring_sqe*)>>> preps = {
        {"futex_wait", [](io_uring_sqe* s) { zu::prep_futex_wait(s, &word, 0); }},
        {"futex_wake", [](io_uring_sqe* s) { zu::prep_futex_wake(s, &word, 1); }},
        {"futex_waitv", [](io_uring_sqe* s) { zu::prep_futex_waitv(s, waiters); }},
        {"waitid", [](io_uring_sqe* s) { zu::prep_waitid(s, P_PID, 1, &info); }},
        {"epoll_ctl", [](io_uring_sqe* s) { zu::prep_epoll_ctl(s, 3, 4, EPOLL_CTL_ADD, events); }},
        {"epoll_wait", [](io_uring_sqe* s) { zu::prep_epoll_wait(s, 3, events); }},
    };
    zerg::test::check_preps_overwrite_stale_sqes(preps);
}

BOOST_AUTO_TEST_CASE(futex_wait_is_woken_by_futex_wake_in_the_ring) {
    if (skip_without_futex()) return;
    op_ring r;
    std::uint32_t word = 0;
    zu::prep_futex_wait(r.sqe(1), &word, 0);
    BOOST_REQUIRE_EQUAL(r.ring.submit(), 1);
    BOOST_TEST(r.unclaimed() == 0u);  // armed, not completed: nobody woke it

    std::atomic_ref<std::uint32_t>(word).store(1);
    auto wake = r.run([&](io_uring_sqe* s) { zu::prep_futex_wake(s, &word, 8); }, 2);
    BOOST_TEST(wake.res == 1);  // one waiter woken
    BOOST_TEST(r.next(1).res == 0);

    // Nobody waits now: a wake wakes none.
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_futex_wake(s, &word, 8); }, 3).res == 0);
}

BOOST_AUTO_TEST_CASE(futex_wait_with_a_stale_value_returns_eagain) {
    if (skip_without_futex()) return;
    op_ring r;
    std::uint32_t word = 5;
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_futex_wait(s, &word, 4); }).res == -EAGAIN);
    // A zero mask is meaningless and refused.
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_futex_wait(s, &word, 5, zu::futex_private_u32, 0); }).res == -EINVAL);
}

BOOST_AUTO_TEST_CASE(futex_wait_is_woken_by_another_thread) {
    if (skip_without_futex()) return;
    op_ring r;
    alignas(4) std::uint32_t word = 0;
    zu::prep_futex_wait(r.sqe(1), &word, 0);
    BOOST_REQUIRE_EQUAL(r.ring.submit(), 1);
    std::atomic<long> woken{0};
    std::thread waker([&] {
        // A plain futex(2) wake finds the ring's waiter: same word, same
        // private key. Retried, bounded, in case it runs before the wait.
        for (int i = 0; i < 500 && woken.load() == 0; ++i) {
            woken = ::syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
            if (woken.load() == 0) std::this_thread::sleep_for(2ms);
        }
    });
    auto c = r.next(1);
    waker.join();
    BOOST_TEST(c.res == 0);
    BOOST_TEST(woken.load() == 1);
}

BOOST_AUTO_TEST_CASE(futex_waitv_reports_which_futex_woke) {
    if (skip_without_futex()) return;
    op_ring r;
    std::array<std::uint32_t, 3> words{0, 0, 0};
    std::array<futex_waitv, 3> waiters{};
    for (std::size_t i = 0; i < waiters.size(); ++i) {
        waiters[i].uaddr = reinterpret_cast<std::uintptr_t>(&words[i]);
        waiters[i].val = 0;
        waiters[i].flags = zu::futex_private_u32;
    }
    zu::prep_futex_waitv(r.sqe(1), waiters);
    BOOST_REQUIRE_EQUAL(r.ring.submit(), 1);
    BOOST_TEST(r.unclaimed() == 0u);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_futex_wake(s, &words[2], 1); }, 2).res == 1);
    BOOST_TEST(r.next(1).res == 2);  // index of the woken entry

    // One entry already differs: -EAGAIN without waiting.
    words[1] = 9;
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_futex_waitv(s, waiters); }, 3).res == -EAGAIN);
}

BOOST_AUTO_TEST_CASE(futex_wait_is_cancellable) {
    if (skip_without_futex()) return;
    op_ring r;
    std::uint32_t word = 0;
    zu::prep_futex_wait(r.sqe(1), &word, 0);
    BOOST_REQUIRE_EQUAL(r.ring.submit(), 1);
    // The futex cancel path reports how many waits it removed (1 here),
    // where most cancels report 0.
    auto cancel = r.run([&](io_uring_sqe* s) { zu::prep_cancel(s, zu::user_data(1)); }, 2);
    BOOST_TEST(cancel.res >= 0);
    BOOST_TEST(cancel.res <= 1);
    BOOST_TEST(r.next(1).res == -ECANCELED);
}

BOOST_AUTO_TEST_CASE(waitid_reaps_an_exited_child) {
    if (skip_unless(kernel().supports(zu::opcode::waitid), "IORING_OP_WAITID (Linux 6.7)")) return;
    op_ring r;
    pid_t child = ::fork();
    BOOST_REQUIRE_GE(child, 0);
    if (child == 0) {
        ::usleep(20'000);  // let the parent's waitid be armed first, usually
        ::_exit(7);
    }
    siginfo_t info{};
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_waitid(s, P_PID, static_cast<id_t>(child), &info, WEXITED); });
    BOOST_REQUIRE_EQUAL(c.res, 0);
    BOOST_TEST(info.si_pid == child);
    BOOST_TEST(info.si_code == CLD_EXITED);
    BOOST_TEST(info.si_status == 7);
    // Reaped: nothing left to wait for.
    BOOST_TEST(::waitpid(child, nullptr, WNOHANG) == -1);
    BOOST_TEST(errno == ECHILD);
    siginfo_t none{};
    c = r.run([&](io_uring_sqe* s) { zu::prep_waitid(s, P_PID, static_cast<id_t>(child), &none, WEXITED); });
    BOOST_TEST(c.res == -ECHILD);
}

BOOST_AUTO_TEST_CASE(epoll_ctl_adds_and_removes) {
    op_ring r;
    fd_guard ep(::epoll_create1(EPOLL_CLOEXEC));
    BOOST_REQUIRE_GE(ep.get(), 0);
    auto [rd, wr] = make_pipe();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 77;
    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_epoll_ctl(s, ep.get(), rd.get(), EPOLL_CTL_ADD, &ev); }).res, 0);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_epoll_ctl(s, ep.get(), rd.get(), EPOLL_CTL_ADD, &ev); }).res == -EEXIST);

    BOOST_REQUIRE_EQUAL(::write(wr.get(), "x", 1), 1);
    epoll_event got{};
    BOOST_REQUIRE_EQUAL(::epoll_wait(ep.get(), &got, 1, 0), 1);
    BOOST_TEST(std::uint64_t{got.data.u64} == 77u);

    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_epoll_ctl(s, ep.get(), rd.get(), EPOLL_CTL_DEL, nullptr); }).res == 0);
    BOOST_TEST(::epoll_wait(ep.get(), &got, 1, 0) == 0);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_epoll_ctl(s, ep.get(), rd.get(), EPOLL_CTL_DEL, nullptr); }).res ==
               -ENOENT);
}

BOOST_AUTO_TEST_CASE(epoll_wait_completes_when_the_set_becomes_ready) {
    if (skip_unless(kernel().supports(zu::opcode::epoll_wait), "IORING_OP_EPOLL_WAIT (Linux 6.15)")) return;
    op_ring r;
    fd_guard ep(::epoll_create1(EPOLL_CLOEXEC));
    auto [rd1, wr1] = make_pipe();
    auto [rd2, wr2] = make_pipe();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 1;
    BOOST_REQUIRE_EQUAL(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, rd1.get(), &ev), 0);
    ev.data.u64 = 2;
    BOOST_REQUIRE_EQUAL(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, rd2.get(), &ev), 0);

    std::array<epoll_event, 4> events{};
    zu::prep_epoll_wait(r.sqe(1), ep.get(), events);
    BOOST_REQUIRE_EQUAL(r.ring.submit(), 1);
    BOOST_TEST(r.unclaimed() == 0u);  // nothing ready yet
    BOOST_REQUIRE_EQUAL(::write(wr2.get(), "y", 1), 1);
    auto c = r.next(1);
    BOOST_REQUIRE_EQUAL(c.res, 1);
    BOOST_TEST(std::uint64_t{events[0].data.u64} == 2u);
    BOOST_TEST((std::uint32_t{events[0].events} & EPOLLIN) != 0u);

    // Both ready: both reported, at most events.size().
    BOOST_REQUIRE_EQUAL(::write(wr1.get(), "z", 1), 1);
    events = {};
    c = r.run([&](io_uring_sqe* s) { zu::prep_epoll_wait(s, ep.get(), events); }, 2);
    BOOST_REQUIRE_EQUAL(c.res, 2);
    BOOST_TEST(std::uint64_t{events[0].data.u64 + events[1].data.u64} == 3u);
    c = r.run([&](io_uring_sqe* s) { zu::prep_epoll_wait(s, ep.get(), std::span(events).first(1)); }, 3);
    BOOST_TEST(c.res == 1);
}
