// Direct descriptors (server_config::direct_descriptors, doc/direct-descriptors.md):
// with reuse_port each reactor accepts straight into its registered file
// table and every receive, send, shutdown and close names the slot. Checked:
// echo is byte-exact over them with several connections and reactors, the
// path is reported in effect, fd() is -1 and is_direct(); close, lingering
// close, the handler's abort and the peer's reset all work and give their
// slots back (more connections, in rounds, than the table has slots); a
// zero-copy send whose notification is due is reset through the ring where
// zero-copy is on with them (6.7). In acceptor mode with msg_ring_handoff the
// same over MSG_RING's IORING_MSG_SEND_FD (both reactors, slots given back on
// both tables). Hidden (ZERG_URING_HIDE=direct_descriptors or msg_ring),
// without reuse_port, or with RLIMIT_NOFILE below the table, it falls back
// to plain fds, reported, and still echoes.
#define BOOST_TEST_MODULE reactor_direct_descriptors
#include <boost/test/unit_test.hpp>

#include <zerg/zerg.hpp>

#include <support/echo_client.hpp>
#include <support/server_checks.hpp>
#include <support/skip.hpp>
#include <support/sockets.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace uring = zerg::uring;
using namespace std::chrono_literals;

bool under_qemu() { return std::getenv("ZERG_TEST_UNDER_QEMU") != nullptr; }

// What on_open saw, written on reactor threads and read by the test.
std::atomic<int> opens{0};
std::atomic<int> direct_opens{0};      // is_direct(), fd() -1, direct_index() >= 0
std::atomic<int> inconsistent{0};      // is_direct() disagreeing with fd() / direct_index()
std::atomic<int> closes{0};
std::atomic<int> unclean_closes{0};

void reset_counts() {
    opens = direct_opens = inconsistent = closes = unclean_closes = 0;
}

template <class C>
void saw_open(const C& c) {
    ++opens;
    if (c.is_direct()) {
        ++direct_opens;
        if (c.fd() != -1 || c.direct_index() < 0) ++inconsistent;
    } else if (c.fd() < 0 || c.direct_index() != -1) {
        ++inconsistent;
    }
}

// An echo, except for a connection whose first bytes ask for a way to
// close: "!C" a reply then close(), "!L" a reply then lingering_close(),
// "!X" a throw (the reactor aborts the connection: cancel, then close).
struct command_echo {
    struct connection_state {
        bool started = false;
    };
    void on_open(zerg::connection<command_echo>& c) { saw_open(c); }
    void on_data(zerg::connection<command_echo>& c, std::span<const std::byte> bytes) {
        bool first = !std::exchange(c.state().started, true);
        char command = first && bytes.size() >= 2 && bytes[0] == std::byte{'!'} ? static_cast<char>(bytes[1]) : 0;
        switch (command) {
            case 'C':
                c.write("bye\n");
                c.close();
                return;
            case 'L':
                c.write("no\n");
                c.lingering_close();
                return;
            case 'X':
                throw std::runtime_error("asked to fail");
            default:
                c.write(bytes);
        }
    }
    void on_close(zerg::connection<command_echo>&, zerg::close_reason r) {
        if (r) ++unclean_closes;
        ++closes;
    }
};

// Answers its first byte with 8 MiB at once: a large zero-copy send made
// while the peer's window is small.
struct big_reply {
    void on_open(zerg::connection<big_reply>& c) { saw_open(c); }
    void on_data(zerg::connection<big_reply>& c, std::span<const std::byte>) {
        if (c.queued_bytes() > 0) return;
        std::vector<std::byte> eight(std::size_t{8} << 20, std::byte{0x33});
        c.write(eight);
    }
};

std::atomic<int> failed_closes{0};  // on_close with zerg::error::reactor_failed

// A Queue policy that fails for good when told to, at its next wake-up: an
// error the reactor cannot survive (as an io_uring_enter failure would be).
struct failing_handoff : zerg::mpmc_handoff<256> {
    static inline std::atomic<bool> fail{false};
    void on_wake(zerg::uring::ring& ring) {
        if (fail.load()) throw std::runtime_error("injected ring failure");
        zerg::mpmc_handoff<256>::on_wake(ring);
    }
};

struct failing_echo {
    void on_open(zerg::connection<failing_echo>& c) { saw_open(c); }
    void on_data(zerg::connection<failing_echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
    void on_close(zerg::connection<failing_echo>&, zerg::close_reason r) {
        if (r == zerg::make_error_code(zerg::error::reactor_failed)) ++failed_closes;
        ++closes;
    }
};

template <class H>
using reactor = zerg::basic_reactor<zerg::provided_buffers<4096, 256>, zerg::spsc_handoff<1024>, zerg::plain_submission, H>;

zerg::server_config test_config(unsigned reactors = 1, unsigned max_connections = 64) {
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.reactors = reactors;
    config.reuse_port = true;
    config.direct_descriptors = true;
    config.ring_entries = 256;
    config.max_connections = max_connections;
    config.stop_deadline = 2000ms;
    return config;
}

bool listed(const std::vector<std::string>& all, const std::string& prefix) {
    for (auto const& fb : all)
        if (fb.rfind(prefix, 0) == 0) return true;
    return false;
}

template <class R>
void say(const zerg::server<R>& s) {
    std::cout << boost::unit_test::framework::current_test_case().p_name.get() << ": direct descriptors "
              << (s.reactor(0).direct_descriptors() ? "on" : "off") << ", " << direct_opens.load() << " of "
              << opens.load() << " connections direct";
    for (auto const& fb : s.fallbacks()) std::cout << "; fallback " << fb;
    std::cout << '\n';
}

bool hidden_by_environment() {
    if (!uring::is_hidden(uring::feature::direct_descriptors)) return false;
    std::cout << "SKIPPED " << boost::unit_test::framework::current_test_case().p_name.get()
              << ": direct_descriptors hidden by ZERG_URING_HIDE\n";
    return true;
}

// Reads until EOF, a reset, or 10 s; what came. `eof`: a clean EOF.
std::string read_to_end(int fd, bool& eof) {
    std::string got;
    char buf[4096];
    eof = false;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n == 0) eof = true;
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
}

// One connection that sends `first` and reads to the end.
std::string exchange(std::uint16_t port, std::string_view first, bool& eof) {
    auto fd = zerg::test::connect_loopback(port);
    BOOST_REQUIRE(::send(fd.get(), first.data(), first.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(first.size()));
    return read_to_end(fd.get(), eof);
}

}  // namespace

BOOST_AUTO_TEST_CASE(echo_is_exact_over_direct_descriptors) {
    if (hidden_by_environment()) return;
    reset_counts();
    zerg::server<reactor<command_echo>> s(test_config(2));
    s.start();
    for (unsigned i = 0; i < s.reactor_count(); ++i) BOOST_TEST(s.reactor(i).direct_descriptors());
    BOOST_TEST(!listed(s.fallbacks(), "direct_descriptors: "));
    using zerg::test::check;
    // The echo client's connections never start with '!' (a command).
    for (unsigned i = 0; i < 8; ++i) BOOST_REQUIRE(zerg::test::pattern_byte(0x1234u + i * 7919u, 0) != '!');
    check(zerg::test::run_echo({s.port(), 8, 64 * 1024, 4}), 8ull * 64 * 1024 * 4);
    check(zerg::test::run_echo({s.port(), 1, std::size_t{1} << 20, 2}), std::uint64_t{2} << 20);
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(opens.load() == 9);
    BOOST_TEST(direct_opens.load() == 9);
    BOOST_TEST(inconsistent.load() == 0);
    BOOST_TEST(unclean_closes.load() == 0);
    // A graceful stop closes the open ones (close_direct) and unregisters
    // the tables: their peers see EOF.
    std::vector<zerg::test::fd_guard> idle;
    for (int i = 0; i < 4; ++i) idle.push_back(zerg::test::connect_loopback(s.port()));
    BOOST_REQUIRE(zerg::test::eventually([&] { return s.totals().open_connections == 4u; }, 5s));
    s.stop();
    for (auto& p : idle) {
        bool eof = false;
        read_to_end(p.get(), eof);
        BOOST_TEST(eof);
    }
    BOOST_TEST(closes.load() == 13);
}

// The same over an SQPOLL ring (the kernel's thread submits the SQEs that
// name the slots).
BOOST_AUTO_TEST_CASE(echo_is_exact_over_direct_descriptors_with_sqpoll) {
    if (hidden_by_environment()) return;
    reset_counts();
    using R = zerg::basic_reactor<zerg::provided_buffers<4096, 256>, zerg::spsc_handoff<1024>,
                                  zerg::sqpoll_submission<-1, 100>, command_echo>;
    zerg::server<R> s(test_config());
    s.start();
    BOOST_TEST(s.reactor(0).direct_descriptors());
    zerg::test::check(zerg::test::run_echo({s.port(), 4, 64 * 1024, 2}), 4ull * 64 * 1024 * 2);
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(direct_opens.load() == 4);
    s.stop();
}

BOOST_AUTO_TEST_CASE(closes_and_resets_give_their_slots_back) {
    if (hidden_by_environment()) return;
    reset_counts();
    // 8 connections at most: a table of 8 + 64 slots. The rounds open and
    // close far more than that, every way a connection can end.
    zerg::server<reactor<command_echo>> s(test_config(1, 8));
    s.start();
    BOOST_TEST(s.reactor(0).direct_descriptors());
    const int rounds = under_qemu() ? 6 : 12;
    std::vector<std::chrono::steady_clock::duration> close_latencies;
    int expected = 0, expected_unclean = 0;
    for (int round = 0; round < rounds; ++round) {
        zerg::test::check(zerg::test::run_echo({s.port(), 8, 4096, 2}), 8ull * 4096 * 2);
        expected += 8;
        bool eof = false;
        auto asked = std::chrono::steady_clock::now();
        BOOST_TEST(exchange(s.port(), "!C", eof) == "bye\n");  // close()
        BOOST_TEST(eof);
        close_latencies.push_back(std::chrono::steady_clock::now() - asked);
        {
            // lingering_close(): the reply, EOF, while the client still sends.
            auto fd = zerg::test::connect_loopback(s.port());
            BOOST_REQUIRE(::send(fd.get(), "!L", 2, MSG_NOSIGNAL) == 2);
            std::string more(16 * 1024, 'm');
            ::send(fd.get(), more.data(), more.size(), MSG_NOSIGNAL);
            ::shutdown(fd.get(), SHUT_WR);
            BOOST_TEST(read_to_end(fd.get(), eof) == "no\n");
            BOOST_TEST(eof);
        }
        exchange(s.port(), "!X", eof);  // the handler throws: aborted (cancel, close)
        zerg::test::vanish_mid_send(s.port(), 4);  // resets and FINs mid-send
        expected += 3 + 4;
        expected_unclean += 1;  // the throw; the vanished ones may be either
        BOOST_TEST(zerg::test::eventually([&] { return closes.load() == expected; }), "closes " << closes.load());
    }
    zerg::test::check_clean(s);
    say(s);
    // The peer sees a close at once: where the kernel puts a file taken out
    // of the table only later (6.1: up to a second), the reactor shuts the
    // socket down first.
    std::sort(close_latencies.begin(), close_latencies.end());
    auto median = close_latencies[close_latencies.size() / 2];
    std::cout << "  median time from the close request to the peer's EOF: "
              << std::chrono::duration_cast<std::chrono::microseconds>(median).count() << " us\n";
    BOOST_TEST((median < 500ms));
    auto t = s.totals();
    BOOST_TEST(t.accepted == static_cast<std::uint64_t>(expected));
    BOOST_TEST(t.accepted > 8u + zerg::detail::direct_table::headroom);  // every slot was used more than once
    BOOST_TEST(direct_opens.load() == expected);
    BOOST_TEST(inconsistent.load() == 0);
    BOOST_TEST(unclean_closes.load() >= expected_unclean);
    BOOST_TEST(t.closed_handler >= static_cast<std::uint64_t>(rounds));
    s.stop();
}

// A peer that stops reading while a zero-copy send's notification is due:
// the write timeout's teardown resets the socket so the notification comes.
// On a direct descriptor that is the ring's setsockopt, hard-linked before
// close_direct (6.7); before 6.7, or without the socket command, zero-copy
// is off with direct descriptors, reported, and the sends are copied.
BOOST_AUTO_TEST_CASE(zero_copy_with_direct_descriptors_resets_through_the_ring) {
    if (hidden_by_environment()) return;
    reset_counts();
    auto config = test_config();
    config.zero_copy_threshold = 16 * 1024;
    config.write_timeout = 300ms;
    zerg::server<reactor<big_reply>> s(config);
    s.start();
    BOOST_TEST(s.reactor(0).direct_descriptors());
    bool zc_kernel = zerg::detail::kernel_reports_zc_usage() && !uring::is_hidden(uring::feature::send_zc);
    bool with_direct = uring::kernel_release::running().at_least(6, 7) && zerg::detail::kernel_has_socket_commands() &&
                       !uring::is_hidden(uring::feature::ring_socket_ops);
    BOOST_TEST(s.reactor(0).zero_copy() == (zc_kernel && with_direct));
    if (zc_kernel && !with_direct) BOOST_TEST(listed(s.fallbacks(), "send_zc: direct descriptors are in effect"));
    zerg::test::fd_guard c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int small = 4096;
    ::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(s.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    BOOST_REQUIRE(::send(c.get(), "x", 1, MSG_NOSIGNAL) == 1);
    // Never read: the write timeout closes it; the notification then comes.
    BOOST_TEST(zerg::test::eventually([&] { return s.totals().closed_timeout == 1u; }));
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(direct_opens.load() == 1);
    BOOST_TEST(s.totals().zc_sends == (s.reactor(0).zero_copy() ? 1u : 0u));
    s.stop();
}

BOOST_AUTO_TEST_CASE(hidden_direct_descriptors_fall_back_to_plain_fds) {
    uring::scoped_hide hide(uring::feature::direct_descriptors);
    reset_counts();
    zerg::server<reactor<command_echo>> s(test_config());
    s.start();
    BOOST_TEST(!s.reactor(0).direct_descriptors());
    BOOST_TEST(listed(s.fallbacks(), "direct_descriptors: hidden by zerg::uring::hide"));
    zerg::test::check(zerg::test::run_echo({s.port(), 4, 64 * 1024, 2}), 4ull * 64 * 1024 * 2);
    bool eof = false;
    BOOST_TEST(exchange(s.port(), "!C", eof) == "bye\n");
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(opens.load() == 5);
    BOOST_TEST(direct_opens.load() == 0);
    BOOST_TEST(inconsistent.load() == 0);
    s.stop();
}

BOOST_AUTO_TEST_CASE(without_reuse_port_connections_are_plain_fds) {
    reset_counts();
    auto config = test_config();
    config.reuse_port = false;  // the acceptor thread hands over plain fds
    zerg::server<reactor<command_echo>> s(config);
    s.start();
    BOOST_TEST(!s.reactor(0).direct_descriptors());
    if (!uring::is_hidden(uring::feature::direct_descriptors))
        BOOST_TEST(listed(s.fallbacks(), "direct_descriptors: only a reactor with its own listener"));
    zerg::test::check(zerg::test::run_echo({s.port(), 4, 4096, 4}), 4ull * 4096 * 4);
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(direct_opens.load() == 0);
    BOOST_TEST(inconsistent.load() == 0);
    s.stop();
}

// The acceptor thread with msg_ring_handoff: it accepts into its own table
// and a MSG_RING (IORING_MSG_SEND_FD, 6.0) moves each socket into the
// target reactor's table, whose CQE opens a direct connection.
template <class H>
using ring_reactor = zerg::basic_reactor<zerg::provided_buffers<4096, 256>, zerg::msg_ring_handoff, zerg::plain_submission, H>;

zerg::server_config acceptor_config(unsigned reactors, unsigned max_connections = 64) {
    auto config = test_config(reactors, max_connections);
    config.reuse_port = false;
    return config;
}

// Why the MSG_RING path cannot run here (printed as a skip), or empty.
std::string msg_ring_direct_unavailable() {
    if (uring::is_hidden(uring::feature::direct_descriptors)) return "direct_descriptors hidden by ZERG_URING_HIDE";
    return zerg::msg_ring_handoff::direct_unavailable();
}

bool skipped_without_msg_ring_fd() {
    auto why = msg_ring_direct_unavailable();
    if (why.empty()) return false;
    std::cout << "SKIPPED " << boost::unit_test::framework::current_test_case().p_name.get() << ": " << why << '\n';
    return true;
}

BOOST_AUTO_TEST_CASE(acceptor_msg_ring_hands_over_direct_descriptors) {
    if (skipped_without_msg_ring_fd()) return;
    reset_counts();
    zerg::server<ring_reactor<command_echo>> s(acceptor_config(2));
    s.start();
    for (unsigned i = 0; i < s.reactor_count(); ++i) BOOST_TEST(s.reactor(i).direct_descriptors());
    BOOST_TEST(!listed(s.fallbacks(), "direct_descriptors: "));
    BOOST_TEST(!listed(s.fallbacks(), "handoff: "));
    using zerg::test::check;
    for (unsigned i = 0; i < 8; ++i) BOOST_REQUIRE(zerg::test::pattern_byte(0x1234u + i * 7919u, 0) != '!');
    check(zerg::test::run_echo({s.port(), 8, 64 * 1024, 4}), 8ull * 64 * 1024 * 4);
    check(zerg::test::run_echo({s.port(), 1, std::size_t{1} << 20, 2}), std::uint64_t{2} << 20);
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(opens.load() == 9);
    BOOST_TEST(direct_opens.load() == 9);
    BOOST_TEST(inconsistent.load() == 0);
    BOOST_TEST(unclean_closes.load() == 0);
    // Round-robin: both reactors took direct connections.
    for (unsigned i = 0; i < s.reactor_count(); ++i) BOOST_TEST(s.reactor(i).counters().accepted.get() >= 4u);
    BOOST_REQUIRE(s.acceptor_stats());
    BOOST_TEST(s.acceptor_stats()->handoff_failures.get() == 0u);
    BOOST_TEST(s.acceptor_stats()->handoff_retries.get() == 0u);
    // A graceful stop closes the open ones: their peers see EOF.
    std::vector<zerg::test::fd_guard> idle;
    for (int i = 0; i < 4; ++i) idle.push_back(zerg::test::connect_loopback(s.port()));
    BOOST_REQUIRE(zerg::test::eventually([&] { return s.totals().open_connections == 4u; }, 5s));
    s.stop();
    for (auto& p : idle) {
        bool eof = false;
        read_to_end(p.get(), eof);
        BOOST_TEST(eof);
    }
    BOOST_TEST(closes.load() == 13);
}

// More connections, in rounds, than either table (the acceptor's and each
// reactor's: 8 + 64 slots) has slots: every slot comes back on both sides.
BOOST_AUTO_TEST_CASE(acceptor_msg_ring_gives_slots_back_on_both_tables) {
    if (skipped_without_msg_ring_fd()) return;
    reset_counts();
    zerg::server<ring_reactor<command_echo>> s(acceptor_config(2, 8));
    s.start();
    BOOST_TEST(s.reactor(0).direct_descriptors());
    const int rounds = under_qemu() ? 6 : 12;
    int expected = 0;
    for (int round = 0; round < rounds; ++round) {
        zerg::test::check(zerg::test::run_echo({s.port(), 12, 4096, 2}), 12ull * 4096 * 2);
        bool eof = false;
        BOOST_TEST(exchange(s.port(), "!C", eof) == "bye\n");
        BOOST_TEST(eof);
        exchange(s.port(), "!X", eof);  // aborted: cancel, close
        expected += 14;
        BOOST_TEST(zerg::test::eventually([&] { return closes.load() == expected; }), "closes " << closes.load());
    }
    zerg::test::check_clean(s);
    say(s);
    auto t = s.totals();
    BOOST_TEST(t.accepted == static_cast<std::uint64_t>(expected));
    BOOST_TEST(t.accepted > 8u + zerg::detail::direct_table::headroom);  // the acceptor's slots were used more than once
    BOOST_TEST(direct_opens.load() == expected);
    BOOST_TEST(inconsistent.load() == 0);
    BOOST_TEST(s.acceptor_stats()->handoff_failures.get() == 0u);
    s.stop();
}

// A reactor whose table has only `free_slots` slots left: the policy fills
// the rest (with /dev/null) when the reactor sets it up, just after the
// reactor registered its table. A MSG_RING beyond that fails (ENFILE).
struct crowded_handoff : zerg::msg_ring_handoff {
    static inline std::atomic<unsigned> free_slots{~0u};
    static inline std::atomic<int> filled{0};
    void setup(zerg::uring::ring& ring, zerg::inbox_tags tags) {
        zerg::msg_ring_handoff::setup(ring, tags);
        unsigned size = zerg::detail::direct_table::headroom + 8;  // the test's max_connections: 8
        if (free_slots.load() >= size) return;
        int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0) return;
        for (unsigned slot = free_slots.load(); slot < size; ++slot) {
            io_uring_rsrc_update2 up{};
            up.offset = slot;
            up.data = reinterpret_cast<std::uintptr_t>(&null);
            up.nr = 1;
            if (ring.register_op(IORING_REGISTER_FILES_UPDATE2, &up, sizeof up) >= 0) ++filled;
        }
        ::close(null);  // the table holds its own references
    }
};

// A MSG_RING that fails (the target's table is full): the acceptor closes
// its slot and counts it, the client sees the close, the reactor's load is
// right again, and once the reactor's connections close their slots serve
// new ones.
BOOST_AUTO_TEST_CASE(acceptor_msg_ring_failure_closes_and_counts) {
    if (skipped_without_msg_ring_fd()) return;
    reset_counts();
    const unsigned room = 3;
    crowded_handoff::free_slots = room;
    crowded_handoff::filled = 0;
    using R = zerg::basic_reactor<zerg::provided_buffers<4096, 256>, crowded_handoff, zerg::plain_submission, command_echo>;
    zerg::server<R> s(acceptor_config(1, 8));
    s.start();
    crowded_handoff::free_slots = ~0u;
    BOOST_TEST(s.reactor(0).direct_descriptors());
    BOOST_REQUIRE(crowded_handoff::filled.load() == static_cast<int>(8 + zerg::detail::direct_table::headroom - room));
    // Fill the room the reactor has, connections that stay open.
    std::vector<zerg::test::fd_guard> held;
    for (unsigned i = 0; i < room; ++i) held.push_back(zerg::test::connect_loopback(s.port()));
    BOOST_REQUIRE(zerg::test::eventually([&] { return s.totals().open_connections == room; }, 5s));
    // One more: its MSG_RING fails; the client sees the end.
    for (int i = 0; i < 2; ++i) {
        auto fd = zerg::test::connect_loopback(s.port());
        bool eof = false;
        auto t0 = std::chrono::steady_clock::now();
        BOOST_TEST(read_to_end(fd.get(), eof).empty());
        // At once: before 6.12 the acceptor shuts the lost socket down
        // before its close_direct (whose put the kernel delays there).
        auto took = std::chrono::steady_clock::now() - t0;
        std::cout << "  a lost hand-off's client saw the close after "
                  << std::chrono::duration_cast<std::chrono::microseconds>(took).count() << " us\n";
        BOOST_TEST((took < 500ms));
    }
    BOOST_TEST(zerg::test::eventually([&] { return s.acceptor_stats()->handoff_failures.get() == 2u; }, 5s),
               "handoff_failures " << s.acceptor_stats()->handoff_failures.get());
    BOOST_TEST(s.totals().open_connections == room);
    held.clear();  // their slots come back
    BOOST_REQUIRE(zerg::test::eventually([&] { return closes.load() == static_cast<int>(room); }, 5s));
    zerg::test::check(zerg::test::run_echo({s.port(), room, 4096, 2}), std::uint64_t{room} * 4096 * 2);
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(opens.load() == static_cast<int>(2 * room));
    BOOST_TEST(direct_opens.load() == static_cast<int>(2 * room));
    BOOST_TEST(s.acceptor_stats()->handoff_failures.get() == 2u);
    s.stop();
}

// Hidden MSG_RING or direct descriptors: plain fds through the hand-off's
// queue (or a plain MSG_RING), reported, still an exact echo.
void acceptor_msg_ring_falls_back(uring::feature hidden, std::string reported) {
    // Hidden by the environment already: that is the reason reported first.
    if (uring::is_hidden(uring::feature::direct_descriptors)) reported = "direct_descriptors: hidden by zerg::uring::hide";
    uring::scoped_hide hide(hidden);
    reset_counts();
    zerg::server<ring_reactor<command_echo>> s(acceptor_config(2));
    s.start();
    for (unsigned i = 0; i < s.reactor_count(); ++i) BOOST_TEST(!s.reactor(i).direct_descriptors());
    BOOST_TEST(listed(s.fallbacks(), reported));
    zerg::test::check(zerg::test::run_echo({s.port(), 6, 16 * 1024, 2}), 6ull * 16 * 1024 * 2);
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(opens.load() == 6);
    BOOST_TEST(direct_opens.load() == 0);
    BOOST_TEST(inconsistent.load() == 0);
    s.stop();
}

BOOST_AUTO_TEST_CASE(acceptor_msg_ring_hidden_falls_back_to_plain_fds) {
    acceptor_msg_ring_falls_back(uring::feature::msg_ring, "direct_descriptors: only a reactor with its own listener");
}

BOOST_AUTO_TEST_CASE(acceptor_msg_ring_direct_hidden_falls_back_to_plain_fds) {
    acceptor_msg_ring_falls_back(uring::feature::direct_descriptors, "direct_descriptors: hidden by zerg::uring::hide");
}

// The kernel refuses a table larger than RLIMIT_NOFILE (EMFILE): reported,
// with what to do, and the reactor serves plain fds.
BOOST_AUTO_TEST_CASE(a_table_over_the_descriptor_limit_falls_back) {
    if (hidden_by_environment()) return;
    rlimit before{};
    BOOST_REQUIRE(::getrlimit(RLIMIT_NOFILE, &before) == 0);
    rlimit lowered = before;
    lowered.rlim_cur = 256;
    if (before.rlim_cur <= 256) lowered.rlim_cur = before.rlim_cur;
    BOOST_REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
    struct restore {
        rlimit r;
        ~restore() { ::setrlimit(RLIMIT_NOFILE, &r); }
    } at_exit{before};
    reset_counts();
    // 512 connections: 576 slots, over the limit of 256.
    zerg::server<reactor<command_echo>> s(test_config(1, 512));
    s.start();
    BOOST_TEST(!s.reactor(0).direct_descriptors());
    BOOST_TEST(listed(s.fallbacks(), "direct_descriptors: the kernel refused the registered file table (RLIMIT_NOFILE"));
    zerg::test::check(zerg::test::run_echo({s.port(), 2, 4096, 2}), 2ull * 4096 * 2);
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(direct_opens.load() == 0);
    s.stop();
}

// A reactor that fails closes its sockets: every request still in the
// kernel is cancelled (each holds a reference to its socket), plain fds are
// closed and direct slots emptied (the table is left to the ring's
// teardown). The peers see the end within 5 s, not the receive timeout, and
// the handler hears of each connection with reactor_failed. Both paths.
void a_failed_reactor_closes_its_sockets(bool direct) {
    reset_counts();
    failed_closes = 0;
    using R = zerg::basic_reactor<zerg::provided_buffers<4096, 256>, failing_handoff, zerg::plain_submission, failing_echo>;
    zerg::server<R> s(test_config());
    s.start();
    BOOST_TEST(s.reactor(0).direct_descriptors() == direct);
    std::vector<zerg::test::fd_guard> peers;
    for (int i = 0; i < 3; ++i) peers.push_back(zerg::test::connect_loopback(s.port()));
    BOOST_REQUIRE(zerg::test::eventually([&] { return s.totals().open_connections == 3u; }, 5s));
    failing_handoff::fail = true;
    s.post(0, [](R&) {});  // wakes it: on_wake throws
    BOOST_TEST(s.wait_for_failure(5000ms), "the failure was not told");
    for (auto& p : peers) {
        timeval tv{5, 0};
        ::setsockopt(p.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char byte;
        ssize_t n = ::recv(p.get(), &byte, 1, 0);
        int e = n < 0 ? errno : 0;
        BOOST_TEST((n == 0 || (n < 0 && e != EAGAIN && e != EWOULDBLOCK)), "recv " << n << ", errno " << e);
    }
    BOOST_TEST(failed_closes.load() == 3);
    BOOST_TEST(direct_opens.load() == (direct ? 3 : 0));
    failing_handoff::fail = false;
    BOOST_CHECK_THROW(s.stop(), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(a_failed_reactor_closes_its_direct_sockets) {
    if (hidden_by_environment()) return;
    a_failed_reactor_closes_its_sockets(true);
}

BOOST_AUTO_TEST_CASE(a_failed_reactor_closes_its_plain_sockets) {
    uring::scoped_hide hide(uring::feature::direct_descriptors);
    a_failed_reactor_closes_its_sockets(false);
}
