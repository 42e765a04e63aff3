// The per-connection deadlines of one reactor: idle (no byte in or out),
// read (a partial message waits for the rest) and write (queued output
// makes no progress). One object keeps all three, so every update goes
// through the same few members.
//
// Each deadline is one intrusive list. All connections share one timeout
// per list, so appending at "now" keeps a list sorted by the time each
// connection was linked: expiry looks only at the fronts, and nothing is
// armed in the kernel per connection. A connection's hooks (idle_hook,
// read_hook, write_hook in connection.hpp) say which lists it is in.
//
// The idle and write deadlines restart on every receive and send, so they
// are kept lazily (as nginx keeps its timers): a restart stores the time in
// the connection and moves it to the back of its list only when it was
// linked a `slack` or more ago (a 32nd of the timeout, at most 1 s). The
// list stays sorted by link time, and a connection's real deadline is at
// most `slack` after the one its place implies; expiry compares the real
// one, so nothing fires early, and a front that is not due yet holds back
// the ones behind it by less than `slack`. The write deadline likewise
// stops by clearing a flag: the connection leaves the list when it reaches
// the front. The read deadline starts once per message and is exact.
//
// Reactor thread only.
#pragma once

#include <boost/intrusive/list.hpp>

#include <algorithm>
#include <chrono>

namespace zerg::detail {

struct idle_tag;
struct read_tag;
struct write_tag;
using safe_link = boost::intrusive::link_mode<boost::intrusive::safe_link>;
using idle_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<idle_tag>, safe_link>;
using read_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<read_tag>, safe_link>;
using write_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<write_tag>, safe_link>;

// The moments a deadline (re)started, stored in the connection; the
// *_linked ones are when it was last put at the back of its list.
struct deadline_marks {
    std::chrono::steady_clock::time_point idle_since{}, idle_linked{}, read_since{}, write_since{}, write_linked{};
    bool write_running = false;  // output is queued: the write deadline runs
};

template <class Connection>
class deadlines {
public:
    using clock = std::chrono::steady_clock;
    using duration = std::chrono::milliseconds;

    deadlines(duration idle, duration read, duration write) noexcept
        : idle_(idle), read_(read), write_(write), idle_slack_(slack_of(idle)), write_slack_(slack_of(write)) {}
    deadlines(const deadlines&) = delete;
    deadlines& operator=(const deadlines&) = delete;
    ~deadlines() {
        idle_list_.clear();
        read_list_.clear();
        write_list_.clear();
    }

    // How late a restarted idle or write deadline may fire: a 32nd of the
    // timeout, at most 1 s. For a timeout that is off, never: activity()
    // then takes no slow path.
    static clock::duration slack_of(duration timeout) noexcept {
        if (!timeout.count()) return clock::duration::max();
        return std::min<clock::duration>(timeout / 32, std::chrono::seconds(1));
    }

    // Any deadline configured: only then does the loop read the clock.
    bool enabled() const noexcept { return idle_.count() || read_.count() || write_.count(); }
    // Some connection has a running deadline (or, for the write list, one
    // that stopped and waits to be dropped at the front).
    bool any_running() const noexcept { return !(idle_list_.empty() && read_list_.empty() && write_list_.empty()); }

    // A connection opened: its idle deadline starts.
    void opened(Connection& c, clock::time_point now) {
        if (!idle_.count()) return;
        c.marks_.idle_since = c.marks_.idle_linked = now;
        idle_list_.push_back(c);
    }

    // Bytes came in or went out: the idle deadline starts again. One store,
    // and a move to the back of the list at most once a slack.
    [[gnu::always_inline]] void activity(Connection& c, clock::time_point now) noexcept {
        c.marks_.idle_since = now;
        if (now - c.marks_.idle_linked >= idle_slack_) [[unlikely]]
            relink_idle(c, now);
    }

    // The handler holds `partial` (a message not complete yet): the read
    // deadline runs from the first byte of it; `completed` says a message
    // was consumed meanwhile, so what is left is a new one.
    [[gnu::always_inline]] void input(Connection& c, bool partial, bool completed, clock::time_point now) {
        if (!read_.count()) return;
        if (!partial && !c.read_hook::is_linked()) return;  // the common case: nothing held, nothing running
        update_read(c, partial, completed, now);
    }

    // Output is `queued`; `progressed` says a send just took some of it. The
    // write deadline runs while output waits and restarts on progress. It
    // stops by a flag alone: the connection stays linked (an echo queues
    // again at once) and is dropped when it reaches the list's front.
    [[gnu::always_inline]] void output(Connection& c, bool queued, bool progressed, clock::time_point now) {
        if (progressed) activity(c, now);
        if (!write_.count()) return;
        deadline_marks& m = c.marks_;
        if (!queued) {
            m.write_running = false;
            return;
        }
        if (m.write_running && !progressed) return;  // runs on from its start
        m.write_running = true;
        m.write_since = now;
        if (!c.write_hook::is_linked() || now - m.write_linked >= write_slack_) [[unlikely]]
            relink_write(c, now);
    }

    // The connection leaves every list (teardown or slot release).
    void forget(Connection& c) noexcept {
        if (c.idle_hook::is_linked()) idle_list_.erase(idle_list_.iterator_to(c));
        if (c.read_hook::is_linked()) read_list_.erase(read_list_.iterator_to(c));
        if (c.write_hook::is_linked()) write_list_.erase(write_list_.iterator_to(c));
        c.marks_.write_running = false;
    }

    // Calls expire(c) for every connection whose deadline passed; expire
    // must take c off every list (it tears the connection down). A front
    // whose restarted deadline is not due yet stops the walk: it is due
    // within a slack, and so are the ones behind it.
    template <class Expire>
    void expire(clock::time_point now, Expire&& on_expired) {
        while (!idle_list_.empty() && idle_list_.front().marks_.idle_since + idle_ <= now) on_expired(idle_list_.front());
        while (!read_list_.empty() && read_list_.front().marks_.read_since + read_ <= now) on_expired(read_list_.front());
        while (!write_list_.empty()) {
            Connection& c = write_list_.front();
            if (c.marks_.write_running) {
                if (c.marks_.write_since + write_ > now) break;
                on_expired(c);
            } else {
                if (c.marks_.write_linked + write_ > now) break;
                write_list_.pop_front();  // stopped meanwhile: dropped now
            }
        }
    }

    // The earliest moment expire() has something to do (time_point::max()
    // when no list holds a connection).
    clock::time_point next() const noexcept {
        auto next = clock::time_point::max();
        if (!idle_list_.empty()) next = std::min(next, idle_list_.front().marks_.idle_since + idle_);
        if (!read_list_.empty()) next = std::min(next, read_list_.front().marks_.read_since + read_);
        if (!write_list_.empty()) {
            const deadline_marks& m = write_list_.front().marks_;
            next = std::min(next, (m.write_running ? m.write_since : m.write_linked) + write_);
        }
        return next;
    }

private:
    // Off the hot path: what input() does once a message is partial.
    [[gnu::noinline]] void update_read(Connection& c, bool partial, bool completed, clock::time_point now) {
        bool linked = c.read_hook::is_linked();
        if (linked && (!partial || completed)) {
            read_list_.erase(read_list_.iterator_to(c));
            linked = false;
        }
        if (partial && !linked) {
            c.marks_.read_since = now;
            read_list_.push_back(c);
        }
    }
    [[gnu::noinline]] void relink_idle(Connection& c, clock::time_point now) noexcept {
        if (!c.idle_hook::is_linked()) return;  // no idle deadline (off, or torn down)
        c.marks_.idle_linked = now;
        idle_list_.erase(idle_list_.iterator_to(c));
        idle_list_.push_back(c);
    }
    [[gnu::noinline]] void relink_write(Connection& c, clock::time_point now) noexcept {
        c.marks_.write_linked = now;
        if (c.write_hook::is_linked()) write_list_.erase(write_list_.iterator_to(c));
        write_list_.push_back(c);
    }

    using idle_list = boost::intrusive::list<Connection, boost::intrusive::base_hook<idle_hook>>;
    using read_list = boost::intrusive::list<Connection, boost::intrusive::base_hook<read_hook>>;
    using write_list = boost::intrusive::list<Connection, boost::intrusive::base_hook<write_hook>>;

    duration idle_, read_, write_;
    clock::duration idle_slack_, write_slack_;
    idle_list idle_list_;
    read_list read_list_;
    write_list write_list_;
};

}  // namespace zerg::detail
