#define BOOST_TEST_MODULE udp_multicast
#include <boost/test/unit_test.hpp>

// Multicast on loopback (include/zerg/multicast.hpp and the endpoint's
// join_group/leave_group): a datagram sent to a group arrives at an
// endpoint that joined it, and stops arriving after it leaves; a group in
// udp_config is joined at start. The sender uses TTL 0 and
// IP_MULTICAST_IF 127.0.0.1, so nothing leaves the host. The test turns
// the loopback's MULTICAST flag on (`ip link set lo multicast on`, root)
// and restores it after; where that cannot be done it skips and says why.

#include <support/commands.hpp>
#include <support/udp_client.hpp>

#include <zerg/datagram.hpp>
#include <zerg/multicast.hpp>

#include <net/if.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using zerg::test::numbered_datagram;

namespace {

struct echo {
    void on_datagram(zerg::datagram_endpoint<echo>& e, const zerg::endpoint& peer, std::span<const std::byte> bytes) {
        e.send_to(peer, bytes);
    }
};

bool skip(const std::string& why) {
    std::cout << "SKIPPED " << boost::unit_test::framework::current_test_case().p_name.get() << ": " << why << '\n';
    return true;
}

// Turns the loopback's MULTICAST flag on for the test's lifetime and puts
// it back as it was.
class loopback_multicast {
public:
    loopback_multicast() {
        std::ifstream in("/sys/class/net/lo/flags");
        unsigned flags = 0;
        if (!(in >> std::hex >> flags)) {
            reason_ = "cannot read /sys/class/net/lo/flags";
            return;
        }
        was_on_ = flags & IFF_MULTICAST;
        if (was_on_) {
            ready_ = true;
            return;
        }
        if (::geteuid() != 0) {
            reason_ = "setting the loopback's MULTICAST flag needs root";
            return;
        }
        auto r = zerg::test::run_command("ip link set lo multicast on");
        if (r.status != 0) {
            reason_ = "`ip link set lo multicast on` failed (no iproute2, or no CAP_NET_ADMIN here): " + r.output;
            return;
        }
        changed_ = true;
        ready_ = true;
    }
    ~loopback_multicast() {
        if (changed_) zerg::test::run_command("ip link set lo multicast off");
    }
    bool ready() const noexcept { return ready_; }
    const std::string& reason() const noexcept { return reason_; }

private:
    bool was_on_ = false;
    bool changed_ = false;
    bool ready_ = false;
    std::string reason_;
};

// A sender on loopback: group datagrams leave by 127.0.0.1 with TTL 0.
zerg::test::fd_guard group_sender() {
    zerg::test::fd_guard fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    zerg::test::check(fd.get() >= 0, "socket");
    zerg::multicast_options m;
    m.ttl = 0;
    m.loop = 1;
    m.interface = "127.0.0.1";
    auto ec = zerg::apply_multicast_options(fd.get(), AF_INET, m);
    BOOST_REQUIRE_MESSAGE(!ec, "multicast options: " << ec.message());
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    zerg::test::check(::bind(fd.get(), reinterpret_cast<sockaddr*>(&any), sizeof any) == 0, "bind sender");
    return fd;
}

void send_to_group(int fd, const zerg::endpoint& group, const std::vector<std::byte>& d) {
    ::sendto(fd, d.data(), d.size(), 0, group.get(), group.length);
}

std::optional<std::vector<std::byte>> receive(int fd, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
    std::vector<std::byte> d(65536);
    ssize_t n = ::recv(fd, d.data(), d.size(), MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    d.resize(static_cast<std::size_t>(n));
    return d;
}

// The echo of datagram `d` (same sequence number and size) within
// `timeout`, skipping late echoes of earlier tries.
std::optional<std::vector<std::byte>> echo_of(int fd, const std::vector<std::byte>& d, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        auto r = receive(fd, left);
        if (!r) return r;
        if (r->size() == d.size() && std::memcmp(r->data(), d.data(), 8) == 0) return r;
    }
    return std::nullopt;
}

zerg::udp_config group_config(const char* group) {
    zerg::udp_config c;
    c.address = group;  // bound to the group: it receives that group only
    c.multicast.interface = "127.0.0.1";
    return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_joined_endpoint_receives_the_group_until_it_leaves) {
    loopback_multicast lo;
    if (!lo.ready() && skip(lo.reason())) return;
    const char* group = "239.255.77.1";
    zerg::udp_server<echo> server(group_config(group));
    server.start();
    auto to = zerg::endpoint::parse(group, server.port(), false);
    auto sender = group_sender();
    auto& endpoint = server.endpoint_at(0);

    // Not joined yet: nothing arrives.
    for (std::uint32_t i = 0; i < 5; ++i) send_to_group(sender.get(), to, numbered_datagram(i, 100));
    BOOST_TEST(!receive(sender.get(), 200ms));
    BOOST_TEST(endpoint.counters().datagrams_in.get() == 0u);

    auto ec = endpoint.join_group(group, "127.0.0.1");
    BOOST_REQUIRE_MESSAGE(!ec, "join: " << ec.message());
    BOOST_TEST((endpoint.join_group(group, "127.0.0.1") == std::errc::address_in_use));
    std::optional<std::vector<std::byte>> reply;
    auto d = numbered_datagram(100, 1200);
    for (int tries = 0; tries < 20 && !reply; ++tries) {
        send_to_group(sender.get(), to, d);
        reply = receive(sender.get(), 100ms);
    }
    BOOST_REQUIRE_MESSAGE(reply, "a datagram sent to the joined group never arrived");
    BOOST_TEST(*reply == d);  // the echo, to the sender's unicast address
    BOOST_TEST(endpoint.counters().datagrams_in.get() >= 1u);

    ec = endpoint.leave_group(group, "127.0.0.1");
    BOOST_REQUIRE_MESSAGE(!ec, "leave: " << ec.message());
    while (receive(sender.get(), 100ms)) {
    }  // late echoes of the retries
    auto before = endpoint.counters().datagrams_in.get();
    for (std::uint32_t i = 0; i < 10; ++i) {
        send_to_group(sender.get(), to, numbered_datagram(200 + i, 100));
        std::this_thread::sleep_for(20ms);
    }
    BOOST_TEST(!receive(sender.get(), 200ms));
    BOOST_TEST(endpoint.counters().datagrams_in.get() == before);
    BOOST_TEST((endpoint.leave_group(group, "127.0.0.1") == std::errc::address_not_available));
    server.stop();
}

BOOST_AUTO_TEST_CASE(a_group_in_the_config_is_joined_at_start) {
    loopback_multicast lo;
    if (!lo.ready() && skip(lo.reason())) return;
    const char* group = "239.255.77.2";
    auto c = group_config(group);
    c.multicast.groups = {group};
    c.multicast.ttl = 0;
    zerg::udp_server<echo> server(c);
    server.start();
    auto to = zerg::endpoint::parse(group, server.port(), false);
    auto sender = group_sender();
    for (std::uint32_t seq = 0; seq < 20; ++seq) {
        auto d = numbered_datagram(seq, 64 + seq * 50);
        std::optional<std::vector<std::byte>> reply;
        for (int tries = 0; tries < 10 && !reply; ++tries) {
            send_to_group(sender.get(), to, d);
            reply = echo_of(sender.get(), d, 200ms);
        }
        BOOST_REQUIRE(reply);
        BOOST_TEST(*reply == d);
    }
    server.stop();
    BOOST_TEST(server.totals().datagrams_in >= 20u);
}

BOOST_AUTO_TEST_CASE(ipv6_memberships_are_taken_and_given_back) {
    // Sending IPv6 multicast over lo needs a route for ff00::/8 there,
    // which a test should not add; the membership calls themselves are
    // checked: on the loopback by name, twice, and back.
    unsigned lo = ::if_nametoindex("lo");
    if (lo == 0 && skip("no interface named lo")) return;
    zerg::udp_config c;
    c.address = "::1";
    zerg::udp_server<echo> server(c);
    server.start();
    auto& endpoint = server.endpoint_at(0);
    const char* group = "ff01::7a:1";
    auto ec = endpoint.join_group(group, "lo");
    BOOST_REQUIRE_MESSAGE(!ec, "IPV6_JOIN_GROUP: " << ec.message());
    BOOST_TEST((endpoint.join_group(group, std::to_string(lo)) == std::errc::address_in_use));
    BOOST_TEST(!endpoint.leave_group(group, "lo"));
    BOOST_TEST((endpoint.leave_group(group, "lo") == std::errc::address_not_available));
    BOOST_TEST((endpoint.join_group(group, "no-such-interface0") == std::errc::no_such_device));
    BOOST_TEST((endpoint.join_group("not-an-address", "lo") == std::errc::invalid_argument));
    server.stop();
}
