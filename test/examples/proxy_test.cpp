#define BOOST_TEST_MODULE example_proxy
#include <boost/test/unit_test.hpp>

// bin/proxy as a user runs it, on loopback: in front of bin/echo (the echo
// client's bytes come back byte-exact, also with a small --max-output so
// backpressure holds both directions), in front of bin/http_plaintext (curl
// and h2load), and in front of a listener the test holds itself, to see a
// half-close pass through both ways, a reset close both sides, and a
// missing or silent upstream close the client cleanly. The programs' paths
// come from test/Jamfile.

#include <support/client_io.hpp>
#include <support/commands.hpp>
#include <support/echo_client.hpp>
#include <support/process.hpp>
#include <support/server_checks.hpp>
#include <support/skip.hpp>
#include <support/sockets.hpp>

#include <poll.h>

#include <chrono>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using zerg::test::fd_guard;
using zerg::test::server_process;

std::string program(const char* name) {
    auto& args = boost::unit_test::framework::master_test_suite();
    for (int i = 1; i < args.argc; ++i) {
        std::string path = args.argv[i];
        if (path.ends_with(std::string("/") + name)) return path;
    }
    throw std::runtime_error(std::string("no path to ") + name + " on the command line");
}

std::string upstream_flag(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

server_process start_proxy(std::uint16_t upstream, std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"--upstream", upstream_flag(upstream), "--reactors", "2"};
    args.insert(args.end(), more.begin(), more.end());
    return server_process(program("proxy"), args);
}

// The test's own upstream: a listener it accepts from by hand.
struct manual_upstream {
    fd_guard listener = zerg::test::listen_loopback();
    std::uint16_t port = zerg::test::port_of(listener.get());
    fd_guard accept() {
        pollfd p{listener.get(), POLLIN, 0};
        BOOST_REQUIRE_MESSAGE(::poll(&p, 1, 10000) == 1, "the proxy did not connect upstream");
        fd_guard s(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        BOOST_REQUIRE(s.get() >= 0);
        return s;
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(echo_through_the_proxy_is_byte_exact) {
    server_process echo(program("echo"), {"--reactors", "2"});
    auto proxy = start_proxy(echo.port());
    zerg::test::echo_plan plan;
    plan.port = proxy.port();
    plan.connections = 32;
    plan.message_size = 16 * 1024;
    plan.messages = 32;  // 512 KiB each way per connection, pipelined
    auto out = zerg::test::run_echo(plan);
    zerg::test::check(out, std::uint64_t{plan.connections} * plan.message_size * plan.messages);
    BOOST_CHECK_EQUAL(proxy.stop(), 0);
    BOOST_CHECK_EQUAL(echo.stop(), 0);
}

// Queues of 16 KiB against streams of 8 MiB: each side's reading pauses
// and resumes many times, in both directions, and nothing is lost.
BOOST_AUTO_TEST_CASE(backpressure_both_ways_keeps_every_byte) {
    server_process echo(program("echo"), {"--max-output", "16384"});
    auto proxy = start_proxy(echo.port(), {"--max-output", "16384", "--buffer-count", "64"});
    zerg::test::echo_plan plan;
    plan.port = proxy.port();
    plan.connections = 4;
    plan.message_size = 1024 * 1024;
    plan.messages = 8;
    plan.timeout = 60s;
    auto out = zerg::test::run_echo(plan);
    zerg::test::check(out, std::uint64_t{plan.connections} * plan.message_size * plan.messages);
    BOOST_CHECK_EQUAL(proxy.stop(), 0);
}

BOOST_AUTO_TEST_CASE(curl_and_h2load_through_the_proxy) {
    server_process http(program("http_plaintext"), {});
    auto proxy = start_proxy(http.port());
    std::string url = "http://127.0.0.1:" + std::to_string(proxy.port());
    if (!zerg::test::skip_without("curl", "curl")) {
        auto r = zerg::test::run_command("timeout 20 curl -s --max-time 10 " + url + "/plaintext " + url + "/plaintext");
        BOOST_CHECK_EQUAL(r.status, 0);
        BOOST_CHECK_EQUAL(r.output, "Hello, World!Hello, World!");
    }
    if (!zerg::test::skip_without("h2load", "nghttp2-client")) {
        auto r = zerg::test::run_command("timeout 60 h2load --h1 -n 4000 -c 16 -m 8 " + url + "/plaintext");
        BOOST_CHECK_EQUAL(r.status, 0);
        BOOST_CHECK_MESSAGE(r.output.find("4000 succeeded, 0 failed, 0 errored") != std::string::npos, r.output);
    }
    BOOST_CHECK_EQUAL(proxy.stop(), 0);
}

// The client's FIN reaches the upstream while the upstream's answer still
// reaches the client; then the upstream's FIN reaches the client.
BOOST_AUTO_TEST_CASE(half_close_passes_through_both_ways) {
    manual_upstream up;
    auto proxy = start_proxy(up.port);
    auto client = zerg::test::connect_loopback(proxy.port());
    BOOST_REQUIRE(zerg::test::send_all(client.get(), "ping"));
    BOOST_REQUIRE(::shutdown(client.get(), SHUT_WR) == 0);
    auto server_side = up.accept();
    auto got = zerg::test::read_to_close(server_side.get(), 10s);
    BOOST_CHECK_EQUAL(got.bytes, "ping");
    BOOST_CHECK(got.eof);  // the client's FIN, passed on
    BOOST_REQUIRE(zerg::test::send_all(server_side.get(), "pong"));  // the other way is still open
    server_side.reset();
    auto back = zerg::test::read_to_close(client.get(), 10s);
    BOOST_CHECK_EQUAL(back.bytes, "pong");
    BOOST_CHECK(back.eof);
    BOOST_CHECK_EQUAL(proxy.stop(), 0);
}

// The upstream's FIN first: the client sees it and can still send.
BOOST_AUTO_TEST_CASE(upstream_half_close_reaches_the_client) {
    manual_upstream up;
    auto proxy = start_proxy(up.port);
    auto client = zerg::test::connect_loopback(proxy.port());
    auto server_side = up.accept();
    BOOST_REQUIRE(zerg::test::send_all(server_side.get(), "banner"));
    BOOST_REQUIRE(::shutdown(server_side.get(), SHUT_WR) == 0);
    auto got = zerg::test::read_to_close(client.get(), 10s);
    BOOST_CHECK_EQUAL(got.bytes, "banner");
    BOOST_CHECK(got.eof);
    BOOST_REQUIRE(zerg::test::send_all(client.get(), "late"));
    client.reset();
    auto late = zerg::test::read_to_close(server_side.get(), 10s);
    BOOST_CHECK_EQUAL(late.bytes, "late");
    BOOST_CHECK(late.eof);
    BOOST_CHECK_EQUAL(proxy.stop(), 0);
}

BOOST_AUTO_TEST_CASE(a_reset_on_either_side_closes_both) {
    manual_upstream up;
    auto proxy = start_proxy(up.port);
    {
        auto client = zerg::test::connect_loopback(proxy.port());
        auto server_side = up.accept();
        zerg::test::close_with_reset(server_side);
        auto got = zerg::test::read_to_close(client.get(), 10s);
        BOOST_CHECK(got.eof || got.error);
        BOOST_CHECK(!got.timed_out);
    }
    {
        auto client = zerg::test::connect_loopback(proxy.port());
        auto server_side = up.accept();
        zerg::test::close_with_reset(client);
        auto got = zerg::test::read_to_close(server_side.get(), 10s);
        BOOST_CHECK(got.eof || got.error);
        BOOST_CHECK(!got.timed_out);
    }
    BOOST_CHECK_EQUAL(proxy.stop(), 0);
}

// Nothing listens upstream: the client is closed at once, with no bytes.
BOOST_AUTO_TEST_CASE(upstream_down_closes_the_client_cleanly) {
    std::uint16_t port;
    {
        auto probe = zerg::test::listen_loopback();
        port = zerg::test::port_of(probe.get());
    }
    auto proxy = start_proxy(port);
    for (int i = 0; i < 3; ++i) {
        auto client = zerg::test::connect_loopback(proxy.port());
        zerg::test::send_all(client.get(), "anyone?");
        auto got = zerg::test::read_to_close(client.get(), 10s);
        BOOST_CHECK(got.bytes.empty());
        BOOST_CHECK(got.eof || got.error);
        BOOST_CHECK(!got.timed_out);
    }
    BOOST_CHECK_EQUAL(proxy.stop(), 0);
}

// An upstream that never answers the SYN (its accept queue is full; see
// test/reactor/outbound_test.cpp): --connect-timeout-ms closes the client.
BOOST_AUTO_TEST_CASE(silent_upstream_times_out) {
    fd_guard listener = zerg::test::listen_loopback(0);
    std::uint16_t port = zerg::test::port_of(listener.get());
    std::vector<fd_guard> fillers;
    bool full = false;
    for (int i = 0; i < 16 && !full; ++i) {
        fd_guard f(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(f.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno == EINPROGRESS) {
            pollfd p{f.get(), POLLOUT, 0};
            full = ::poll(&p, 1, 300) == 0;
        }
        fillers.push_back(std::move(f));
    }
    if (zerg::test::skip_unless(full, "a loopback listener whose full accept queue drops SYNs")) return;
    auto proxy = start_proxy(port, {"--connect-timeout-ms", "300"});
    auto client = zerg::test::connect_loopback(proxy.port());
    auto got = zerg::test::read_to_close(client.get(), 10s);
    BOOST_CHECK(got.bytes.empty());
    BOOST_CHECK(got.eof);
    BOOST_CHECK(!got.timed_out);
    BOOST_CHECK_EQUAL(proxy.stop(), 0);
}

BOOST_AUTO_TEST_CASE(upstream_is_required) {
    auto r = zerg::test::run_command(program("proxy") + " --port 0 2>&1");
    BOOST_CHECK_EQUAL(r.status, 2);
    BOOST_CHECK(r.output.find("--upstream") != std::string::npos);
}
