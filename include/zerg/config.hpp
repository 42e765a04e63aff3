// Run-time settings of a server: what users tune without recompiling.
// Read once by start(); changing a running server's copy does nothing.
// Defaults keep a reactor to a few MiB: 1024 × 4 KiB receive buffers (or the
// Buffer policy's own Size × Count when buffer_size / buffer_count are 0)
// plus a connection table of max_connections entries.
#pragma once

#include <zerg/error.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace zerg {

enum class distribution {
    round_robin,   // the acceptor hands connections to reactors in turn
    least_loaded,  // to the reactor with the fewest open connections
};

struct server_config {
    std::string address = "127.0.0.1";  // IPv4 or IPv6 literal; "::" for all
    std::uint16_t port = 0;              // 0: the kernel picks; server::port() tells
    bool dual_stack = false;             // one IPv6 socket that also takes IPv4
    unsigned reactors = 1;
    unsigned ring_entries = 1024;        // SQ entries per reactor ring
    unsigned cq_entries = 0;             // 0: twice ring_entries
    unsigned buffer_size = 0;            // 0: the Buffer policy's Size
    unsigned buffer_count = 0;           // 0: the Buffer policy's Count (power of two)
    unsigned completion_batch = 4096;    // CQEs reaped per loop iteration at most
    int backlog = 4096;
    unsigned max_connections = 4096;     // per reactor; accepting pauses at the total
    std::size_t max_write_queue = 1 << 20;  // bytes queued per connection before reading pauses
    // A send that carries at least this many queued bytes goes out
    // zero-copy (send_zc / sendmsg_zc; usage reports need Linux 6.2), the
    // chunks kept until the kernel's notification; 0 = never. 128 KiB: on
    // loopback here zero-copy cost less sender CPU than a copy only from
    // about that size (doc/data-path.md); on a NIC the crossover is lower.
    std::size_t zero_copy_threshold = 128 * 1024;
    // Bytes of input a sequence or coroutine handler may hold unconsumed
    // (ring buffers plus spill). Past it the connection closes with
    // zerg::error::input_limit: a parser still waiting for the end of a
    // message that large is not a client a public server wants. 1 MiB, like
    // the output limit; raise it for protocols with larger messages.
    std::size_t max_input = 1 << 20;
    // Receive bundles (Linux 6.10): one completion fills several buffers, so
    // fewer completions per byte. The cost is the worst case of a busy
    // coroutine's input: reading pauses at max_input, but a bundle already
    // received can carry up to every free buffer of the ring on top
    // (doc/limits.md). Off: one buffer per completion.
    bool receive_bundles = true;
    bool reuse_port = false;             // one SO_REUSEPORT listener per reactor, no acceptor
    // Direct descriptors (doc/direct-descriptors.md): with reuse_port, each
    // reactor accepts into its own registered file table (5.19) and every
    // receive, send and close names the slot (IOSQE_FIXED_FILE), so the
    // kernel skips the fd-table lookup per operation. Costs a table of
    // max_connections + 64 slots per reactor, connection::fd() is -1 and the
    // peer address is not known. Off by default: measured here it saved
    // 1-2 % of instructions per message and nothing beyond noise in time.
    // Without reuse_port, or where the table cannot be registered, plain
    // fds are used and fallbacks() says why.
    bool direct_descriptors = false;
    distribution placement = distribution::round_robin;
    bool pin_reactors = false;           // pin reactor i to CPU (first_cpu + i) % cpus
    unsigned first_cpu = 0;
    std::chrono::milliseconds stop_deadline{5000};  // graceful close limit in stop()
    // The longest one io_uring_enter may sleep, 0 = until a completion. Only
    // for environments that cannot see a thread blocked in io_uring_enter as
    // blocked (valgrind 3.19 runs threads one at a time and holds its lock
    // across that call, so an idle reactor would stall every other thread).
    std::chrono::milliseconds max_wait{0};
    // Batching the wait (IORING_FEAT_MIN_TIMEOUT, Linux 6.12): a reactor
    // with nothing to do sleeps until min_wait_completions completions are
    // ready, or min_wait has passed and at least one is (so an idle server
    // still answers its first request at once). 0 = wake at every first
    // completion, as before. Saves wake-ups and loop iterations under
    // load, at up to min_wait of added latency per batch; e.g. 50 µs. On
    // older kernels it is reported as fallback `min_timeout` and ignored.
    std::chrono::microseconds min_wait{0};
    unsigned min_wait_completions = 32;
    // Deadlines per connection, 0 = none. Kept in user space (one sorted
    // intrusive list each), never as a kernel timeout per operation. The
    // defaults are a public server's (see doc/limits.md): a connection that
    // says nothing for a minute, a request that takes 10 s to arrive (as
    // HAProxy's `timeout http-request`, against slowloris), or a reader
    // that takes nothing for a minute (nginx's send_timeout) is closed.
    std::chrono::milliseconds idle_timeout{60'000};   // no byte in or out for this long
    std::chrono::milliseconds read_timeout{10'000};   // a partial message waits this long for the rest
    std::chrono::milliseconds write_timeout{60'000};  // queued output makes no progress for this long
    // An outbound connection (basic_reactor::connect) that has not
    // connected after this long fails with ETIMEDOUT (a linked timeout on
    // the connect, 5.5). 0 = the kernel's own SYN retries (about 2 min).
    std::chrono::milliseconds connect_timeout{10'000};
    // Told about what the library would otherwise keep to itself: a
    // handler's exception, a reactor's failure, accept back-off, fallbacks
    // at start. Empty: nothing is reported (server::wait() still tells).
    error_hook on_error;
};

}  // namespace zerg
