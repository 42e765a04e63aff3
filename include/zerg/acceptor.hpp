// zerg::acceptor<Reactor>: the thread that accepts connections and hands
// them to reactors.
//
// One multishot accept (5.19, detail/multishot_accept.hpp, shared with the
// reuse_port reactor) serves every connection; it is armed again whenever
// the kernel ends it and backs off on EMFILE and friends. Accepted
// sockets inherit TCP_NODELAY from the listener, so the acceptor makes no
// per-connection system call of its own. When every reactor's table is
// full, accepting pauses (connections wait in the listen backlog) and
// resumes as soon as there is room.
//
// Direct descriptors (server_config::direct_descriptors with
// msg_ring_handoff, doc/direct-descriptors.md): the accept fills the
// acceptor ring's own sparse file table, and each socket moves from there
// into the target reactor's table with a MSG_RING (IORING_MSG_SEND_FD, 6.0).
// The acceptor's slot is closed when that MSG_RING completes, whatever its
// result: on success the target holds its own reference; on failure (the
// target's table full, say) the client sees the close, counted as
// handoff_failures. When a reactor's table is not in effect or the
// acceptor's is refused, sockets are plain fds (reported).
#pragma once

#include <zerg/config.hpp>
#include <zerg/counters.hpp>
#include <zerg/detail/eventfd_waker.hpp>
#include <zerg/detail/direct_table.hpp>
#include <zerg/detail/multishot_accept.hpp>
#include <zerg/error.hpp>
#include <zerg/policy/handoff.hpp>
#include <zerg/uring/kernel_release.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/registered_files.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/user_data.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace zerg {

// The accept's own counts (accepted, rearms, errors, pauses: every reactor
// was full) plus the hand-over's.
struct acceptor_counters : accept_stats {
    reactor_counters::counter rejected;     // still waiting for room when the server stopped (closed)
    reactor_counters::counter handoff_retries;  // a MSG_RING failed and the fd went through the queue
    reactor_counters::counter handoff_failures;  // a direct socket's MSG_RING failed: closed (the client sees it)
};

template <class Reactor>
class acceptor {
public:
    acceptor(int listener, const server_config& config, std::vector<Reactor*> reactors)
        : listener_(listener), config_(config), reactors_(std::move(reactors)), handed_(reactors_.size(), 0) {}
    acceptor(const acceptor&) = delete;
    acceptor& operator=(const acceptor&) = delete;
    ~acceptor() { release(); }

    // Acceptor thread: makes its ring and arms the accept. Throws on failure.
    void setup() {
        uring::ring_options options;
        options.entries = 256;
        ring_.emplace(options);
        for (auto const& fb : ring_->fallbacks()) {
            fallbacks_.push_back(std::string(uring::to_string(fb.what)) + ": " + fb.reason);
            report(error_report::kind::fallback, {}, fallbacks_.back());
        }
        capacity_ = static_cast<std::uint64_t>(config_.max_connections) * reactors_.size();
        if (config_.direct_descriptors) open_direct();
        accept_ = detail::multishot_accept(listener_, {tag(op_accept), tag(op_retry), tag(op_cancel)}, &counters_,
                                           direct_);
        accept_.arm(*ring_);
        stop_waker_.arm(*ring_, tag(op_stop).raw());
        ring_->submit();
    }

    // Acceptor thread. An error it cannot survive is reported through
    // server_config::on_error and rethrown (server::failure() has it).
    void run() {
        try {
            loop();
        } catch (const std::exception& e) {
            report(error_report::kind::reactor_failure, make_error_code(error::reactor_failed),
                   std::string("the acceptor stopped: ") + e.what());
            throw;
        }
    }

    // Any thread.
    void request_stop() noexcept {
        stop_.store(true, std::memory_order_release);
        stop_waker_.signal();
    }

    // Any thread: written only by the acceptor thread (relaxed).
    const acceptor_counters& counters() const noexcept { return counters_; }
    // After setup(), any thread: what the acceptor's ring fell back from.
    const std::vector<std::string>& fallbacks() const noexcept { return fallbacks_; }
    // After setup(), any thread: sockets are accepted into the acceptor's
    // table and handed over as direct descriptors (see the header comment).
    bool direct_descriptors() const noexcept { return direct_; }

    // After run() returned: closes the ring (ending the multishot accept,
    // which holds the listening socket) and the connections still waiting
    // for room, which count as rejected.
    void release() noexcept {
        // Direct sockets still here (waiting, or in a MSG_RING whose CQE was
        // not seen) go with the table, which goes with the ring.
        if (files_) files_->leave_to_ring();
        files_.reset();
        ring_.reset();
        if (!direct_)
            for (int fd : waiting_) ::close(fd);
        counters_.rejected.add(waiting_.size());
        waiting_.clear();
    }

private:
    enum op : std::uint8_t { op_accept = 1, op_retry, op_stop, op_cancel, op_close };
    static constexpr bool can_hand_over_direct =
        requires(Reactor& r, uring::ring& g) { r.hand_over_direct(0u, g); };

    // Direct descriptors need every reactor's table in effect (each reported
    // why not) and the acceptor's own; else plain fds, as before.
    void open_direct() {
        if constexpr (can_hand_over_direct) {
            for (auto* r : reactors_)
                if (!r->direct_descriptors()) return;
            try {
                files_.emplace(*ring_, config_.max_connections + detail::direct_table::headroom);
                direct_ = true;
            } catch (const std::system_error& e) {
                fallbacks_.push_back(std::string("direct_descriptors: the kernel refused the acceptor's registered file "
                                                 "table (") +
                                     e.what() + "): it accepts plain fds and hands them over as such");
                report(error_report::kind::fallback, {}, fallbacks_.back());
            }
        }
    }
    // Empties the acceptor's slot (the socket is the target's now, or lost).
    // A socket that never reached a reactor (`lost`) is shut down first where
    // the kernel puts a file taken out of a table only later (before 6.12,
    // detail/direct_table.hpp): its client sees the end at once, not a
    // second later. Never on success: the reactor serves the same socket.
    void close_slot(unsigned slot, bool lost) {
        if (lost && !uring::kernel_release::running().at_least(6, 12)) {
            auto* s = ring_->get_sqe();
            uring::prep_shutdown(s, static_cast<int>(slot), SHUT_RDWR);
            uring::use_fixed_file(s);
            uring::add_flags(s, IOSQE_IO_HARDLINK);  // the close runs whatever the shutdown says
            uring::skip_success_cqe(s);
            uring::set_user_data(s, tag(op_close));
        }
        auto* s = ring_->get_sqe();
        uring::prep_close_direct(s, slot);
        uring::skip_success_cqe(s);
        uring::set_user_data(s, tag(op_close));
    }
    static uring::user_data tag(op kind) noexcept { return {kind, 0, 0}; }

    void loop() {
        auto on_cqe = [this](const io_uring_cqe& cqe) { dispatch(cqe); };
        while (!stop_.load(std::memory_order_acquire)) {
            ring_->for_each_completion(on_cqe);
            if (accept_.paused()) {
                // Room again: first the connections accepted while full, then
                // the backlog.
                while (!waiting_.empty() && try_hand_over(waiting_.front(), &*ring_)) waiting_.erase(waiting_.begin());
                if (waiting_.empty() && open_total() < capacity_) accept_.resume(*ring_);
            }
            // While paused, look again every 10 ms for room.
            if (accept_.paused())
                ring_->submit_and_wait_for(1, std::chrono::milliseconds(10));
            else if (config_.max_wait.count())
                ring_->submit_and_wait_for(1, config_.max_wait);
            else
                ring_->submit_and_wait(1);
        }
        // End the accept and wait for its last CQE: until then the request
        // holds the listening socket, and the port stays taken after stop().
        if (accept_.armed()) {
            accept_.cancel(*ring_);
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
            while (accept_.armed() && std::chrono::steady_clock::now() < deadline) {
                ring_->submit_and_wait_for(1, std::chrono::milliseconds(10));
                ring_->for_each_completion(on_cqe);
            }
        }
    }

    // Connections handed to reactor `i` and not yet closed or rejected there.
    // Built from monotonic counters, so it never lags behind a hand-over
    // (a reactor's own open count only moves once it has drained its inbox).
    std::uint64_t load(std::size_t i) const noexcept {
        auto const& c = reactors_[i]->counters();
        std::uint64_t done = c.closed.get() + c.rejected.get();
        return handed_[i] > done ? handed_[i] - done : 0;
    }
    std::uint64_t open_total() const noexcept {
        std::uint64_t n = 0;
        for (std::size_t i = 0; i < reactors_.size(); ++i) n += load(i);
        return n;
    }

    void dispatch(const io_uring_cqe& cqe) {
        uring::user_data ud(cqe.user_data);
        switch (ud.kind()) {
            case op_accept:
                if (int e = accept_.on_accept(*ring_, cqe, stop_.load(std::memory_order_relaxed), [this](int fd) { take(fd); }))
                    report(error_report::kind::accept_backoff, std::error_code(e, std::system_category()),
                           "accept failed; retrying every 10 ms until it works");
                break;
            case op_retry:
                accept_.on_retry(*ring_, stop_.load(std::memory_order_relaxed));
                break;
            case msg_ring_handoff::failed_kind: {
                // A MSG_RING could not be posted (the target's CQ was full,
                // say): send the same fd through the reactor's queue instead.
                // It counted against the reactor it was meant for; it goes
                // through a queue instead, to whichever reactor has room.
                counters_.handoff_retries.add();
                int fd = static_cast<int>(ud.slot());
                --handed_[static_cast<std::size_t>(ud.generation()) % handed_.size()];
                if (!try_hand_over(fd, nullptr)) {
                    waiting_.push_back(fd);
                    accept_.pause(*ring_);
                }
                break;
            }
            case msg_ring_handoff::sent_kind: {
                // A direct socket's MSG_RING completed: this table's slot is
                // no longer needed either way.
                close_slot(ud.slot(), cqe.res < 0);
                if (cqe.res < 0) {
                    // It never reached the reactor (its table full, say): the
                    // close is what the client sees; it no longer counts there.
                    counters_.handoff_failures.add();
                    --handed_[static_cast<std::size_t>(ud.generation()) % handed_.size()];
                }
                break;
            }
            default:  // op_close (failed: nothing to do), op_stop
                break;
        }
    }

    // An accepted socket. Already accepted when every table is full (a
    // multishot accept takes the backlog in one go): it waits here, not closed.
    void take(int fd) {
        if (accept_.paused() || !try_hand_over(fd, &*ring_)) {
            waiting_.push_back(fd);
            accept_.pause(*ring_);
        }
        if (open_total() >= capacity_) accept_.pause(*ring_);
    }

    // Hands `fd` to a reactor with room, chosen by the placement policy.
    // `producer` is this thread's ring, through which msg_ring_handoff
    // posts; nullptr forces the queue path. False when every reactor is full.
    bool try_hand_over(int fd, uring::ring* producer) {
        std::size_t n = reactors_.size();
        std::size_t first = config_.placement == distribution::least_loaded ? least_loaded() : next_++ % n;
        for (std::size_t i = 0; i < n; ++i) {
            std::size_t r = (first + i) % n;
            if (load(r) >= config_.max_connections || reactors_[r]->failed()) continue;
            bool handed = false;
            if constexpr (can_hand_over_direct) {
                if (direct_ && producer)
                    handed = reactors_[r]->hand_over_direct(static_cast<unsigned>(fd), *producer);
                else
                    handed = reactors_[r]->hand_over(fd, producer);
            } else {
                handed = reactors_[r]->hand_over(fd, producer);
            }
            if (handed) {
                ++handed_[r];
                return true;
            }
        }
        return false;
    }

    void report(error_report::kind what, std::error_code code, std::string message) noexcept {
        if (!config_.on_error) return;
        try {
            config_.on_error(error_report{what, -1, {}, code, std::move(message)});
        } catch (...) {
        }
    }

    std::size_t least_loaded() const noexcept {
        std::size_t best = 0;
        std::uint64_t best_load = ~0ull;
        for (std::size_t i = 0; i < reactors_.size(); ++i) {
            if (reactors_[i]->failed()) continue;
            if (std::uint64_t l = load(i); l < best_load) {
                best = i;
                best_load = l;
            }
        }
        return best;
    }

    int listener_;
    server_config config_;
    std::vector<Reactor*> reactors_;
    std::optional<uring::ring> ring_;
    detail::eventfd_waker stop_waker_;
    detail::multishot_accept accept_;
    acceptor_counters counters_;
    std::vector<std::string> fallbacks_;
    std::atomic<bool> stop_{false};
    std::uint64_t capacity_ = 0;
    std::size_t next_ = 0;
    std::vector<std::uint64_t> handed_;  // per reactor, only ever grows (but for failed MSG_RINGs)
    std::vector<int> waiting_;           // accepted while every reactor was full (slots when direct_)
    std::optional<uring::registered_files> files_;  // direct_: what the accept fills
    bool direct_ = false;
};

}  // namespace zerg
