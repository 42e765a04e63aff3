// A loopback echo client for tests: N connections, each sending a stream of
// pseudo-random bytes (seeded per connection, so reordering shows) in
// pipelined messages while reading the echo back, verifying every byte.
// Driven by poll(2) on one thread; bounded by a deadline.
#pragma once

#include <support/sockets.hpp>

#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <vector>

namespace zerg::test {

struct echo_plan {
    std::uint16_t port = 0;
    unsigned connections = 1;
    std::size_t message_size = 64;
    unsigned messages = 1;          // per connection, written back to back (pipelined)
    std::chrono::milliseconds timeout{20000};
    // Called once every connection is made and before the first byte is
    // sent: a test can wait there for the server to have armed its receives.
    std::function<void()> before_sending{};
};

struct echo_outcome {
    std::uint64_t bytes_sent = 0;
    std::uint64_t bytes_verified = 0;
    std::uint64_t mismatches = 0;   // echoed bytes that differ from what was sent
    unsigned connections_done = 0;
    bool timed_out = false;
    std::string error;
};

inline std::uint8_t pattern_byte(std::uint32_t seed, std::uint64_t i) {
    std::uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (std::uint64_t{seed} << 32 | seed);
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return static_cast<std::uint8_t>(x);
}

inline echo_outcome run_echo(const echo_plan& plan) {
    struct conn {
        fd_guard fd;
        std::uint32_t seed;
        std::uint64_t total, sent = 0, received = 0;
    };
    echo_outcome out;
    std::vector<conn> conns;
    conns.reserve(plan.connections);
    std::uint64_t total = std::uint64_t{plan.message_size} * plan.messages;
    for (unsigned i = 0; i < plan.connections; ++i) {
        auto fd = connect_loopback(plan.port);
        int flags = ::fcntl(fd.get(), F_GETFL);
        ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
        conns.push_back({std::move(fd), 0x1234u + i * 7919u, total});
    }
    if (plan.before_sending) plan.before_sending();
    std::vector<std::uint8_t> scratch(256 * 1024);
    std::vector<pollfd> pfds(conns.size());
    auto deadline = std::chrono::steady_clock::now() + plan.timeout;
    for (;;) {
        unsigned active = 0;
        for (std::size_t i = 0; i < conns.size(); ++i) {
            auto& c = conns[i];
            pfds[i] = {c.fd.get(), 0, 0};
            if (c.received < c.total) {
                pfds[i].events = POLLIN | (c.sent < c.total ? POLLOUT : 0);
                ++active;
            } else {
                pfds[i].fd = -1;
            }
        }
        if (!active) break;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            out.timed_out = true;
            break;
        }
        int n = ::poll(pfds.data(), pfds.size(), static_cast<int>(std::min<long>(left.count(), 1000)));
        if (n < 0 && errno != EINTR) {
            out.error = std::string("poll: ") + std::strerror(errno);
            break;
        }
        for (std::size_t i = 0; i < conns.size(); ++i) {
            auto& c = conns[i];
            if (pfds[i].revents & POLLOUT) {
                std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(scratch.size(), c.total - c.sent));
                for (std::size_t k = 0; k < chunk; ++k) scratch[k] = pattern_byte(c.seed, c.sent + k);
                ssize_t w = ::send(c.fd.get(), scratch.data(), chunk, MSG_NOSIGNAL);
                if (w > 0) {
                    c.sent += static_cast<std::uint64_t>(w);
                    out.bytes_sent += static_cast<std::uint64_t>(w);
                }
            }
            if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = ::recv(c.fd.get(), scratch.data(), scratch.size(), 0);
                if (r > 0) {
                    for (ssize_t k = 0; k < r; ++k)
                        if (scratch[static_cast<std::size_t>(k)] != pattern_byte(c.seed, c.received + static_cast<std::uint64_t>(k)))
                            ++out.mismatches;
                    c.received += static_cast<std::uint64_t>(r);
                    out.bytes_verified += static_cast<std::uint64_t>(r);
                    if (c.received == c.total) ++out.connections_done;
                } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                    // ostringstream: GCC 12 warns falsely (-Wrestrict) on chained string +.
                    std::ostringstream text;
                    text << "connection " << i << " ended after " << c.received << " of " << c.total << " bytes";
                    out.error = text.str();
                    return out;
                }
            }
        }
    }
    return out;
}

// Closes `fd` with a reset (SO_LINGER 0): no TIME_WAIT left behind, and the
// server sees ECONNRESET rather than EOF.
inline void close_with_reset(fd_guard& fd) {
    linger l{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    fd.reset();
}

// `count` clients each send 128 KiB and vanish without reading the echo:
// every odd one with a reset (the server sees ECONNRESET), every even one
// with a FIN (the server's sends then meet EPIPE or a reset).
inline void vanish_mid_send(std::uint16_t port, int count) {
    std::vector<std::byte> half(128 * 1024, std::byte{0x5a});
    for (int i = 0; i < count; ++i) {
        auto c = connect_loopback(port);
        ::send(c.get(), half.data(), half.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (i % 2)
            close_with_reset(c);
        else
            c.reset();
    }
}

// Polls `condition` until it holds or `timeout` passes.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        ::poll(nullptr, 0, 2);
    }
    return true;
}

}  // namespace zerg::test
