// Per-reactor counters. The reactor thread is the only writer (plain
// relaxed stores, no locked instructions); any thread may read them at any
// time.
//
// The list of counters exists once, in ZERG_REACTOR_COUNTERS below: the
// live struct, the snapshot, the sum over reactors (server::totals()) and
// anything that renders them by name (for_each_counter) are all made from
// it, so a new counter is one line.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

// X(name, kind, help): kind is counter (only grows) or gauge (goes up and down).
#define ZERG_REACTOR_COUNTERS(X)                                                      \
    X(open_connections, gauge, "connections open now")                                \
    X(accepted, counter, "connections opened")                                        \
    X(closed, counter, "connections fully closed (slot free again)")                  \
    X(rejected, counter, "sockets handed over while the table was full or stopping") \
    X(bytes_in, counter, "bytes received")                                            \
    X(bytes_out, counter, "bytes sent")                                               \
    X(buffers_in_use, gauge, "provided buffers out of the kernel's hands")            \
    X(zc_sends, counter, "zero-copy sends completed (send_zc / sendmsg_zc, notification received)") \
    X(zc_copied, counter, "zero-copy sends the kernel copied after all (IORING_NOTIF_USAGE_ZC_COPIED, 6.2)") \
    X(zc_unavailable, counter, "sends at or above zero_copy_threshold copied: zero-copy off, missing, or copied by the kernel before on that connection") \
    X(buffer_writes, counter, "writes sent straight from a receive buffer (write_from, not copied)") \
    X(handoffs, counter, "connections received from the acceptor")                    \
    X(wakeups, counter, "times the reactor was woken from sleep by its inbox")        \
    X(bundle_completions, counter, "receive completions that filled more than one buffer (bundles, 6.10)") \
    X(enobufs, counter, "receives that found the buffer ring empty")                  \
    X(recv_rearms, counter, "multishot receives armed again")                         \
    X(read_pauses, counter, "times reading paused for backpressure")                  \
    X(stale_completions, counter, "completions for a slot generation that is gone")   \
    X(loop_iterations, counter, "reactor loop iterations")                            \
    X(handler_exceptions, counter, "handler callbacks that threw (their connection closed)") \
    X(completions, counter, "CQEs reaped (per loop iteration: completions / loop_iterations)") \
    X(cq_overflows, counter, "waits that found the kernel holding CQEs back (CQ overflow)") \
    X(cq_resizes, counter, "times the CQ was grown after an overflow (6.13)")        \
    X(closed_clean, counter, "closes with no error: close(), EOF, graceful stop")     \
    X(closed_timeout, counter, "closes by idle, read or write timeout or stop deadline") \
    X(closed_reset, counter, "closes because the peer reset or vanished (ECONNRESET, EPIPE)") \
    X(closed_handler, counter, "closes because a handler threw or ran out of memory")   \
    X(closed_input_limit, counter, "closes because max_input was exceeded")            \
    X(closed_other, counter, "closes on any other error")                              \
    X(busy_slots, gauge, "slots not free (live or closing)")

namespace zerg {

enum class counter_kind { counter, gauge };

// Aligned so that the reactor's writes do not share a cache line with
// whatever sits before it in the reactor object.
struct alignas(64) reactor_counters {
    struct counter {
        std::atomic<std::uint64_t> value{0};
        void add(std::uint64_t n = 1) noexcept { value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
        void sub(std::uint64_t n = 1) noexcept { value.store(value.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
        void set(std::uint64_t n) noexcept { value.store(n, std::memory_order_relaxed); }
        std::uint64_t get() const noexcept { return value.load(std::memory_order_relaxed); }
    };

#define ZERG_COUNTER_MEMBER(name, kind, help) counter name;
    ZERG_REACTOR_COUNTERS(ZERG_COUNTER_MEMBER)
#undef ZERG_COUNTER_MEMBER

    // Time each loop iteration spends working (from waking up to the next
    // sleep), as a histogram: bucket i counts iterations of at most
    // bounds_ns[i], the last one the rest. Two clock reads per iteration.
    struct histogram {
        static constexpr std::uint64_t bounds_ns[] = {1'000, 4'000, 16'000, 64'000, 256'000,
                                                      1'000'000, 4'000'000, 16'000'000, 64'000'000};
        static constexpr std::size_t buckets = sizeof bounds_ns / sizeof bounds_ns[0] + 1;
        counter bucket[buckets];
        counter sum_ns;
        void record(std::uint64_t ns) noexcept {
            std::size_t i = 0;
            while (i + 1 < buckets && ns > bounds_ns[i]) ++i;
            bucket[i].add();
            sum_ns.add(ns);
        }
    };
    histogram loop_time;
};

// A multishot accept's own counts (the acceptor's, or a reuse_port
// reactor's listener).
struct accept_stats {
    reactor_counters::counter accepted;
    reactor_counters::counter rearms;  // armed again after the kernel ended it
    reactor_counters::counter errors;  // EMFILE, ENFILE, ENOMEM...: accepting backs off
    reactor_counters::counter pauses;  // the table was full: accepting paused
};

// A snapshot, for printing, sums and tests.
struct counters_snapshot {
#define ZERG_SNAPSHOT_MEMBER(name, kind, help) std::uint64_t name = 0;
    ZERG_REACTOR_COUNTERS(ZERG_SNAPSHOT_MEMBER)
#undef ZERG_SNAPSHOT_MEMBER

    counters_snapshot& operator+=(const counters_snapshot& o) noexcept {
#define ZERG_SNAPSHOT_ADD(name, kind, help) name += o.name;
        ZERG_REACTOR_COUNTERS(ZERG_SNAPSHOT_ADD)
#undef ZERG_SNAPSHOT_ADD
        return *this;
    }
};

inline counters_snapshot snapshot(const reactor_counters& c) noexcept {
    counters_snapshot s;
#define ZERG_SNAPSHOT_READ(name, kind, help) s.name = c.name.get();
    ZERG_REACTOR_COUNTERS(ZERG_SNAPSHOT_READ)
#undef ZERG_SNAPSHOT_READ
    return s;
}

// Calls f(name, kind, help, value) for every counter of `s`, in list order.
template <class F>
void for_each_counter(const counters_snapshot& s, F&& f) {
#define ZERG_SNAPSHOT_VISIT(name, kind, help) f(#name, counter_kind::kind, help, s.name);
    ZERG_REACTOR_COUNTERS(ZERG_SNAPSHOT_VISIT)
#undef ZERG_SNAPSHOT_VISIT
}

}  // namespace zerg
