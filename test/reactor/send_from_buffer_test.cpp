// Sending from the receive buffer (connection::write_from): bytes that sit
// in a provided buffer are sent without a copy, in order with copied
// writes, and the buffer goes back to the kernel's ring only when its send
// completed or the connection was torn down. Every echoed byte is checked;
// after each case every buffer is back (buffers_in_use 0).
#define BOOST_TEST_MODULE reactor_send_from_buffer
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <zerg/zerg.hpp>

#include <support/echo_client.hpp>
#include <support/server_checks.hpp>
#include <support/sockets.hpp>

#include <poll.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

// (c) ring items, echoed by reference.
struct item_echo {
    void on_ring_item(zerg::connection<item_echo>& c, zerg::ring_item item) {
        c.write_from(item);
        c.release(item);
    }
};

// Each item framed: a copied 4-byte length, then its bytes in three pieces:
// the first half by reference, up to 3 copied bytes, the rest by reference.
// A client that strips the frames gets its stream back only if copied and
// referenced writes kept their order.
struct framed_echo {
    void on_ring_item(zerg::connection<framed_echo>& c, zerg::ring_item item) {
        std::uint32_t n = item.size;
        c.write(std::span<const std::byte>(reinterpret_cast<const std::byte*>(&n), sizeof n));
        std::size_t half = item.size / 2, copied = std::min<std::size_t>(3, item.size - half);
        c.write_from(item, 0, half);
        c.write(item.bytes().subspan(half, copied));
        c.write_from(item, half + copied, item.size);
        c.release(item);
    }
};

// (b) a line protocol: each line "text\n" comes back as "<text>\n", the
// brackets copied, the text by reference to the sequence's buffers (a line
// may span several buffers, or sit partly in spilled memory).
struct line_echo {
    void on_data(zerg::connection<line_echo>& c, zerg::buffer_sequence& in) {
        while (auto end = in.find(std::byte{'\n'})) {
            c.write("<");
            c.write_from(in.slice(0, *end));
            c.write(">\n");
            in.consume(*end + 1);
        }
    }
};

using provided = zerg::provided_buffers<4096, 256>;
using incremental = zerg::incremental_buffers<16384, 64>;
template <class B, class H>
using reactor = zerg::basic_reactor<B, zerg::spsc_handoff<1024>, zerg::plain_submission, H>;
using echo_reactors = boost::mpl::list<reactor<provided, item_echo>, reactor<incremental, item_echo>>;

bool under_qemu() { return std::getenv("ZERG_TEST_UNDER_QEMU") != nullptr; }

zerg::server_config test_config() {
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.port = 0;
    config.reactors = 1;
    config.ring_entries = 256;
    config.max_connections = 512;
    config.stop_deadline = std::chrono::milliseconds(2000);
    return config;
}

template <class R>
void announce(const zerg::server<R>& s) {
    std::cout << R::policy_names();
    for (auto const& fb : s.fallbacks()) std::cout << "; fallback " << fb;
    std::cout << '\n';
}

using zerg::test::check;
using zerg::test::check_clean;

// Sends each input on its own connection while reading, until `expected[i]`
// bytes came back on each (or the timeout); returns what came back.
std::vector<std::string> exchange(std::uint16_t port, const std::vector<std::string>& inputs,
                                  const std::vector<std::size_t>& expected,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::vector<zerg::test::fd_guard> fds;
    std::vector<std::size_t> sent(inputs.size(), 0);
    std::vector<std::string> out(inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        fds.push_back(zerg::test::connect_loopback(port));
        ::fcntl(fds.back().get(), F_SETFL, ::fcntl(fds.back().get(), F_GETFL) | O_NONBLOCK);
    }
    std::vector<char> scratch(128 * 1024);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        std::vector<pollfd> p;
        for (std::size_t i = 0; i < fds.size(); ++i)
            if (out[i].size() < expected[i])
                p.push_back({fds[i].get(), static_cast<short>(POLLIN | (sent[i] < inputs[i].size() ? POLLOUT : 0)), 0});
        if (p.empty()) break;
        ::poll(p.data(), p.size(), 100);
        for (std::size_t i = 0; i < fds.size(); ++i) {
            if (sent[i] < inputs[i].size()) {
                ssize_t w = ::send(fds[i].get(), inputs[i].data() + sent[i], inputs[i].size() - sent[i], MSG_NOSIGNAL);
                if (w > 0) sent[i] += static_cast<std::size_t>(w);
            }
            ssize_t r;
            while ((r = ::recv(fds[i].get(), scratch.data(), scratch.size(), 0)) > 0) out[i].append(scratch.data(), static_cast<std::size_t>(r));
        }
    }
    return out;
}

std::string pattern(std::uint32_t seed, std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t k = 0; k < n; ++k) s[k] = static_cast<char>(zerg::test::pattern_byte(seed, k));
    return s;
}

// Nonblocking client that sends without reading (a reader that stalls).
// Its receive buffer is left as it is: a tiny one (SO_RCVBUF 4 KiB) under
// loopback's 64 KiB MSS stalls TCP itself for seconds once it reads again.
zerg::test::fd_guard stalled_client(std::uint16_t port) {
    auto c = zerg::test::connect_loopback(port);
    ::fcntl(c.get(), F_SETFL, ::fcntl(c.get(), F_GETFL) | O_NONBLOCK);
    return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(large_messages_echo_byte_exact, R, echo_reactors) {
    zerg::server<R> s(test_config());
    s.start();
    announce(s);
    for (std::size_t size : {std::size_t{1}, std::size_t{4096}, std::size_t{65537}, std::size_t{1} << 20,
                             std::size_t{4} << 20}) {
        if (under_qemu() && size > (std::size_t{1} << 20)) continue;
        auto o = zerg::test::run_echo({s.port(), 1, size, 1});
        BOOST_TEST_CONTEXT("message of " << size << " bytes") check(o, size);
    }
    check_clean(s);
    // Nothing was copied into the outbound queue: every receive went out by reference.
    auto t = s.totals();
    BOOST_TEST(t.buffer_writes > 0u);
    BOOST_TEST(t.bytes_out == t.bytes_in);
    s.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(pipelined_connections_echo_byte_exact, R, echo_reactors) {
    zerg::server<R> s(test_config());
    s.start();
    announce(s);
    auto o = zerg::test::run_echo({s.port(), 100, 700, 32});
    check(o, 100ull * 700 * 32);
    BOOST_TEST(o.connections_done == 100u);
    check_clean(s);
    BOOST_TEST(s.totals().buffer_writes > 0u);
    s.stop();
}

BOOST_AUTO_TEST_CASE(copied_and_referenced_writes_keep_their_order) {
    auto config = test_config();
    config.buffer_size = 1024;  // many items per message
    config.buffer_count = 64;
    zerg::server<reactor<provided, framed_echo>> s(config);
    s.start();
    std::vector<std::string> inputs;
    for (std::uint32_t i = 0; i < 8; ++i) inputs.push_back(pattern(i + 1, 300 * 1024 + i * 777));
    // Each item is framed with 4 bytes; the count of items is not known in
    // advance, so read until the frames' payloads add up to the input.
    std::vector<std::string> got;
    {
        std::vector<zerg::test::fd_guard> fds;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            fds.push_back(zerg::test::connect_loopback(s.port()));
            ::fcntl(fds.back().get(), F_SETFL, ::fcntl(fds.back().get(), F_GETFL) | O_NONBLOCK);
        }
        std::vector<std::size_t> sent(inputs.size(), 0);
        std::vector<std::string> raw(inputs.size()), stripped(inputs.size());
        std::vector<std::size_t> parsed(inputs.size(), 0);
        std::vector<char> scratch(64 * 1024);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        auto done = [&] {
            for (std::size_t i = 0; i < inputs.size(); ++i)
                if (stripped[i].size() < inputs[i].size()) return false;
            return true;
        };
        bool malformed = false;
        while (!done() && !malformed && std::chrono::steady_clock::now() < deadline) {
            std::vector<pollfd> p;
            for (std::size_t i = 0; i < fds.size(); ++i)
                p.push_back({fds[i].get(), static_cast<short>(POLLIN | (sent[i] < inputs[i].size() ? POLLOUT : 0)), 0});
            ::poll(p.data(), p.size(), 100);
            for (std::size_t i = 0; i < fds.size(); ++i) {
                if (sent[i] < inputs[i].size()) {
                    ssize_t w = ::send(fds[i].get(), inputs[i].data() + sent[i], inputs[i].size() - sent[i], MSG_NOSIGNAL);
                    if (w > 0) sent[i] += static_cast<std::size_t>(w);
                }
                ssize_t r;
                while ((r = ::recv(fds[i].get(), scratch.data(), scratch.size(), 0)) > 0)
                    raw[i].append(scratch.data(), static_cast<std::size_t>(r));
                // Strip complete frames.
                for (;;) {
                    if (raw[i].size() - parsed[i] < 4) break;
                    std::uint32_t n;
                    std::memcpy(&n, raw[i].data() + parsed[i], 4);
                    if (n == 0 || n > config.buffer_size) {
                        malformed = true;
                        break;
                    }
                    if (raw[i].size() - parsed[i] - 4 < n) break;
                    stripped[i].append(raw[i], parsed[i] + 4, n);
                    parsed[i] += 4 + n;
                }
            }
        }
        BOOST_TEST(!malformed);
        got = stripped;
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) BOOST_TEST_CONTEXT("connection " << i) BOOST_TEST((got[i] == inputs[i]));
    check_clean(s);
    BOOST_TEST(s.totals().buffer_writes > 0u);
    s.stop();
}

BOOST_AUTO_TEST_CASE(sequence_slices_across_buffers_and_spill) {
    auto config = test_config();
    config.buffer_size = 512;  // lines span buffers; the ring runs low, so input spills
    config.buffer_count = 16;
    zerg::server<reactor<provided, line_echo>> s(config);
    s.start();
    std::vector<std::string> inputs;
    std::vector<std::size_t> sizes;
    std::vector<std::string> expected;
    for (std::uint32_t i = 0; i < 8; ++i) {
        std::string in, want;
        std::uint64_t k = 0;
        while (in.size() < 200 * 1024) {
            std::size_t len = 1 + zerg::test::pattern_byte(i + 100, k++) * 7;  // 1..1786: some span 4 buffers
            std::string line;
            for (std::size_t j = 0; j < len; ++j) line += static_cast<char>('a' + zerg::test::pattern_byte(i, k + j) % 26);
            k += len;
            in += line + "\n";
            want += "<" + line + ">\n";
        }
        inputs.push_back(in);
        sizes.push_back(want.size());
        expected.push_back(want);
    }
    auto got = exchange(s.port(), inputs, sizes);
    for (std::size_t i = 0; i < inputs.size(); ++i) BOOST_TEST_CONTEXT("connection " << i) BOOST_TEST((got[i] == expected[i]));
    check_clean(s);
    BOOST_TEST(s.totals().buffer_writes > 0u);
    s.stop();
}

// A tiny ring and readers that stall: their echoes would hold every buffer
// if write_from() kept referencing them, and every other connection of the
// reactor would starve. Past a quarter of the ring left (or 16 buffers per
// connection) the echoes are copied instead: each stalled connection fills
// its queue and pauses, buffers stay free, and a new client is served
// while they stall. Once the readers read, everything arrives byte-exact
// and every buffer comes back; or they reset mid-send, and every buffer
// comes back too.
void stalled_readers_leave_buffers(bool then_reset) {
    auto config = test_config();
    config.buffer_size = 1024;
    config.buffer_count = 8;
    zerg::server<reactor<provided, item_echo>> s(config);
    s.start();
    constexpr std::size_t clients = 6;
    std::vector<zerg::test::fd_guard> fds;
    for (std::size_t i = 0; i < clients; ++i) fds.push_back(stalled_client(s.port()));
    std::vector<std::uint64_t> sent(clients, 0);
    std::cout << "exhaust_the_ring: bundles " << (s.reactor(0).bundles() ? "on" : "off") << '\n';
    std::vector<std::uint8_t> block(16 * 1024);
    // Each sends until every connection paused reading (its queue is full).
    std::uint32_t most_in_use = 0;
    bool stalled = zerg::test::eventually([&] {
        for (std::size_t i = 0; i < clients; ++i) {
            if (sent[i] >= (std::uint64_t{64} << 20)) continue;
            for (std::size_t k = 0; k < block.size(); ++k) block[k] = zerg::test::pattern_byte(static_cast<std::uint32_t>(i), sent[i] + k);
            ssize_t w = ::send(fds[i].get(), block.data(), block.size(), MSG_NOSIGNAL);
            if (w > 0) sent[i] += static_cast<std::uint64_t>(w);
        }
        auto t = s.totals();
        most_in_use = std::max<std::uint32_t>(most_in_use, static_cast<std::uint32_t>(t.buffers_in_use));
        return t.read_pauses >= clients;
    });
    auto t = s.totals();
    BOOST_TEST(stalled, "read pauses " << t.read_pauses << ", buffers in use " << t.buffers_in_use);
    BOOST_TEST(t.buffers_in_use < config.buffer_count, "the stalled sends hold " << t.buffers_in_use << " of "
                                                                                << config.buffer_count << " buffers");
    std::cout << "stalled_readers_leave_buffers: at most " << most_in_use << " of " << config.buffer_count
              << " buffers in use seen\n";
    // Another client is served while they stall.
    check(zerg::test::run_echo({s.port(), 2, 200, 4}), 2ull * 200 * 4);
    if (then_reset) {
        for (auto& fd : fds) zerg::test::close_with_reset(fd);
    } else {
        std::vector<std::uint64_t> received(clients, 0), mismatches(clients, 0);
        bool drained = zerg::test::eventually(
            [&] {
                bool all = true;
                for (std::size_t i = 0; i < clients; ++i) {
                    ssize_t r;
                    while ((r = ::recv(fds[i].get(), block.data(), block.size(), 0)) > 0) {
                        for (ssize_t k = 0; k < r; ++k)
                            mismatches[i] += block[static_cast<std::size_t>(k)] !=
                                             zerg::test::pattern_byte(static_cast<std::uint32_t>(i), received[i] + static_cast<std::uint64_t>(k));
                        received[i] += static_cast<std::uint64_t>(r);
                    }
                    all = all && received[i] == sent[i];
                }
                return all;
            },
            std::chrono::seconds(30));
        auto after = s.totals();
        BOOST_TEST(drained, "buffers in use " << after.buffers_in_use << ", ENOBUFS " << after.enobufs << ", re-arms "
                                              << after.recv_rearms << ", read pauses " << after.read_pauses << ", in "
                                              << after.bytes_in << ", out " << after.bytes_out);
        for (std::size_t i = 0; i < clients; ++i) {
            BOOST_TEST_CONTEXT("client " << i) {
                BOOST_TEST(received[i] == sent[i]);
                BOOST_TEST(mismatches[i] == 0u);
            }
        }
        fds.clear();
    }
    check_clean(s);
    // And the server still serves.
    check(zerg::test::run_echo({s.port(), 4, 5000, 4}), 4ull * 5000 * 4);
    check_clean(s);
    s.stop();
}

BOOST_AUTO_TEST_CASE(stalled_readers_leave_buffers_then_read) { stalled_readers_leave_buffers(false); }
BOOST_AUTO_TEST_CASE(stalled_readers_leave_buffers_then_reset) { stalled_readers_leave_buffers(true); }

BOOST_AUTO_TEST_CASE(peers_vanish_mid_send) {
    zerg::server<reactor<provided, item_echo>> s(test_config());
    s.start();
    zerg::test::vanish_mid_send(s.port(), 60);
    check_clean(s);
    check(zerg::test::run_echo({s.port(), 4, 1000, 4}), 4ull * 1000 * 4);
    check_clean(s);
    s.stop();
}
