// Multicast on a UDP socket: the options a sender sets (hop limit, loop,
// outgoing interface) and joining or leaving a group. IPv4 and IPv6; the
// group's family picks the level (IPPROTO_IP or IPPROTO_IPV6).
//
//   zerg::multicast_options m;
//   m.ttl = 1; m.interface = "127.0.0.1";
//   zerg::apply_multicast_options(fd, AF_INET, m);
//   zerg::join_group(fd, "239.255.0.1", "lo");
//
// Every function is a setsockopt(2) on `fd`: any thread may call them while
// the socket is open. Errors come back as std::error_code (errno).
#pragma once

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

namespace zerg {

struct multicast_options {
    // Hops a group datagram this socket sends may take (IP_MULTICAST_TTL,
    // IPV6_MULTICAST_HOPS): 0 stays on this host, 1 (the kernel's default)
    // on the local network. -1 leaves the kernel's default.
    int ttl = -1;
    // 1: this host's own group members get what it sends (the kernel's
    // default), 0: they do not (IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP). -1
    // leaves the kernel's default.
    int loop = -1;
    // The interface group datagrams leave by and groups are joined on: an
    // interface name ("lo", "eth0") or, for IPv4, one of its addresses
    // ("127.0.0.1"). Empty: the kernel picks by its routing table.
    std::string interface;
    // Linux delivers to a socket every group any socket on the host joined,
    // when the port matches (IP_MULTICAST_ALL, on by default, 2.6.31; the
    // IPv6 one 4.20). zerg turns it off unless asked, so a socket receives
    // the groups it joined itself and leave_group() really ends a stream.
    bool receive_all = false;
    // Groups every endpoint joins at start, on `interface`.
    std::vector<std::string> groups;
};

namespace detail {

// The interface index of a name or a decimal index; 0 for "" (any).
inline unsigned interface_index(const std::string& interface) noexcept {
    if (interface.empty()) return 0;
    if (unsigned i = ::if_nametoindex(interface.c_str())) return i;
    char* end = nullptr;
    unsigned long n = std::strtoul(interface.c_str(), &end, 10);
    return *end ? 0 : static_cast<unsigned>(n);
}

inline std::error_code last_error() noexcept { return {errno, std::system_category()}; }

inline std::error_code set_int(int fd, int level, int name, int value) noexcept {
    return ::setsockopt(fd, level, name, &value, sizeof value) < 0 ? last_error() : std::error_code{};
}

// IPv4 memberships and IP_MULTICAST_IF take an ip_mreqn: an interface by
// address or by index.
inline bool ipv4_interface(const std::string& interface, ip_mreqn& m) noexcept {
    if (interface.empty()) return true;
    if (::inet_pton(AF_INET, interface.c_str(), &m.imr_address) == 1) return true;
    m.imr_ifindex = static_cast<int>(interface_index(interface));
    return m.imr_ifindex != 0;
}

inline std::error_code membership(int fd, const std::string& group, const std::string& interface, bool join) noexcept {
    ip_mreqn v4{};
    if (::inet_pton(AF_INET, group.c_str(), &v4.imr_multiaddr) == 1) {
        if (!ipv4_interface(interface, v4)) return std::make_error_code(std::errc::no_such_device);
        int name = join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP;
        return ::setsockopt(fd, IPPROTO_IP, name, &v4, sizeof v4) < 0 ? last_error() : std::error_code{};
    }
    ipv6_mreq v6{};
    if (::inet_pton(AF_INET6, group.c_str(), &v6.ipv6mr_multiaddr) != 1)
        return std::make_error_code(std::errc::invalid_argument);
    v6.ipv6mr_interface = interface_index(interface);
    if (!interface.empty() && v6.ipv6mr_interface == 0) return std::make_error_code(std::errc::no_such_device);
    int name = join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP;
    return ::setsockopt(fd, IPPROTO_IPV6, name, &v6, sizeof v6) < 0 ? last_error() : std::error_code{};
}

}  // namespace detail

// Joins `group` (an IPv4 or IPv6 literal) on `interface` (see
// multicast_options::interface; empty: the kernel picks). EADDRINUSE when
// already joined, ENODEV for an unknown interface.
inline std::error_code join_group(int fd, const std::string& group, const std::string& interface = {}) noexcept {
    return detail::membership(fd, group, interface, true);
}
// Leaves a group joined with join_group() (same arguments). EADDRNOTAVAIL
// when it was not joined.
inline std::error_code leave_group(int fd, const std::string& group, const std::string& interface = {}) noexcept {
    return detail::membership(fd, group, interface, false);
}

// Sets hop limit, loop, outgoing interface and IP_MULTICAST_ALL on a socket
// of `family` (AF_INET or AF_INET6); does not join `groups`.
inline std::error_code apply_multicast_options(int fd, int family, const multicast_options& m) noexcept {
    std::error_code ec;
    if (family == AF_INET) {
        if (m.ttl >= 0 && (ec = detail::set_int(fd, IPPROTO_IP, IP_MULTICAST_TTL, m.ttl))) return ec;
        if (m.loop >= 0 && (ec = detail::set_int(fd, IPPROTO_IP, IP_MULTICAST_LOOP, m.loop))) return ec;
        if (!m.interface.empty()) {
            ip_mreqn via{};
            if (!detail::ipv4_interface(m.interface, via)) return std::make_error_code(std::errc::no_such_device);
            if (::setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &via, sizeof via) < 0) return detail::last_error();
        }
        return detail::set_int(fd, IPPROTO_IP, IP_MULTICAST_ALL, m.receive_all ? 1 : 0);
    }
    if (m.ttl >= 0 && (ec = detail::set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, m.ttl))) return ec;
    if (m.loop >= 0 && (ec = detail::set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, m.loop))) return ec;
    if (!m.interface.empty()) {
        unsigned index = detail::interface_index(m.interface);
        if (index == 0) return std::make_error_code(std::errc::no_such_device);
        if ((ec = detail::set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, static_cast<int>(index)))) return ec;
    }
#ifdef IPV6_MULTICAST_ALL
    // 4.20; an older kernel refuses it, which only matters when asked for.
    if (auto e = detail::set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, m.receive_all ? 1 : 0); e && m.receive_all) return e;
#endif
    return {};
}

}  // namespace zerg
