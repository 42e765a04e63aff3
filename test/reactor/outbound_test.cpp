// Outbound connections (basic_reactor::connect, doc/outbound.md): a reactor
// connects to a loopback listener over IPv4 and IPv6 and exchanges bytes
// both ways, byte-exact; a refused connect and a timed-out one are reported
// through on_connect_error and leave no slot and no descriptor behind; a
// connect closed before it completes, or a stop while it waits, is
// reported as cancelled; a handler opens an upstream for its client from
// on_open and pairs the two by handle. The first four run with the socket
// made through the ring (5.19) and again with socket(2).
#define BOOST_TEST_MODULE reactor_outbound
#include <boost/test/unit_test.hpp>

#include <zerg/zerg.hpp>

#include <support/skip.hpp>
#include <support/sockets.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

// What the handler saw, shared with the test thread.
struct events {
    std::mutex m;
    std::condition_variable cv;
    std::string received;
    std::vector<std::error_code> connect_errors;
    int opens = 0, closes = 0;
    bool opened_outbound = false;
    std::error_code close_reason;

    template <class Pred>
    bool wait(Pred pred, std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lock(m);
        return cv.wait_for(lock, timeout, [&] { return pred(); });
    }
};
events* seen = nullptr;

struct client {
    void on_open(zerg::connection<client>& c) {
        std::lock_guard lock(seen->m);
        ++seen->opens;
        seen->opened_outbound = c.outbound() && !c.connecting();
        seen->cv.notify_all();
    }
    void on_data(zerg::connection<client>&, std::span<const std::byte> bytes) {
        std::lock_guard lock(seen->m);
        seen->received.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        seen->cv.notify_all();
    }
    void on_connect_error(zerg::connection<client>&, std::error_code e) {
        std::lock_guard lock(seen->m);
        seen->connect_errors.push_back(e);
        seen->cv.notify_all();
    }
    void on_close(zerg::connection<client>&, zerg::close_reason r) {
        std::lock_guard lock(seen->m);
        ++seen->closes;
        seen->close_reason = r;
        seen->cv.notify_all();
    }
};
using client_reactor = zerg::reactor<client>;
using client_server = zerg::server<client_reactor>;

zerg::server_config config(std::chrono::milliseconds connect_timeout = 5s) {
    zerg::server_config c;
    c.address = "127.0.0.1";
    c.reactors = 1;
    c.ring_entries = 64;
    c.max_connections = 16;
    c.connect_timeout = connect_timeout;
    c.stop_deadline = 2s;
    return c;
}

int open_fds() {
    int n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
    return n - 1;  // the directory's own descriptor
}

// Posts a connect to reactor 0, writing `first` at once (before it connects).
std::error_code connect_from_reactor(client_server& s, const zerg::endpoint& to, std::string first = {},
                                     bool close_at_once = false) {
    // Checked here, on the test thread: Boost.Test is not for other threads.
    struct outcome {
        std::error_code ec;
        bool connecting = true, outbound = true;
    };
    std::promise<outcome> result;
    auto done = result.get_future();
    BOOST_REQUIRE(s.post(0, [&](client_reactor& r) {
        outcome o;
        auto* c = r.connect(to, o.ec);
        if (c) {
            o.connecting = c->connecting();
            o.outbound = c->outbound();
            if (!first.empty()) c->write(first);
            if (close_at_once) c->close();
        }
        result.set_value(o);
    }));
    outcome o = done.get();
    BOOST_CHECK(o.connecting);
    BOOST_CHECK(o.outbound);
    return o.ec;
}

bool wait_slots_free(client_server& s) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        if (s.totals().busy_slots == 0) return true;
        std::this_thread::sleep_for(5ms);
    }
    return false;
}

std::string pattern(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 7)) & 0xff);
    return s;
}

void read_exactly(int fd, std::string& out, std::size_t n) {
    out.resize(n);
    std::size_t got = 0;
    while (got < n) {
        pollfd p{fd, POLLIN, 0};
        BOOST_REQUIRE_MESSAGE(::poll(&p, 1, 10000) == 1, "the reactor's bytes did not arrive in time");
        ssize_t r = ::read(fd, out.data() + got, n - got);
        BOOST_REQUIRE(r > 0);
        got += static_cast<std::size_t>(r);
    }
}

// Connects to a listener at `address` and checks bytes both ways.
void exchange(const char* address, int family) {
    events ev;
    seen = &ev;
    zerg::test::fd_guard listener(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    BOOST_REQUIRE(listener.get() >= 0);
    zerg::endpoint where = zerg::endpoint::parse(address, 0, false);
    if (::bind(listener.get(), where.get(), where.length) != 0) {
        zerg::test::skip_unless(false, std::string(address) + " on this host (bind failed)");
        return;
    }
    BOOST_REQUIRE(::listen(listener.get(), 8) == 0);
    where.length = sizeof where.storage;
    ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&where.storage), &where.length);

    client_server s(config());
    s.start();
    const std::string request = pattern(100'000, 1), reply = pattern(300'000, 2);
    BOOST_REQUIRE(!connect_from_reactor(s, where, request));
    zerg::test::fd_guard peer(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    BOOST_REQUIRE(peer.get() >= 0);
    std::string got;
    read_exactly(peer.get(), got, request.size());
    BOOST_CHECK(got == request);  // written while connecting, sent once connected
    BOOST_CHECK(ev.wait([&] { return ev.opens == 1; }));
    BOOST_CHECK(ev.opened_outbound);
    for (std::size_t at = 0; at < reply.size();) {
        ssize_t w = ::write(peer.get(), reply.data() + at, reply.size() - at);
        BOOST_REQUIRE(w > 0);
        at += static_cast<std::size_t>(w);
    }
    BOOST_CHECK(ev.wait([&] { return ev.received.size() >= reply.size(); }));
    {
        std::lock_guard lock(ev.m);
        BOOST_CHECK(ev.received == reply);
    }
    peer.reset();  // the peer's EOF closes the reactor's side
    BOOST_CHECK(ev.wait([&] { return ev.closes == 1; }));
    BOOST_CHECK(!ev.close_reason);
    BOOST_CHECK(ev.connect_errors.empty());
    BOOST_CHECK(wait_slots_free(s));
    s.stop();
}

void refused() {
    events ev;
    seen = &ev;
    // A port that was just bound and released: nothing listens there.
    zerg::endpoint where;
    {
        auto probe = zerg::test::listen_loopback();
        where = zerg::endpoint::parse("127.0.0.1", zerg::test::port_of(probe.get()), false);
    }
    client_server s(config());
    s.start();
    int before = open_fds();
    BOOST_REQUIRE(!connect_from_reactor(s, where, "never sent"));
    BOOST_CHECK(ev.wait([&] { return !ev.connect_errors.empty(); }));
    BOOST_CHECK(wait_slots_free(s));
    {
        std::lock_guard lock(ev.m);
        BOOST_REQUIRE_EQUAL(ev.connect_errors.size(), 1u);
        BOOST_CHECK(ev.connect_errors[0] == std::errc::connection_refused);
        BOOST_CHECK_EQUAL(ev.opens, 0);
        BOOST_CHECK_EQUAL(ev.closes, 0);  // on_connect_error instead of on_close
    }
    BOOST_CHECK_EQUAL(open_fds(), before);  // the socket was closed
    s.stop();
}

// A listener with backlog 0 that never accepts: once its accept queue is
// full, the kernel drops further SYNs (net.ipv4.tcp_abort_on_overflow is 0
// by default; a full queue drops even with syncookies), so a connect to it
// waits for the SYN retransmits. All of it stays on 127.0.0.1.
struct full_listener {
    zerg::test::fd_guard listener;
    std::vector<zerg::test::fd_guard> fillers;
    std::uint16_t port = 0;

    // False when the queue never filled (a kernel that answers otherwise).
    bool fill() {
        listener = zerg::test::listen_loopback(0);
        port = zerg::test::port_of(listener.get());
        for (int i = 0; i < 16; ++i) {
            zerg::test::fd_guard f(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
            sockaddr_in addr{};
            addr.sin_family = AF_INET;
            addr.sin_port = htons(port);
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            int r = ::connect(f.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
            bool done = r == 0;
            if (!done && errno == EINPROGRESS) {
                pollfd p{f.get(), POLLOUT, 0};
                done = ::poll(&p, 1, 300) == 1;
            }
            fillers.push_back(std::move(f));
            if (!done) return true;  // this SYN was dropped: the queue is full
        }
        return false;
    }
};

void timed_out() {
    events ev;
    seen = &ev;
    full_listener full;
    if (zerg::test::skip_unless(full.fill(), "a loopback listener whose full accept queue drops SYNs")) return;
    client_server s(config(300ms));
    s.start();
    int before = open_fds();
    auto start = std::chrono::steady_clock::now();
    BOOST_REQUIRE(!connect_from_reactor(s, zerg::endpoint::parse("127.0.0.1", full.port, false)));
    BOOST_CHECK(ev.wait([&] { return !ev.connect_errors.empty(); }));
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_CHECK(wait_slots_free(s));
    {
        std::lock_guard lock(ev.m);
        BOOST_REQUIRE_EQUAL(ev.connect_errors.size(), 1u);
        BOOST_CHECK(ev.connect_errors[0] == std::errc::timed_out);
    }
    BOOST_CHECK(took >= 250ms);  // not before its timeout (the kernel's own retries would take minutes)
    BOOST_CHECK_EQUAL(open_fds(), before);
    s.stop();
}

void closed_while_connecting() {
    events ev;
    seen = &ev;
    full_listener full;
    if (zerg::test::skip_unless(full.fill(), "a loopback listener whose full accept queue drops SYNs")) return;
    client_server s(config(30s));
    s.start();
    int before = open_fds();
    BOOST_REQUIRE(!connect_from_reactor(s, zerg::endpoint::parse("127.0.0.1", full.port, false), "x", true));
    BOOST_CHECK(ev.wait([&] { return !ev.connect_errors.empty(); }, 5s));
    BOOST_CHECK(wait_slots_free(s));
    {
        std::lock_guard lock(ev.m);
        BOOST_REQUIRE_EQUAL(ev.connect_errors.size(), 1u);
        BOOST_CHECK(ev.connect_errors[0] == std::errc::operation_canceled);
    }
    BOOST_CHECK_EQUAL(open_fds(), before);
    s.stop();
}

// A stop while a connect waits ends it (cancelled) and returns in time.
void stopped_while_connecting() {
    events ev;
    seen = &ev;
    full_listener full;
    if (zerg::test::skip_unless(full.fill(), "a loopback listener whose full accept queue drops SYNs")) return;
    client_server s(config(30s));
    s.start();
    BOOST_REQUIRE(!connect_from_reactor(s, zerg::endpoint::parse("127.0.0.1", full.port, false)));
    auto start = std::chrono::steady_clock::now();
    s.stop();
    BOOST_CHECK(std::chrono::steady_clock::now() - start < 5s);
    std::lock_guard lock(ev.m);
    BOOST_REQUIRE_EQUAL(ev.connect_errors.size(), 1u);
    BOOST_CHECK(ev.connect_errors[0] == std::errc::operation_canceled);
}

// A handler that opens the upstream for each client it accepts, from inside
// on_open, and pairs the two by handle (the proxy's shape, in a test).
struct pairing {
    struct connection_state {
        zerg::connection_handle peer;
    };
    std::shared_ptr<zerg::endpoint> upstream;
    void on_open(zerg::connection<pairing>& c) {
        if (c.outbound()) return;
        std::error_code ec;
        auto* up = c.connect(*upstream, ec);
        if (!up) return c.close();
        up->state().peer = c.handle();
        c.state().peer = up->handle();
        if (c.find(c.state().peer) != up || up->find(up->state().peer) != &c) c.close();  // find() resolves both ways
    }
    void on_data(zerg::connection<pairing>& c, std::span<const std::byte> bytes) {
        if (auto* peer = c.find(c.state().peer)) peer->write(bytes);
    }
    void on_close(zerg::connection<pairing>& c, zerg::close_reason) {
        if (auto* peer = c.find(c.state().peer)) peer->close();
    }
};

// The pairing with throttle() both ways, as the proxy has it.
struct throttled {
    struct connection_state {
        zerg::connection_handle peer;
    };
    std::shared_ptr<zerg::endpoint> upstream;
    void on_open(zerg::connection<throttled>& c) {
        if (c.outbound()) return;
        std::error_code ec;
        auto* up = c.connect(*upstream, ec);
        if (!up) return c.close();
        up->state().peer = c.handle();
        c.state().peer = up->handle();
        up->throttle(c.handle());  // what is queued on up comes from c
        c.throttle(up->handle());
    }
    void on_data(zerg::connection<throttled>& c, std::span<const std::byte> bytes) {
        if (auto* peer = c.find(c.state().peer)) peer->write(bytes);
    }
    void on_close(zerg::connection<throttled>& c, zerg::close_reason) {
        if (auto* peer = c.find(c.state().peer)) peer->close();
    }
};

void both_ways(const std::function<void()>& test) {
    test();
    zerg::uring::scoped_hide hide(zerg::uring::feature::ring_socket);  // socket(2) instead of IORING_OP_SOCKET
    test();
}

}  // namespace

BOOST_AUTO_TEST_CASE(connects_over_ipv4_and_exchanges_bytes) {
    both_ways([] { exchange("127.0.0.1", AF_INET); });
}
BOOST_AUTO_TEST_CASE(connects_over_ipv6) { both_ways([] { exchange("::1", AF_INET6); }); }
BOOST_AUTO_TEST_CASE(refused_connect_is_reported_and_leaks_nothing) { both_ways(refused); }
BOOST_AUTO_TEST_CASE(connect_timeout_is_reported_and_leaks_nothing) { both_ways(timed_out); }
BOOST_AUTO_TEST_CASE(close_while_connecting_cancels) { closed_while_connecting(); }
BOOST_AUTO_TEST_CASE(stop_while_connecting_cancels) { stopped_while_connecting(); }

BOOST_AUTO_TEST_CASE(connect_when_the_table_is_full_is_refused_at_once) {
    events ev;
    seen = &ev;
    full_listener full;
    if (zerg::test::skip_unless(full.fill(), "a loopback listener whose full accept queue drops SYNs")) return;
    auto c = config(30s);
    c.max_connections = 2;
    client_server s(c);
    s.start();
    auto to = zerg::endpoint::parse("127.0.0.1", full.port, false);
    BOOST_CHECK(!connect_from_reactor(s, to));
    BOOST_CHECK(!connect_from_reactor(s, to));
    BOOST_CHECK(connect_from_reactor(s, to) == std::errc::no_buffer_space);
    s.stop();
}

BOOST_AUTO_TEST_CASE(a_handler_opens_an_upstream_for_its_client) {
    auto listener = zerg::test::listen_loopback();
    pairing h;
    h.upstream = std::make_shared<zerg::endpoint>(zerg::endpoint::parse("127.0.0.1", zerg::test::port_of(listener.get()), false));
    auto c = config();
    zerg::server<zerg::reactor<pairing>> s(c, h);
    s.start();
    auto client = zerg::test::connect_loopback(s.port());
    BOOST_REQUIRE(::write(client.get(), "hello", 5) == 5);
    pollfd p{listener.get(), POLLIN, 0};
    BOOST_REQUIRE(::poll(&p, 1, 10000) == 1);
    zerg::test::fd_guard upstream(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    std::string got;
    read_exactly(upstream.get(), got, 5);
    BOOST_CHECK_EQUAL(got, "hello");
    BOOST_REQUIRE(::write(upstream.get(), "world", 5) == 5);
    read_exactly(client.get(), got, 5);
    BOOST_CHECK_EQUAL(got, "world");
    upstream.reset();  // the upstream's EOF closes its side, whose on_close closes the client
    pollfd q{client.get(), POLLIN, 0};
    BOOST_REQUIRE(::poll(&q, 1, 10000) == 1);
    char byte;
    BOOST_CHECK_EQUAL(::read(client.get(), &byte, 1), 0);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (s.totals().busy_slots != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    BOOST_CHECK_EQUAL(s.totals().busy_slots, 0u);
    s.stop();
}

// An upstream that does not read: the relay's queue toward it passes
// max_write_queue, so the reactor stops reading the client (throttle), and
// the client's sends stall instead of the relay's memory growing. Once the
// upstream reads, every byte arrives, in order.
BOOST_AUTO_TEST_CASE(throttle_pauses_the_source_not_the_slow_side) {
    auto listener = zerg::test::listen_loopback();
    int small = 64 * 1024;
    ::setsockopt(listener.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);  // accepted sockets inherit it
    throttled h;
    h.upstream = std::make_shared<zerg::endpoint>(zerg::endpoint::parse("127.0.0.1", zerg::test::port_of(listener.get()), false));
    auto c = config();
    c.max_write_queue = 64 * 1024;
    zerg::server<zerg::reactor<throttled>> s(c, h);
    s.start();
    auto client = zerg::test::connect_loopback(s.port());
    ::fcntl(client.get(), F_SETFL, ::fcntl(client.get(), F_GETFL) | O_NONBLOCK);
    pollfd p{listener.get(), POLLIN, 0};
    BOOST_REQUIRE(::poll(&p, 1, 10000) == 1);
    zerg::test::fd_guard upstream(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));

    const std::size_t limit = 512u << 20;  // far past what the kernel buffers hold on loopback
    const std::string chunk = pattern(64 * 1024, 3);
    std::size_t sent = 0;
    bool stalled = false;
    while (sent < limit && !stalled) {
        pollfd w{client.get(), POLLOUT, 0};
        if (::poll(&w, 1, 500) == 0) {
            stalled = true;  // nothing taken for 500 ms: the relay stopped reading the client
            break;
        }
        std::size_t at = sent % chunk.size();
        ssize_t n = ::send(client.get(), chunk.data() + at, chunk.size() - at, MSG_NOSIGNAL);
        if (n > 0) sent += static_cast<std::size_t>(n);
    }
    BOOST_CHECK(stalled);
    BOOST_CHECK(s.totals().read_pauses > 0);
    BOOST_TEST_MESSAGE("the client's sends stalled after " << sent << " bytes");

    // The upstream reads now: everything the client sent arrives, in order.
    std::string got;
    read_exactly(upstream.get(), got, sent);
    bool same = true;
    for (std::size_t i = 0; i < sent && same; ++i) same = got[i] == chunk[i % chunk.size()];
    BOOST_CHECK(same);
    client.reset();
    upstream.reset();
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (s.totals().busy_slots != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    BOOST_CHECK_EQUAL(s.totals().busy_slots, 0u);
    s.stop();
}
