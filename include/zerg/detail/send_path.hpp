// The outbound side of one connection: the queue of bytes to send, the
// iovec/msghdr the kernel reads while a send is in flight, the one send in
// flight, and the backpressure thresholds. The reactor asks it to start a
// send and tells it each completion; it answers what happened next, so the
// whole send side lives in this one place.
//
// The queue holds copied bytes (chunks) and bytes still in received
// provided buffers (held segments, write_queue.hpp); one send gathers both,
// in the order they were written.
//
// At most one send is in flight per connection: TCP keeps bytes in order
// only if each send starts after the previous one completed (a short send
// is resumed from where it stopped).
//
// Reactor thread only.
#pragma once

#include <zerg/detail/write_queue.hpp>
#include <zerg/uring/operations.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace zerg::detail {

// What a send completion means for the connection.
struct send_outcome {
    bool failed = false;          // the peer is gone (EPIPE, ECONNRESET...): tear down
    bool progressed = false;      // some bytes left: the write deadline restarts
    bool drained = false;         // nothing left to send
    bool resume_reading = false;  // the queue fell to half its limit after a pause
};

class send_path {
public:
    // Bytes queued and not yet acknowledged by a send completion.
    std::size_t size() const noexcept { return queue_.size(); }
    bool empty() const noexcept { return queue_.empty(); }
    bool in_flight() const noexcept { return in_flight_; }
    // A send can start now.
    bool ready() const noexcept { return !in_flight_ && !queue_.empty(); }

    void append(std::span<const std::byte> bytes, chunk_pool& pool) { queue_.append(bytes, pool); }
    // Bytes that sit in provided buffer `id`, queued by reference (in order
    // with the copied ones): the buffer goes back to the kernel's ring only
    // once they are sent, or dropped with the queue.
    void append_held(std::span<const std::byte> bytes, std::uint16_t id, chunk_pool& pool) {
        queue_.append_held(bytes, id, pool);
    }
    std::span<std::byte> prepare(std::size_t min, chunk_pool& pool) { return queue_.prepare(min, pool); }
    void commit(std::size_t n) noexcept { queue_.commit(n); }

    // Over `limit` bytes queued: reading should pause until the peer takes them.
    bool over(std::size_t limit) const noexcept { return queue_.size() > limit; }

    // Prepares one send of what is queued (up to max_iov chunks) into `sqe`.
    // Precondition: ready().
    void prepare_send(io_uring_sqe* sqe, int fd) noexcept {
        unsigned n = queue_.gather(iov_);
        if (n == 1) {
            uring::prep_send(sqe, fd, std::span<const std::byte>(static_cast<const std::byte*>(iov_[0].iov_base), iov_[0].iov_len));
        } else {
            msg_ = {};
            msg_.msg_iov = iov_;
            msg_.msg_iovlen = n;
            uring::prep_sendmsg(sqe, fd, &msg_);
        }
        in_flight_ = true;
    }

    // The send's CQE: `res` bytes went out, or -errno. `paused` says whether
    // reading is paused for backpressure, `limit` is the queue limit.
    send_outcome complete(int res, chunk_pool& pool, bool paused, std::size_t limit) noexcept {
        in_flight_ = false;
        send_outcome out;
        if (res < 0) {
            out.failed = true;
            return out;
        }
        queue_.consume(static_cast<std::size_t>(res), pool);
        out.progressed = res > 0;
        out.drained = queue_.empty();
        out.resume_reading = paused && queue_.size() <= limit / 2;
        return out;
    }

    // Drops what is queued. While a send is in flight the kernel may still
    // read its chunks: they stay until that send completes.
    void discard(chunk_pool& pool) noexcept {
        if (!in_flight_) queue_.clear(pool);
    }
    // The slot is being freed: every CQE is in, so nothing reads the chunks.
    void reset(chunk_pool& pool) noexcept {
        queue_.clear(pool);
        in_flight_ = false;
    }

private:
    // Held segments are one per receive buffer: a pipelined burst needs room.
    static constexpr unsigned max_iov = 16;
    write_queue queue_;
    iovec iov_[max_iov]{};
    msghdr msg_{};
    bool in_flight_ = false;
};

}  // namespace zerg::detail
