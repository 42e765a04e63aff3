// Wakes a reactor that sleeps in io_uring_enter, without a lost wake-up and
// without a system call while the reactor is busy.
//
// The reactor keeps a read of an eventfd armed in its ring. Before it
// sleeps it raises `sleeping_` and then looks at its inbox once more; a
// producer first publishes its item and then looks at `sleeping_`. Both
// sides use sequentially consistent operations, so at least one of them sees
// the other's write: either the reactor finds the item, or the producer finds
// the flag and writes the eventfd. (The producer side needs a full fence:
// its publish may be only a release store.) The flag is cleared by whoever wins the
// exchange, so one sleep costs at most one write.
#pragma once

#include <zerg/uring/error.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/ring.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <new>

namespace zerg::detail {

class eventfd_waker {
public:
    eventfd_waker() {
        fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd_ < 0) uring::throw_result(errno, "zerg: eventfd for reactor wake-ups");
    }
    eventfd_waker(const eventfd_waker&) = delete;
    eventfd_waker& operator=(const eventfd_waker&) = delete;
    ~eventfd_waker() { ::close(fd_); }

    // Reactor thread: keep one read of the eventfd in flight, tagged `ud`.
    void arm(uring::ring& ring, std::uint64_t ud) {
        auto* sqe = ring.get_sqe();
        uring::prep_read(sqe, fd_, std::as_writable_bytes(std::span(&counter_, 1)), 0);
        uring::set_user_data(sqe, ud);
    }

    // Reactor thread, just before sleeping: `inbox_empty` re-checks the
    // inbox after the flag is up. Returns true when it is safe to sleep.
    template <class InboxEmpty>
    bool prepare_to_sleep(InboxEmpty inbox_empty) noexcept {
        sleeping_.store(true, std::memory_order_seq_cst);
        if (inbox_empty()) return true;
        sleeping_.store(false, std::memory_order_relaxed);
        return false;
    }
    void awake() noexcept { sleeping_.store(false, std::memory_order_relaxed); }

    // Producer thread, after publishing an item.
    void notify() noexcept {
        // The item may have been published with a release store (spsc_queue);
        // without a full fence the load below could be ordered before it,
        // and both sides would miss each other.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (!sleeping_.load(std::memory_order_relaxed)) return;  // busy: no system call
        if (!sleeping_.exchange(false, std::memory_order_seq_cst)) return;
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
        writes_.fetch_add(1, std::memory_order_relaxed);
    }

    // Any thread: wake the reactor whether or not it sleeps (stop requests).
    void signal() noexcept {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
    }

    // Wake-ups that needed a system call.
    std::uint64_t writes() const noexcept { return writes_.load(std::memory_order_relaxed); }

private:
    alignas(64) std::atomic<bool> sleeping_{false};
    alignas(64) std::atomic<std::uint64_t> writes_{0};
    int fd_ = -1;
    std::uint64_t counter_ = 0;
};

}  // namespace zerg::detail
