// The per-connection deadlines of one reactor: idle (no byte in or out),
// read (a partial message waits for the rest) and write (queued output
// makes no progress). One object keeps all three, so every update goes
// through the same few members.
//
// Each deadline is one intrusive list. All connections share one timeout
// per list, so appending at "now" keeps a list sorted by deadline: expiry
// looks only at the fronts, and nothing is armed in the kernel per
// connection. A connection's hooks (idle_hook, read_hook, write_hook in
// connection.hpp) say which lists it is in.
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

// The moments a deadline starts, stored in the connection.
struct deadline_marks {
    std::chrono::steady_clock::time_point idle_since{}, read_since{}, write_since{};
};

template <class Connection>
class deadlines {
public:
    using clock = std::chrono::steady_clock;
    using duration = std::chrono::milliseconds;

    deadlines(duration idle, duration read, duration write) noexcept : idle_(idle), read_(read), write_(write) {}
    deadlines(const deadlines&) = delete;
    deadlines& operator=(const deadlines&) = delete;
    ~deadlines() {
        idle_list_.clear();
        read_list_.clear();
        write_list_.clear();
    }

    // Any deadline configured: only then does the loop read the clock.
    bool enabled() const noexcept { return idle_.count() || read_.count() || write_.count(); }
    // Some connection has a running deadline.
    bool any_running() const noexcept { return !(idle_list_.empty() && read_list_.empty() && write_list_.empty()); }

    // A connection opened: its idle deadline starts.
    void opened(Connection& c, clock::time_point now) {
        if (!idle_.count()) return;
        c.marks_.idle_since = now;
        idle_list_.push_back(c);
    }

    // Bytes came in or went out: the idle deadline starts again.
    void activity(Connection& c, clock::time_point now) {
        if (!idle_.count() || !c.idle_hook::is_linked()) return;
        // Touched already at this `now` (a receive and a send completion in
        // the same loop iteration): it is among the list's last, relinking
        // would only reorder equal deadlines.
        if (c.marks_.idle_since == now) return;
        c.marks_.idle_since = now;
        idle_list_.erase(idle_list_.iterator_to(c));
        idle_list_.push_back(c);
    }

    // The handler holds `partial` (a message not complete yet): the read
    // deadline runs from the first byte of it; `completed` says a message
    // was consumed meanwhile, so what is left is a new one.
    void input(Connection& c, bool partial, bool completed, clock::time_point now) {
        if (!read_.count()) return;
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

    // Output is `queued`; `progressed` says a send just took some of it. The
    // write deadline runs while output waits and restarts on progress.
    void output(Connection& c, bool queued, bool progressed, clock::time_point now) {
        if (progressed) activity(c, now);
        if (!write_.count()) return;
        bool linked = c.write_hook::is_linked();
        if (linked && (!queued || progressed)) {
            write_list_.erase(write_list_.iterator_to(c));
            linked = false;
        }
        if (queued && !linked) {
            c.marks_.write_since = now;
            write_list_.push_back(c);
        }
    }

    // The connection leaves every list (teardown or slot release).
    void forget(Connection& c) noexcept {
        if (c.idle_hook::is_linked()) idle_list_.erase(idle_list_.iterator_to(c));
        if (c.read_hook::is_linked()) read_list_.erase(read_list_.iterator_to(c));
        if (c.write_hook::is_linked()) write_list_.erase(write_list_.iterator_to(c));
    }

    // Calls expire(c) for every connection whose deadline passed; expire
    // must take c off every list (it tears the connection down).
    template <class Expire>
    void expire(clock::time_point now, Expire&& on_expired) {
        while (!idle_list_.empty() && idle_list_.front().marks_.idle_since + idle_ <= now) on_expired(idle_list_.front());
        while (!read_list_.empty() && read_list_.front().marks_.read_since + read_ <= now) on_expired(read_list_.front());
        while (!write_list_.empty() && write_list_.front().marks_.write_since + write_ <= now) on_expired(write_list_.front());
    }

    // The earliest running deadline (time_point::max() when none runs).
    clock::time_point next() const noexcept {
        auto next = clock::time_point::max();
        if (!idle_list_.empty()) next = std::min(next, idle_list_.front().marks_.idle_since + idle_);
        if (!read_list_.empty()) next = std::min(next, read_list_.front().marks_.read_since + read_);
        if (!write_list_.empty()) next = std::min(next, write_list_.front().marks_.write_since + write_);
        return next;
    }

private:
    using idle_list = boost::intrusive::list<Connection, boost::intrusive::base_hook<idle_hook>>;
    using read_list = boost::intrusive::list<Connection, boost::intrusive::base_hook<read_hook>>;
    using write_list = boost::intrusive::list<Connection, boost::intrusive::base_hook<write_hook>>;

    duration idle_, read_, write_;
    idle_list idle_list_;
    read_list read_list_;
    write_list write_list_;
};

}  // namespace zerg::detail
