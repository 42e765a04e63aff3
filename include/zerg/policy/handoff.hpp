// Queue (hand-off) policies: how an accepted connection travels from the
// acceptor thread to the reactor that will own it. Each reactor owns one
// inbox of the policy's type.
//
//   spsc_handoff<Capacity>  boost::lockfree::spsc_queue: exactly one producer
//                           (the acceptor). Cheapest.
//   mpmc_handoff<Capacity>  boost::lockfree::queue: any thread may hand over
//                           (several acceptors, or application threads).
//   msg_ring_handoff        no queue: the fd rides in an IORING_OP_MSG_RING
//                           completion posted straight into the reactor's
//                           ring (5.18; DEFER_TASKRUN targets 6.1). The
//                           completion itself wakes the reactor. Falls back to
//                           an MPMC queue with eventfd wake-ups, and says so,
//                           when the kernel lacks MSG_RING or the producer has
//                           no ring. With direct descriptors in acceptor
//                           mode it carries a registered-file slot instead
//                           (IORING_MSG_SEND_FD, 6.0): push_direct().
//
// Queue-based inboxes wake a sleeping reactor through an eventfd read that
// is always armed in its ring; see detail/eventfd_waker.hpp for why no
// wake-up is lost and why a busy reactor costs the producer no system call.
#pragma once

#include <zerg/detail/eventfd_waker.hpp>
#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/kernel_release.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/probe.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/user_data.hpp>

#include <boost/lockfree/queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>

#include <concepts>
#include <cstdint>
#include <string>

namespace zerg {

// The tags a reactor gives its inbox for the CQEs the inbox produces.
struct inbox_tags {
    std::uint64_t wake;     // the eventfd read completed
    std::uint64_t handoff;  // a MSG_RING completion carrying an fd in res
    std::uint32_t reactor = 0;  // the owning reactor's index
    std::uint64_t handoff_direct = 0;  // a MSG_RING that installed a socket into the ring's table: slot in res
};

namespace detail {

// An inbox backed by a lock-free queue plus an eventfd waker.
template <class Queue>
class queue_inbox {
public:
    void setup(uring::ring& ring, inbox_tags tags) {
        tags_ = tags;
        waker_.arm(ring, tags_.wake);
    }
    // Producer threads: one at a time for an SPSC queue, any for MPMC.
    // False when the queue is full.
    bool push(int fd, uring::ring* /*producer_ring*/) noexcept {
        if (!queue_.push(fd)) return false;
        waker_.notify();
        return true;
    }
    // Any thread, after publishing something the reactor checks before it
    // sleeps (a stop flag): wakes it if it sleeps, costs nothing if busy.
    void wake() noexcept { waker_.notify(); }
    // Reactor thread, as are the three below.
    template <class OnFd>
    unsigned drain(OnFd&& on_fd) {
        unsigned n = 0;
        int fd;
        while (queue_.pop(fd)) {
            on_fd(fd);
            ++n;
        }
        return n;
    }
    bool prepare_to_sleep() noexcept {
        return waker_.prepare_to_sleep([this] { return queue_empty(); });
    }
    void awake() noexcept { waker_.awake(); }
    void on_wake(uring::ring& ring) { waker_.arm(ring, tags_.wake); }
    std::uint64_t wakeup_writes() const noexcept { return waker_.writes(); }
    std::string fallback() const { return {}; }

private:
    bool queue_empty() noexcept {
        if constexpr (requires { queue_.read_available(); })
            return queue_.read_available() == 0;
        else
            return queue_.empty();
    }

    Queue queue_;
    eventfd_waker waker_;
    inbox_tags tags_{};
};

}  // namespace detail

template <std::size_t Capacity = 4096>
struct spsc_handoff : detail::queue_inbox<boost::lockfree::spsc_queue<int, boost::lockfree::capacity<Capacity>>> {
    static constexpr const char* name = "spsc";
    static constexpr bool single_producer = true;
};

template <std::size_t Capacity = 4096>
struct mpmc_handoff : detail::queue_inbox<boost::lockfree::queue<int, boost::lockfree::capacity<Capacity>>> {
    static_assert(Capacity < 65535, "boost::lockfree::queue holds at most 65534 elements with a fixed capacity");
    static constexpr const char* name = "mpmc";
    static constexpr bool single_producer = false;
};

class msg_ring_handoff {
public:
    static constexpr const char* name = "msg_ring";
    static constexpr bool single_producer = false;

    void setup(uring::ring& ring, inbox_tags tags) {
        ring_fd_ = ring.fd();
        tags_ = tags;
        auto k = uring::probe_kernel();
        use_msg_ring_ = k.supports(IORING_OP_MSG_RING);
        if (!use_msg_ring_) fallback_ = "kernel lacks IORING_OP_MSG_RING (Linux 5.18): MPMC queue with eventfd wake-ups";
        fallback_queue_.setup(ring, tags);
    }
    // Any thread. A producer with a ring posts a MSG_RING from it (it
    // submits with its next batch); one without falls back to the queue.
    bool push(int fd, uring::ring* producer_ring) noexcept {
        if (use_msg_ring_ && producer_ring) {
            std::error_code ec;
            if (auto* sqe = producer_ring->get_sqe(ec)) {
                uring::prep_msg_ring(sqe, ring_fd_, static_cast<std::uint32_t>(fd), uring::user_data(tags_.handoff));
                // The producer sees a CQE only when the message failed; it
                // carries the fd so the producer can retry another way.
                uring::skip_success_cqe(sqe);
                uring::set_user_data(sqe, failed_tag(fd, tags_.reactor));
                return true;
            }
        }
        return fallback_queue_.push(fd, nullptr);
    }
    // Why a socket cannot travel as a direct descriptor from the acceptor's
    // table into the reactor's (IORING_MSG_SEND_FD, 6.0), or empty. Any
    // thread; the same answer for every ring of the process.
    static std::string direct_unavailable() {
        if (uring::is_hidden(uring::feature::msg_ring))
            return "IORING_OP_MSG_RING is hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE=msg_ring)";
        if (!uring::probe_kernel().supports(IORING_OP_MSG_RING) || !uring::kernel_release::running().at_least(6, 0))
            return "the kernel lacks IORING_OP_MSG_RING's IORING_MSG_SEND_FD (Linux 6.0)";
        return {};
    }
    // The acceptor thread, with direct descriptors: moves the socket in
    // slot `source_slot` of the producer ring's table into a free slot of
    // this reactor's (IORING_MSG_SEND_FD, IORING_FILE_INDEX_ALLOC). The
    // reactor's CQE carries its new slot in res; the producer's CQE (tagged
    // sent_tag) says whether it arrived, and the producer closes its own
    // slot either way (the target holds its own reference). False when the
    // producer's SQ is full.
    bool push_direct(unsigned source_slot, uring::ring& producer) noexcept {
        std::error_code ec;
        auto* sqe = producer.get_sqe(ec);
        if (!sqe) return false;
        uring::prep_msg_ring_fd(sqe, ring_fd_, source_slot, IORING_FILE_INDEX_ALLOC, uring::user_data(tags_.handoff_direct));
        uring::set_user_data(sqe, sent_tag(source_slot, tags_.reactor));
        return true;
    }
    template <class OnFd>
    unsigned drain(OnFd&& on_fd) {
        return fallback_queue_.drain(on_fd);
    }
    void wake() noexcept { fallback_queue_.wake(); }
    bool prepare_to_sleep() noexcept { return fallback_queue_.prepare_to_sleep(); }
    void awake() noexcept { fallback_queue_.awake(); }
    void on_wake(uring::ring& ring) { fallback_queue_.on_wake(ring); }
    std::uint64_t wakeup_writes() const noexcept { return fallback_queue_.wakeup_writes(); }
    std::string fallback() const { return fallback_; }

    // Tag of a producer-side CQE for a MSG_RING that failed: kind 0xfe, the
    // fd in the slot field, the target reactor's index in the generation field.
    static constexpr std::uint8_t failed_kind = 0xfe;
    static std::uint64_t failed_tag(int fd, std::uint32_t reactor) noexcept {
        return uring::user_data(failed_kind, static_cast<std::uint32_t>(fd), reactor).raw();
    }
    // Tag of the producer's CQE for push_direct(): kind 0xfd, the producer's
    // slot in the slot field, the target reactor's index in the generation field.
    static constexpr std::uint8_t sent_kind = 0xfd;
    static std::uint64_t sent_tag(unsigned slot, std::uint32_t reactor) noexcept {
        return uring::user_data(sent_kind, slot, reactor).raw();
    }

private:
    int ring_fd_ = -1;
    inbox_tags tags_{};
    bool use_msg_ring_ = false;
    std::string fallback_;
    detail::queue_inbox<boost::lockfree::queue<int, boost::lockfree::capacity<4096>>> fallback_queue_;
};

namespace detail {
// Why reactors fed through Queue (the acceptor thread's hand-off) cannot take
// direct descriptors, or empty: only a MSG_RING can install a socket into
// another ring's table; a queue carries an int, which no other ring's table
// could name.
template <class Queue>
std::string direct_handoff_unavailable() {
    if constexpr (requires { Queue::direct_unavailable(); }) {
        return Queue::direct_unavailable();
    } else {
        return std::string("the ") + Queue::name +
               " queue carries plain fds (only msg_ring_handoff installs the socket into the reactor's table)";
    }
}

// Stands for the reactor's callback in the concept: drain() must take any
// callable, as the reactor passes a lambda.
struct fd_sink {
    void operator()(int) const noexcept {}
};
}  // namespace detail

// What basic_reactor and the acceptor call on a Queue policy.
template <class Q>
concept handoff_policy = std::default_initializable<Q> &&
    requires(Q q, const Q cq, int fd, uring::ring& ring, uring::ring* producer, inbox_tags tags, detail::fd_sink on_fd) {
        { Q::name } -> std::convertible_to<const char*>;
        { Q::single_producer } -> std::convertible_to<bool>;
        q.setup(ring, tags);                          // reactor thread, once
        { q.push(fd, producer) } -> std::same_as<bool>;  // producer threads (one at a time if single_producer)
        q.wake();                                     // any thread: wake the reactor if it sleeps
        { q.drain(on_fd) } -> std::convertible_to<unsigned>;  // reactor thread
        { q.prepare_to_sleep() } -> std::same_as<bool>;       // reactor thread: false if an item is waiting
        q.awake();                                    // reactor thread: back from sleep
        q.on_wake(ring);                              // reactor thread: the wake CQE arrived
        { cq.fallback() } -> std::convertible_to<std::string>;
    };

}  // namespace zerg
