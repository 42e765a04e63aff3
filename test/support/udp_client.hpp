// The UDP tests' client: a plain blocking socket connected to a loopback
// server, datagrams whose every byte is a function of their sequence number
// (so a reply can be checked byte for byte, and a corrupted or misrouted one
// is told apart from a lost one), and bounded waits.
#pragma once

#include <support/sockets.hpp>

#include <zerg/address.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace zerg::test {

// Datagram `seq` of `size` bytes (at least 8): seq and size, then a pattern
// of both.
inline std::vector<std::byte> numbered_datagram(std::uint32_t seq, std::uint32_t size) {
    std::vector<std::byte> d(size < 8 ? 8 : size);
    std::memcpy(d.data(), &seq, 4);
    std::memcpy(d.data() + 4, &size, 4);
    for (std::size_t i = 8; i < d.size(); ++i) d[i] = static_cast<std::byte>((seq * 131 + i * 7 + size) & 0xff);
    return d;
}

// The sequence number of `d` when every byte of it is what
// numbered_datagram() made; nothing when any byte is off.
inline std::optional<std::uint32_t> check_numbered(const std::vector<std::byte>& d) {
    if (d.size() < 8) return std::nullopt;
    std::uint32_t seq = 0, size = 0;
    std::memcpy(&seq, d.data(), 4);
    std::memcpy(&size, d.data() + 4, 4);
    if (size != d.size() || numbered_datagram(seq, size) != d) return std::nullopt;
    return seq;
}

class udp_client {
public:
    // Connected to `server` (127.0.0.1 or ::1 and a port): it sends there and
    // receives only from there.
    explicit udp_client(const zerg::endpoint& server, int receive_buffer = 0) {
        fd_.reset(::socket(server.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
        check(fd_.get() >= 0, "udp socket");
        if (receive_buffer > 0)
            ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
        check(::connect(fd_.get(), server.get(), server.length) == 0, "udp connect");
    }

    int fd() const noexcept { return fd_.get(); }

    // True when the whole datagram was taken by the kernel; with
    // `dont_wait`, false when the send buffer is full.
    bool send(const std::vector<std::byte>& d, bool dont_wait = false) {
        ssize_t n = ::send(fd_.get(), d.data(), d.size(), dont_wait ? MSG_DONTWAIT : 0);
        return n == static_cast<ssize_t>(d.size());
    }

    // The next datagram within `timeout`, or nothing.
    std::optional<std::vector<std::byte>> receive(std::chrono::milliseconds timeout) {
        pollfd p{fd_.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
        std::vector<std::byte> d(65536);
        ssize_t n = ::recv(fd_.get(), d.data(), d.size(), MSG_DONTWAIT);
        if (n < 0) return std::nullopt;
        d.resize(static_cast<std::size_t>(n));
        return d;
    }

    // Sends `d` and waits for its echo, sending again (at most `tries`
    // times) when none comes: UDP may lose either datagram, even on
    // loopback under load. Replies to earlier sends are skipped.
    std::optional<std::vector<std::byte>> round_trip(const std::vector<std::byte>& d, int tries = 5,
                                                     std::chrono::milliseconds timeout = std::chrono::milliseconds(1000)) {
        for (int t = 0; t < tries; ++t) {
            if (!send(d)) continue;
            auto deadline = std::chrono::steady_clock::now() + timeout;
            while (std::chrono::steady_clock::now() < deadline) {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
                auto r = receive(left);
                if (!r) break;
                if (r->size() == d.size() && std::memcmp(r->data(), d.data(), 8) == 0) return r;
            }
        }
        return std::nullopt;
    }

private:
    fd_guard fd_;
};

// 127.0.0.1:port or [::1]:port.
inline zerg::endpoint loopback(std::uint16_t port, bool ipv6 = false) {
    return zerg::endpoint::parse(ipv6 ? "::1" : "127.0.0.1", port, false);
}

}  // namespace zerg::test
