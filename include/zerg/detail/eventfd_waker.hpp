// Wakes a reactor that sleeps in io_uring_enter, without a lost wake-up and
// without a system call while the reactor is busy.
//
// The reactor keeps a read of an eventfd armed in its ring. Before it
// sleeps it raises `sleeping_` with an exchange and then looks at its inbox
// once more; a producer first publishes its item and then clears the flag
// with a fetch_and. Both are read-modify-writes of the same atomic, so one of
// them comes first in its modification order: if the producer's is first,
// the reactor's exchange reads from it and so sees the published item; if
// the reactor's is first, the producer reads the raised flag and writes the
// eventfd. Whoever clears a raised flag wakes, so one sleep costs at most one
// write. (Plain stores and loads would not do: a producer's publish may be a
// mere release store, which a later load can overtake.)
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
        sleeping_.exchange(1, std::memory_order_seq_cst);
        if (inbox_empty()) return true;
        sleeping_.exchange(0, std::memory_order_seq_cst);
        return false;
    }
    // Read-modify-writes here too, so every change of the flag is in the one
    // modification order the argument above relies on.
    void awake() noexcept { sleeping_.exchange(0, std::memory_order_seq_cst); }

    // Producer thread, after publishing an item.
    void notify() noexcept {
        if (!sleeping_.fetch_and(0, std::memory_order_seq_cst)) return;  // busy: no system call
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
    alignas(64) std::atomic<unsigned> sleeping_{0};
    alignas(64) std::atomic<std::uint64_t> writes_{0};
    int fd_ = -1;
    std::uint64_t counter_ = 0;
};

}  // namespace zerg::detail
