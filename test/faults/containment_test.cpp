#define BOOST_TEST_MODULE faults_containment
#include <boost/test/unit_test.hpp>

// A failure stays with its connection: a handler that throws (from any
// callback kind, or with std::bad_alloc) closes that one connection with a
// reason that says so, is counted and reported through the error hook with
// the peer's address, and every other connection on the same reactor is
// served byte-exact. A handler that holds more unconsumed input than
// max_input is closed with zerg::error::input_limit. Memory is given back:
// after a burst of queued output, RSS returns near where it started.

#include "common.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <support/server_checks.hpp>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace zerg::faults;

namespace {

// What the hook and on_close saw.
struct observed {
    std::mutex m;
    std::vector<zerg::error_report> reports;
    std::vector<zerg::close_reason> reasons;
    void report(const zerg::error_report& r) {
        std::lock_guard lock(m);
        if (r.what == zerg::error_report::kind::handler_exception) reports.push_back(r);
    }
    void closed(zerg::close_reason r) {
        std::lock_guard lock(m);
        reasons.push_back(r);
    }
    std::size_t count(zerg::error e) {
        std::lock_guard lock(m);
        return static_cast<std::size_t>(std::count(reasons.begin(), reasons.end(), make_error_code(e)));
    }
};

// The poisoned clients connect from 127.0.0.2 (the good ones from
// 127.0.0.1), so no byte pattern of the good traffic can trigger a throw.
template <class Connection>
bool poisoned(Connection& c) {
    sockaddr_in peer{};
    socklen_t length = sizeof peer;
    if (::getpeername(c.fd(), reinterpret_cast<sockaddr*>(&peer), &length) != 0) return false;
    return peer.sin_addr.s_addr == htonl(0x7f000002);
}

fd_guard connect_from_127_0_0_2(std::uint16_t port) {
    fd_guard fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(0x7f000002);
    BOOST_REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) == 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
    return fd;
}

// Echoes, but a '!' in the bytes makes it throw (or run out of memory).
template <bool BadAlloc>
struct span_thrower {
    observed* seen;
    void on_data(zerg::connection<span_thrower>& c, std::span<const std::byte> bytes) {
        if (poisoned(c)) {
            if constexpr (BadAlloc) throw std::bad_alloc();
            throw std::runtime_error("poisoned message");
        }
        c.write(bytes);
    }
    void on_close(zerg::connection<span_thrower>&, zerg::close_reason r) { seen->closed(r); }
};

struct sequence_thrower {
    observed* seen;
    void on_data(zerg::connection<sequence_thrower>& c, zerg::buffer_sequence& in) {
        for (std::size_t i = 0; i < in.segment_count(); ++i) {
            if (poisoned(c)) throw std::runtime_error("poisoned sequence");
            c.write(in.segment(i));
        }
        in.consume(in.size());
    }
    void on_close(zerg::connection<sequence_thrower>&, zerg::close_reason r) { seen->closed(r); }
};

struct ring_item_thrower {
    observed* seen;
    void on_ring_item(zerg::connection<ring_item_thrower>& c, zerg::ring_item item) {
        if (poisoned(c)) throw std::runtime_error("poisoned ring item");
        c.write(item.bytes());
        c.release(item);
    }
    void on_close(zerg::connection<ring_item_thrower>&, zerg::close_reason r) { seen->closed(r); }
};

// Throws from on_open for every third connection.
struct open_thrower {
    observed* seen;
    std::atomic<int>* opens;
    void on_open(zerg::connection<open_thrower>&) {
        if (opens->fetch_add(1) % 3 == 2) throw std::runtime_error("refused in on_open");
    }
    void on_data(zerg::connection<open_thrower>& c, std::span<const std::byte> bytes) { c.write(bytes); }
    void on_close(zerg::connection<open_thrower>&, zerg::close_reason r) { seen->closed(r); }
};

// Never consumes: a parser waiting for a message that never ends.
struct hoarder {
    observed* seen;
    void on_data(zerg::connection<hoarder>&, zerg::buffer_sequence&) {}
    void on_close(zerg::connection<hoarder>&, zerg::close_reason r) { seen->closed(r); }
};

zerg::server_config hooked(observed& seen) {
    auto config = loopback_config(1);  // one reactor: the good and the bad share it
    config.on_error = [&seen](const zerg::error_report& r) { seen.report(r); };
    return config;
}

// Sends "!" on `bad` connections (from 127.0.0.2) while `good` ones echo `bytes` each; the
// bad ones must see the server close them, the good ones every byte.
template <class R>
void poison_some(zerg::server<R>& s, observed& seen, zerg::error expected) {
    const unsigned good = scaled(16u, 6u), bad = 4;
    std::vector<fd_guard> victims;
    for (unsigned i = 0; i < bad; ++i) victims.push_back(connect_from_127_0_0_2(s.port()));
    for (auto& v : victims) BOOST_REQUIRE(::send(v.get(), "!", 1, MSG_NOSIGNAL) == 1);
    auto o = zerg::test::run_echo({s.port(), good, 4096, scaled(50u, 10u)});
    zerg::test::check(o, std::uint64_t{good} * 4096 * scaled(50u, 10u));
    // Each victim is closed: EOF (or a reset), never a hang.
    for (auto& v : victims) {
        char buf[16];
        timeval tv{5, 0};
        ::setsockopt(v.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = ::recv(v.get(), buf, sizeof buf, 0);
        BOOST_TEST(n <= 0, "a poisoned connection was not closed");
    }
    BOOST_TEST(zerg::test::eventually([&] { return seen.count(expected) == bad; }, 5s),
               "closed with the reason: " << seen.count(expected) << " of " << bad);
    BOOST_TEST(s.totals().handler_exceptions == bad);
    {
        std::lock_guard lock(seen.m);
        BOOST_TEST(seen.reports.size() == bad);
        for (auto const& r : seen.reports) {
            BOOST_TEST(r.peer.rfind("127.0.0.2:", 0) == 0, r.peer);
            BOOST_TEST(!r.message.empty());
            BOOST_TEST(r.code == make_error_code(expected));
        }
    }
    zerg::test::check_clean(s);
    s.stop();
}

}  // namespace

BOOST_AUTO_TEST_CASE(span_handler_exception_closes_only_its_connection) {
    observed seen;
    zerg::server<zerg::reactor<span_thrower<false>>> s(hooked(seen), span_thrower<false>{&seen});
    s.start();
    poison_some(s, seen, zerg::error::handler_exception);
    // The reason still reads as EPROTO to code that checks errno values.
    BOOST_TEST((make_error_code(zerg::error::handler_exception) == std::errc::protocol_error));
}

BOOST_AUTO_TEST_CASE(bad_alloc_in_a_handler_closes_only_its_connection) {
    observed seen;
    zerg::server<zerg::reactor<span_thrower<true>>> s(hooked(seen), span_thrower<true>{&seen});
    s.start();
    poison_some(s, seen, zerg::error::out_of_memory);
}

BOOST_AUTO_TEST_CASE(sequence_handler_exception_closes_only_its_connection) {
    observed seen;
    zerg::server<zerg::reactor<sequence_thrower>> s(hooked(seen), sequence_thrower{&seen});
    s.start();
    poison_some(s, seen, zerg::error::handler_exception);
}

// The buffer of the item that threw goes back to the kernel (check_clean
// sees every buffer in the ring again).
BOOST_AUTO_TEST_CASE(ring_item_handler_exception_returns_its_buffer) {
    observed seen;
    zerg::server<zerg::reactor<ring_item_thrower>> s(hooked(seen), ring_item_thrower{&seen});
    s.start();
    poison_some(s, seen, zerg::error::handler_exception);
}

BOOST_AUTO_TEST_CASE(on_open_exception_closes_only_that_connection) {
    observed seen;
    std::atomic<int> opens{0};
    zerg::server<zerg::reactor<open_thrower>> s(hooked(seen), open_thrower{&seen, &opens});
    s.start();
    // Connections one at a time, so which ones throw is known: the 3rd, 6th, 9th.
    unsigned served = 0, refused = 0;
    for (int i = 0; i < 9; ++i) {
        auto fd = zerg::test::connect_loopback(s.port());
        timeval tv{5, 0};
        ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::send(fd.get(), "ping", 4, MSG_NOSIGNAL);
        char buf[8];
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_WAITALL);
        if (n == 4)
            ++served;
        else
            ++refused;
    }
    BOOST_TEST(served == 6u);
    BOOST_TEST(refused == 3u);
    BOOST_TEST(s.totals().handler_exceptions == 3u);
    zerg::test::check_clean(s);
    s.stop();
}

// More than max_input held unconsumed: that connection closes with the
// limit's reason; a neighbour on the same reactor is served meanwhile.
BOOST_AUTO_TEST_CASE(input_beyond_max_input_closes_with_a_reason) {
    observed seen;
    auto config = hooked(seen);
    config.max_input = 64 * 1024;
    zerg::server<zerg::reactor<hoarder>> hoard(config, hoarder{&seen});
    hoard.start();
    auto fd = zerg::test::connect_loopback(hoard.port());
    std::vector<char> chunk(16 * 1024, 'x');
    std::size_t sent = 0;
    for (int i = 0; i < 64; ++i) {
        ssize_t n = ::send(fd.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) sent += static_cast<std::size_t>(n);
        if (n < 0 && errno != EAGAIN) break;  // closed by the server: expected
        if (n < 0) std::this_thread::sleep_for(5ms);
    }
    BOOST_TEST(sent > config.max_input);
    BOOST_TEST(zerg::test::eventually([&] { return seen.count(zerg::error::input_limit) == 1; }, 5s));
    zerg::test::check_clean(hoard);
    hoard.stop();
}

// A burst of queued output (64 clients that do not read while the server
// answers 1 MiB each) grows the chunk pool; once they read and close, the
// pool gives all but its low-water mark back and the slots their spill.
BOOST_AUTO_TEST_CASE(memory_returns_after_a_burst) {
    auto config = loopback_config(1);
    config.max_write_queue = 2u << 20;
    zerg::server<zerg::reactor<big_span_sender>> s(config);
    s.start();
    (void)reply_pattern();  // the 16 MiB reply source is the test's, made before the idle figure
    auto idle = rss_kib();
    const unsigned clients = scaled(64u, 16u);
    std::uint64_t peak = 0;
    {
        std::vector<fd_guard> fds;
        for (unsigned i = 0; i < clients; ++i) {
            fds.push_back(zerg::test::connect_loopback(s.port()));
            // Ask for 1 MiB and do not read yet.
            std::string ask = "1048576\n";
            ::send(fds.back().get(), ask.data(), ask.size(), MSG_NOSIGNAL);
        }
        zerg::test::eventually([&] { return rss_kib() > idle + clients * 512; }, 3s);
        peak = rss_kib();
        std::vector<char> sink(1 << 16);
        for (auto& fd : fds) {
            timeval tv{5, 0};
            ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            std::size_t got = 0;
            while (got < (1u << 20)) {
                ssize_t n = ::recv(fd.get(), sink.data(), sink.size(), 0);
                if (n <= 0) break;
                got += static_cast<std::size_t>(n);
            }
            BOOST_TEST(got == (1u << 20));
        }
    }
    zerg::test::check_clean(s);
    auto after = rss_kib();
    std::cout << "memory_returns_after_a_burst: RSS idle " << idle << " KiB, peak " << peak << " KiB, after "
              << after << " KiB (" << build_kind << ")\n";
    BOOST_TEST(peak > idle + clients * 256, "the burst did not grow memory, so the test shows nothing");
    // Back within a few MiB of idle: the pool keeps 64 chunks (1 MiB). Not
    // under ASan, whose quarantine keeps what was freed.
    if (zerg::faults::sanitized)
        std::cout << "  (RSS bound not asserted in a sanitizer build: the sanitizer holds freed memory)\n";
    else
        BOOST_TEST(after < idle + 16 * 1024, "RSS stayed at " << after << " KiB after idle " << idle);
    s.stop();
}

// The connection table grows in chunks as connections arrive: a reactor
// allowed 200,000 connections costs little until they come.
BOOST_AUTO_TEST_CASE(a_large_table_costs_nothing_until_used) {
    auto before = rss_kib();
    auto config = loopback_config(1);
    config.max_connections = 200'000;
    zerg::server<zerg::reactor<span_echo>> s(config);
    s.start();
    auto after = rss_kib();
    std::cout << "a_large_table_costs_nothing_until_used: RSS " << before << " -> " << after << " KiB\n";
    // Preallocated, 200,000 slots of ~1 KiB would be ~200 MiB.
    BOOST_TEST(after < before + 32 * 1024);
    zerg::test::check(zerg::test::run_echo({s.port(), 300, 64, 10}), 300ull * 64 * 10);  // past one chunk of 256
    zerg::test::check_clean(s);
    s.stop();
}

namespace {

// A Queue policy that fails for good when told to: the kind of error a
// reactor cannot survive (as an io_uring_enter failure would be).
template <std::size_t Capacity>
struct failing_handoff : zerg::mpmc_handoff<Capacity> {
    static inline std::atomic<int> fail_reactor{-1};
    unsigned index = 0;
    void setup(zerg::uring::ring& ring, zerg::inbox_tags tags) {
        index = tags.reactor;
        zerg::mpmc_handoff<Capacity>::setup(ring, tags);
    }
    void on_wake(zerg::uring::ring& ring) {
        if (fail_reactor.load() == static_cast<int>(index)) throw std::runtime_error("injected ring failure");
        zerg::mpmc_handoff<Capacity>::on_wake(ring);
    }
};

}  // namespace

// A reactor that fails is reported at once, closes its sockets (its peers
// see EOF, not a hang), gets no new connections, and the program can learn
// it without waiting for SIGTERM; the other reactor serves on.
BOOST_AUTO_TEST_CASE(a_failed_reactor_is_reported_and_routed_around) {
    using policy = failing_handoff<256>;
    using R = zerg::reactor<span_echo, zerg::handoff<policy>>;
    std::atomic<int> failures{0};
    auto config = loopback_config(2);
    config.on_error = [&](const zerg::error_report& r) {
        if (r.what == zerg::error_report::kind::reactor_failure && r.reactor == 1) failures.fetch_add(1);
    };
    close_log log;
    span_echo prototype;
    prototype.log = &log;
    zerg::server<R> s(config, prototype);
    s.start();
    // Round robin: connection 0 goes to reactor 0, connection 1 to reactor 1.
    auto on0 = zerg::test::connect_loopback(s.port());
    auto on1 = zerg::test::connect_loopback(s.port());
    BOOST_REQUIRE(zerg::test::eventually([&] { return s.counters(1).open_connections.get() == 1; }, 5s));
    BOOST_TEST(!s.wait_for_failure(std::chrono::milliseconds(0)));

    policy::fail_reactor = 1;
    // Round robin: of the next two, one is handed to reactor 1 and wakes it.
    auto extra0 = zerg::test::connect_loopback(s.port());
    auto extra1 = zerg::test::connect_loopback(s.port());
    BOOST_TEST(s.wait_for_failure(std::chrono::milliseconds(5000)), "the failure was not told");
    BOOST_TEST(failures.load() == 1);
    BOOST_TEST(s.reactor(1).failed());
    // Its connection was closed, not left hanging.
    timeval tv{5, 0};
    ::setsockopt(on1.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char byte;
    BOOST_TEST(::recv(on1.get(), &byte, 1, 0) <= 0);
    // Its handler heard of that connection's end, with the reason.
    BOOST_REQUIRE(zerg::test::eventually([&] { return log.closes() >= 1; }, 5s));
    auto reasons = log.copy();
    BOOST_TEST(std::count(reasons.begin(), reasons.end(), zerg::make_error_code(zerg::error::reactor_failed)) >= 1);
    // New connections all go to reactor 0 and are served.
    zerg::test::check(zerg::test::run_echo({s.port(), 8, 64, 10}), 8ull * 64 * 10);
    BOOST_TEST(::send(on0.get(), "x", 1, MSG_NOSIGNAL) == 1);
    BOOST_TEST(::recv(on0.get(), &byte, 1, MSG_WAITALL) == 1);
    policy::fail_reactor = -1;
    BOOST_CHECK_THROW(s.stop(), std::runtime_error);  // stop() rethrows what the reactor stopped on
}

// Clients that send and never read, against a coroutine echo (the issue's
// 4.94 GB case): the coroutine waits on flush, input past max_input pauses
// reading, so memory per connection stays near the two 1 MiB limits.
static void never_reading_clients_stay_bounded(const char* name, zerg::server_config config) {
    zerg::server<zerg::reactor<coroutine_echo>> s(config);
    s.start();
    auto before = rss_kib();
    const unsigned clients = scaled(20u, 8u);
    std::vector<fd_guard> fds;
    std::vector<char> junk(1 << 16, 'y');
    for (unsigned i = 0; i < clients; ++i) {
        fds.push_back(zerg::test::connect_loopback(s.port()));
        int small = 4096;
        ::setsockopt(fds.back().get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    // Each tries to push 16 MiB; whatever the server does not take stays here.
    std::uint64_t pushed = 0;
    auto until = std::chrono::steady_clock::now() + 2s;
    while (std::chrono::steady_clock::now() < until)
        for (auto& fd : fds) {
            ssize_t n = ::send(fd.get(), junk.data(), junk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) pushed += static_cast<std::uint64_t>(n);
        }
    auto during = rss_kib();
    std::cout << "never_reading_clients_of_a_coroutine_stay_bounded (" << name << "): " << clients << " clients pushed " << (pushed >> 20)
              << " MiB; RSS " << before << " -> " << during << " KiB\n";
    // At most ~ (1 MiB in + 1 MiB out + the ring + slack) per connection. Not under
    // ASan, whose quarantine and redzones hold memory the program freed.
    if (zerg::faults::sanitized)
        std::cout << "  (RSS bound not asserted in a sanitizer build: the sanitizer holds freed memory)\n";
    else
        BOOST_TEST(during < before + clients * 4 * 1024 + 16 * 1024);
    fds.clear();
    zerg::test::check_clean(s);
    s.stop();
}

// A receive bundle can carry every free buffer of the ring, and what was
// received when reading paused is kept (nothing received is dropped): the
// worst case per connection is max_input + max_write_queue + about the
// ring's size (doc/limits.md). So the bound is checked with bundles on and a
// 256 KiB ring, and with the default 4 MiB ring and bundles off.
BOOST_AUTO_TEST_CASE(never_reading_clients_of_a_coroutine_stay_bounded) {
    auto small_ring = loopback_config(1);
    small_ring.buffer_count = 64;
    never_reading_clients_stay_bounded("bundles, 64 x 4 KiB ring", small_ring);
    auto no_bundles = loopback_config(1);
    no_bundles.receive_bundles = false;
    never_reading_clients_stay_bounded("no bundles, default ring", no_bundles);
}
