// A user-written Queue policy: a fixed ring of fds behind a std::mutex, with
// its own eventfd wake-up. Slower than the lock-free queues under contention,
// but it shows every member basic_reactor calls (zerg::handoff_policy).
#pragma once

#include <zerg/policy/handoff.hpp>
#include <zerg/uring/operations.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <mutex>

template <std::size_t Capacity>
class locked_handoff {
public:
    static constexpr const char* name = "locked";
    static constexpr bool single_producer = false;

    locked_handoff() : eventfd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
    ~locked_handoff() { ::close(eventfd_); }

    // Reactor thread, once: keep a read of the eventfd armed in the ring.
    void setup(zerg::uring::ring& ring, zerg::inbox_tags tags) {
        wake_tag_ = tags.wake;
        on_wake(ring);
    }
    // Any thread.
    bool push(int fd, zerg::uring::ring*) {
        {
            std::lock_guard lock(mutex_);
            if (size_ == Capacity) return false;
            fds_[(head_ + size_++) % Capacity] = fd;
        }
        wake();
        return true;
    }
    // Any thread: wakes the reactor only if it sleeps.
    void wake() {
        if (sleeping_.exchange(false)) {
            std::uint64_t one = 1;
            [[maybe_unused]] auto n = ::write(eventfd_, &one, sizeof one);
            ++writes_;
        }
    }
    // Reactor thread.
    template <class OnFd>
    unsigned drain(OnFd&& on_fd) {
        std::lock_guard lock(mutex_);
        unsigned n = 0;
        for (; size_ > 0; --size_, ++n) {
            on_fd(fds_[head_]);
            head_ = (head_ + 1) % Capacity;
        }
        return n;
    }
    // Raise the flag, then look again: a push either is seen here or sees the flag.
    bool prepare_to_sleep() {
        sleeping_.store(true);
        std::lock_guard lock(mutex_);
        if (size_ == 0) return true;
        sleeping_.store(false);
        return false;
    }
    void awake() { sleeping_.store(false); }
    void on_wake(zerg::uring::ring& ring) {
        auto* sqe = ring.get_sqe();
        zerg::uring::prep_read(sqe, eventfd_, std::as_writable_bytes(std::span(&counter_, 1)), 0);
        zerg::uring::set_user_data(sqe, wake_tag_);
    }
    std::uint64_t wakeup_writes() const { return writes_; }
    std::string fallback() const { return {}; }

private:
    std::mutex mutex_;
    std::array<int, Capacity> fds_{};
    std::size_t head_ = 0, size_ = 0;
    std::atomic<bool> sleeping_{false};
    std::atomic<std::uint64_t> writes_{0};
    int eventfd_;
    std::uint64_t counter_ = 0;
    std::uint64_t wake_tag_ = 0;
};

static_assert(zerg::handoff_policy<locked_handoff<64>>);
