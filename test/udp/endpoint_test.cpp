#define BOOST_TEST_MODULE udp_endpoint
#include <boost/test/unit_test.hpp>

// zerg::udp_server and zerg::datagram_endpoint (include/zerg/datagram.hpp)
// in process: byte-exact echo over IPv4 and IPv6 at sizes up to 60 KiB,
// zero-copy sends, a flood that empties a tiny buffer ring (datagrams lost,
// none corrupted, ENOBUFS counted, the endpoint still serving), truncated
// datagrams, the outbound cap, a handler that throws, several endpoints on
// one port, and stop under load. Loopback only; every wait is bounded.

#include <support/udp_client.hpp>

#include <zerg/datagram.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using zerg::test::check_numbered;
using zerg::test::numbered_datagram;
using zerg::test::udp_client;

namespace {

struct echo {
    void on_datagram(zerg::datagram_endpoint<echo>& e, const zerg::endpoint& peer, std::span<const std::byte> bytes) {
        e.send_to(peer, bytes);
    }
};

// Answers each datagram with `copies` copies of it; throws on one that
// starts with "boom".
struct fanout {
    unsigned copies = 1;
    void on_datagram(zerg::datagram_endpoint<fanout>& e, const zerg::endpoint& peer, std::span<const std::byte> bytes) {
        if (bytes.size() >= 4 && std::memcmp(bytes.data(), "boom", 4) == 0) throw std::runtime_error("boom");
        for (unsigned i = 0; i < copies; ++i) e.send_to(peer, bytes);
    }
};

zerg::udp_config config_for(const char* address) {
    zerg::udp_config c;
    c.address = address;
    c.buffer_size = 65507;
    c.buffer_count = 64;
    return c;
}

// Every size in lockstep, `rounds` datagrams each; then a window of 32
// in flight at once. Returns how many were sent.
unsigned echo_sizes(udp_client& client, unsigned rounds) {
    const std::uint32_t sizes[] = {8, 9, 100, 512, 1400, 1473, 4096, 9000, 16383, 16384, 32768, 61440};
    std::uint32_t seq = 0;
    for (auto size : sizes)
        for (unsigned r = 0; r < rounds; ++r) {
            auto d = numbered_datagram(seq++, size);
            auto reply = client.round_trip(d);
            BOOST_REQUIRE_MESSAGE(reply, "no echo of a " << size << "-byte datagram");
            BOOST_REQUIRE(*reply == d);
        }
    // A window: 32 sent before any is read; each echo checked and matched.
    // A late second echo of a lockstep datagram sent twice (a retry) is
    // checked too, and otherwise ignored.
    const std::uint32_t window_start = seq;
    std::set<std::uint32_t> outstanding;
    for (unsigned i = 0; i < 32; ++i) {
        auto d = numbered_datagram(seq, 1000 + i);
        BOOST_REQUIRE(client.send(d));
        outstanding.insert(seq++);
    }
    while (!outstanding.empty()) {
        auto reply = client.receive(2000ms);
        BOOST_REQUIRE_MESSAGE(reply, outstanding.size() << " echoes of the window never came");
        auto got = check_numbered(*reply);
        BOOST_REQUIRE_MESSAGE(got, "a corrupted echo of " << reply->size() << " bytes");
        if (*got < window_start) continue;
        BOOST_REQUIRE(outstanding.erase(*got) == 1);
    }
    return seq;
}

}  // namespace

BOOST_AUTO_TEST_CASE(echo_is_byte_exact_over_ipv4_and_ipv6) {
    for (const char* address : {"127.0.0.1", "::1"}) {
        BOOST_TEST_CONTEXT(address) {
            zerg::udp_server<echo> server(config_for(address));
            server.start();
            udp_client client(zerg::test::loopback(server.port(), address[0] == ':'));
            unsigned sent = echo_sizes(client, 20);
            server.stop();
            auto t = server.totals();
            // Lockstep retries may send a datagram twice; never fewer.
            BOOST_TEST(t.datagrams_in >= sent);
            BOOST_TEST(t.datagrams_out == t.datagrams_in);
            BOOST_TEST(t.bytes_out == t.bytes_in);
            BOOST_TEST(t.truncated == 0u);
            BOOST_TEST(t.send_errors == 0u);
            BOOST_TEST(t.outbound_in_flight == 0u);
            // The same values by name, as a metrics page reads them.
            std::uint64_t in_by_name = 0, gauges = 0;
            zerg::for_each_counter(t, [&](const char* name, zerg::datagram_counter_kind kind, const char*, std::uint64_t v) {
                if (std::string(name) == "datagrams_in") in_by_name = v;
                gauges += kind == zerg::datagram_counter_kind::gauge;
            });
            BOOST_TEST(in_by_name == t.datagrams_in);
            BOOST_TEST(gauges == 1u);
        }
    }
}

BOOST_AUTO_TEST_CASE(large_datagrams_go_out_zero_copy) {
    auto c = config_for("127.0.0.1");
    c.zero_copy_threshold = 4096;
    zerg::udp_server<echo> server(c);
    server.start();
    udp_client client(zerg::test::loopback(server.port()));
    for (std::uint32_t seq = 0; seq < 50; ++seq) {
        auto d = numbered_datagram(seq, seq % 2 ? 60000 : 5000);
        auto reply = client.round_trip(d);
        BOOST_REQUIRE(reply);
        BOOST_REQUIRE(*reply == d);
    }
    server.stop();
    auto t = server.totals();
    // sendmsg_zc is 6.1; a kernel that refused it says so in fallbacks().
    bool fell_back = false;
    for (auto const& f : server.fallbacks()) fell_back |= f.rfind("sendmsg_zc", 0) == 0;
    BOOST_TEST_MESSAGE("zero-copy sends: " << t.sends_zero_copy << (fell_back ? " (fell back)" : ""));
    BOOST_TEST((t.sends_zero_copy >= 50u || fell_back || t.zero_copy_refusals > 0u));
    BOOST_TEST(t.datagrams_out >= 50u);
    BOOST_TEST(t.outbound_in_flight == 0u);
}

BOOST_AUTO_TEST_CASE(a_flood_that_empties_the_buffer_ring_loses_but_never_corrupts) {
    auto c = config_for("127.0.0.1");
    c.buffer_size = 1024;
    c.buffer_count = 2;  // tiny: any burst runs it dry
    zerg::udp_server<echo> server(c);
    server.start();
    // A large receive buffer, so the echoes that do come wait for the drain.
    udp_client client(zerg::test::loopback(server.port()), 4 << 20);
    const std::uint32_t flood = 20000;
    std::uint32_t sent = 0;
    for (std::uint32_t seq = 0; seq < flood; ++seq)
        if (client.send(numbered_datagram(seq, 200 + seq % 800), true)) ++sent;
    std::set<std::uint32_t> seen;
    unsigned corrupted = 0, duplicated = 0;
    while (auto reply = client.receive(500ms)) {
        auto seq = check_numbered(*reply);
        if (!seq || *seq >= flood)
            ++corrupted;
        else if (!seen.insert(*seq).second)
            ++duplicated;
    }
    BOOST_TEST_MESSAGE("flood: sent " << sent << ", echoed " << seen.size() << ", ENOBUFS "
                                      << server.totals().enobufs << ", re-arms " << server.totals().recv_rearms);
    BOOST_TEST(corrupted == 0u);
    BOOST_TEST(duplicated == 0u);
    BOOST_TEST(seen.size() <= sent);
    BOOST_TEST(seen.size() > 0u);
    // Still serving after the flood.
    auto d = numbered_datagram(flood + 1, 300);
    auto reply = client.round_trip(d);
    BOOST_REQUIRE(reply);
    BOOST_TEST(*reply == d);
    server.stop();  // the counters are final once the thread is joined
    auto t = server.totals();
    BOOST_TEST(t.enobufs > 0u);
    BOOST_TEST(t.recv_rearms >= t.enobufs);
    BOOST_TEST(t.datagrams_in <= sent + 5);  // the flood and the round trip's tries
}

BOOST_AUTO_TEST_CASE(a_datagram_larger_than_a_buffer_is_counted_and_dropped) {
    auto c = config_for("127.0.0.1");
    c.buffer_size = 512;
    zerg::udp_server<echo> server(c);
    server.start();
    udp_client client(zerg::test::loopback(server.port()));
    BOOST_REQUIRE(client.send(numbered_datagram(1, 513)));
    BOOST_REQUIRE(client.send(numbered_datagram(2, 4000)));
    // The one that fits still goes through, after the two that did not.
    auto d = numbered_datagram(3, 512);
    auto reply = client.round_trip(d);
    BOOST_REQUIRE(reply);
    BOOST_TEST(*reply == d);
    while (auto late = client.receive(100ms)) BOOST_TEST(*late == d);  // a retry's echo; no part of the cut ones
    server.stop();
    auto t = server.totals();
    BOOST_TEST(t.truncated == 2u);
    BOOST_TEST(t.datagrams_in >= 1u);
}

BOOST_AUTO_TEST_CASE(sends_past_max_outbound_are_dropped_and_counted) {
    auto c = config_for("127.0.0.1");
    c.max_outbound = 4;
    zerg::udp_server<fanout> server(c, fanout{64});
    server.start();
    udp_client client(zerg::test::loopback(server.port()), 4 << 20);
    auto d = numbered_datagram(7, 1200);
    BOOST_REQUIRE(client.send(d));
    unsigned copies = 0;
    while (auto reply = client.receive(300ms)) {
        BOOST_REQUIRE(*reply == d);
        ++copies;
    }
    server.stop();
    auto t = server.totals();
    BOOST_TEST_MESSAGE("64 copies asked, " << copies << " arrived, " << t.send_dropped << " dropped");
    BOOST_TEST(copies >= 1u);
    BOOST_TEST(t.send_dropped > 0u);
    BOOST_TEST(t.send_dropped + t.datagrams_out + t.send_errors == 64u);
    BOOST_TEST(copies <= t.datagrams_out);
}

BOOST_AUTO_TEST_CASE(the_byte_cap_bounds_what_is_in_flight) {
    auto c = config_for("127.0.0.1");
    c.max_outbound_bytes = 3 * 10000;  // three 10000-byte copies, not four
    zerg::udp_server<fanout> server(c, fanout{10});
    server.start();
    udp_client client(zerg::test::loopback(server.port()), 4 << 20);
    auto d = numbered_datagram(9, 10000);
    BOOST_REQUIRE(client.send(d));
    unsigned copies = 0;
    while (auto reply = client.receive(300ms)) {
        BOOST_REQUIRE(*reply == d);
        ++copies;
    }
    server.stop();
    auto t = server.totals();
    BOOST_TEST(t.send_dropped == 7u);
    BOOST_TEST(t.datagrams_out == 3u);
    BOOST_TEST(copies <= 3u);
}

BOOST_AUTO_TEST_CASE(a_handler_that_throws_does_not_stop_the_endpoint) {
    std::atomic<int> reports{0};
    auto c = config_for("127.0.0.1");
    c.on_error = [&](const zerg::error_report& r) {
        if (r.what == zerg::error_report::kind::handler_exception) reports.fetch_add(1);
    };
    zerg::udp_server<fanout> server(c);
    server.start();
    udp_client client(zerg::test::loopback(server.port()));
    std::vector<std::byte> boom(16, std::byte{'x'});
    std::memcpy(boom.data(), "boom", 4);
    BOOST_REQUIRE(client.send(boom));
    auto d = numbered_datagram(1, 64);
    auto reply = client.round_trip(d);
    BOOST_REQUIRE(reply);
    BOOST_TEST(*reply == d);
    server.stop();
    BOOST_TEST(server.totals().handler_exceptions == 1u);
    BOOST_TEST(reports.load() == 1);
}

BOOST_AUTO_TEST_CASE(several_endpoints_share_one_port) {
    auto c = config_for("127.0.0.1");
    c.reactors = 3;
    zerg::udp_server<echo> server(c);
    server.start();
    BOOST_REQUIRE(server.endpoint_count() == 3u);
    for (std::size_t i = 0; i < 3; ++i) BOOST_TEST(server.endpoint_at(i).local_endpoint().port() == server.port());
    // Many source ports, so SO_REUSEPORT's hash reaches more than one.
    std::vector<udp_client> clients;
    for (int i = 0; i < 24; ++i) clients.emplace_back(zerg::test::loopback(server.port()));
    std::uint32_t seq = 0;
    for (auto& client : clients) {
        auto d = numbered_datagram(seq++, 700);
        auto reply = client.round_trip(d);
        BOOST_REQUIRE(reply);
        BOOST_TEST(*reply == d);
    }
    server.stop();
    unsigned busy = 0;
    for (std::size_t i = 0; i < 3; ++i) busy += server.counters(i).datagrams_in.get() > 0;
    BOOST_TEST(busy >= 2u);
    BOOST_TEST(server.totals().datagrams_out >= 24u);
}

BOOST_AUTO_TEST_CASE(stop_under_load_returns_and_restarts) {
    auto c = config_for("::1");
    zerg::udp_server<echo> server(c);
    server.start();
    std::uint16_t port = server.port();
    std::atomic<bool> done{false};
    std::thread sender([&] {
        udp_client client(zerg::test::loopback(port, true));
        std::uint32_t seq = 0;
        while (!done.load()) client.send(numbered_datagram(seq++, 1000), true);
    });
    std::this_thread::sleep_for(100ms);
    auto before = std::chrono::steady_clock::now();
    server.stop();
    auto took = std::chrono::steady_clock::now() - before;
    done = true;
    sender.join();
    BOOST_TEST(server.totals().datagrams_in > 0u);
    BOOST_TEST(took < 10s);  // a bound, not a speed: stop_deadline is 1 s
    // Started again, on a new port, it serves as before.
    server.start();
    udp_client client(zerg::test::loopback(server.port(), true));
    auto d = numbered_datagram(1, 100);
    auto reply = client.round_trip(d);
    BOOST_REQUIRE(reply);
    BOOST_TEST(*reply == d);
    server.stop();
}
