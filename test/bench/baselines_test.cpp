// The benchmark's reference servers (epoll, hand-written liburing) must echo
// correctly, or comparing zerg against them means nothing: every echoed byte
// is checked, vanished clients are closed and forgotten, stop() is prompt.
#define BOOST_TEST_MODULE baselines
#include <boost/test/unit_test.hpp>

#include "../../example/bench/baseline_epoll.hpp"
#include "../../example/bench/baseline_liburing.hpp"

#include <boost/mpl/list.hpp>

#include <support/echo_client.hpp>
#include <support/sockets.hpp>

#include <fcntl.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

namespace {

using servers = boost::mpl::list<baseline::epoll_echo_server, baseline::liburing_echo_server>;

constexpr unsigned threads = 2;

void check(const zerg::test::echo_outcome& o, std::uint64_t expected_bytes) {
    BOOST_TEST(o.error.empty(), o.error);
    BOOST_TEST(!o.timed_out);
    BOOST_TEST(o.mismatches == 0u);
    BOOST_TEST(o.bytes_verified == expected_bytes);
}

// The servers keep no counters; the process's open descriptors tell whether
// they closed the sockets of clients that went away.
std::size_t open_fds() {
    std::size_t n = 0;
    for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

// Waits (bounded) for `fd` to become readable and reads what is there:
// the byte count, 0 at EOF, -1 on error or timeout.
ssize_t read_within(int fd, void* buffer, std::size_t size, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return -1;
    return ::recv(fd, buffer, size, MSG_DONTWAIT);
}

// The server ended this connection: EOF or a reset arrives in time.
bool sees_end(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<char> sink(256 * 1024);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) != 1) continue;
        ssize_t r = ::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return true;
    }
}

// A client that writes a lot before it reads anything: the server must hold
// back (epoll: stop reading; liburing: run out of buffers, ENOBUFS, re-arm)
// and still return every byte, in order, once the client reads.
struct slow_reader_result {
    std::uint64_t pushed_first = 0, received = 0, mismatches = 0;
};

slow_reader_result write_first_then_read(std::uint16_t port, std::uint64_t total) {
    using zerg::test::pattern_byte;
    auto c = zerg::test::connect_loopback(port);
    ::fcntl(c.get(), F_SETFL, ::fcntl(c.get(), F_GETFL) | O_NONBLOCK);
    std::vector<std::uint8_t> buffer(256 * 1024);
    slow_reader_result out;
    std::uint64_t sent = 0;
    auto send_some = [&] {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), total - sent));
        for (std::size_t k = 0; k < n; ++k) buffer[k] = pattern_byte(9, sent + k);
        ssize_t w = ::send(c.get(), buffer.data(), n, MSG_NOSIGNAL);
        if (w > 0) sent += static_cast<std::uint64_t>(w);
    };
    zerg::test::eventually(
        [&] {
            send_some();
            return sent == total;
        },
        std::chrono::milliseconds(1000));
    out.pushed_first = sent;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (out.received < total && std::chrono::steady_clock::now() < deadline) {
        pollfd p{c.get(), static_cast<short>(POLLIN | (sent < total ? POLLOUT : 0)), 0};
        ::poll(&p, 1, 100);
        ssize_t r = ::recv(c.get(), buffer.data(), buffer.size(), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
        for (ssize_t k = 0; k < r; ++k)
            out.mismatches += buffer[static_cast<std::size_t>(k)] != pattern_byte(9, out.received + static_cast<std::uint64_t>(k));
        if (r > 0) out.received += static_cast<std::uint64_t>(r);
        if (sent < total) send_some();
    }
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(one_connection_message_sizes, S, servers) {
    S s("127.0.0.1", 0, threads);
    s.start();
    BOOST_TEST(s.port() != 0);
    for (std::size_t size : {std::size_t{1}, std::size_t{4096}, std::size_t{1} << 20, std::size_t{4} << 20}) {
        auto o = zerg::test::run_echo({s.port(), 1, size, 1});
        BOOST_TEST_CONTEXT("message of " << size << " bytes") check(o, size);
    }
    s.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hundred_connections_pipelined, S, servers) {
    S s("127.0.0.1", 0, threads);
    s.start();
    auto o = zerg::test::run_echo({s.port(), 100, 700, 16});
    check(o, 100ull * 700 * 16);
    BOOST_TEST(o.connections_done == 100u);
    s.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(slow_reader_gets_every_byte, S, servers) {
    S s("127.0.0.1", 0, threads);
    s.start();
    // Four times the liburing server's buffer pool per thread.
    const std::uint64_t total = std::uint64_t{16} << 20;
    auto r = write_first_then_read(s.port(), total);
    BOOST_TEST_MESSAGE("wrote " << r.pushed_first << " bytes before reading");
    BOOST_TEST(r.received == total);
    BOOST_TEST(r.mismatches == 0u);
    // Other clients are served afterwards.
    check(zerg::test::run_echo({s.port(), 4, 1000, 4}), 4ull * 1000 * 4);
    s.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(clients_vanish_mid_send, S, servers) {
    S s("127.0.0.1", 0, threads);
    s.start();
    const std::size_t fds_when_idle = open_fds();
    zerg::test::vanish_mid_send(s.port(), 60);
    bool closed = zerg::test::eventually([&] { return open_fds() <= fds_when_idle; });
    BOOST_TEST(closed, open_fds() - fds_when_idle << " server sockets still open");
    // And the server still serves.
    check(zerg::test::run_echo({s.port(), 4, 1000, 4}), 4ull * 1000 * 4);
    BOOST_TEST(zerg::test::eventually([&] { return open_fds() <= fds_when_idle; }));
    s.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stop_is_prompt_with_clients_connected, S, servers) {
    S s("127.0.0.1", 0, threads);
    s.start();
    const std::uint16_t port = s.port();

    // Idle clients, each one known to be served.
    std::vector<zerg::test::fd_guard> idle;
    for (int i = 0; i < 8; ++i) {
        idle.push_back(zerg::test::connect_loopback(port));
        char out = static_cast<char>('a' + i), in = 0;
        BOOST_TEST(::send(idle.back().get(), &out, 1, MSG_NOSIGNAL) == 1);
        BOOST_TEST(read_within(idle.back().get(), &in, 1, std::chrono::seconds(5)) == 1);
        BOOST_TEST(in == out);
    }

    // A client that writes and never reads: the server's sends to it stall.
    auto stalled = zerg::test::connect_loopback(port);
    std::vector<std::byte> block(64 * 1024, std::byte{0x33});
    std::uint64_t pushed = 0;
    zerg::test::eventually(
        [&] {
            ssize_t w = ::send(stalled.get(), block.data(), block.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) pushed += static_cast<std::uint64_t>(w);
            return pushed >= (std::uint64_t{32} << 20);
        },
        std::chrono::milliseconds(500));

    // And traffic in flight when stop() comes.
    zerg::test::echo_outcome outcome;
    std::thread client([&] {
        try {
            outcome = zerg::test::run_echo({port, 8, 64 * 1024, 64, std::chrono::milliseconds(10000)});
        } catch (const std::exception& e) {
            outcome.error = e.what();
        }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));

    auto started = std::chrono::steady_clock::now();
    s.stop();
    auto took = std::chrono::steady_clock::now() - started;
    client.join();
    BOOST_TEST(took < std::chrono::seconds(2),
               std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
    BOOST_TEST(!outcome.timed_out);
    BOOST_TEST(outcome.mismatches == 0u);
    for (auto& c : idle) BOOST_TEST(sees_end(c.get()));
    BOOST_TEST(sees_end(stalled.get()));
    BOOST_CHECK_THROW(zerg::test::connect_loopback(port), std::runtime_error);
    s.stop();  // a second stop is harmless
}

BOOST_AUTO_TEST_CASE_TEMPLATE(start_fails_cleanly_on_a_taken_port, S, servers) {
    // A listener without SO_REUSEPORT: no one may join its port.
    auto taken = zerg::test::listen_loopback();
    S s("127.0.0.1", zerg::test::port_of(taken.get()), threads);
    BOOST_CHECK_THROW(s.start(), std::system_error);
    s.stop();
    S bad("not an address", 0, threads);
    BOOST_CHECK_THROW(bad.start(), std::system_error);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(restart_after_stop, S, servers) {
    S s("127.0.0.1", 0, threads);
    s.start();
    check(zerg::test::run_echo({s.port(), 4, 100, 4}), 4ull * 100 * 4);
    s.stop();
    s.start();  // on the same port again
    check(zerg::test::run_echo({s.port(), 4, 100, 4}), 4ull * 100 * 4);
}
