// basic_reactor's outbound connections and posted work: the definitions of
// connect(), find() and the posted-work drain, kept out of reactor.hpp's
// accept-and-answer path (doc/outbound.md says how they are used).
//
// An outbound connection takes a slot as an accepted one does, with its
// phase `open` and `connecting_` set: write()s queue, nothing is sent or
// read, no deadline runs. Then
//
//   socket  IORING_OP_SOCKET (5.19), or socket(2) when the kernel lacks it;
//   connect IORING_OP_CONNECT (5.5), linked (IOSQE_IO_LINK) to a
//           LINK_TIMEOUT of server_config::connect_timeout (5.5): whichever
//           ends first cancels the other, and both CQEs count in pending_;
//   success connecting_ clears, on_open runs, the work list sends what was
//           queued and arms the receive, as for an accepted connection;
//   failure end_connect(): on_connect_error (or on_close), then the usual
//           close: cancel what is in the kernel, close the socket, free the
//           slot with a new generation.
//
// Reactor thread only, except post() and what it documents.
#pragma once

#include <zerg/reactor.hpp>

namespace zerg {

template <class B, class Q, class S, class H>
auto basic_reactor<B, Q, S, H>::connect(const endpoint& to, std::error_code& ec) -> connection_type* {
    ec.clear();
    if (stopping_) {
        ec = std::make_error_code(std::errc::operation_canceled);
        return nullptr;
    }
    if (free_.empty() && !grow_table()) {
        ec = std::make_error_code(std::errc::no_buffer_space);
        return nullptr;
    }
    int fd = -1;
    if (!ring_socket_) {
        fd = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            ec = std::error_code(errno, std::system_category());
            return nullptr;
        }
    }
    connection_type& c = free_.front();
    free_.pop_front();
    live_.push_back(c);
    c.fd_ = -1;
    c.pending_ = 0;
    c.recv_arms_ = 0;
    c.life_.move_to(phase::open);
    c.life_.move_to(read_state::wanted);
    c.reason_.clear();
    c.examined_ = 0;
    c.partial_ = c.completed_ = false;
    c.reader_ = c.flusher_ = {};
    c.state_ = typename connection_type::state_type{};
    c.remote_ = to;
    c.outbound_ = c.connecting_ = true;
    c.connect_in_kernel_ = false;
    c.throttle_ = {};
    counters_.busy_slots.add();
    if (config_.reuse_port && table_full()) accept_.pause(*ring_);
    if (fd >= 0)
        start_connect(c, fd);
    else
        submit(c, op_socket, [&](io_uring_sqe* s) { uring::prep_socket(s, to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0); });
    return &c;
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::start_connect(connection_type& c, int fd) {
    c.fd_ = fd;
    // Accepted sockets inherit TCP_NODELAY from the listener; this one sets it.
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bool bounded = config_.connect_timeout.count() > 0;
    // A linked pair must reach the kernel in one submission.
    if (bounded && ring_->sq_space_left() < 2) ring_->submit();
    submit(c, op_connect, [&](io_uring_sqe* s) {
        uring::prep_connect(s, fd, c.remote_.get(), c.remote_.length);
        if (bounded) uring::link_next(s);
    });
    c.connect_in_kernel_ = true;
    if (bounded) submit(c, op_connect_timeout, [&](io_uring_sqe* s) { uring::prep_link_timeout(s, &connect_timeout_); });
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::on_socket(connection_type& c, const io_uring_cqe& cqe) {
    --c.pending_;
    if (c.life_.torn_down()) {  // closed or stopped while the socket was made
        if (cqe.res >= 0) c.fd_ = cqe.res;
        finish_if_done(c);
    } else if (cqe.res < 0) {
        end_connect(c, uring::result_error(cqe.res));
    } else {
        start_connect(c, cqe.res);
    }
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::on_connect(connection_type& c, const io_uring_cqe& cqe) {
    --c.pending_;
    c.connect_in_kernel_ = false;
    if (c.life_.torn_down()) {
        finish_if_done(c);
        return;
    }
    if (cqe.res < 0) {
        // The only canceller of a live connect is its linked timeout.
        end_connect(c, cqe.res == -ECANCELED ? std::make_error_code(std::errc::timed_out) : uring::result_error(cqe.res));
        return;
    }
    c.connecting_ = false;
    begin_serving(c);
}

// The connection never connected: the handler hears why once, then the slot
// closes like any other.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::end_connect(connection_type& c, std::error_code why) {
    if (!c.reason_) c.reason_ = why;
    c.send_.discard(pool_);  // nothing was in flight
    c.life_.move_to(phase::tearing_down);
    c.life_.move_to(read_state::stopped);
    deadlines_.forget(c);
    if constexpr (handler_has_on_connect_error<H>)
        guarded(c, [&] { handler_.on_connect_error(c, c.reason_); });
    else if constexpr (handler_has_on_close<H>)
        guarded(c, [&] { handler_.on_close(c, c.reason_); });
    if (c.connect_in_kernel_) submit(c, op_cancel, [&](io_uring_sqe* s) { uring::prep_cancel_fd(s, c.fd_); });
    finish_if_done(c);
}

template <class B, class Q, class S, class H>
auto basic_reactor<B, Q, S, H>::find(connection_handle h) noexcept -> connection_type* {
    if (h.reactor != index_ || h.slot >= slots_ || generations_->generation(h.slot) != h.generation) return nullptr;
    connection_type& c = slot_at(h.slot);
    // Torn down: its generation is current until the slot is freed, but it
    // is no longer anybody's to write to.
    return c.life_.torn_down() ? nullptr : &c;
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::run_posted() {
    posted_.drain(this, [this] {
        counters_.handler_exceptions.add();
        report(error_report::kind::handler_exception, make_error_code(error::handler_exception),
               "a callable posted to the reactor threw: " + describe(std::current_exception()), nullptr);
    });
}

}  // namespace zerg
