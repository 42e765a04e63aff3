// The load generator's lock-step mode (bench::load_plan::lock_step), which
// zerg-bench --instructions relies on for a count that does not depend on
// timing: each connection sends exactly its N messages, and the next batch
// of `depth` only once the whole previous batch has come back.
//
// The server here is the test's own: it echoes one message at a time, a few
// milliseconds apart, and checks on every read that the client has not sent
// past the batch it is still answering. The pipelined mode (a message out
// for each one back) must break that rule, so the check is shown to catch it.
#define BOOST_TEST_MODULE lock_step
#include <boost/test/unit_test.hpp>

#include "../../example/bench/load.hpp"

#include <support/sockets.hpp>

#include <fcntl.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

namespace {

struct slow_echo {
    std::size_t size = 0;  // bytes per message
    std::uint64_t depth = 1;  // messages per batch
    std::uint64_t per_connection = 0;

    struct peer {
        zerg::test::fd_guard fd;
        std::vector<char> pending;  // received, not yet echoed
        std::uint64_t received = 0, echoed_messages = 0;
        bool eof = false;
    };
    std::vector<peer> peers;
    std::uint64_t violations = 0;  // reads that went past the batch being answered
    std::size_t max_pending = 0;
    std::atomic<unsigned> ended{0};  // connections whose EOF the server has seen

    // Lock-step allows, once `e` messages are echoed, the rest of the batch
    // holding message e (or the next whole batch when e ends one).
    std::uint64_t allowed_bytes(std::uint64_t e) const { return std::min((e / depth + 1) * depth, per_connection) * size; }

    void run(int listener, const std::atomic<bool>& stop) {
        ::fcntl(listener, F_SETFL, ::fcntl(listener, F_GETFL) | O_NONBLOCK);
        auto next_echo = std::chrono::steady_clock::now();
        std::vector<char> buffer(64 * 1024);
        while (!stop) {
            std::vector<pollfd> fds{{listener, POLLIN, 0}};
            for (auto& p : peers) fds.push_back({p.fd.get(), static_cast<short>(p.eof ? 0 : POLLIN), 0});
            ::poll(fds.data(), fds.size(), 1);
            for (int fd; (fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) {
                peers.push_back({zerg::test::fd_guard(fd), {}, 0, 0, false});
            }
            for (auto& p : peers) {
                if (p.eof) continue;
                ssize_t r = ::recv(p.fd.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
                if (r == 0) {
                    p.eof = true;
                    ++ended;
                }
                if (r <= 0) continue;
                p.pending.insert(p.pending.end(), buffer.data(), buffer.data() + r);
                p.received += static_cast<std::uint64_t>(r);
                if (p.received > allowed_bytes(p.echoed_messages)) ++violations;
                max_pending = std::max(max_pending, p.pending.size());
            }
            // One message per connection every 5 ms: time for a client that
            // answers each echo with a new message to show it.
            if (std::chrono::steady_clock::now() < next_echo) continue;
            next_echo = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
            for (auto& p : peers) {
                if (p.pending.size() < size) continue;
                std::size_t at = 0;
                while (at < size) {  // a message is small: the socket takes it
                    ssize_t w = ::send(p.fd.get(), p.pending.data() + at, size - at, MSG_NOSIGNAL);
                    if (w <= 0) break;
                    at += static_cast<std::size_t>(w);
                }
                p.pending.erase(p.pending.begin(), p.pending.begin() + static_cast<std::ptrdiff_t>(size));
                ++p.echoed_messages;
            }
        }
    }
};

struct outcome {
    bench::load_result load;
    slow_echo server;
};

// An outcome holds an atomic, so it is built in place: a unique_ptr.
std::unique_ptr<outcome> run(bool lock_step, unsigned connections, std::size_t size, unsigned depth,
                             std::uint64_t per_connection) {
    auto result = std::make_unique<outcome>();
    outcome& o = *result;
    o.server.size = size;
    o.server.depth = depth;
    o.server.per_connection = per_connection;
    auto listener = zerg::test::listen_loopback();
    std::atomic<bool> stop{false};
    std::thread server([&] { o.server.run(listener.get(), stop); });
    bench::load_plan plan{zerg::test::port_of(listener.get()), connections, size, depth, std::chrono::milliseconds(0), 0};
    if (lock_step) {
        plan.lock_step = true;
        plan.per_connection = per_connection;
    } else {
        plan.messages = per_connection * connections;
    }
    o.load = bench::run_load(plan);
    // The client has closed: wait (bounded) until the server saw every EOF,
    // so its byte counts are final.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (o.server.ended == connections) break;
    }
    stop = true;
    server.join();
    return result;
}

}  // namespace

BOOST_AUTO_TEST_CASE(each_connection_sends_exactly_its_messages_one_batch_at_a_time) {
    // 10 messages at depth 4: batches of 4, 4 and 2.
    const unsigned connections = 3, depth = 4;
    const std::size_t size = 100;
    const std::uint64_t n = 10;
    auto owner = run(true, connections, size, depth, n);
    auto& o = *owner;
    BOOST_TEST(o.load.failure.empty(), o.load.failure);
    BOOST_TEST(o.load.errors == 0u);
    BOOST_TEST(o.load.messages == n * connections);
    BOOST_TEST_REQUIRE(o.server.peers.size() == connections);
    for (auto& p : o.server.peers) {
        BOOST_TEST(p.eof);
        BOOST_TEST(p.received == n * size);  // exactly N messages, none more
        BOOST_TEST(p.echoed_messages == n);
    }
    BOOST_TEST(o.server.violations == 0u);
    BOOST_TEST(o.server.max_pending <= depth * size);
}

BOOST_AUTO_TEST_CASE(the_pipelined_mode_breaks_the_batch_rule) {
    // The same server against the pipelined mode: a message goes out for each
    // one echoed, before the batch is complete, and the check sees it.
    auto owner = run(false, 3, 100, 4, 10);
    auto& o = *owner;
    BOOST_TEST(o.load.failure.empty(), o.load.failure);
    BOOST_TEST(o.load.messages == 30u);
    BOOST_TEST(o.server.violations > 0u);
}

BOOST_AUTO_TEST_CASE(depth_one_is_strict_ping_pong) {
    auto owner = run(true, 2, 64, 1, 7);
    auto& o = *owner;
    BOOST_TEST(o.load.messages == 14u);
    BOOST_TEST(o.server.violations == 0u);
    BOOST_TEST(o.server.max_pending <= 64u);
    for (auto& p : o.server.peers) BOOST_TEST(p.received == 7u * 64);
}
