// zerg::connection<Handler>: one TCP connection as a handler sees it.
//
// Connections live in a reactor's pre-allocated table and are reused; a
// handler gets a reference in each callback and must not keep it past
// on_close. Every member is for the reactor's own thread only.
#pragma once

#include <zerg/buffer_sequence.hpp>
#include <zerg/buffer_writer.hpp>
#include <zerg/detail/write_queue.hpp>
#include <zerg/ring_item.hpp>
#include <zerg/task.hpp>
#include <zerg/uring/user_data.hpp>

#include <boost/intrusive/list.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>

namespace zerg {

namespace detail {
template <class H>
struct connection_state_of {
    struct none {};
    using type = none;
};
template <class H>
    requires requires { typename H::connection_state; }
struct connection_state_of<H> {
    using type = typename H::connection_state;
};
}  // namespace detail

// The reason a connection closed, as on_close sees it: empty for a close
// the application asked for, a clean EOF from the peer or a graceful stop;
// otherwise the error (ECONNRESET, EPIPE; ETIMEDOUT for a timeout or a stop
// whose deadline passed; EPROTO when a coroutine handler threw).
using close_reason = std::error_code;

namespace detail {
struct table_tag;
struct work_tag;
struct idle_tag;
struct read_tag;
struct write_tag;
using safe = boost::intrusive::link_mode<boost::intrusive::safe_link>;
// A connection sits in the reactor's table (free or live list) and, while it
// has something to do this iteration, in its work list: two hooks, no allocation.
using table_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<table_tag>, safe>;
using work_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<work_tag>, safe>;
// Timeouts: a connection sits in each list whose deadline applies to it. All
// connections share one timeout per list, so appending at "now" keeps every
// list sorted by deadline, and expiry only ever looks at the front.
using idle_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<idle_tag>, safe>;
using read_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<read_tag>, safe>;
using write_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<write_tag>, safe>;
}  // namespace detail

template <class Connection>
struct read_result {
    // Every byte received and not yet consumed.
    buffer_sequence& buffer;
    // The connection is closing: no more bytes will come.
    bool closed;
};

template <class Handler>
class connection : public detail::table_hook,
                   public detail::work_hook,
                   public detail::idle_hook,
                   public detail::read_hook,
                   public detail::write_hook {
public:
    using handler_type = Handler;
    // The handler's per-connection state, or an empty struct when it has none.
    using state_type = typename detail::connection_state_of<Handler>::type;

    connection() = default;
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    int fd() const noexcept { return fd_; }
    // Index in the reactor's table; unique among open connections.
    std::uint32_t slot() const noexcept { return slot_; }
    state_type& state() noexcept { return state_; }
    bool is_open() const noexcept { return open_ && !closing_; }

    // Queues bytes to send, in order. Sends start when the callback returns
    // (one batch per loop iteration), and partial sends are resumed. When the
    // queue passes server_config::max_write_queue, reading pauses until it
    // drains to half.
    void write(std::span<const std::byte> bytes) {
        if (!is_open() && !shutting_down_) return;
        out_.append(bytes, *pool_);
        mark_for_work();
    }
    void write(std::string_view text) { write(std::as_bytes(std::span(text.data(), text.size()))); }

    // Writing in place: room for at least `min` bytes (up to one chunk);
    // commit() what was used.
    // Empty when the connection no longer takes writes (as write() ignores them).
    std::span<std::byte> prepare(std::size_t min) {
        if (!is_open() && !shutting_down_) return {};
        return out_.prepare(min, *pool_);
    }
    void commit(std::size_t n) {
        if (n == 0 || (!is_open() && !shutting_down_)) return;
        out_.commit(n);
        mark_for_work();
    }

    std::size_t queued_bytes() const noexcept { return out_.size(); }

    // A writer over this connection's outbound queue (see buffer_writer.hpp).
    buffer_writer<connection> writer() noexcept { return buffer_writer<connection>(*this); }

    // The bytes received and not yet consumed (sequence and coroutine handlers).
    buffer_sequence& input() noexcept { return input_; }

    // Gives a ring_item's buffer back to the kernel (ring-item handlers).
    void release(const ring_item& item) noexcept { input_release_(input_context_, item.buffer_id); }

    // ---- coroutine API ------------------------------------------------------
    // co_await c.read(): the unconsumed bytes, once there is something not
    // yet examined (PipeReader semantics: after advance(n, everything) the
    // next read waits for new bytes instead of returning the same ones).
    struct read_awaiter {
        connection* c;
        bool await_ready() const noexcept { return c->input_.size() > c->examined_ || !c->is_open(); }
        void await_suspend(std::coroutine_handle<> h) noexcept { c->reader_ = h; }
        read_result<connection> await_resume() const noexcept { return {c->input_, !c->is_open()}; }
    };
    read_awaiter read() noexcept { return {this}; }

    // Consumes `consumed` bytes and marks the first `examined` bytes (counted
    // from the same start, examined >= consumed) as seen.
    void advance(std::size_t consumed, std::size_t examined) noexcept {
        input_.consume(consumed);
        examined_ = examined > consumed ? examined - consumed : 0;
    }
    void advance(std::size_t consumed) noexcept { advance(consumed, consumed); }

    // Queued bytes go out with the reactor's next batch. co_await it to
    // wait until the peer's socket has taken all of them: true when sent,
    // false when the connection closed first.
    struct flush_awaiter {
        connection* c;
        bool await_ready() const noexcept { return c->out_.empty() || c->tearing_down_; }
        void await_suspend(std::coroutine_handle<> h) noexcept { c->flusher_ = h; }
        bool await_resume() const noexcept { return c->out_.empty() && !c->tearing_down_; }
    };
    flush_awaiter flush() noexcept {
        if (!out_.empty()) mark_for_work();
        return {this};
    }
    // write() then flush().
    flush_awaiter write_all(std::span<const std::byte> bytes) {
        write(bytes);
        return flush();
    }
    flush_awaiter write_all(std::string_view text) { return write_all(std::as_bytes(std::span(text.data(), text.size()))); }

    // Sends what is queued, then closes. Nothing more is read.
    void close() noexcept {
        if (!open_ || closing_) return;
        closing_ = true;
        mark_for_work();
    }
    // Sends what is queued, then shuts down the sending side (the peer sees
    // EOF) and keeps reading until the peer closes too.
    void shutdown() noexcept {
        if (!open_ || closing_) return;
        shutting_down_ = true;
        mark_for_work();
    }

private:
    template <class, class, class, class>
    friend class basic_reactor;
    using work_list = boost::intrusive::list<connection, boost::intrusive::base_hook<detail::work_hook>>;
    using table_list = boost::intrusive::list<connection, boost::intrusive::base_hook<detail::table_hook>>;

    bool in_work_list() const noexcept { return detail::work_hook::is_linked(); }
    void mark_for_work() noexcept {
        if (!in_work_list()) work_->push_back(*this);
    }

    using idle_list = boost::intrusive::list<connection, boost::intrusive::base_hook<detail::idle_hook>>;
    using read_list = boost::intrusive::list<connection, boost::intrusive::base_hook<detail::read_hook>>;
    using write_list = boost::intrusive::list<connection, boost::intrusive::base_hook<detail::write_hook>>;

    work_list* work_ = nullptr;
    detail::chunk_pool* pool_ = nullptr;

    int fd_ = -1;
    std::uint32_t slot_ = 0;
    unsigned pending_ = 0;        // operations whose last CQE has not arrived
    bool open_ = false;           // handed to the handler, on_close not yet called
    bool closing_ = false;        // close requested: flush, then tear down
    bool shutting_down_ = false;  // shutdown requested: flush, then SHUT_WR
    bool shut_wr_done_ = false;
    bool tearing_down_ = false;   // cancel issued; close follows when pending_ hits 0
    bool close_submitted_ = false;
    bool recv_armed_ = false;
    bool wants_recv_ = false;     // arm (again) at the end of this iteration
    bool read_paused_ = false;
    bool send_in_flight_ = false;
    bool starved_ = false;       // waits in the reactor's starved list for a buffer
    bool armed_before_ = false;  // a receive was armed before (counts re-arms)
    std::size_t send_size_ = 0;
    close_reason reason_;
    detail::write_queue out_;
    msghdr msg_{};
    iovec iov_[8]{};
    buffer_sequence input_;
    buffer_sequence::release_fn input_release_ = nullptr;
    void* input_context_ = nullptr;
    std::size_t examined_ = 0;
    std::coroutine_handle<> reader_;
    std::coroutine_handle<> flusher_;
    task task_;
    std::chrono::steady_clock::time_point idle_since_{}, read_since_{}, write_since_{};
    state_type state_{};
};

}  // namespace zerg
