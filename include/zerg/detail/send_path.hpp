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
#include <zerg/uring/compat.hpp>
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
    // Provided buffers the queue holds (connection::write_from's cap).
    std::size_t held_buffers() const noexcept { return queue_.held(); }
    std::span<std::byte> prepare(std::size_t min, chunk_pool& pool) { return queue_.prepare(min, pool); }
    void commit(std::size_t n) noexcept { queue_.commit(n); }

    // Over `limit` bytes queued: reading should pause until the peer takes them.
    bool over(std::size_t limit) const noexcept { return queue_.size() > limit; }

    // What prepare_send() chose.
    enum class send_kind { copied, zero_copy, copied_above_threshold };

    // Prepares one send of what is queued (up to max_iov segments) into
    // `sqe`: zero-copy when it carries at least `zc_threshold` bytes and
    // `zero_copy` allows it (detail/zero_copy.hpp). Precondition: ready().
    [[gnu::always_inline]] send_kind prepare_send(io_uring_sqe* sqe, int fd, bool zero_copy = false,
                                                  std::size_t zc_threshold = 0) noexcept {
        in_flight_ = true;
        // One segment holds it all (an echo's answer, one held buffer):
        // a plain send of it, no iovec gathered, no msghdr built. Inline,
        // the rest is not.
        if (const write_segment* one = queue_.single(); one && !(zc_threshold && one->size() >= zc_threshold)) {
            uring::prep_send(sqe, fd, std::span<const std::byte>(one->base + one->begin, one->size()));
            return send_kind::copied;
        }
        return prepare_gathered(sqe, fd, zero_copy, zc_threshold);
    }

    // A zero-copy send's first CQE (IORING_CQE_F_MORE): its result, kept
    // until the notification says the kernel no longer reads the queued
    // memory. Until then the send stays in flight: nothing it covers is
    // consumed, reused or freed, and the next send waits.
    void keep_zc_result(int res) noexcept {
        zc_result_ = res;
        awaiting_notification_ = true;
    }
    // At the notification: the result to complete() with.
    int zc_result() noexcept {
        awaiting_notification_ = false;
        return zc_result_;
    }
    // A zero-copy send returned its result and its notification is due: it
    // comes once the socket drops the pages (sent and acknowledged, or the
    // socket reset), so a teardown must not wait for it before the close.
    bool awaiting_notification() const noexcept { return awaiting_notification_; }
    // The kernel copied a zero-copy send of this connection after all
    // (IORING_NOTIF_USAGE_ZC_COPIED: loopback, a device without
    // scatter-gather): the route will not change, so the connection's
    // later sends are plain copied ones, which cost less than a copied
    // zero-copy send and need no notification.
    void decline_zc() noexcept { zc_declined_ = true; }

    // The send's CQE: `res` bytes went out, or -errno. `paused` says whether
    // reading is paused for backpressure, `limit` is the queue limit.
    // Provided buffers whose last sent byte this was go back through
    // `release_held(id)` (a direct call into the reactor's Buffer policy).
    template <class ReleaseHeld>
    [[gnu::always_inline]] send_outcome complete(int res, chunk_pool& pool, bool paused, std::size_t limit,
                                                 ReleaseHeld&& release_held) noexcept {
        in_flight_ = false;
        send_outcome out;
        if (res < 0) {
            out.failed = true;
            return out;
        }
        queue_.consume(static_cast<std::size_t>(res), pool, release_held);
        out.progressed = res > 0;
        out.drained = queue_.empty();
        out.resume_reading = paused && queue_.size() <= limit / 2;
        return out;
    }
    send_outcome complete(int res, chunk_pool& pool, bool paused, std::size_t limit) noexcept {
        return complete(res, pool, paused, limit, pool.bound_release());
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
        zc_declined_ = false;
        awaiting_notification_ = false;
    }

private:
    // prepare_send()'s general case: several segments, or zero-copy.
    [[gnu::noinline]] send_kind prepare_gathered(io_uring_sqe* sqe, int fd, bool zero_copy,
                                                 std::size_t zc_threshold) noexcept {
        unsigned n = queue_.gather(iov_);
        std::size_t bytes = 0;
        for (unsigned i = 0; i < n; ++i) bytes += iov_[i].iov_len;
        bool large = zc_threshold && bytes >= zc_threshold;
        bool zc = large && zero_copy && !zc_declined_;
        if (n == 1) {
            std::span<const std::byte> one(static_cast<const std::byte*>(iov_[0].iov_base), iov_[0].iov_len);
            if (zc)
                uring::prep_send_zc(sqe, fd, one, MSG_NOSIGNAL, IORING_SEND_ZC_REPORT_USAGE);
            else
                uring::prep_send(sqe, fd, one);
        } else {
            msg_ = {};
            msg_.msg_iov = iov_;
            msg_.msg_iovlen = n;
            if (zc) {
                uring::prep_sendmsg_zc(sqe, fd, &msg_);
                sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
            } else {
                uring::prep_sendmsg(sqe, fd, &msg_);
            }
        }
        return zc ? send_kind::zero_copy : large ? send_kind::copied_above_threshold : send_kind::copied;
    }

    // Held segments are one per receive buffer: a pipelined burst needs room.
    static constexpr unsigned max_iov = 16;
    write_queue queue_;
    iovec iov_[max_iov]{};
    msghdr msg_{};
    bool in_flight_ = false;
    int zc_result_ = 0;
    bool zc_declined_ = false;
    bool awaiting_notification_ = false;
};

}  // namespace zerg::detail
