// Shared by the fault-matrix tests (test/faults/*_test.cpp) and the soak
// program: the handlers under test, a server configuration for loopback, a
// poll(2)-driven client that tolerates the server going away (it records how
// each connection ended instead of failing at the first EOF), and the
// sanitizer scale-down.
//
// Every byte a client receives is checked against the pattern it sent
// (pattern_byte, seeded per connection), so a lost, repeated or reordered
// byte shows as a mismatch or a short count, never as a pass.
#pragma once

#include <zerg/zerg.hpp>

#include <support/echo_client.hpp>
#include <support/sockets.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace zerg::faults {

using namespace std::chrono_literals;
using zerg::test::fd_guard;
using zerg::test::pattern_byte;

// Sanitizer builds run the same cases with fewer connections and bytes: the
// debug ASan/UBSan build is ~10x slower and TSan ~5-15x, on 2 shared cores.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool sanitized = true;
inline constexpr const char* build_kind = "sanitizer build: reduced counts";
#else
inline constexpr bool sanitized = false;
inline constexpr const char* build_kind = "full counts";
#endif

// `full` normally, `reduced` under a sanitizer.
template <class T>
constexpr T scaled(T full, T reduced) noexcept {
    return sanitized ? reduced : full;
}

inline zerg::server_config loopback_config(unsigned reactors = 1) {
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.port = 0;
    config.reactors = reactors;
    config.ring_entries = 256;
    config.max_connections = 512;
    config.stop_deadline = 2s;
    return config;
}

// ---- what the handlers report -------------------------------------------------

// Every close reason, as on_close saw it. Written by reactor threads, read
// by the test thread.
struct close_log {
    std::mutex mutex;
    std::vector<std::error_code> reasons;
    std::atomic<unsigned> opens{0};

    void opened() { opens.fetch_add(1); }
    void closed(std::error_code why) {
        std::lock_guard lock(mutex);
        reasons.push_back(why);
    }
    std::vector<std::error_code> copy() {
        std::lock_guard lock(mutex);
        return reasons;
    }
    std::size_t closes() {
        std::lock_guard lock(mutex);
        return reasons.size();
    }
};

// ---- handlers ----------------------------------------------------------------

// (a) span: each receive echoed as it comes.
struct span_echo {
    close_log* log = nullptr;
    void on_open(zerg::connection<span_echo>&) {
        if (log) log->opened();
    }
    void on_data(zerg::connection<span_echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
    void on_close(zerg::connection<span_echo>&, zerg::close_reason why) {
        if (log) log->closed(why);
    }
};

// (b) sequence: every unconsumed byte echoed, then consumed. Holds ring
// buffers across the call (the starved path when they run out).
struct sequence_echo {
    close_log* log = nullptr;
    void on_open(zerg::connection<sequence_echo>&) {
        if (log) log->opened();
    }
    void on_data(zerg::connection<sequence_echo>& c, zerg::buffer_sequence& in) {
        for (std::size_t i = 0; i < in.segment_count(); ++i) c.write(in.segment(i));
        in.consume(in.size());
    }
    void on_close(zerg::connection<sequence_echo>&, zerg::close_reason why) {
        if (log) log->closed(why);
    }
};

// (b') sequence, line-framed: a message is one line ending in '\n', echoed
// when complete. What is left is a partial message, so read_timeout runs
// for it (a slowloris client never finishes its line).
struct line_echo {
    close_log* log = nullptr;
    void on_open(zerg::connection<line_echo>&) {
        if (log) log->opened();
    }
    void on_data(zerg::connection<line_echo>& c, zerg::buffer_sequence& in) {
        while (auto end = in.find(std::byte{'\n'})) {
            std::size_t n = *end + 1;
            for (auto const& piece : slices(in, n)) c.write(piece);
            in.consume(n);
        }
    }
    void on_close(zerg::connection<line_echo>&, zerg::close_reason why) {
        if (log) log->closed(why);
    }

private:
    // The contiguous pieces of the first n bytes of `in`.
    static std::vector<std::span<const std::byte>> slices(const zerg::buffer_sequence& in, std::size_t n) {
        std::vector<std::span<const std::byte>> out;
        for (std::size_t i = 0; i < in.segment_count() && n > 0; ++i) {
            auto s = in.segment(i);
            std::size_t take = std::min(n, s.size());
            out.push_back(s.first(take));
            n -= take;
        }
        return out;
    }
};

// (d) coroutine: the same loop as example/coro_echo.
struct coroutine_echo {
    close_log* log = nullptr;
    void on_open(zerg::connection<coroutine_echo>&) {
        if (log) log->opened();
    }
    zerg::task serve(zerg::connection<coroutine_echo>& c) {
        for (;;) {
            auto [in, closed] = co_await c.read();
            if (closed) co_return;
            for (std::size_t i = 0; i < in.segment_count(); ++i) c.write(in.segment(i));
            c.advance(in.size());
            if (!co_await c.flush()) co_return;
        }
    }
    void on_close(zerg::connection<coroutine_echo>&, zerg::close_reason why) {
        if (log) log->closed(why);
    }
};

// The replies of big_sender and big_span_sender: pattern seed 77, up to
// 16 MiB, made once.
inline constexpr std::uint32_t reply_seed = 77;
inline constexpr std::size_t max_reply = 16u << 20;
inline const std::vector<std::byte>& reply_pattern() {
    static const std::vector<std::byte> bytes = [] {
        std::vector<std::byte> b(max_reply);
        for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::byte{pattern_byte(reply_seed, i)};
        return b;
    }();
    return bytes;
}

// A coroutine that answers the first byte it receives with `reply_bytes` of
// the reply pattern, in 256 KiB pieces, each flushed before the next is
// queued (memory stays at one piece per connection), then closes.
struct big_sender {
    close_log* log = nullptr;
    std::size_t reply_bytes = 4u << 20;
    int send_buffer = 0;  // SO_SNDBUF of each accepted socket; 0 leaves the kernel's
    void on_open(zerg::connection<big_sender>& c) {
        if (send_buffer) ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
        if (log) log->opened();
    }
    zerg::task serve(zerg::connection<big_sender>& c) {
        auto [in, closed] = co_await c.read();
        if (closed) co_return;
        c.advance(in.size());
        auto const& pattern = reply_pattern();
        for (std::size_t at = 0; at < reply_bytes;) {
            std::size_t n = std::min<std::size_t>(256 * 1024, reply_bytes - at);
            if (!co_await c.write_all(std::span(pattern).subspan(at, n))) co_return;
            at += n;
        }
        c.close();
    }
    void on_close(zerg::connection<big_sender>&, zerg::close_reason why) {
        if (log) log->closed(why);
    }
};

// A span handler that answers the first byte with the whole reply queued in
// one write() (so a reset meets a send in flight and a long queue), then
// closes.
struct big_span_sender {
    struct connection_state {
        bool answered = false;
    };
    close_log* log = nullptr;
    std::size_t reply_bytes = 1u << 20;
    int send_buffer = 0;  // SO_SNDBUF of each accepted socket; 0 leaves the kernel's
    void on_open(zerg::connection<big_span_sender>& c) {
        if (send_buffer) ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
        if (log) log->opened();
    }
    void on_data(zerg::connection<big_span_sender>& c, std::span<const std::byte>) {
        if (c.state().answered) return;
        c.state().answered = true;
        c.write(std::span(reply_pattern()).first(reply_bytes));
        c.close();
    }
    void on_close(zerg::connection<big_span_sender>&, zerg::close_reason why) {
        if (log) log->closed(why);
    }
};

// ---- a client that records how each connection ended ---------------------------

enum class ending { open, complete, eof, reset, error, timed_out };

inline const char* to_string(ending e) {
    switch (e) {
        case ending::open: return "open";
        case ending::complete: return "complete";
        case ending::eof: return "eof";
        case ending::reset: return "reset";
        case ending::error: return "error";
        case ending::timed_out: return "timed out";
    }
    return "?";
}

// One client connection: sends `to_send` bytes of pattern `send_seed`
// (then SHUT_WR when `shut_after`), expects `expect` bytes of pattern
// `expect_seed` back. Done at `expect` bytes unless `wait_eof`, in which
// case it reads on to the server's EOF (and more bytes are mismatches).
struct flow {
    fd_guard fd;
    std::uint32_t send_seed = 0;
    std::uint32_t expect_seed = 0;
    std::uint64_t to_send = 0;
    std::uint64_t expect = 0;
    bool shut_after = false;
    bool wait_eof = false;
    // Reads nothing until the driver's `release` flag is set.
    bool stalled = false;

    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::uint64_t mismatches = 0;
    bool shut = false;
    ending end = ending::open;
    int error = 0;
    bool done() const noexcept { return end != ending::open; }
};

inline fd_guard nonblocking_client(std::uint16_t port) {
    auto fd = zerg::test::connect_loopback(port);
    int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
    return fd;
}

// An echo flow: `bytes` out, the same bytes back; optionally SHUT_WR after
// sending and then EOF expected.
inline flow echo_flow(std::uint16_t port, std::uint32_t seed, std::uint64_t bytes, bool half_close = false) {
    flow f;
    f.fd = nonblocking_client(port);
    f.send_seed = f.expect_seed = seed;
    f.to_send = f.expect = bytes;
    f.shut_after = f.wait_eof = half_close;
    return f;
}

// Drives every flow with poll(2) until each is done or `timeout` passes.
// `release`, when given, lets stalled flows start reading once it is true.
inline void drive(std::vector<flow>& flows, std::chrono::milliseconds timeout,
                  const std::atomic<bool>* release = nullptr) {
    std::vector<std::uint8_t> scratch(128 * 1024);
    std::vector<pollfd> pfds(flows.size());
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        bool released = release && release->load();
        unsigned active = 0;
        for (std::size_t i = 0; i < flows.size(); ++i) {
            auto& f = flows[i];
            pfds[i] = {-1, 0, 0};
            if (f.done()) continue;
            ++active;
            short events = 0;
            if (!f.stalled || released) events |= POLLIN;
            if (f.sent < f.to_send) events |= POLLOUT;
            pfds[i] = {f.fd.get(), events, 0};
        }
        if (!active) return;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            for (auto& f : flows)
                if (!f.done()) f.end = ending::timed_out;
            return;
        }
        int n = ::poll(pfds.data(), pfds.size(), static_cast<int>(std::min<long>(left.count(), 20)));
        if (n < 0 && errno != EINTR) {
            for (auto& f : flows)
                if (!f.done()) {
                    f.end = ending::error;
                    f.error = errno;
                }
            return;
        }
        for (std::size_t i = 0; i < flows.size(); ++i) {
            auto& f = flows[i];
            if (f.done() || pfds[i].fd < 0) continue;
            short rev = pfds[i].revents;
            if ((rev & POLLOUT) && f.sent < f.to_send) {
                std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(scratch.size(), f.to_send - f.sent));
                for (std::size_t k = 0; k < chunk; ++k) scratch[k] = pattern_byte(f.send_seed, f.sent + k);
                ssize_t w = ::send(f.fd.get(), scratch.data(), chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0) {
                    f.sent += static_cast<std::uint64_t>(w);
                } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    // The server closed while we were still sending: see what
                    // the read side says (it has the verdict: eof or reset).
                    f.to_send = f.sent;
                }
            }
            if (f.sent == f.to_send && f.shut_after && !f.shut) {
                ::shutdown(f.fd.get(), SHUT_WR);
                f.shut = true;
            }
            bool may_read = !f.stalled || released;
            if (may_read && (rev & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t r = ::recv(f.fd.get(), scratch.data(), scratch.size(), MSG_DONTWAIT);
                if (r > 0) {
                    for (ssize_t k = 0; k < r; ++k)
                        if (f.received + static_cast<std::uint64_t>(k) >= f.expect ||
                            scratch[static_cast<std::size_t>(k)] !=
                                pattern_byte(f.expect_seed, f.received + static_cast<std::uint64_t>(k)))
                            ++f.mismatches;
                    f.received += static_cast<std::uint64_t>(r);
                    if (!f.wait_eof && f.received >= f.expect) f.end = ending::complete;
                } else if (r == 0) {
                    f.end = ending::eof;
                } else if (errno == ECONNRESET || errno == EPIPE) {
                    f.end = ending::reset;
                    f.error = errno;
                } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    f.end = ending::error;
                    f.error = errno;
                }
            }
        }
    }
}

// ---- memory --------------------------------------------------------------------

// This process's resident set in KiB (VmRSS of /proc/self/status), 0 if unknown.
inline std::uint64_t rss_kib() {
    int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char text[8192];
    ssize_t n = ::read(fd, text, sizeof text - 1);
    ::close(fd);
    if (n <= 0) return 0;
    text[n] = '\0';
    const char* at = std::strstr(text, "VmRSS:");
    if (!at) return 0;
    return std::strtoull(at + 6, nullptr, 10);
}

}  // namespace zerg::faults
