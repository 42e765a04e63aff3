// Test helpers: connected socket pairs on loopback, and waiting for CQEs.
#pragma once

#include <zerg/uring/ring.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace zerg::test {

// Owns an fd; closes it on destruction.
class fd_guard {
public:
    fd_guard() = default;
    explicit fd_guard(int fd) noexcept : fd_(fd) {}
    fd_guard(fd_guard&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    fd_guard& operator=(fd_guard&& o) noexcept {
        reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~fd_guard() { reset(); }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

inline void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

// A listening TCP socket on 127.0.0.1, on a port the kernel picks.
inline fd_guard listen_loopback(int backlog = 128, sockaddr_in* bound = nullptr) {
    fd_guard s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    check(s.get() >= 0, "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    check(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "bind");
    check(::listen(s.get(), backlog) == 0, "listen");
    socklen_t len = sizeof addr;
    check(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0, "getsockname");
    if (bound) *bound = addr;
    return s;
}

inline std::uint16_t port_of(int listen_fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    check(::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0, "getsockname");
    return ntohs(addr.sin_port);
}

// A blocking client connected to 127.0.0.1:port.
inline fd_guard connect_loopback(std::uint16_t port) {
    fd_guard c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    check(c.get() >= 0, "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    check(::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "connect");
    return c;
}

// Two connected TCP sockets over loopback: {client, server side}.
inline std::pair<fd_guard, fd_guard> tcp_pair() {
    auto listener = listen_loopback();
    auto client = connect_loopback(port_of(listener.get()));
    fd_guard server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    check(server.get() >= 0, "accept");
    return {std::move(client), std::move(server)};
}

// Two connected Unix stream sockets.
inline std::pair<fd_guard, fd_guard> unix_pair() {
    int sv[2];
    check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    return {fd_guard(sv[0]), fd_guard(sv[1])};
}

struct completion {
    std::uint64_t user_data;
    std::int32_t res;
    std::uint32_t flags;
};

// Submits what is queued and collects completions until `count` have
// arrived or `timeout` passes (then throws: a test never hangs).
inline std::vector<completion> wait_for(uring::ring& r, unsigned count,
                                        std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::vector<completion> out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < count) {
        r.for_each_completion([&](const io_uring_cqe& c) { out.push_back({c.user_data, c.res, c.flags}); });
        if (out.size() >= count) break;
        auto left = deadline - std::chrono::steady_clock::now();
        if (left <= std::chrono::nanoseconds::zero())
            throw std::runtime_error("timed out waiting for " + std::to_string(count) + " completions, got " +
                                     std::to_string(out.size()));
        int res = r.submit_and_wait_for(1, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
        if (res < 0 && res != -ETIME && res != -EINTR)
            throw std::runtime_error("submit_and_wait_for: " + std::string(std::strerror(-res)));
    }
    return out;
}

// The one completion tagged `ud` among those wait_for returns.
inline completion wait_one(uring::ring& r, std::uint64_t ud,
                           std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto all = wait_for(r, 1, timeout);
    if (all.front().user_data != ud)
        throw std::runtime_error("unexpected completion " + std::to_string(all.front().user_data));
    return all.front();
}

}  // namespace zerg::test
