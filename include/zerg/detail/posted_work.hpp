// Work posted to a reactor from other threads: callables that run on the
// reactor's thread at the top of its next loop iteration (server::post(),
// and the writes and closes sent through a connection_handle).
//
// The inbox is a lock-free intrusive stack: any number of producers push
// with one compare-exchange, the reactor takes the whole stack with one
// exchange and runs it oldest first, so work posted by one thread runs in
// the order it was posted. Each item is one allocation holding the
// callable; it is freed as soon as it ran (or without running, when the
// reactor is gone first). The producer wakes the reactor through the Queue
// policy's wake() (policy/handoff.hpp), and the reactor looks at this
// inbox after it announced its sleep, so no post is left waiting.
//
// Not the hot path of a server: the data path never allocates here.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <system_error>
#include <utility>

namespace zerg::detail {

// The completion of a handle's write or close when the caller wants none.
struct ignore_result {
    void operator()(std::error_code) const noexcept {}
};

struct posted_item {
    posted_item* next = nullptr;
    // Runs the callable on `reactor` and frees the item; with a null
    // `reactor`, only frees it (the reactor is gone).
    void (*run)(posted_item* self, void* reactor) = nullptr;
};

template <class Reactor, class F>
struct posted_call final : posted_item {
    F f;
    explicit posted_call(F fn) : f(std::move(fn)) { run = &invoke; }
    static void invoke(posted_item* self, void* reactor) {
        std::unique_ptr<posted_call> owned(static_cast<posted_call*>(self));  // freed even when f throws
        if (reactor) owned->f(*static_cast<Reactor*>(reactor));
    }
};

class posted_work {
public:
    posted_work() = default;
    posted_work(const posted_work&) = delete;
    posted_work& operator=(const posted_work&) = delete;
    ~posted_work() { discard(); }

    // Any thread. Takes ownership of `item`.
    void push(posted_item* item) noexcept {
        item->next = head_.load(std::memory_order_relaxed);
        // seq_cst: the push must come before the producer's wake-up in the
        // one order the eventfd waker's argument relies on.
        while (!head_.compare_exchange_weak(item->next, item, std::memory_order_seq_cst, std::memory_order_relaxed)) {
        }
        pushed_.fetch_add(1, std::memory_order_relaxed);
    }

    // Reactor thread, after announcing its sleep: something waits.
    bool empty() const noexcept { return head_.load(std::memory_order_seq_cst) == nullptr; }

    // Reactor thread: runs everything posted so far, oldest first.
    // `on_exception` is called inside the catch block of a callable that threw;
    // the rest still run. Returns how many ran.
    template <class OnException>
    unsigned drain(void* reactor, OnException&& on_exception) {
        posted_item* stack = head_.exchange(nullptr, std::memory_order_acquire);
        if (!stack) return 0;
        posted_item* fifo = nullptr;  // reversed: the stack is newest first
        while (stack) {
            posted_item* next = stack->next;
            stack->next = fifo;
            fifo = stack;
            stack = next;
        }
        unsigned n = 0;
        for (posted_item* item = fifo; item;) {
            posted_item* next = item->next;
            try {
                item->run(item, reactor);
            } catch (...) {
                on_exception();
            }
            item = next;
            ++n;
        }
        return n;
    }

    // The reactor is going away: everything not run is freed without running.
    void discard() noexcept {
        posted_item* stack = head_.exchange(nullptr, std::memory_order_acquire);
        while (stack) {
            posted_item* next = stack->next;
            stack->run(stack, nullptr);
            stack = next;
        }
    }

    // Any thread: items pushed since the start, for reports.
    std::uint64_t pushed() const noexcept { return pushed_.load(std::memory_order_relaxed); }

private:
    alignas(64) std::atomic<posted_item*> head_{nullptr};
    std::atomic<std::uint64_t> pushed_{0};
};

}  // namespace zerg::detail
