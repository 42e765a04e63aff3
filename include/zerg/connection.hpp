// zerg::connection<Handler>: one TCP connection as a handler sees it.
//
// Connections live in a reactor's pre-allocated table and are reused; a
// handler gets a reference in each callback and must not keep it past
// on_close. Every member is for the reactor's own thread only.
//
// Its life is the two machines of detail/connection_phase.hpp (phase and
// read state); its outbound side is a detail::send_path; its deadlines are
// kept by the reactor's detail::deadlines through the hooks below.
#pragma once

#include <zerg/buffer_sequence.hpp>
#include <zerg/buffer_writer.hpp>
#include <zerg/connection_handle.hpp>
#include <zerg/detail/connection_phase.hpp>
#include <zerg/detail/deadlines.hpp>
#include <zerg/detail/send_path.hpp>
#include <zerg/ring_item.hpp>
#include <zerg/task.hpp>

#include <boost/intrusive/list.hpp>

#include <algorithm>

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

struct table_tag;
struct work_tag;
struct starved_tag;
// A connection sits in the reactor's table (free or live list), while it
// has something to do this iteration in its work list, while it waits for
// a receive buffer in the starved list, and in each deadline list that
// applies to it (deadlines.hpp): one hook each, no allocation.
using table_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<table_tag>, safe_link>;
using work_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<work_tag>, safe_link>;
using starved_hook = boost::intrusive::list_base_hook<boost::intrusive::tag<starved_tag>, safe_link>;
}  // namespace detail

// The reason a connection closed, as on_close sees it: empty for a close
// the application asked for, a clean EOF from the peer or a graceful stop;
// otherwise the error (ECONNRESET, EPIPE; ETIMEDOUT for a timeout or a stop
// whose deadline passed; EPROTO when a coroutine handler threw).
using close_reason = std::error_code;

// What co_await c.read() returns.
struct read_result {
    // Every byte received and not yet consumed.
    buffer_sequence& buffer;
    // No more bytes will come (the peer's EOF, or the connection is closing)
    // and `buffer` holds nothing not yet examined. Bytes that arrived before
    // the EOF are first returned with closed == false, and replies to them
    // are still sent.
    bool closed;
};

template <class Handler>
class connection : public detail::table_hook,
                   public detail::work_hook,
                   public detail::starved_hook,
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

    // The socket's fd; -1 for a direct descriptor (is_direct()), which has
    // none: the socket lives only in the reactor's registered file table.
    int fd() const noexcept { return direct_ ? -1 : fd_; }
    // Accepted into the reactor's registered file table
    // (server_config::direct_descriptors): every operation on it names
    // direct_index() with IOSQE_FIXED_FILE. Reactor thread.
    bool is_direct() const noexcept { return direct_; }
    // The slot in that table, or -1 when not is_direct(). Only io_uring
    // requests on this reactor's ring may use it. Reactor thread.
    int direct_index() const noexcept { return direct_ ? fd_ : -1; }
    // Index in the reactor's table; unique among open connections.
    std::uint32_t slot() const noexcept { return slot_; }
    state_type& state() noexcept { return state_; }
    // The peer may still send (no EOF, no close yet).
    bool is_open() const noexcept { return life_.is_open(); }

    // Queues bytes to send, in order. Sends start when the callback returns
    // (one batch per loop iteration), and partial sends are resumed. When the
    // queue passes server_config::max_write_queue, reading pauses until it
    // drains to half. Accepted after the peer's EOF while a coroutine
    // handler still runs; ignored once the connection is closing.
    void write(std::span<const std::byte> bytes) {
        if (!life_.accepts_writes()) return;
        send_.append(bytes, *pool_);
        mark_for_work();
    }
    void write(std::string_view text) { write(std::as_bytes(std::span(text.data(), text.size()))); }

    // Writing in place: room for at least `min` bytes (up to one chunk);
    // commit() what was used.
    // Empty when the connection no longer takes writes (as write() ignores them).
    std::span<std::byte> prepare(std::size_t min) {
        if (!life_.accepts_writes()) return {};
        return send_.prepare(min, *pool_);
    }
    void commit(std::size_t n) {
        if (n == 0 || !life_.accepts_writes()) return;
        send_.commit(n);
        mark_for_work();
    }

    // ---- sending from the receive buffer ------------------------------------
    // Queues bytes that still sit in a received provided buffer, in order
    // with write() and commit(), without copying them: the send reads them
    // from the buffer, which goes back to the kernel's ring only when the
    // send that takes their last byte completes, or the connection is torn
    // down. The write takes its own reference on the buffer: the handler
    // still releases the item (or consumes the sequence) as it would
    // without it, at once if it likes. Until that send completes the buffer
    // is out of the ring, so a peer that does not read would keep buffers
    // from every other connection of the reactor: the bytes are copied
    // instead (as write() does) once this connection holds
    // max_held_buffers, or while fewer than a quarter of the ring's buffers
    // are free. Ignored, as write() is, once the connection no longer takes
    // writes.
    static constexpr std::size_t max_held_buffers = 16;
    void write_from(const ring_item& item) { write_from(item, 0, item.size); }
    // Bytes [offset, offset + length) of the item (clamped to it).
    void write_from(const ring_item& item, std::size_t offset, std::size_t length) {
        if (!life_.accepts_writes() || offset >= item.size) return;
        auto bytes = item.bytes().subspan(offset, std::min<std::size_t>(length, item.size - offset));
        if (!may_hold()) return write(bytes);
        send_.append_held(bytes, item.buffer_id, *pool_);
        mark_for_work();
    }
    // A slice of this connection's input (sequence and coroutine handlers).
    // Bytes already spilled into the sequence's own memory are copied.
    void write_from(const buffer_sequence::slice_view& bytes) {
        if (!life_.accepts_writes()) return;
        bytes.for_each_buffer_piece([&](std::span<const std::byte> piece, int id) {
            if (id < 0 || !may_hold())
                send_.append(piece, *pool_);
            else
                send_.append_held(piece, static_cast<std::uint16_t>(id), *pool_);
        });
        mark_for_work();
    }

    std::size_t queued_bytes() const noexcept { return send_.size(); }

    // ---- outbound connections and handles (doc/outbound.md) -------------------
    // This connection's name for other threads and for later callbacks.
    connection_handle handle() const noexcept {
        return {access_->index, slot_, access_->generation(access_->reactor, slot_)};
    }
    // The connection `h` names, if it is still open on this reactor; null
    // when it closed, its slot was reused, or it belongs to another reactor.
    connection* find(connection_handle h) noexcept { return access_->find(access_->reactor, h); }
    // Opens a TCP connection to `to` (IPv4 or IPv6) from this connection's
    // reactor: basic_reactor::connect(). The new connection takes write()s
    // at once (they are sent once it connects); the handler sees it in
    // on_open, or in on_connect_error when it cannot connect. Null with
    // `ec` set when it cannot even start (no free slot, the reactor stops).
    connection* connect(const endpoint& to, std::error_code& ec) { return access_->connect(access_->reactor, to, ec); }
    // Opened by connect() (not accepted).
    bool outbound() const noexcept { return outbound_; }
    // connect() has not completed yet.
    bool connecting() const noexcept { return connecting_; }
    // The bytes written here come from `source` (a relay): when this
    // connection's queue passes max_write_queue, reading pauses on
    // `source` instead of on this connection, and resumes at half. Without
    // it a relay would stop reading the side whose answers unblock it.
    void throttle(connection_handle source) noexcept { throttle_ = source; }

    // A writer over this connection's outbound queue (see buffer_writer.hpp).
    buffer_writer<connection> writer() noexcept { return buffer_writer<connection>(*this); }

    // The bytes received and not yet consumed (sequence and coroutine handlers).
    buffer_sequence& input() noexcept { return input_; }

    // Span and ring-item handlers keep partial messages in their own state,
    // where the reactor cannot see them: they say when one starts and ends,
    // and server_config::read_timeout runs in between (sequence and
    // coroutine handlers get this from their unconsumed input).
    void message_started() noexcept { partial_ = true; }
    void message_complete() noexcept {
        partial_ = false;
        completed_ = true;
    }

    // Gives a ring_item's buffer back to the kernel (ring-item handlers).
    void release(const ring_item& item) noexcept { input_.release_buffer(item.buffer_id); }

    // ---- coroutine API ------------------------------------------------------
    // co_await c.read(): the unconsumed bytes, once there is something not
    // yet examined (PipeReader semantics: after advance(n, everything) the
    // next read waits for new bytes instead of returning the same ones).
    struct read_awaiter {
        connection* c;
        bool await_ready() const noexcept {
            return c->input_.size() > c->examined_ || !c->is_open() || c->lingering_;
        }
        void await_suspend(std::coroutine_handle<> h) noexcept { c->reader_ = h; }
        // closed only once nothing unexamined is left: a handler that
        // stops at `closed` still sees every byte that came before the EOF.
        // After lingering_close() the input is dropped: closed at once.
        read_result await_resume() const noexcept {
            return {c->input_, c->lingering_ || (!c->is_open() && c->input_.size() <= c->examined_)};
        }
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
        bool await_ready() const noexcept { return c->send_.empty() || c->life_.torn_down(); }
        void await_suspend(std::coroutine_handle<> h) noexcept { c->flusher_ = h; }
        bool await_resume() const noexcept { return c->send_.empty() && !c->life_.torn_down(); }
    };
    flush_awaiter flush() noexcept {
        if (!send_.empty()) mark_for_work();
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
        if (!life_.closable()) return;
        life_.move_to(detail::phase::draining);
        mark_for_work();
    }
    // Sends what is queued, then shuts down the sending side (the peer sees
    // EOF) and keeps reading until the peer closes too.
    // After the peer's EOF (on_peer_shutdown) both sides are done: it closes.
    void shutdown() noexcept {
        if (life_.now == detail::phase::read_shut) return close();
        if (life_.now != detail::phase::open) return;
        life_.move_to(detail::phase::half_closing);
        mark_for_work();
    }

    // The close for an error reply (HTTP 400/413, RESP's protocol error):
    // sends what is queued, shuts down the sending side, then reads and
    // drops whatever the peer still sends until its EOF, and closes. A plain
    // close() with the peer's bytes still arriving makes the kernel answer
    // them with RST, and a client that is still sending often loses the
    // reply to it. The handler sees no more input; the lingering ends at the
    // peer's EOF or when server_config::read_timeout passes (idle_timeout
    // when that is off), whichever comes first, never extended by what
    // arrives. The close reason is then clean or ETIMEDOUT.
    // Reactor thread (the handler's callbacks).
    void lingering_close() noexcept {
        if (!life_.closable()) return;
        if (life_.now == detail::phase::read_shut) return close();  // the peer's EOF came already
        lingering_ = true;
        if (life_.now == detail::phase::open) life_.move_to(detail::phase::half_closing);
        mark_for_work();
    }
    // lingering_close() was called: what arrives is dropped.
    bool is_lingering() const noexcept { return lingering_; }

private:
    template <class, class, class, class>
    friend class basic_reactor;
    friend class detail::deadlines<connection>;
    using work_list = boost::intrusive::list<connection, boost::intrusive::base_hook<detail::work_hook>>;
    using table_list = boost::intrusive::list<connection, boost::intrusive::base_hook<detail::table_hook>>;
    using starved_list = boost::intrusive::list<connection, boost::intrusive::base_hook<detail::starved_hook>>;

    bool in_work_list() const noexcept { return detail::work_hook::is_linked(); }
    // write_from() may queue one more buffer by reference (see there).
    bool may_hold() const noexcept {
        return pool_->holds_buffers() && send_.held_buffers() < max_held_buffers && !pool_->ring_low();
    }
    void mark_for_work() noexcept {
        if (!in_work_list()) work_->push_back(*this);
    }

    work_list* work_ = nullptr;
    detail::chunk_pool* pool_ = nullptr;

    int fd_ = -1;               // the fd, or the registered-file slot when direct_
    bool direct_ = false;       // fd_ is a slot in the reactor's registered file table
    std::uint32_t slot_ = 0;
    unsigned pending_ = 0;      // operations whose last CQE has not arrived
    std::uint32_t recv_arms_ = 0;  // receives armed in this connection's life (the first is not a re-arm)
    detail::lifecycle life_;
    close_reason reason_;
    detail::send_path send_;
    buffer_sequence input_;
    std::size_t examined_ = 0;
    bool partial_ = false;    // message_started() without message_complete() (span, ring-item handlers)
    bool completed_ = false;  // message_complete() since the last callback
    std::coroutine_handle<> reader_;
    std::coroutine_handle<> flusher_;
    task task_;
    detail::deadline_marks marks_;
    state_type state_{};
    detail::reactor_access<connection>* access_ = nullptr;
    endpoint remote_;             // an outbound connection's target: read by the kernel until connected
    connection_handle throttle_;  // pause this one's reading instead of ours (throttle())
    bool outbound_ = false;
    bool connecting_ = false;
    bool connect_in_kernel_ = false;  // the connect SQE has not completed
    bool lingering_ = false;          // lingering_close(): input is read and dropped
};

}  // namespace zerg
