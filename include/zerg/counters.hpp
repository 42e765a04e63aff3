// Per-reactor counters. The reactor thread is the only writer (plain
// relaxed stores, no locked instructions); any thread may read them at any
// time.
#pragma once

#include <atomic>
#include <cstdint>

namespace zerg {

struct reactor_counters {
    struct counter {
        std::atomic<std::uint64_t> value{0};
        void add(std::uint64_t n = 1) noexcept { value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
        void sub(std::uint64_t n = 1) noexcept { value.store(value.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
        void set(std::uint64_t n) noexcept { value.store(n, std::memory_order_relaxed); }
        std::uint64_t get() const noexcept { return value.load(std::memory_order_relaxed); }
    };

    alignas(64) counter open_connections;  // live now
    counter accepted;             // opened in total
    counter closed;               // fully closed (slot free again)
    counter rejected;             // handed over while the table was full
    counter bytes_in;
    counter bytes_out;
    counter buffers_in_use;       // provided buffers out of the kernel's hands
    counter handoffs;             // connections received from the acceptor
    counter wakeups;              // times the reactor was woken from sleep by its inbox
    counter enobufs;              // receives that found the buffer ring empty
    counter recv_rearms;          // multishot receives armed again
    counter read_pauses;          // reading paused for backpressure
    counter stale_completions;    // CQEs for a slot generation that is gone
    counter loop_iterations;
    counter busy_slots;           // slots not free (live or closing)
};

// A snapshot, for printing and tests.
struct counters_snapshot {
    std::uint64_t open_connections, accepted, closed, rejected, bytes_in, bytes_out, buffers_in_use, handoffs, wakeups,
        enobufs, recv_rearms, read_pauses, stale_completions, loop_iterations, busy_slots;
};

inline counters_snapshot snapshot(const reactor_counters& c) noexcept {
    return {c.open_connections.get(), c.accepted.get(), c.closed.get(),     c.rejected.get(),
            c.bytes_in.get(),         c.bytes_out.get(), c.buffers_in_use.get(), c.handoffs.get(),
            c.wakeups.get(),          c.enobufs.get(),  c.recv_rearms.get(),  c.read_pauses.get(),
            c.stale_completions.get(), c.loop_iterations.get(), c.busy_slots.get()};
}

}  // namespace zerg
