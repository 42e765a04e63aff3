#define BOOST_TEST_MODULE example_udp_echo
#include <boost/test/unit_test.hpp>

// bin/udp_echo as a program (its path is the first argument, from
// test/Jamfile): byte-exact echo with the project's client over IPv4 and
// ::1, many datagrams at sizes up to 60 KiB; with `nc -u` (Debian
// netcat-openbsd) when installed; a clean exit on SIGTERM. Loopback only.

#include <support/commands.hpp>
#include <support/process.hpp>
#include <support/udp_client.hpp>

#include <set>
#include <string>

using namespace std::chrono_literals;
using zerg::test::check_numbered;
using zerg::test::numbered_datagram;

namespace {

std::string program() { return boost::unit_test::framework::master_test_suite().argv[1]; }

void echo_many(zerg::test::udp_client& client) {
    const std::uint32_t sizes[] = {8, 33, 576, 1472, 1473, 8192, 20000, 40000, 61440};
    std::uint32_t seq = 0;
    for (auto size : sizes)
        for (int r = 0; r < 25; ++r) {
            auto d = numbered_datagram(seq++, size);
            auto reply = client.round_trip(d);
            BOOST_REQUIRE_MESSAGE(reply, "no echo of a " << size << "-byte datagram");
            BOOST_REQUIRE(*reply == d);
        }
    // 64 in flight at once, each echo matched to its datagram.
    const std::uint32_t window_start = seq;  // below: late echoes of retried lockstep datagrams
    std::set<std::uint32_t> outstanding;
    for (int i = 0; i < 64; ++i) {
        BOOST_REQUIRE(client.send(numbered_datagram(seq, 100 + 17 * static_cast<std::uint32_t>(i))));
        outstanding.insert(seq++);
    }
    while (!outstanding.empty()) {
        auto reply = client.receive(2000ms);
        BOOST_REQUIRE_MESSAGE(reply, outstanding.size() << " echoes never came");
        auto got = check_numbered(*reply);
        BOOST_REQUIRE(got);
        if (*got < window_start) continue;
        BOOST_REQUIRE(outstanding.erase(*got) == 1);
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(echoes_byte_exact_over_ipv4) {
    zerg::test::server_process server(program(), {"--buffer-size", "65507", "--reactors", "2"});
    zerg::test::udp_client client(zerg::test::loopback(server.port()));
    echo_many(client);
    BOOST_TEST(server.stop() == 0);
}

BOOST_AUTO_TEST_CASE(echoes_byte_exact_over_ipv6_loopback) {
    // A later --address wins over the 127.0.0.1 server_process puts first.
    zerg::test::server_process server(program(), {"--address", "::1", "--buffer-size", "65507"});
    zerg::test::udp_client client(zerg::test::loopback(server.port(), true));
    echo_many(client);
    BOOST_TEST(server.stop() == 0);
}

BOOST_AUTO_TEST_CASE(echoes_to_nc) {
    if (zerg::test::skip_without("nc", "netcat-openbsd")) return;
    zerg::test::server_process server(program(), {});
    // -w1: nc gives up one second after its input ends, with what came back.
    for (int i = 0; i < 3; ++i) {
        std::string line = "zerg udp echo " + std::to_string(i);
        auto r = zerg::test::run_command("printf '" + line + "' | timeout 5 nc -u -w1 127.0.0.1 " +
                                         std::to_string(server.port()));
        BOOST_TEST(r.output == line);
    }
    BOOST_TEST(server.stop() == 0);
}

BOOST_AUTO_TEST_CASE(help_lists_the_datagram_flags) {
    // Like the other examples' (example/common/options.hpp), --help prints
    // the flags and exits without serving.
    auto r = zerg::test::run_command(program() + " --help");
    BOOST_TEST(r.output.find("usage:") == 0u);
    for (const char* flag : {"--max-outbound", "--zero-copy-threshold", "--join", "--multicast-if", "--buffer-size"})
        BOOST_TEST(r.output.find(flag) != std::string::npos, flag);
}
