// Listening addresses: IPv4, IPv6 and dual stack.
#pragma once

#include <zerg/uring/error.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>

namespace zerg {

struct endpoint {
    sockaddr_storage storage{};
    socklen_t length = 0;

    int family() const noexcept { return storage.ss_family; }
    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }

    // Parses an IPv4 or IPv6 literal. With `dual_stack`, the endpoint is
    // always IPv6, and an IPv4 literal becomes the IPv4-mapped address
    // ::ffff:a.b.c.d (network byte order, octets as written).
    static endpoint parse(const std::string& address, std::uint16_t port, bool dual_stack) {
        endpoint e;
        in_addr v4{};
        in6_addr v6{};
        if (::inet_pton(AF_INET, address.c_str(), &v4) == 1) {
            if (!dual_stack) {
                auto* sin = reinterpret_cast<sockaddr_in*>(&e.storage);
                sin->sin_family = AF_INET;
                sin->sin_port = htons(port);
                sin->sin_addr = v4;
                e.length = sizeof(sockaddr_in);
                return e;
            }
            v6.s6_addr[10] = 0xff;
            v6.s6_addr[11] = 0xff;
            std::memcpy(&v6.s6_addr[12], &v4, 4);
        } else if (::inet_pton(AF_INET6, address.c_str(), &v6) != 1) {
            throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                                    "zerg: '" + address + "' is not an IPv4 or IPv6 address literal");
        }
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&e.storage);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        sin6->sin6_addr = v6;
        e.length = sizeof(sockaddr_in6);
        return e;
    }

    std::uint16_t port() const noexcept {
        return ntohs(family() == AF_INET ? reinterpret_cast<const sockaddr_in*>(&storage)->sin_port
                                         : reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    }

    std::string to_string() const {
        char text[INET6_ADDRSTRLEN] = {};
        std::string out;
        if (family() == AF_INET) {
            ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, text, sizeof text);
            out.append(text);
        } else {
            ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, text, sizeof text);
            out.append("[").append(text).append("]");
        }
        // Appends rather than chained +: GCC 12 -O3 warns falsely (-Wrestrict) on those.
        return out.append(":").append(std::to_string(port()));
    }
};

// A listening TCP socket. TCP_NODELAY is set on the listener: Linux copies
// it to every accepted socket, so no per-connection setsockopt is needed.
// A TCP socket bound to `where` (SO_REUSEADDR, TCP_NODELAY, and
// SO_REUSEPORT when asked), not listening. A bound socket that does not
// listen holds its port without joining the SO_REUSEPORT group, so no
// connection is ever hashed to it: server::start() picks the reactors'
// shared port this way.
inline int bind_socket(const endpoint& where, bool dual_stack, bool reuse_port, endpoint* bound = nullptr) {
    int fd = ::socket(where.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) uring::throw_result(errno, "zerg: socket");
    auto fail = [fd](const char* what) {
        int e = errno;
        ::close(fd);
        uring::throw_result(e, std::string("zerg: ") + what);
    };
    int one = 1, zero = 0;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) fail("SO_REUSEADDR");
    if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) fail("SO_REUSEPORT");
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) fail("TCP_NODELAY");
    if (where.family() == AF_INET6) {
        const int* v6only = dual_stack ? &zero : &one;
        if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only, sizeof one) < 0) fail("IPV6_V6ONLY");
    }
    if (::bind(fd, where.get(), where.length) < 0) fail(("bind " + where.to_string()).c_str());
    if (bound) {
        bound->length = sizeof bound->storage;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound->storage), &bound->length);
    }
    return fd;
}

// bind_socket() plus listen(backlog).
inline int open_listener(const endpoint& where, bool dual_stack, int backlog, bool reuse_port, endpoint* bound = nullptr) {
    int fd = bind_socket(where, dual_stack, reuse_port, bound);
    if (::listen(fd, backlog) < 0) {
        int e = errno;
        ::close(fd);
        uring::throw_result(e, "zerg: listen");
    }
    return fd;
}

}  // namespace zerg
