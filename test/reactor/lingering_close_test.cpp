// connection::lingering_close(): the reply goes out, the sending side shuts,
// and what the peer still sends is read and dropped until its EOF, so a
// client in the middle of a large upload reads the refusal instead of
// meeting a reset. Checked for each handler kind: every one of the client's
// sends succeeds, it reads exactly the reply then EOF, the close reason is
// clean, and every buffer is back. Then the bound: a peer that keeps
// trickling is closed when the read timeout passes.
#define BOOST_TEST_MODULE reactor_lingering_close
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <zerg/zerg.hpp>

#include <support/server_checks.hpp>
#include <support/sockets.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

namespace {

using namespace std::chrono_literals;

// Counted by every handler: closes and those whose reason was not clean.
std::atomic<int> closes{0};
std::atomic<int> unclean_closes{0};

// Each refuses at the first byte it sees and lingers.
constexpr std::string_view reply = "refused\n";

struct span_refuser {
    void on_data(zerg::connection<span_refuser>& c, std::span<const std::byte>) {
        c.write(reply);
        c.lingering_close();
    }
    void on_close(zerg::connection<span_refuser>&, zerg::close_reason r) {
        if (r) ++unclean_closes;
        ++closes;
    }
};

struct sequence_refuser {
    void on_data(zerg::connection<sequence_refuser>& c, zerg::buffer_sequence&) {
        // Leaves the input unconsumed: lingering drops it.
        c.write(reply);
        c.lingering_close();
    }
    void on_close(zerg::connection<sequence_refuser>&, zerg::close_reason r) {
        if (r) ++unclean_closes;
        ++closes;
    }
};

struct coroutine_refuser {
    zerg::task serve(zerg::connection<coroutine_refuser>& c) {
        auto [in, closed] = co_await c.read();
        if (closed) co_return;
        c.write(reply);
        c.lingering_close();
        // Reading after it says closed at once, with the input dropped.
        auto after = co_await c.read();
        if (!after.closed) c.write("read() after lingering_close() did not say closed\n");
    }
    void on_close(zerg::connection<coroutine_refuser>&, zerg::close_reason r) {
        if (r) ++unclean_closes;
        ++closes;
    }
};

template <class H>
using reactor = zerg::basic_reactor<zerg::provided_buffers<4096, 64>, zerg::spsc_handoff<1024>, zerg::plain_submission, H>;
using refusers = boost::mpl::list<reactor<span_refuser>, reactor<sequence_refuser>, reactor<coroutine_refuser>>;

zerg::server_config test_config(std::chrono::milliseconds read_timeout) {
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.port = 0;
    config.reactors = 1;
    config.ring_entries = 256;
    config.max_connections = 64;
    config.read_timeout = read_timeout;
    config.stop_deadline = 2000ms;
    return config;
}

// Reads until EOF (or an error, or 10 s); what came.
std::string read_to_eof(int fd, bool& eof) {
    std::string got;
    char buf[4096];
    eof = false;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n == 0) {
            eof = true;
            break;
        }
        if (n < 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(an_upload_in_progress_reads_the_reply, R, refusers) {
    closes = 0;
    unclean_closes = 0;
    zerg::server<R> s(test_config(10s));
    s.start();
    auto fd = zerg::test::connect_loopback(s.port());
    timeval bound{10, 0};  // a send blocked this long fails the test instead of hanging it
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
    constexpr std::size_t upload = 4u << 20;
    std::string chunk(64 * 1024, 'u');
    std::size_t sent = 0;
    int error = 0;
    while (sent < upload) {
        ssize_t n = ::send(fd.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n <= 0) {
            error = errno;
            break;
        }
        sent += static_cast<std::size_t>(n);
    }
    BOOST_TEST(sent >= upload, "a send failed after " << sent << " bytes: " << std::strerror(error));
    ::shutdown(fd.get(), SHUT_WR);
    bool eof = false;
    BOOST_TEST(read_to_eof(fd.get(), eof) == reply);
    BOOST_TEST(eof);
    fd.reset();
    BOOST_TEST(zerg::test::eventually([] { return closes.load() == 1; }));
    BOOST_TEST(unclean_closes.load() == 0);
    zerg::test::check_clean(s);
    BOOST_TEST(s.totals().bytes_in >= upload);  // the upload was read, not left to the kernel
    s.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_trickling_peer_is_closed_at_the_read_timeout, R, refusers) {
    closes = 0;
    unclean_closes = 0;
    zerg::server<R> s(test_config(600ms));
    s.start();
    auto fd = zerg::test::connect_loopback(s.port());
    auto start = std::chrono::steady_clock::now();
    BOOST_REQUIRE(::send(fd.get(), "x", 1, MSG_NOSIGNAL) == 1);
    // A byte every 50 ms, far more often than the timeout: none extends it.
    bool reset = false;
    while (!reset && std::chrono::steady_clock::now() - start < 15s) {
        ::poll(nullptr, 0, 50);
        reset = ::send(fd.get(), "x", 1, MSG_NOSIGNAL) < 0 && (errno == ECONNRESET || errno == EPIPE);
    }
    BOOST_TEST(reset, "still lingering after 15 s with a 600 ms read timeout");
    BOOST_TEST(zerg::test::eventually([] { return closes.load() == 1; }));
    BOOST_TEST(unclean_closes.load() == 1);  // ETIMEDOUT: the lingering ran out
    zerg::test::check_clean(s);
    s.stop();
}
