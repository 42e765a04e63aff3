// detail::deadlines on its own, with a made-up clock: the idle and write
// deadlines are kept lazily (a restart is a store; a connection moves back
// in its list at most once a slack), and still never fire early and fire
// at most a slack late; the read deadline stays exact.
#define BOOST_TEST_MODULE reactor_deadlines
#include <boost/test/unit_test.hpp>

#include <zerg/detail/deadlines.hpp>

#include <chrono>
#include <vector>

namespace {

using namespace std::chrono_literals;
using zerg::detail::deadlines;

// What deadlines<> needs of a connection: the three hooks and the marks.
// Declared before the deadlines in each test, so they outlive its lists.
struct conn : zerg::detail::idle_hook, zerg::detail::read_hook, zerg::detail::write_hook {
    zerg::detail::deadline_marks marks_;
    int id = 0;
};

using clock = std::chrono::steady_clock;
using dl = deadlines<conn>;

// A steady_clock time far from its epoch, as a running system's is.
clock::time_point at(std::chrono::milliseconds ms) { return clock::time_point(std::chrono::hours(1000) + ms); }

// The ids expired at `now`; each is forgotten, as the reactor's teardown does.
std::vector<int> expire(dl& d, clock::time_point now) {
    std::vector<int> out;
    d.expire(now, [&](conn& c) {
        out.push_back(c.id);
        d.forget(c);
    });
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(slack_is_a_32nd_of_the_timeout_at_most_a_second) {
    BOOST_TEST(dl::slack_of(320ms) == clock::duration(10ms));
    BOOST_TEST(dl::slack_of(60s) == clock::duration(1s));
    BOOST_TEST(dl::slack_of(0ms) == clock::duration::max());
}

BOOST_AUTO_TEST_CASE(idle_restart_without_relink_never_fires_early) {
    conn a, b;
    dl d(320ms, 0ms, 0ms);  // slack 10 ms
    a.id = 1;
    b.id = 2;
    d.opened(a, at(0ms));
    d.opened(b, at(1ms));
    // Within the slack of its link: a store, no move; a stays at the front.
    d.activity(a, at(5ms));
    BOOST_TEST(expire(d, at(320ms)).empty());  // a's deadline is 325 ms, not 320
    BOOST_TEST((d.next() == at(325ms)));
    // b is due at 321 ms but waits behind a: late by less than the slack.
    BOOST_TEST(expire(d, at(322ms)).empty());
    BOOST_TEST((expire(d, at(325ms)) == std::vector<int>{1, 2}));
    BOOST_TEST(!d.any_running());
}

BOOST_AUTO_TEST_CASE(idle_restart_after_the_slack_moves_back) {
    conn a, b;
    dl d(320ms, 0ms, 0ms);
    a.id = 1;
    b.id = 2;
    d.opened(a, at(0ms));
    d.opened(b, at(1ms));
    d.activity(a, at(50ms));  // past the slack: a goes behind b
    BOOST_TEST((d.next() == at(321ms)));
    BOOST_TEST((expire(d, at(321ms)) == std::vector<int>{2}));
    BOOST_TEST(expire(d, at(369ms)).empty());
    BOOST_TEST((expire(d, at(370ms)) == std::vector<int>{1}));
}

BOOST_AUTO_TEST_CASE(write_deadline_stops_by_a_flag_and_leaves_at_the_front) {
    conn a;
    dl d(0ms, 0ms, 320ms);
    a.id = 1;
    d.output(a, true, false, at(0ms));  // queued: runs from 0
    d.output(a, false, true, at(2ms));  // all sent: stopped, still linked
    BOOST_TEST(d.any_running());
    BOOST_TEST(expire(d, at(400ms)).empty());  // dropped, not expired
    BOOST_TEST(!d.any_running());
    // Queued again and never progressing: fires at its start + timeout.
    d.output(a, true, false, at(500ms));
    d.output(a, true, false, at(600ms));  // still queued, no progress: no restart
    BOOST_TEST(expire(d, at(819ms)).empty());
    BOOST_TEST((expire(d, at(820ms)) == std::vector<int>{1}));
}

BOOST_AUTO_TEST_CASE(write_progress_restarts_within_the_slack) {
    conn a, b;
    dl d(0ms, 0ms, 320ms);
    a.id = 1;
    b.id = 2;
    d.output(a, true, false, at(0ms));
    d.output(b, true, false, at(1ms));
    d.output(a, true, true, at(4ms));  // progress: a restarts at 4 ms, stays at the front
    BOOST_TEST((d.next() == at(324ms)));
    BOOST_TEST(expire(d, at(323ms)).empty());
    BOOST_TEST((expire(d, at(324ms)) == std::vector<int>{1, 2}));
}

BOOST_AUTO_TEST_CASE(read_deadline_is_exact_and_not_restarted_by_more_of_a_message) {
    conn a;
    dl d(0ms, 100ms, 0ms);
    a.id = 1;
    d.input(a, true, false, at(0ms));
    d.input(a, true, false, at(50ms));  // more bytes of the same message
    BOOST_TEST((d.next() == at(100ms)));
    BOOST_TEST(expire(d, at(99ms)).empty());
    BOOST_TEST((expire(d, at(100ms)) == std::vector<int>{1}));
}
