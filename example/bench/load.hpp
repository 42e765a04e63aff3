// The benchmark's own load generator: N connections, each keeping `depth`
// messages of `size` bytes in flight (pipelining), for a duration or for an
// exact message count, or in lock-step. Every echoed byte is checked: each message carries
// its sequence number in its first 8 bytes and the connection's own pattern
// in the rest, so corruption, loss and reordering all count as errors.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

using clock = std::chrono::steady_clock;

enum class protocol { echo, http };

struct load_plan {
    std::uint16_t port = 0;
    unsigned connections = 64;
    std::size_t size = 64;
    unsigned depth = 16;
    std::chrono::milliseconds duration{4000};  // used when messages == 0
    std::uint64_t messages = 0;                // exact total, when nonzero
    protocol kind = protocol::echo;            // http: GET /plaintext, pipelined
    // Lock-step: each connection sends exactly `per_connection` messages,
    // `depth` at a time (the last batch may be smaller), and sends the next
    // batch only once the whole previous batch has been echoed. The server
    // then sees the same batches whatever the timing, which is what a count
    // of instructions per message needs. `messages` and `duration` are
    // ignored; the run ends when every message is back (or after 120 s).
    bool lock_step = false;
    std::uint64_t per_connection = 0;
    // Called once every connection is open, before the first message is
    // sent (--instructions zeroes callgrind's counters here).
    std::function<void()> on_connected{};
};

// HTTP mode: the request sent, and a check of each response against the
// TechEmpower plaintext answer (the Date header may say anything).
inline constexpr std::string_view http_request = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

// Returns the length of the first complete response in `in`, 0 when more
// bytes are needed; sets `ok` to whether it is the expected answer.
inline std::size_t http_response(std::string_view in, bool& ok) {
    auto end = in.find("\r\n\r\n");
    if (end == std::string_view::npos) return 0;
    std::string_view head = in.substr(0, end + 4);
    std::size_t total = end + 4 + 13;
    if (in.size() < total) return 0;
    ok = head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0 && head.find("\r\nContent-Length: 13\r\n") != std::string_view::npos &&
         head.find("\r\nServer: ") != std::string_view::npos && head.find("\r\nDate: ") != std::string_view::npos &&
         head.find("\r\nContent-Type: text/plain\r\n") != std::string_view::npos &&
         in.substr(end + 4, 13) == "Hello, World!";
    return total;
}

struct load_result {
    std::uint64_t messages = 0;
    std::uint64_t errors = 0;  // messages whose echo differed from what was sent
    double seconds = 0;
    double p50_us = 0, p99_us = 0;
    std::string failure;       // a connection that broke, a timeout...
    double rate() const { return seconds > 0 ? messages / seconds : 0; }
};

// Latencies in 1 µs buckets up to 100 ms, beyond that in the last bucket.
class latency_histogram {
public:
    latency_histogram() : buckets_(100'001, 0) {}
    void add(clock::duration d) {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
        ++buckets_[static_cast<std::size_t>(std::clamp<long long>(us, 0, 100'000))];
        ++count_;
    }
    double percentile(double p) const {
        if (!count_) return 0;
        auto target = static_cast<std::uint64_t>(p * static_cast<double>(count_));
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < buckets_.size(); ++i) {
            seen += buckets_[i];
            if (seen > target) return static_cast<double>(i);
        }
        return static_cast<double>(buckets_.size() - 1);
    }

private:
    std::vector<std::uint64_t> buckets_;
    std::uint64_t count_ = 0;
};

inline int connect_to(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        int e = errno;
        ::close(fd);
        throw std::runtime_error(std::string("connect: ") + std::strerror(e));
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

inline load_result run_load(const load_plan& plan) {
    struct conn {
        int fd = -1;
        std::vector<std::uint8_t> pattern;  // the message body for this connection
        std::vector<std::uint8_t> in;       // the message being received
        std::size_t in_fill = 0;
        std::uint64_t next_send = 0, next_recv = 0;  // message sequence numbers
        std::vector<std::uint8_t> out;               // messages queued for the socket
        std::size_t out_offset = 0;                  // bytes of `out` already written
        std::vector<clock::time_point> sent_at;      // ring of depth entries
    };
    load_result result;
    latency_histogram latencies;
    bool http = plan.kind == protocol::http;
    std::size_t size = http ? http_request.size() : std::max<std::size_t>(plan.size, 8);
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    std::vector<conn> conns(plan.connections);
    for (unsigned i = 0; i < plan.connections; ++i) {
        conn& c = conns[i];
        c.fd = connect_to(plan.port);
        ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
        c.pattern.resize(size);
        for (std::size_t k = 0; k < size; ++k) c.pattern[k] = static_cast<std::uint8_t>((i * 131 + k * 7 + 1) & 0xff);
        if (http) std::memcpy(c.pattern.data(), http_request.data(), size);
        c.in.resize(http ? 64 * 1024 : size);
        c.sent_at.resize(plan.depth);
        c.out.reserve(size * plan.depth);
        epoll_event ev{EPOLLIN | EPOLLOUT | EPOLLET, {.u32 = i}};
        ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    }

    const bool lock_step = plan.lock_step;
    std::uint64_t to_send_total = lock_step ? plan.per_connection * plan.connections : plan.messages;  // 0: until the deadline
    std::uint64_t sent_total = 0;
    auto start = clock::now();
    const bool counted = lock_step || plan.messages;
    auto deadline = start + (counted ? std::chrono::milliseconds(120'000) : plan.duration);
    std::vector<std::uint8_t> scratch(std::max<std::size_t>(size, 64 * 1024));
    bool sending = true;

    // Tops the in-flight window up and writes it with as few send() calls as
    // the socket allows: pipelined messages go out together, as a real
    // pipelining client sends them.
    auto pump_out = [&](conn& c) {
        if (c.out_offset == c.out.size()) {
            c.out.clear();
            c.out_offset = 0;
        }
        // Lock-step: a new batch only when the last one is back entirely.
        const std::uint64_t limit = lock_step ? (c.next_send == c.next_recv ? std::min(c.next_send + plan.depth, plan.per_connection)
                                                                           : c.next_send)
                                              : c.next_recv + plan.depth;
        while (sending && c.next_send < limit && (lock_step || !to_send_total || sent_total < to_send_total)) {
            if (!http) std::memcpy(c.pattern.data(), &c.next_send, 8);
            c.out.insert(c.out.end(), c.pattern.begin(), c.pattern.end());
            c.sent_at[c.next_send % plan.depth] = clock::now();
            ++c.next_send;
            ++sent_total;
        }
        while (c.out_offset < c.out.size()) {
            ssize_t w = ::send(c.fd, c.out.data() + c.out_offset, c.out.size() - c.out_offset, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN) return;
                throw std::runtime_error(std::string("send: ") + std::strerror(errno));
            }
            c.out_offset += static_cast<std::size_t>(w);
        }
    };

    try {
        if (plan.on_connected) plan.on_connected();
        start = clock::now();
        deadline = start + (counted ? std::chrono::milliseconds(120'000) : plan.duration);
        for (auto& c : conns) pump_out(c);
        std::uint64_t received_total = 0;
        std::vector<epoll_event> events(256);
        for (;;) {
            auto now = clock::now();
            if (now >= deadline) {
                if (counted) result.failure = "timed out before all messages were echoed";
                break;
            }
            if (counted && received_total >= to_send_total) break;
            int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
            for (int e = 0; e < n; ++e) {
                conn& c = conns[events[e].data.u32];
                if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    for (;;) {
                        ssize_t r = ::recv(c.fd, scratch.data(), scratch.size(), 0);
                        if (r == 0) throw std::runtime_error("the server closed a connection");
                        if (r < 0) {
                            if (errno == EAGAIN) break;
                            throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
                        }
                        if (http) {
                            // Append, then take every complete response off the front.
                            if (c.in_fill + static_cast<std::size_t>(r) > c.in.size())
                                throw std::runtime_error("an HTTP response larger than 64 KiB");
                            std::memcpy(c.in.data() + c.in_fill, scratch.data(), static_cast<std::size_t>(r));
                            c.in_fill += static_cast<std::size_t>(r);
                            std::size_t done = 0;
                            for (;;) {
                                bool ok = false;
                                std::size_t n = http_response(
                                    std::string_view(reinterpret_cast<const char*>(c.in.data()) + done, c.in_fill - done), ok);
                                if (!n) break;
                                if (!ok) ++result.errors;
                                latencies.add(clock::now() - c.sent_at[c.next_recv % plan.depth]);
                                ++c.next_recv;
                                ++received_total;
                                done += n;
                            }
                            std::memmove(c.in.data(), c.in.data() + done, c.in_fill - done);
                            c.in_fill -= done;
                            continue;
                        }
                        std::size_t at = 0;
                        while (at < static_cast<std::size_t>(r)) {
                            std::size_t take = std::min(size - c.in_fill, static_cast<std::size_t>(r) - at);
                            std::memcpy(c.in.data() + c.in_fill, scratch.data() + at, take);
                            c.in_fill += take;
                            at += take;
                            if (c.in_fill < size) break;
                            // One whole message echoed: check it.
                            std::uint64_t seq;
                            std::memcpy(&seq, c.in.data(), 8);
                            if (seq != c.next_recv || std::memcmp(c.in.data() + 8, c.pattern.data() + 8, size - 8) != 0)
                                ++result.errors;
                            latencies.add(clock::now() - c.sent_at[c.next_recv % plan.depth]);
                            ++c.next_recv;
                            ++received_total;
                            c.in_fill = 0;
                        }
                    }
                    pump_out(c);
                } else if (events[e].events & EPOLLOUT) {
                    pump_out(c);
                }
            }
        }
        result.messages = received_total;
    } catch (const std::exception& e) {
        result.failure = e.what();
    }
    sending = false;
    result.seconds = std::chrono::duration<double>(clock::now() - start).count();
    result.p50_us = latencies.percentile(0.50);
    result.p99_us = latencies.percentile(0.99);
    for (auto& c : conns) ::close(c.fd);
    ::close(ep);
    return result;
}

}  // namespace bench
