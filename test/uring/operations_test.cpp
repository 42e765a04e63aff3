#define BOOST_TEST_MODULE operations
#include <boost/test/unit_test.hpp>

// Every prep_* of zerg/uring/operations.hpp, run for real against the
// running kernel over Unix socket pairs, loopback TCP (127.0.0.1), pipes and
// memfds. Each test checks the bytes that moved and every CQE's res and
// flags. Operations newer than the running kernel are skipped with a
// message naming what is missing (zerg::test::skip_unless).

#include <zerg/uring/buffer_ring.hpp>
#include <zerg/uring/compat.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/probe.hpp>
#include <zerg/uring/registered_buffers.hpp>
#include <zerg/uring/registered_files.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/user_data.hpp>

#include "support/stale_sqe.hpp"
#include "support/skip.hpp"
#include "support/sockets.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace zu = zerg::uring;
using zerg::test::completion;
using zerg::test::fd_guard;
using zerg::test::skip_unless;
using steady = std::chrono::steady_clock;

// ---- small helpers -----------------------------------------------------------

const zu::kernel_support& kernel() {
    static const zu::kernel_support k = zu::probe_kernel();
    return k;
}

constexpr zu::user_data tag(std::uint8_t kind, std::uint32_t slot = 0) { return {kind, slot, 0}; }

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string text_of(const std::byte* data, std::size_t size) { return {reinterpret_cast<const char*>(data), size}; }

// A test pattern: `n` bytes that differ from one position to the next.
std::string pattern(std::size_t n, unsigned seed = 0) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('A' + (i * 7 + seed) % 26);
    return s;
}

io_uring_cqe as_cqe(const completion& c) {
    io_uring_cqe cqe{};
    cqe.user_data = c.user_data;
    cqe.res = c.res;
    cqe.flags = c.flags;
    return cqe;
}
bool has_more(const completion& c) { return zu::cqe_has_more(as_cqe(c)); }
bool has_buffer(const completion& c) { return zu::cqe_has_buffer(as_cqe(c)); }
std::uint16_t buffer_id(const completion& c) { return zu::cqe_buffer_id(as_cqe(c)); }
bool is_notification(const completion& c) { return zu::cqe_is_notification(as_cqe(c)); }

int remaining_ms(steady::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

// Waits (bounded) until `fd` is readable; throws on timeout.
void wait_readable(int fd, steady::time_point deadline) {
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r > 0) return;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
        throw std::runtime_error("timed out waiting for fd " + std::to_string(fd) + " to become readable");
    }
}

// Reads exactly `n` bytes from a socket or pipe, bounded in time.
std::string read_exact(int fd, std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::string out;
    auto deadline = steady::now() + timeout;
    while (out.size() < n) {
        wait_readable(fd, deadline);
        char buf[4096];
        ssize_t got = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got == 0) throw std::runtime_error("read_exact: EOF after " + std::to_string(out.size()) + " bytes");
        if (got < 0) throw std::runtime_error(std::string("read_exact: ") + std::strerror(errno));
        out.append(buf, static_cast<std::size_t>(got));
    }
    return out;
}

// True when the next read on `fd` reports end of file (bounded in time).
bool sees_eof(int fd, std::chrono::milliseconds timeout = 5s) {
    wait_readable(fd, steady::now() + timeout);
    char c;
    return ::read(fd, &c, 1) == 0;
}

// True when `fd` has nothing to read right now.
bool nothing_to_read(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
}

void send_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        zerg::test::check(n > 0, "send");
        s.remove_prefix(static_cast<std::size_t>(n));
    }
}

void write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::write(fd, s.data(), s.size());
        if (n < 0 && errno == EINTR) continue;
        zerg::test::check(n > 0, "write");
        s.remove_prefix(static_cast<std::size_t>(n));
    }
}

std::pair<fd_guard, fd_guard> make_pipe() {
    int p[2];
    zerg::test::check(::pipe2(p, O_CLOEXEC) == 0, "pipe2");
    return {fd_guard(p[0]), fd_guard(p[1])};
}

fd_guard make_memfd() {
    fd_guard f(::memfd_create("zerg-operations-test", MFD_CLOEXEC));
    zerg::test::check(f.get() >= 0, "memfd_create");
    return f;
}

std::string pread_text(int fd, std::size_t n, off_t offset) {
    std::string s(n, '\0');
    ssize_t got = ::pread(fd, s.data(), n, offset);
    zerg::test::check(got >= 0, "pread");
    s.resize(static_cast<std::size_t>(got));
    return s;
}

std::uint16_t local_port(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    zerg::test::check(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0, "getsockname");
    return ntohs(a.sin_port);
}
std::uint16_t peer_port(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    zerg::test::check(::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0, "getpeername");
    return ntohs(a.sin_port);
}

int int_sockopt(int fd, int level, int name) {
    int v = 0;
    socklen_t len = sizeof v;
    zerg::test::check(::getsockopt(fd, level, name, &v, &len) == 0, "getsockopt");
    return v;
}

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

sockaddr_in loopback_address(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

// Completions of one ring, claimed by user_data in whatever order they come.
// Every wait is bounded: zerg::test::wait_for throws after its timeout.
class completions {
public:
    explicit completions(zu::ring& r) : ring_(&r) {}

    completion next(std::uint64_t ud, std::chrono::milliseconds timeout = 5s) {
        auto deadline = steady::now() + timeout;
        for (;;) {
            auto it = std::find_if(pending_.begin(), pending_.end(), [ud](auto const& c) { return c.user_data == ud; });
            if (it != pending_.end()) {
                completion c = *it;
                pending_.erase(it);
                return c;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
            if (left <= 0ms) throw std::runtime_error("no completion tagged " + std::to_string(ud) + " in time");
            for (auto const& c : zerg::test::wait_for(*ring_, 1, left)) pending_.push_back(c);
        }
    }
    completion next(zu::user_data ud, std::chrono::milliseconds timeout = 5s) { return next(ud.raw(), timeout); }

    // How many completions have arrived and are not claimed yet. Enters the
    // kernel once (without waiting) so deferred completions get posted.
    std::size_t unclaimed() {
        ring_->submit();
        ring_->flush_completions();
        ring_->for_each_completion([this](const io_uring_cqe& c) { pending_.push_back({c.user_data, c.res, c.flags}); });
        return pending_.size();
    }

private:
    zu::ring* ring_;
    std::deque<completion> pending_;
};

struct ring_fixture {
    zu::ring ring;
    completions cq{ring};

    io_uring_sqe* sqe() { return ring.get_sqe(); }
    void submit(int expected) { BOOST_REQUIRE_EQUAL(ring.submit(), expected); }
};

// Skips (with a message) a test that needs a provided-buffer ring as a tool when the kernel has none.
bool skip_without_buf_ring() { return skip_unless(kernel().buf_ring, "provided-buffer rings (Linux 5.19)"); }

}  // namespace

BOOST_AUTO_TEST_CASE(kernel_probe_reports) {
    auto const& k = kernel();
    BOOST_TEST_MESSAGE("kernel " << k.kernel_release << ", last opcode " << k.last_opcode);
    BOOST_REQUIRE_MESSAGE(k.available, "io_uring unavailable: " << k.unavailable_reason);
    BOOST_TEST(k.supports(IORING_OP_NOP));
}

// ---- helpers that only read or write SQE/CQE fields ---------------------------

BOOST_AUTO_TEST_CASE(cqe_flag_accessors) {
    io_uring_cqe cqe{};
    cqe.flags = (std::uint32_t{513} << IORING_CQE_BUFFER_SHIFT) | IORING_CQE_F_BUFFER | IORING_CQE_F_MORE;
    BOOST_TEST(zu::cqe_has_more(cqe));
    BOOST_TEST(zu::cqe_has_buffer(cqe));
    BOOST_TEST(zu::cqe_buffer_id(cqe) == 513);
    BOOST_TEST(!zu::cqe_is_notification(cqe));

    cqe.flags = IORING_CQE_F_NOTIF;
    BOOST_TEST(zu::cqe_is_notification(cqe));
    BOOST_TEST(!zu::cqe_has_more(cqe));
    BOOST_TEST(!zu::cqe_has_buffer(cqe));

    cqe.flags = 0xffffu << IORING_CQE_BUFFER_SHIFT;  // id bits without F_BUFFER
    BOOST_TEST(!zu::cqe_has_buffer(cqe));
    BOOST_TEST(zu::cqe_buffer_id(cqe) == 0xffff);
}

BOOST_AUTO_TEST_CASE(timespec_conversion) {
    auto ts = zu::to_timespec(1500ms);
    BOOST_TEST(ts.tv_sec == 1);
    BOOST_TEST(ts.tv_nsec == 500'000'000);
    ts = zu::to_timespec(std::chrono::nanoseconds(42));
    BOOST_TEST(ts.tv_sec == 0);
    BOOST_TEST(ts.tv_nsec == 42);
    ts = zu::to_timespec(3s);
    BOOST_TEST(ts.tv_sec == 3);
    BOOST_TEST(ts.tv_nsec == 0);
}

// The header promises each prep_* fills the SQE completely: an entry full of
// stale bytes must come out the same as a zeroed one (user_data aside, which
// set_user_data writes afterwards).
BOOST_AUTO_TEST_CASE(every_prep_overwrites_a_stale_sqe) {
    static std::byte buf[64];
    static iovec iov[2] = {{buf, 8}, {buf + 8, 8}};
    static msghdr msg{};
    static sockaddr_in addr{};
    static socklen_t addrlen = sizeof addr;
    static __kernel_timespec ts{};
    static int value = 1;
    std::span<std::byte> b(buf);
    std::span<const iovec> v(iov);
    auto ud = tag(9, 1);
    auto* sa = reinterpret_cast<sockaddr*>(&addr);

    const std::vector<std::pair<const char*, std::function<void(io_uring_sqe*)>>> preps = {
        {"nop", [](io_uring_sqe* s) { zu::prep_nop(s); }},
        {"accept", [&](io_uring_sqe* s) { zu::prep_accept(s, 3, sa, &addrlen); }},
        {"accept_multishot", [](io_uring_sqe* s) { zu::prep_accept_multishot(s, 3); }},
        {"accept_direct", [](io_uring_sqe* s) { zu::prep_accept_direct(s, 3, 5); }},
        {"accept_direct alloc", [](io_uring_sqe* s) { zu::prep_accept_direct(s, 3, IORING_FILE_INDEX_ALLOC); }},
        {"accept_multishot_direct", [](io_uring_sqe* s) { zu::prep_accept_multishot_direct(s, 3); }},
        {"connect", [&](io_uring_sqe* s) { zu::prep_connect(s, 3, sa, sizeof addr); }},
        {"recv", [&](io_uring_sqe* s) { zu::prep_recv(s, 3, b); }},
        {"recv_select", [](io_uring_sqe* s) { zu::prep_recv_select(s, 3, 4); }},
        {"recv_multishot", [](io_uring_sqe* s) { zu::prep_recv_multishot(s, 3, 4); }},
        {"recv_bundle", [](io_uring_sqe* s) { zu::prep_recv_bundle(s, 3, 4, false); }},
        {"recv_bundle multishot", [](io_uring_sqe* s) { zu::prep_recv_bundle(s, 3, 4, true); }},
        {"recvmsg", [](io_uring_sqe* s) { zu::prep_recvmsg(s, 3, &msg); }},
        {"recvmsg_multishot", [](io_uring_sqe* s) { zu::prep_recvmsg_multishot(s, 3, &msg, 4); }},
        {"send", [&](io_uring_sqe* s) { zu::prep_send(s, 3, b); }},
        {"sendmsg", [](io_uring_sqe* s) { zu::prep_sendmsg(s, 3, &msg); }},
        {"send_zc", [&](io_uring_sqe* s) { zu::prep_send_zc(s, 3, b); }},
        {"send_zc_fixed", [&](io_uring_sqe* s) { zu::prep_send_zc_fixed(s, 3, b, 1); }},
        {"sendmsg_zc", [](io_uring_sqe* s) { zu::prep_sendmsg_zc(s, 3, &msg); }},
        {"read", [&](io_uring_sqe* s) { zu::prep_read(s, 3, b); }},
        {"write", [&](io_uring_sqe* s) { zu::prep_write(s, 3, b, 0); }},
        {"read_fixed", [&](io_uring_sqe* s) { zu::prep_read_fixed(s, 3, b, 1); }},
        {"write_fixed", [&](io_uring_sqe* s) { zu::prep_write_fixed(s, 3, b, 1, 0); }},
        {"readv", [&](io_uring_sqe* s) { zu::prep_readv(s, 3, v); }},
        {"writev", [&](io_uring_sqe* s) { zu::prep_writev(s, 3, v, 0); }},
        {"read_multishot", [](io_uring_sqe* s) { zu::prep_read_multishot(s, 3, 4); }},
        {"close", [](io_uring_sqe* s) { zu::prep_close(s, 3); }},
        {"close_direct", [](io_uring_sqe* s) { zu::prep_close_direct(s, 3); }},
        {"shutdown", [](io_uring_sqe* s) { zu::prep_shutdown(s, 3, SHUT_WR); }},
        {"cancel", [&](io_uring_sqe* s) { zu::prep_cancel(s, ud); }},
        {"cancel_fd", [](io_uring_sqe* s) { zu::prep_cancel_fd(s, 3); }},
        {"cancel_all", [](io_uring_sqe* s) { zu::prep_cancel_all(s); }},
        {"timeout", [](io_uring_sqe* s) { zu::prep_timeout(s, &ts, 1); }},
        {"link_timeout", [](io_uring_sqe* s) { zu::prep_link_timeout(s, &ts); }},
        {"timeout_remove", [&](io_uring_sqe* s) { zu::prep_timeout_remove(s, ud); }},
        {"poll_add", [](io_uring_sqe* s) { zu::prep_poll_add(s, 3, POLLIN); }},
        {"poll_multishot", [](io_uring_sqe* s) { zu::prep_poll_multishot(s, 3, POLLIN); }},
        {"poll_remove", [&](io_uring_sqe* s) { zu::prep_poll_remove(s, ud); }},
        {"msg_ring", [&](io_uring_sqe* s) { zu::prep_msg_ring(s, 3, 7, ud); }},
        {"msg_ring flags", [&](io_uring_sqe* s) { zu::prep_msg_ring(s, 3, 7, ud, 0x10000); }},
        {"msg_ring_fd", [&](io_uring_sqe* s) { zu::prep_msg_ring_fd(s, 3, 1, 2, ud); }},
        {"msg_ring_fd alloc", [&](io_uring_sqe* s) { zu::prep_msg_ring_fd(s, 3, 1, IORING_FILE_INDEX_ALLOC, ud); }},
        {"socket", [](io_uring_sqe* s) { zu::prep_socket(s, AF_INET, SOCK_STREAM, 0); }},
        {"socket_direct", [](io_uring_sqe* s) { zu::prep_socket_direct(s, AF_INET, SOCK_STREAM, 0, 2); }},
        {"socket_direct alloc",
         [](io_uring_sqe* s) { zu::prep_socket_direct(s, AF_INET, SOCK_STREAM, 0, IORING_FILE_INDEX_ALLOC); }},
        {"bind", [&](io_uring_sqe* s) { zu::prep_bind(s, 3, sa, sizeof addr); }},
        {"listen", [](io_uring_sqe* s) { zu::prep_listen(s, 3, 16); }},
        {"setsockopt", [](io_uring_sqe* s) { zu::prep_setsockopt(s, 3, SOL_SOCKET, SO_RCVBUF, &value, sizeof value); }},
        {"getsockopt", [](io_uring_sqe* s) { zu::prep_getsockopt(s, 3, SOL_SOCKET, SO_RCVBUF, &value, sizeof value); }},
    };
    zerg::test::check_preps_overwrite_stale_sqes(preps);

    // The SQE helpers set what they say and nothing else.
    io_uring_sqe s{};
    zu::prep_nop(&s);
    zu::set_user_data(&s, ud);
    BOOST_TEST(s.user_data == ud.raw());
    zu::set_user_data(&s, std::uint64_t{77});
    BOOST_TEST(s.user_data == 77u);
    zu::link_next(&s);
    BOOST_TEST(s.flags == IOSQE_IO_LINK);
    zu::use_fixed_file(&s);
    BOOST_TEST(s.flags == (IOSQE_IO_LINK | IOSQE_FIXED_FILE));
    zu::skip_success_cqe(&s);
    BOOST_TEST(s.flags == (IOSQE_IO_LINK | IOSQE_FIXED_FILE | IOSQE_CQE_SKIP_SUCCESS));
}

// ---- nop ----------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(nop_completes_with_zero, ring_fixture) {
    auto* s = sqe();
    zu::prep_nop(s);
    zu::set_user_data(s, tag(1, 42));
    auto c = cq.next(tag(1, 42));
    BOOST_TEST(c.res == 0);
    BOOST_TEST(c.flags == 0u);
}

BOOST_FIXTURE_TEST_CASE(skip_success_cqe_posts_nothing_on_success, ring_fixture) {
    auto* s = sqe();
    zu::prep_nop(s);
    zu::set_user_data(s, tag(1, 1));
    zu::skip_success_cqe(s);
    s = sqe();
    zu::prep_nop(s);
    zu::set_user_data(s, tag(1, 2));
    submit(2);
    auto c = cq.next(tag(1, 2));
    BOOST_TEST(c.res == 0);
    BOOST_TEST(cq.unclaimed() == 0u);  // nothing for the first nop
}

// ---- accept / connect -----------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(accept_returns_a_connected_fd_and_the_peer_address, ring_fixture) {
    auto listener = zerg::test::listen_loopback();
    sockaddr_in peer{};
    socklen_t peer_len = sizeof peer;
    auto* s = sqe();
    zu::prep_accept(s, listener.get(), reinterpret_cast<sockaddr*>(&peer), &peer_len);
    zu::set_user_data(s, tag(2));
    submit(1);

    auto client = zerg::test::connect_loopback(zerg::test::port_of(listener.get()));
    auto c = cq.next(tag(2));
    BOOST_REQUIRE_GE(c.res, 0);
    fd_guard accepted(c.res);
    BOOST_TEST(c.flags == 0u);  // single shot: no F_MORE
    BOOST_TEST(peer_len == sizeof(sockaddr_in));
    BOOST_TEST(peer.sin_family == AF_INET);
    BOOST_TEST(ntohl(peer.sin_addr.s_addr) == INADDR_LOOPBACK);
    BOOST_TEST(ntohs(peer.sin_port) == local_port(client.get()));
    BOOST_TEST((::fcntl(accepted.get(), F_GETFD) & FD_CLOEXEC) != 0);  // default flags: SOCK_CLOEXEC

    send_all(client.get(), "over the accepted fd");
    BOOST_TEST(read_exact(accepted.get(), 20) == "over the accepted fd");
}

BOOST_FIXTURE_TEST_CASE(accept_multishot_posts_one_cqe_per_connection, ring_fixture) {
    auto listener = zerg::test::listen_loopback();
    auto port = zerg::test::port_of(listener.get());
    auto* s = sqe();
    zu::prep_accept_multishot(s, listener.get());
    zu::set_user_data(s, tag(3));
    submit(1);

    std::vector<fd_guard> clients;
    std::set<std::uint16_t> client_ports;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(zerg::test::connect_loopback(port));
        client_ports.insert(local_port(clients.back().get()));
    }
    std::vector<fd_guard> accepted;
    std::set<std::uint16_t> accepted_peers;
    for (int i = 0; i < 3; ++i) {
        auto c = cq.next(tag(3));
        BOOST_REQUIRE_GE(c.res, 0);
        accepted.emplace_back(c.res);
        BOOST_TEST(has_more(c));
        BOOST_TEST(!has_buffer(c));
        accepted_peers.insert(peer_port(c.res));
    }
    BOOST_TEST(accepted_peers == client_ports);
    BOOST_TEST(cq.unclaimed() == 0u);

    // Still armed: cancelling ends it with a final CQE without F_MORE.
    s = sqe();
    zu::prep_cancel(s, tag(3));
    zu::set_user_data(s, tag(4));
    auto cancel = cq.next(tag(4));
    BOOST_TEST(cancel.res == 0);
    auto last = cq.next(tag(3));
    BOOST_TEST(last.res == -ECANCELED);
    BOOST_TEST(!has_more(last));
}

BOOST_FIXTURE_TEST_CASE(accept_direct_into_a_named_and_an_allocated_slot, ring_fixture) {
    zu::registered_files files(ring, 8);
    auto listener = zerg::test::listen_loopback();
    auto port = zerg::test::port_of(listener.get());

    // A named slot: res is 0, the socket lives in slot 5 and has no fd.
    auto* s = sqe();
    zu::prep_accept_direct(s, listener.get(), 5);
    zu::set_user_data(s, tag(5, 5));
    submit(1);
    auto first = zerg::test::connect_loopback(port);
    auto c = cq.next(tag(5, 5));
    BOOST_TEST(c.res == 0);
    BOOST_TEST(c.flags == 0u);

    // Any free slot: res is the slot the kernel chose. SOCK_CLOEXEC, which
    // the kernel refuses for direct descriptors, is dropped by the prep.
    s = sqe();
    zu::prep_accept_direct(s, listener.get(), IORING_FILE_INDEX_ALLOC, SOCK_CLOEXEC);
    zu::set_user_data(s, tag(5, 99));
    submit(1);
    auto second = zerg::test::connect_loopback(port);
    auto a = cq.next(tag(5, 99));
    BOOST_REQUIRE_GE(a.res, 0);
    BOOST_TEST(a.res < 8);
    BOOST_TEST(a.res != 5);
    auto allocated = static_cast<unsigned>(a.res);

    // Both slots hold live connections: receive through each with IOSQE_FIXED_FILE.
    send_all(first.get(), "first");
    send_all(second.get(), "second");
    std::array<std::byte, 32> b1{}, b2{};
    s = sqe();
    zu::prep_recv(s, 5, b1);
    zu::use_fixed_file(s);
    zu::set_user_data(s, tag(6, 5));
    s = sqe();
    zu::prep_recv(s, static_cast<int>(allocated), b2);
    zu::use_fixed_file(s);
    zu::set_user_data(s, tag(6, allocated));
    auto r1 = cq.next(tag(6, 5));
    auto r2 = cq.next(tag(6, allocated));
    BOOST_REQUIRE_EQUAL(r1.res, 5);
    BOOST_REQUIRE_EQUAL(r2.res, 6);
    BOOST_TEST(text_of(b1.data(), 5) == "first");
    BOOST_TEST(text_of(b2.data(), 6) == "second");
}

BOOST_FIXTURE_TEST_CASE(accept_multishot_direct_fills_free_slots, ring_fixture) {
    zu::registered_files files(ring, 4);
    auto listener = zerg::test::listen_loopback();
    auto port = zerg::test::port_of(listener.get());
    auto* s = sqe();
    zu::prep_accept_multishot_direct(s, listener.get());
    zu::set_user_data(s, tag(7));
    submit(1);

    std::vector<fd_guard> clients;
    for (int i = 0; i < 2; ++i) clients.push_back(zerg::test::connect_loopback(port));
    std::vector<unsigned> slots;
    for (int i = 0; i < 2; ++i) {
        auto c = cq.next(tag(7));
        BOOST_REQUIRE_GE(c.res, 0);
        BOOST_TEST(c.res < 4);
        BOOST_TEST(has_more(c));
        slots.push_back(static_cast<unsigned>(c.res));
    }
    BOOST_TEST(slots[0] != slots[1]);

    // Each slot is one of the connections: the two messages come out of the
    // two slots, one each.
    send_all(clients[0].get(), "alpha");
    send_all(clients[1].get(), "omega");
    std::array<std::array<std::byte, 16>, 2> bufs{};
    for (unsigned i = 0; i < 2; ++i) {
        s = sqe();
        zu::prep_recv(s, static_cast<int>(slots[i]), bufs[i]);
        zu::use_fixed_file(s);
        zu::set_user_data(s, tag(8, i));
    }
    std::set<std::string> got;
    for (unsigned i = 0; i < 2; ++i) {
        auto c = cq.next(tag(8, i));
        BOOST_REQUIRE_EQUAL(c.res, 5);
        got.insert(text_of(bufs[i].data(), 5));
    }
    BOOST_TEST((got == std::set<std::string>{"alpha", "omega"}));

    // Filling the table ends the multishot accept: two slots left, three clients.
    for (int i = 0; i < 3; ++i) clients.push_back(zerg::test::connect_loopback(port));
    std::set<int> more;
    for (int i = 0; i < 2; ++i) {
        auto c = cq.next(tag(7));
        BOOST_REQUIRE_GE(c.res, 0);
        BOOST_TEST(has_more(c));
        more.insert(c.res);
    }
    BOOST_TEST(more.size() == 2u);
    auto full = cq.next(tag(7));
    BOOST_TEST(full.res == -ENFILE);
    BOOST_TEST(!has_more(full));
}

BOOST_FIXTURE_TEST_CASE(connect_reaches_a_loopback_listener, ring_fixture) {
    auto listener = zerg::test::listen_loopback();
    auto addr = loopback_address(zerg::test::port_of(listener.get()));
    fd_guard sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    BOOST_REQUIRE_GE(sock.get(), 0);
    auto* s = sqe();
    zu::prep_connect(s, sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    zu::set_user_data(s, tag(9));
    auto c = cq.next(tag(9));
    BOOST_TEST(c.res == 0);
    BOOST_TEST(c.flags == 0u);

    fd_guard server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    BOOST_REQUIRE_GE(server.get(), 0);
    BOOST_TEST(peer_port(server.get()) == local_port(sock.get()));
    send_all(sock.get(), "connected");
    BOOST_TEST(read_exact(server.get(), 9) == "connected");

    // A port nobody listens on: refused.
    listener.reset();
    fd_guard other(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    s = sqe();
    zu::prep_connect(s, other.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    zu::set_user_data(s, tag(9, 1));
    BOOST_TEST(cq.next(tag(9, 1)).res == -ECONNREFUSED);
}

// ---- receive ----------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(recv_waits_for_data, ring_fixture) {
    auto [client, server] = zerg::test::tcp_pair();
    std::array<std::byte, 64> buf{};
    auto* s = sqe();
    zu::prep_recv(s, server.get(), buf);
    zu::set_user_data(s, tag(10));
    submit(1);
    BOOST_TEST(cq.unclaimed() == 0u);  // nothing to receive yet

    send_all(client.get(), "hello, ring");
    auto c = cq.next(tag(10));
    BOOST_REQUIRE_EQUAL(c.res, 11);
    BOOST_TEST(text_of(buf.data(), 11) == "hello, ring");
    BOOST_TEST(!has_more(c));
    BOOST_TEST(!has_buffer(c));

    // Flags reach the socket: MSG_PEEK leaves the bytes for the next recv.
    send_all(client.get(), "peek");
    std::array<std::byte, 16> peeked{};
    s = sqe();
    zu::prep_recv(s, server.get(), peeked, MSG_PEEK);
    zu::set_user_data(s, tag(10, 2));
    BOOST_REQUIRE_EQUAL(cq.next(tag(10, 2)).res, 4);
    BOOST_TEST(text_of(peeked.data(), 4) == "peek");
    BOOST_TEST(read_exact(server.get(), 4) == "peek");

    // The peer closes: a recv sees 0.
    client.reset();
    s = sqe();
    zu::prep_recv(s, server.get(), buf);
    zu::set_user_data(s, tag(10, 1));
    BOOST_TEST(cq.next(tag(10, 1)).res == 0);
}

BOOST_FIXTURE_TEST_CASE(recv_select_picks_buffers_in_ring_order, ring_fixture) {
    if (skip_without_buf_ring()) return;
    zu::buffer_ring br(ring, {.group_id = 7, .entries = 4, .buffer_size = 64});
    auto [client, server] = zerg::test::tcp_pair();

    for (std::uint16_t expected_id = 0; expected_id < 2; ++expected_id) {
        auto* s = sqe();
        zu::prep_recv_select(s, server.get(), 7);
        zu::set_user_data(s, tag(11, expected_id));
        submit(1);
        std::string msg = "message " + std::to_string(expected_id);
        send_all(client.get(), msg);
        auto c = cq.next(tag(11, expected_id));
        BOOST_REQUIRE_EQUAL(c.res, static_cast<int>(msg.size()));
        BOOST_REQUIRE(has_buffer(c));
        BOOST_TEST(!has_more(c));
        BOOST_TEST(buffer_id(c) == expected_id);
        auto cqe = as_cqe(c);
        auto slice = br.take(cqe);
        BOOST_TEST(slice.id == expected_id);
        BOOST_TEST(text_of(slice.data, slice.size) == msg);
        BOOST_TEST(text_of(br.buffer(expected_id), msg.size()) == msg);
    }

    // More than a buffer holds: the receive is cut at the buffer size.
    auto big = pattern(100);
    send_all(client.get(), big);
    auto* s = sqe();
    zu::prep_recv_select(s, server.get(), 7);
    zu::set_user_data(s, tag(11, 9));
    auto c = cq.next(tag(11, 9));
    BOOST_REQUIRE_EQUAL(c.res, 64);
    BOOST_REQUIRE(has_buffer(c));
    BOOST_TEST(buffer_id(c) == 2);
    BOOST_TEST(text_of(br.buffer(2), 64) == big.substr(0, 64));
    BOOST_TEST(read_exact(server.get(), 36) == big.substr(64));

    // A group that does not exist: -ENOBUFS.
    s = sqe();
    zu::prep_recv_select(s, server.get(), 8);
    zu::set_user_data(s, tag(11, 10));
    send_all(client.get(), "x");
    BOOST_TEST(cq.next(tag(11, 10)).res == -ENOBUFS);
}

BOOST_FIXTURE_TEST_CASE(recv_multishot_posts_a_cqe_per_arrival, ring_fixture) {
    if (skip_without_buf_ring()) return;
    zu::buffer_ring br(ring, {.group_id = 3, .entries = 4, .buffer_size = 32});
    auto [client, server] = zerg::test::tcp_pair();
    auto* s = sqe();
    zu::prep_recv_multishot(s, server.get(), 3);
    zu::set_user_data(s, tag(12));
    submit(1);

    const std::string msgs[] = {"one", "two", "three"};
    for (std::uint16_t i = 0; i < 3; ++i) {
        send_all(client.get(), msgs[i]);
        auto c = cq.next(tag(12));
        BOOST_REQUIRE_EQUAL(c.res, static_cast<int>(msgs[i].size()));
        BOOST_TEST(has_more(c));
        BOOST_REQUIRE(has_buffer(c));
        BOOST_TEST(buffer_id(c) == i);
        auto cqe = as_cqe(c);
        auto slice = br.take(cqe);
        BOOST_TEST(text_of(slice.data, slice.size) == msgs[i]);
        if (i == 0) {
            br.recycle(slice.id);  // id 0 goes back behind id 3
            br.publish();
        }
    }
    // Buffer 3, then the recycled 0; then the group is empty and the
    // multishot receive ends with -ENOBUFS.
    send_all(client.get(), "four");
    auto c = cq.next(tag(12));
    BOOST_REQUIRE_EQUAL(c.res, 4);
    BOOST_TEST(has_more(c));
    BOOST_TEST(buffer_id(c) == 3);
    BOOST_TEST(text_of(br.buffer(3), 4) == "four");
    send_all(client.get(), "five");
    c = cq.next(tag(12));
    BOOST_REQUIRE_EQUAL(c.res, 4);
    BOOST_TEST(has_more(c));
    BOOST_TEST(buffer_id(c) == 0);
    BOOST_TEST(text_of(br.buffer(0), 4) == "five");
    send_all(client.get(), "six");
    c = cq.next(tag(12));
    BOOST_TEST(c.res == -ENOBUFS);
    BOOST_TEST(!has_more(c));
    BOOST_TEST(read_exact(server.get(), 3) == "six");  // still in the socket
}

BOOST_FIXTURE_TEST_CASE(recv_multishot_ends_at_eof, ring_fixture) {
    if (skip_without_buf_ring()) return;
    zu::buffer_ring br(ring, {.group_id = 1, .entries = 8, .buffer_size = 64});
    auto [client, server] = zerg::test::unix_pair();
    auto* s = sqe();
    zu::prep_recv_multishot(s, server.get(), 1);
    zu::set_user_data(s, tag(13));
    submit(1);
    send_all(client.get(), "last words");
    auto c = cq.next(tag(13));
    BOOST_REQUIRE_EQUAL(c.res, 10);
    BOOST_TEST(has_more(c));
    BOOST_TEST(text_of(br.buffer(buffer_id(c)), 10) == "last words");
    client.reset();
    c = cq.next(tag(13));
    BOOST_TEST(c.res == 0);
    BOOST_TEST(!has_more(c));
}

namespace {
// What a run of bundle CQEs delivered, buffer by buffer.
struct bundle_log {
    std::string bytes;
    std::vector<std::uint16_t> ids;
    std::size_t largest_bundle = 0;  // most buffers one CQE covered
};

// Checks one bundle CQE and appends what it delivered: res counts bytes over
// consecutive buffers, starting at the one the CQE names, each filled
// completely but the last.
void take_bundle_cqe(zu::buffer_ring& br, const completion& c, bundle_log& log) {
    BOOST_REQUIRE_GT(c.res, 0);
    BOOST_REQUIRE(has_buffer(c));
    auto cqe = as_cqe(c);
    std::size_t buffers = 0;
    std::uint32_t total = 0;
    br.take_bundle(cqe, [&](zu::buffer_ring::slice sl) {
        if (buffers == 0) BOOST_TEST(sl.id == buffer_id(c));
        log.bytes += text_of(sl.data, sl.size);
        log.ids.push_back(sl.id);
        total += sl.size;
        ++buffers;
    });
    BOOST_TEST(total == static_cast<std::uint32_t>(c.res));
    BOOST_TEST_MESSAGE("bundle CQE: " << c.res << " bytes in " << buffers << " buffers from id " << buffer_id(c));
    log.largest_bundle = std::max(log.largest_bundle, buffers);
}
}  // namespace

BOOST_FIXTURE_TEST_CASE(recv_bundle_fills_consecutive_buffers, ring_fixture) {
    if (skip_without_buf_ring()) return;
    if (skip_unless(kernel().recv_bundle(), "IORING_RECVSEND_BUNDLE (Linux 6.10)")) return;
    zu::buffer_ring br(ring, {.group_id = 2, .entries = 16, .buffer_size = 32});
    auto [client, server] = zerg::test::tcp_pair();

    // Single shot: 100 bytes already queued. One CQE may cover several
    // buffers; the kernel may also stop early, so receive until all are in.
    auto data = pattern(100);
    send_all(client.get(), data);
    bundle_log log;
    for (std::uint32_t round = 0; log.bytes.size() < data.size(); ++round) {
        BOOST_REQUIRE_LT(round, 8u);
        auto* s = sqe();
        zu::prep_recv_bundle(s, server.get(), 2, false);
        zu::set_user_data(s, tag(14, round));
        auto c = cq.next(tag(14, round));
        BOOST_TEST(!has_more(c));
        take_bundle_cqe(br, c, log);
    }
    BOOST_TEST(log.bytes == data);
    BOOST_TEST(log.largest_bundle >= 2u);  // what makes it a bundle
    // The buffers were used in ring order: 0, 1, 2, ...
    for (std::size_t i = 0; i < log.ids.size(); ++i) BOOST_TEST(log.ids[i] == i);
    auto used = log.ids.size();
    for (auto id : log.ids) br.recycle(id);
    br.publish();

    // Multishot: CQEs with F_MORE, continuing in ring order where the
    // single-shot receives stopped.
    auto* s = sqe();
    zu::prep_recv_bundle(s, server.get(), 2, true);
    zu::set_user_data(s, tag(15));
    submit(1);
    auto more = pattern(150, 3);
    send_all(client.get(), more);
    bundle_log mlog;
    while (mlog.bytes.size() < more.size()) {
        auto c = cq.next(tag(15));
        BOOST_TEST(has_more(c));
        take_bundle_cqe(br, c, mlog);
    }
    BOOST_TEST(mlog.bytes == more);
    BOOST_TEST(mlog.largest_bundle >= 2u);
    for (std::size_t i = 0; i < mlog.ids.size(); ++i) BOOST_TEST(mlog.ids[i] == (used + i) % 16);
    client.reset();
    auto c = cq.next(tag(15));
    BOOST_TEST(c.res == 0);
    BOOST_TEST(!has_more(c));
}

BOOST_FIXTURE_TEST_CASE(recvmsg_scatters_into_iovecs, ring_fixture) {
    auto [client, server] = zerg::test::tcp_pair();
    std::array<char, 5> head{};
    std::array<char, 32> tail{};
    iovec iov[2] = {{head.data(), head.size()}, {tail.data(), tail.size()}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    auto* s = sqe();
    zu::prep_recvmsg(s, server.get(), &msg);
    zu::set_user_data(s, tag(16));
    submit(1);
    send_all(client.get(), "hello world");
    auto c = cq.next(tag(16));
    BOOST_REQUIRE_EQUAL(c.res, 11);
    BOOST_TEST(c.flags == 0u);
    BOOST_TEST(std::string(head.data(), 5) == "hello");
    BOOST_TEST(std::string(tail.data(), 6) == " world");
}

BOOST_FIXTURE_TEST_CASE(recvmsg_multishot_buffers_start_with_a_header, ring_fixture) {
    if (skip_without_buf_ring()) return;
    zu::buffer_ring br(ring, {.group_id = 4, .entries = 4, .buffer_size = 256});
    // Datagrams keep their boundaries, so each send is one CQE; the sender is
    // bound to an abstract name so the name area has something to check, and
    // SO_PASSCRED on the receiver fills the control area.
    int sv[2];
    BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0);
    fd_guard sender(sv[0]), receiver(sv[1]);
    sockaddr_un name{};
    name.sun_family = AF_UNIX;
    std::string abstract = "zerg-operations-test-" + std::to_string(::getpid());
    std::memcpy(name.sun_path + 1, abstract.data(), abstract.size());
    auto name_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract.size());
    BOOST_REQUIRE(::bind(sender.get(), reinterpret_cast<sockaddr*>(&name), name_len) == 0);
    int on = 1;
    BOOST_REQUIRE(::setsockopt(receiver.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0);

    msghdr layout{};
    layout.msg_namelen = sizeof(sockaddr_un);
    layout.msg_controllen = CMSG_SPACE(sizeof(ucred));
    auto* s = sqe();
    zu::prep_recvmsg_multishot(s, receiver.get(), &layout, 4);
    zu::set_user_data(s, tag(17));
    submit(1);

    const std::string msgs[] = {"first datagram", "second"};
    for (std::uint16_t i = 0; i < 2; ++i) {
        send_all(sender.get(), msgs[i]);
        auto c = cq.next(tag(17));
        BOOST_REQUIRE_GT(c.res, 0);
        BOOST_TEST(has_more(c));
        BOOST_REQUIRE(has_buffer(c));
        BOOST_TEST(buffer_id(c) == i);
        const std::byte* buf = br.buffer(buffer_id(c));
        io_uring_recvmsg_out out;
        std::memcpy(&out, buf, sizeof out);
        // res counts the whole buffer use: header, name and control areas, payload.
        BOOST_TEST(static_cast<std::size_t>(c.res) ==
                   sizeof out + layout.msg_namelen + layout.msg_controllen + msgs[i].size());
        BOOST_TEST(out.payloadlen == msgs[i].size());
        BOOST_TEST(out.namelen == static_cast<std::uint32_t>(name_len));
        BOOST_TEST(out.flags == 0u);
        const std::byte* name_area = buf + sizeof out;
        BOOST_TEST(std::memcmp(name_area, &name, name_len) == 0);
        BOOST_REQUIRE_GE(out.controllen, sizeof(cmsghdr));
        cmsghdr cm;
        const std::byte* control = name_area + layout.msg_namelen;
        std::memcpy(&cm, control, sizeof cm);
        BOOST_TEST(cm.cmsg_level == SOL_SOCKET);
        BOOST_TEST(cm.cmsg_type == SCM_CREDENTIALS);
        ucred cred;
        std::memcpy(&cred, control + CMSG_LEN(0), sizeof cred);
        BOOST_TEST(cred.pid == ::getpid());
        const std::byte* payload = control + layout.msg_controllen;
        BOOST_TEST(text_of(payload, out.payloadlen) == msgs[i]);
    }
    s = sqe();
    zu::prep_cancel(s, tag(17));
    zu::set_user_data(s, tag(18));
    BOOST_TEST(cq.next(tag(18)).res == 0);
    auto last = cq.next(tag(17));
    BOOST_TEST(last.res == -ECANCELED);
    BOOST_TEST(!has_more(last));
}

// ---- send -----------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(send_delivers_bytes, ring_fixture) {
    auto [client, server] = zerg::test::tcp_pair();
    std::string data = "sent through the ring";
    auto* s = sqe();
    zu::prep_send(s, client.get(), bytes_of(data));
    zu::set_user_data(s, tag(20));
    auto c = cq.next(tag(20));
    BOOST_TEST(c.res == static_cast<int>(data.size()));
    BOOST_TEST(c.flags == 0u);
    BOOST_TEST(read_exact(server.get(), data.size()) == data);

    // Default MSG_NOSIGNAL: a send to a closed peer is -EPIPE, not SIGPIPE.
    auto [a, b] = zerg::test::unix_pair();
    b.reset();
    s = sqe();
    zu::prep_send(s, a.get(), bytes_of(data));
    zu::set_user_data(s, tag(20, 1));
    BOOST_TEST(cq.next(tag(20, 1)).res == -EPIPE);
}

BOOST_FIXTURE_TEST_CASE(sendmsg_gathers_iovecs, ring_fixture) {
    auto [client, server] = zerg::test::unix_pair();
    std::string p1 = "gather ", p2 = "three ", p3 = "parts";
    iovec iov[3] = {{p1.data(), p1.size()}, {p2.data(), p2.size()}, {p3.data(), p3.size()}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 3;
    auto* s = sqe();
    zu::prep_sendmsg(s, client.get(), &msg);
    zu::set_user_data(s, tag(21));
    auto c = cq.next(tag(21));
    BOOST_TEST(c.res == 18);
    BOOST_TEST(c.flags == 0u);
    BOOST_TEST(read_exact(server.get(), 18) == "gather three parts");
}

namespace {
// A zero-copy send completes twice: the result with F_MORE, then the
// notification with F_NOTIF once the kernel is done with the memory.
void expect_zero_copy_pair(completions& cq, zu::user_data ud, int expected_bytes) {
    auto result = cq.next(ud);
    BOOST_TEST(result.res == expected_bytes);
    BOOST_TEST(has_more(result));
    BOOST_TEST(!is_notification(result));
    auto notif = cq.next(ud);
    BOOST_TEST(is_notification(notif));
    BOOST_TEST(!has_more(notif));
    BOOST_TEST(notif.res == 0);
}
}  // namespace

BOOST_FIXTURE_TEST_CASE(send_zc_posts_result_then_notification, ring_fixture) {
    if (skip_unless(kernel().supports(IORING_OP_SEND_ZC), "IORING_OP_SEND_ZC (Linux 6.0)")) return;
    auto [client, server] = zerg::test::tcp_pair();
    auto data = pattern(16384);
    auto* s = sqe();
    zu::prep_send_zc(s, client.get(), bytes_of(data));
    zu::set_user_data(s, tag(22));
    expect_zero_copy_pair(cq, tag(22), 16384);
    BOOST_TEST(read_exact(server.get(), data.size()) == data);

    // With IORING_SEND_ZC_REPORT_USAGE the notification says whether the
    // kernel had to copy after all; over loopback it always does. The flag
    // is 6.2, which no probe bit marks; 6.3's IORING_FEAT_REG_REG_RING does.
    if (skip_unless(kernel().has(IORING_FEAT_REG_REG_RING), "IORING_SEND_ZC_REPORT_USAGE (Linux 6.2)")) return;
    {
        s = sqe();
        zu::prep_send_zc(s, client.get(), bytes_of(data), MSG_NOSIGNAL, IORING_SEND_ZC_REPORT_USAGE);
        zu::set_user_data(s, tag(22, 1));
        auto result = cq.next(tag(22, 1));
        BOOST_TEST(result.res == 16384);
        BOOST_TEST(has_more(result));
        auto notif = cq.next(tag(22, 1));
        BOOST_TEST(is_notification(notif));
        BOOST_TEST(static_cast<std::uint32_t>(notif.res) == IORING_NOTIF_USAGE_ZC_COPIED);
        BOOST_TEST(read_exact(server.get(), data.size()) == data);
    }
}

BOOST_FIXTURE_TEST_CASE(sendmsg_zc_posts_result_then_notification, ring_fixture) {
    if (skip_unless(kernel().supports(IORING_OP_SENDMSG_ZC), "IORING_OP_SENDMSG_ZC (Linux 6.1)")) return;
    auto [client, server] = zerg::test::tcp_pair();
    auto a = pattern(8000, 1), b = pattern(9000, 2);
    iovec iov[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    auto* s = sqe();
    zu::prep_sendmsg_zc(s, client.get(), &msg);
    zu::set_user_data(s, tag(23));
    expect_zero_copy_pair(cq, tag(23), 17000);
    BOOST_TEST(read_exact(server.get(), 17000) == a + b);
}

BOOST_FIXTURE_TEST_CASE(send_zc_fixed_sends_from_a_registered_buffer, ring_fixture) {
    if (skip_unless(kernel().supports(IORING_OP_SEND_ZC), "IORING_OP_SEND_ZC (Linux 6.0)")) return;
    zu::registered_buffers bufs(ring, 2, 16384);
    auto [client, server] = zerg::test::tcp_pair();
    auto data = pattern(12000, 5);
    auto mem = bufs.buffer(1);
    std::memcpy(mem.data(), data.data(), data.size());
    // A slice in the middle of registered buffer 1.
    auto part = std::span<const std::byte>(mem.data() + 1000, 10000);
    auto* s = sqe();
    zu::prep_send_zc_fixed(s, client.get(), part, 1);
    zu::set_user_data(s, tag(24));
    expect_zero_copy_pair(cq, tag(24), 10000);
    BOOST_TEST(read_exact(server.get(), 10000) == data.substr(1000, 10000));

    // The index matters: buffer 1's memory is not inside registered buffer 0.
    s = sqe();
    zu::prep_send_zc_fixed(s, client.get(), part, 0);
    zu::set_user_data(s, tag(24, 1));
    auto bad = cq.next(tag(24, 1));
    BOOST_TEST(bad.res == -EFAULT);
    // A failed zero-copy send may still post its notification; claim it if so.
    if (has_more(bad)) BOOST_TEST(is_notification(cq.next(tag(24, 1))));
    BOOST_TEST(nothing_to_read(server.get()));
}

// ---- read / write -----------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(read_and_write_on_a_pipe_and_a_file, ring_fixture) {
    auto [rd, wr] = make_pipe();
    std::string data = "through a pipe";
    auto* s = sqe();
    zu::prep_write(s, wr.get(), bytes_of(data));
    zu::set_user_data(s, tag(30));
    BOOST_TEST(cq.next(tag(30)).res == static_cast<int>(data.size()));
    std::array<std::byte, 64> buf{};
    s = sqe();
    zu::prep_read(s, rd.get(), buf);
    zu::set_user_data(s, tag(31));
    auto c = cq.next(tag(31));
    BOOST_REQUIRE_EQUAL(c.res, static_cast<int>(data.size()));
    BOOST_TEST(text_of(buf.data(), data.size()) == data);

    // A file at explicit offsets.
    auto file = make_memfd();
    s = sqe();
    zu::prep_write(s, file.get(), bytes_of("offset data"), 100);
    zu::set_user_data(s, tag(32));
    BOOST_TEST(cq.next(tag(32)).res == 11);
    BOOST_TEST(pread_text(file.get(), 11, 100) == "offset data");
    BOOST_TEST(pread_text(file.get(), 100, 0) == std::string(100, '\0'));
    s = sqe();
    zu::prep_read(s, file.get(), std::span(buf).first(4), 107);
    zu::set_user_data(s, tag(33));
    BOOST_REQUIRE_EQUAL(cq.next(tag(33)).res, 4);
    BOOST_TEST(text_of(buf.data(), 4) == "data");
    // Default offset: the file position, which the write at an explicit offset left alone.
    s = sqe();
    zu::prep_read(s, file.get(), std::span(buf).first(3));
    zu::set_user_data(s, tag(34));
    BOOST_REQUIRE_EQUAL(cq.next(tag(34)).res, 3);
    BOOST_TEST(text_of(buf.data(), 3) == std::string(3, '\0'));
    BOOST_TEST(::lseek(file.get(), 0, SEEK_CUR) == 3);
}

BOOST_FIXTURE_TEST_CASE(read_fixed_and_write_fixed_use_registered_buffers, ring_fixture) {
    zu::registered_buffers bufs(ring, 2, 4096);
    auto file = make_memfd();
    auto data = pattern(3000, 9);
    auto src = bufs.buffer(0);
    std::memcpy(src.data(), data.data(), data.size());
    auto* s = sqe();
    zu::prep_write_fixed(s, file.get(), src.first(3000), 0, 0);
    zu::set_user_data(s, tag(35));
    BOOST_TEST(cq.next(tag(35)).res == 3000);
    BOOST_TEST(pread_text(file.get(), 3000, 0) == data);

    auto dst = bufs.buffer(1);
    std::memset(dst.data(), 0, dst.size());
    s = sqe();
    zu::prep_read_fixed(s, file.get(), dst.subspan(96, 1000), 1, 500);
    zu::set_user_data(s, tag(36));
    BOOST_REQUIRE_EQUAL(cq.next(tag(36)).res, 1000);
    BOOST_TEST(text_of(dst.data() + 96, 1000) == data.substr(500, 1000));
    BOOST_TEST(std::to_integer<int>(dst[95]) == 0);

    // The buffer must lie inside the registered buffer named.
    s = sqe();
    zu::prep_read_fixed(s, file.get(), dst.first(100), 0, 0);
    zu::set_user_data(s, tag(37));
    BOOST_TEST(cq.next(tag(37)).res == -EFAULT);
}

BOOST_FIXTURE_TEST_CASE(readv_and_writev_scatter_and_gather, ring_fixture) {
    auto file = make_memfd();
    std::string a = "vectored ", b = "write ", c = "works";
    iovec out[3] = {{a.data(), a.size()}, {b.data(), b.size()}, {c.data(), c.size()}};
    auto* s = sqe();
    zu::prep_writev(s, file.get(), out, 0);
    zu::set_user_data(s, tag(38));
    BOOST_TEST(cq.next(tag(38)).res == 20);
    BOOST_TEST(pread_text(file.get(), 64, 0) == "vectored write works");

    std::array<char, 6> x{};
    std::array<char, 5> y{};
    iovec in[2] = {{x.data(), x.size()}, {y.data(), y.size()}};
    s = sqe();
    zu::prep_readv(s, file.get(), in, 9);
    zu::set_user_data(s, tag(39));
    BOOST_REQUIRE_EQUAL(cq.next(tag(39)).res, 11);
    BOOST_TEST(std::string(x.data(), x.size()) == "write ");
    BOOST_TEST(std::string(y.data(), y.size()) == "works");
}

BOOST_FIXTURE_TEST_CASE(read_multishot_reads_a_pipe_into_provided_buffers, ring_fixture) {
    if (skip_unless(kernel().supports(zu::opcode::read_multishot), "IORING_OP_READ_MULTISHOT (Linux 6.7)")) return;
    if (skip_without_buf_ring()) return;
    zu::buffer_ring br(ring, {.group_id = 5, .entries = 4, .buffer_size = 64});
    auto [rd, wr] = make_pipe();
    auto* s = sqe();
    zu::prep_read_multishot(s, rd.get(), 5);
    zu::set_user_data(s, tag(40));
    submit(1);

    const std::string msgs[] = {"first write", "second"};
    for (std::uint16_t i = 0; i < 2; ++i) {
        write_all(wr.get(), msgs[i]);
        auto c = cq.next(tag(40));
        BOOST_REQUIRE_EQUAL(c.res, static_cast<int>(msgs[i].size()));
        BOOST_TEST(has_more(c));
        BOOST_REQUIRE(has_buffer(c));
        BOOST_TEST(buffer_id(c) == i);
        BOOST_TEST(text_of(br.buffer(i), msgs[i].size()) == msgs[i]);
    }
    wr.reset();
    auto c = cq.next(tag(40));
    BOOST_TEST(c.res == 0);
    BOOST_TEST(!has_more(c));
}

// ---- close / shutdown ---------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(close_releases_the_fd, ring_fixture) {
    auto [a, b] = zerg::test::unix_pair();
    int fd = a.release();
    auto* s = sqe();
    zu::prep_close(s, fd);
    zu::set_user_data(s, tag(41));
    BOOST_TEST(cq.next(tag(41)).res == 0);
    BOOST_TEST(!fd_is_open(fd));
    BOOST_TEST(sees_eof(b.get()));

    s = sqe();
    zu::prep_close(s, fd);  // already closed
    zu::set_user_data(s, tag(41, 1));
    BOOST_TEST(cq.next(tag(41, 1)).res == -EBADF);
}

BOOST_FIXTURE_TEST_CASE(close_direct_empties_a_slot, ring_fixture) {
    zu::registered_files files(ring, 4);
    auto [a, b] = zerg::test::unix_pair();
    BOOST_REQUIRE_EQUAL(files.update(2, a.get()), 0);
    a.reset();  // the table holds the only reference now

    auto* s = sqe();
    zu::prep_send(s, 2, bytes_of("slot"));
    zu::use_fixed_file(s);
    zu::set_user_data(s, tag(42));
    BOOST_TEST(cq.next(tag(42)).res == 4);
    BOOST_TEST(read_exact(b.get(), 4) == "slot");

    s = sqe();
    zu::prep_close_direct(s, 2);
    zu::set_user_data(s, tag(43));
    BOOST_TEST(cq.next(tag(43)).res == 0);
    BOOST_TEST(sees_eof(b.get()));  // the last reference went with the slot

    s = sqe();
    zu::prep_send(s, 2, bytes_of("gone"));
    zu::use_fixed_file(s);
    zu::set_user_data(s, tag(44));
    BOOST_TEST(cq.next(tag(44)).res == -EBADF);
    s = sqe();
    zu::prep_close_direct(s, 2);
    zu::set_user_data(s, tag(45));
    BOOST_TEST(cq.next(tag(45)).res == -EBADF);
}

BOOST_FIXTURE_TEST_CASE(shutdown_write_gives_the_peer_eof, ring_fixture) {
    auto [client, server] = zerg::test::tcp_pair();
    send_all(client.get(), "bye");
    auto* s = sqe();
    zu::prep_shutdown(s, client.get(), SHUT_WR);
    zu::set_user_data(s, tag(46));
    auto c = cq.next(tag(46));
    BOOST_TEST(c.res == 0);
    BOOST_TEST(c.flags == 0u);
    BOOST_TEST(read_exact(server.get(), 3) == "bye");
    BOOST_TEST(sees_eof(server.get()));
    // Only the write side: the other direction still works.
    send_all(server.get(), "still open");
    BOOST_TEST(read_exact(client.get(), 10) == "still open");
}

// ---- cancel -----------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(cancel_by_user_data, ring_fixture) {
    auto [client, server] = zerg::test::tcp_pair();
    std::array<std::byte, 16> buf{};
    auto* s = sqe();
    zu::prep_recv(s, server.get(), buf);
    zu::set_user_data(s, tag(50, 1));
    submit(1);
    s = sqe();
    zu::prep_cancel(s, tag(50, 1));
    zu::set_user_data(s, tag(51));
    BOOST_TEST(cq.next(tag(51)).res == 0);
    BOOST_TEST(cq.next(tag(50, 1)).res == -ECANCELED);

    // Nothing tagged so: -ENOENT.
    s = sqe();
    zu::prep_cancel(s, tag(50, 2));
    zu::set_user_data(s, tag(52));
    BOOST_TEST(cq.next(tag(52)).res == -ENOENT);
    // The socket is untouched: data still arrives.
    send_all(client.get(), "ok");
    BOOST_TEST(read_exact(server.get(), 2) == "ok");

    // IORING_ASYNC_CANCEL_ALL: every request with the tag; res is the count.
    std::array<std::byte, 16> other{};
    for (int i = 0; i < 2; ++i) {
        s = sqe();
        zu::prep_recv(s, server.get(), i == 0 ? buf : other);
        zu::set_user_data(s, tag(50, 3));
    }
    submit(2);
    s = sqe();
    zu::prep_cancel(s, tag(50, 3), IORING_ASYNC_CANCEL_ALL);
    zu::set_user_data(s, tag(52, 1));
    BOOST_TEST(cq.next(tag(52, 1)).res == 2);
    BOOST_TEST(cq.next(tag(50, 3)).res == -ECANCELED);
    BOOST_TEST(cq.next(tag(50, 3)).res == -ECANCELED);
    BOOST_TEST(cq.unclaimed() == 0u);
}

BOOST_FIXTURE_TEST_CASE(cancel_fd_cancels_every_request_on_that_fd, ring_fixture) {
    auto [c1, s1] = zerg::test::unix_pair();
    auto [c2, s2] = zerg::test::unix_pair();
    std::array<std::byte, 16> b1{}, b3{};
    auto* s = sqe();
    zu::prep_recv(s, s1.get(), b1);
    zu::set_user_data(s, tag(53, 1));
    s = sqe();
    zu::prep_poll_add(s, s1.get(), POLLIN);
    zu::set_user_data(s, tag(53, 2));
    s = sqe();
    zu::prep_recv(s, s2.get(), b3);
    zu::set_user_data(s, tag(53, 3));
    submit(3);
    s = sqe();
    zu::prep_cancel_fd(s, s1.get());
    zu::set_user_data(s, tag(54));
    BOOST_TEST(cq.next(tag(54)).res == 2);  // how many it cancelled
    BOOST_TEST(cq.next(tag(53, 1)).res == -ECANCELED);
    BOOST_TEST(cq.next(tag(53, 2)).res == -ECANCELED);
    BOOST_TEST(cq.unclaimed() == 0u);  // the recv on the other fd is still waiting

    send_all(c2.get(), "other");
    auto c = cq.next(tag(53, 3));
    BOOST_REQUIRE_EQUAL(c.res, 5);
    BOOST_TEST(text_of(b3.data(), 5) == "other");

    // No request on that fd any more: a count of 0 (not -ENOENT, since it
    // cancels all matches).
    s = sqe();
    zu::prep_cancel_fd(s, s1.get());
    zu::set_user_data(s, tag(54, 1));
    BOOST_TEST(cq.next(tag(54, 1)).res == 0);
}

BOOST_FIXTURE_TEST_CASE(cancel_all_cancels_everything_pending, ring_fixture) {
    auto [c1, s1] = zerg::test::unix_pair();
    auto [c2, s2] = zerg::test::tcp_pair();
    auto listener = zerg::test::listen_loopback();
    std::array<std::byte, 16> b1{}, b2{};
    auto* s = sqe();
    zu::prep_recv(s, s1.get(), b1);
    zu::set_user_data(s, tag(55, 1));
    s = sqe();
    zu::prep_recv(s, s2.get(), b2);
    zu::set_user_data(s, tag(55, 2));
    s = sqe();
    zu::prep_accept(s, listener.get(), nullptr, nullptr);
    zu::set_user_data(s, tag(55, 3));
    submit(3);
    s = sqe();
    zu::prep_cancel_all(s);
    zu::set_user_data(s, tag(56));
    BOOST_TEST(cq.next(tag(56)).res == 3);
    for (std::uint32_t i = 1; i <= 3; ++i) BOOST_TEST(cq.next(tag(55, i)).res == -ECANCELED);
    BOOST_TEST(cq.unclaimed() == 0u);
}

// ---- timeouts ---------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(timeout_fires_with_etime, ring_fixture) {
    auto ts = zu::to_timespec(20ms);
    auto start = steady::now();
    auto* s = sqe();
    zu::prep_timeout(s, &ts);
    zu::set_user_data(s, tag(60));
    auto c = cq.next(tag(60));
    auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start).count();
    BOOST_TEST(c.res == -ETIME);
    BOOST_TEST(c.flags == 0u);
    BOOST_TEST(elapsed_ms >= 20);
    BOOST_TEST(elapsed_ms < 2000);
}

BOOST_FIXTURE_TEST_CASE(timeout_flags_reach_the_kernel, ring_fixture) {
    // IORING_TIMEOUT_ABS: the timespec is a CLOCK_MONOTONIC instant.
    timespec now{};
    BOOST_REQUIRE(::clock_gettime(CLOCK_MONOTONIC, &now) == 0);
    auto at = std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec) + 30ms;
    auto ts = zu::to_timespec(at);
    auto start = steady::now();
    auto* s = sqe();
    zu::prep_timeout(s, &ts, 0, IORING_TIMEOUT_ABS);
    zu::set_user_data(s, tag(67));
    BOOST_TEST(cq.next(tag(67)).res == -ETIME);
    auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start).count();
    BOOST_TEST(elapsed_ms >= 20);
    // Were the flag lost, the instant would be read as a duration as long as
    // the uptime, and the wait above would time out.
    BOOST_TEST(elapsed_ms < 2000);
}

BOOST_FIXTURE_TEST_CASE(timeout_with_count_completes_after_that_many_cqes, ring_fixture) {
    auto ts = zu::to_timespec(10s);
    auto start = steady::now();
    auto* s = sqe();
    zu::prep_timeout(s, &ts, 2);
    zu::set_user_data(s, tag(61));
    submit(1);
    s = sqe();
    zu::prep_nop(s);
    zu::set_user_data(s, tag(62, 1));
    submit(1);
    BOOST_TEST(cq.next(tag(62, 1)).res == 0);
    BOOST_TEST(cq.unclaimed() == 0u);  // one completion is not enough
    s = sqe();
    zu::prep_nop(s);
    zu::set_user_data(s, tag(62, 2));
    BOOST_TEST(cq.next(tag(62, 2)).res == 0);
    BOOST_TEST(cq.next(tag(61)).res == 0);  // the count, not the clock
    BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start).count() < 5000);
}

BOOST_FIXTURE_TEST_CASE(timeout_remove_cancels_a_timeout, ring_fixture) {
    auto ts = zu::to_timespec(10s);
    auto* s = sqe();
    zu::prep_timeout(s, &ts);
    zu::set_user_data(s, tag(63));
    submit(1);
    s = sqe();
    zu::prep_timeout_remove(s, tag(63));
    zu::set_user_data(s, tag(64));
    BOOST_TEST(cq.next(tag(64)).res == 0);
    BOOST_TEST(cq.next(tag(63)).res == -ECANCELED);
    s = sqe();
    zu::prep_timeout_remove(s, tag(63));
    zu::set_user_data(s, tag(64, 1));
    BOOST_TEST(cq.next(tag(64, 1)).res == -ENOENT);
}

BOOST_FIXTURE_TEST_CASE(link_timeout_bounds_a_linked_recv, ring_fixture) {
    auto [client, server] = zerg::test::tcp_pair();
    std::array<std::byte, 16> buf{};

    // No data: the link timeout fires and cancels the recv.
    auto ts = zu::to_timespec(20ms);
    auto* s = sqe();
    zu::prep_recv(s, server.get(), buf);
    zu::set_user_data(s, tag(65));
    zu::link_next(s);
    s = sqe();
    zu::prep_link_timeout(s, &ts);
    zu::set_user_data(s, tag(66));
    submit(2);
    BOOST_TEST(cq.next(tag(65)).res == -ECANCELED);
    BOOST_TEST(cq.next(tag(66)).res == -ETIME);

    // Data in time: the recv completes and the link timeout is cancelled.
    send_all(client.get(), "in time");
    auto long_ts = zu::to_timespec(10s);
    s = sqe();
    zu::prep_recv(s, server.get(), buf);
    zu::set_user_data(s, tag(65, 1));
    zu::link_next(s);
    s = sqe();
    zu::prep_link_timeout(s, &long_ts);
    zu::set_user_data(s, tag(66, 1));
    auto c = cq.next(tag(65, 1));
    BOOST_REQUIRE_EQUAL(c.res, 7);
    BOOST_TEST(text_of(buf.data(), 7) == "in time");
    BOOST_TEST(cq.next(tag(66, 1)).res == -ECANCELED);
}

// ---- poll -------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(poll_add_reports_readiness_once, ring_fixture) {
    auto [client, server] = zerg::test::unix_pair();
    auto* s = sqe();
    zu::prep_poll_add(s, server.get(), POLLIN);
    zu::set_user_data(s, tag(70));
    submit(1);
    BOOST_TEST(cq.unclaimed() == 0u);
    send_all(client.get(), "ping");
    auto c = cq.next(tag(70));
    BOOST_TEST((c.res & POLLIN) != 0);
    BOOST_TEST(!has_more(c));
    BOOST_TEST(read_exact(server.get(), 4) == "ping");

    // POLLOUT on a writable socket is ready at once.
    s = sqe();
    zu::prep_poll_add(s, server.get(), POLLOUT);
    zu::set_user_data(s, tag(70, 1));
    c = cq.next(tag(70, 1));
    BOOST_TEST((c.res & POLLOUT) != 0);
    BOOST_TEST((c.res & POLLIN) == 0);
}

BOOST_FIXTURE_TEST_CASE(poll_multishot_and_poll_remove, ring_fixture) {
    auto [client, server] = zerg::test::unix_pair();
    auto* s = sqe();
    zu::prep_poll_multishot(s, server.get(), POLLIN);
    zu::set_user_data(s, tag(71));
    submit(1);
    for (int i = 0; i < 3; ++i) {
        send_all(client.get(), "tick");
        auto c = cq.next(tag(71));
        BOOST_TEST((c.res & POLLIN) != 0);
        BOOST_TEST(has_more(c));
        BOOST_TEST(read_exact(server.get(), 4) == "tick");
    }
    s = sqe();
    zu::prep_poll_remove(s, tag(71));
    zu::set_user_data(s, tag(72));
    BOOST_TEST(cq.next(tag(72)).res == 0);
    auto last = cq.next(tag(71));
    BOOST_TEST(last.res == -ECANCELED);
    BOOST_TEST(!has_more(last));
    // Removed: new data posts nothing.
    send_all(client.get(), "tock");
    BOOST_TEST(cq.unclaimed() == 0u);

    s = sqe();
    zu::prep_poll_remove(s, tag(71));
    zu::set_user_data(s, tag(72, 1));
    BOOST_TEST(cq.next(tag(72, 1)).res == -ENOENT);
}

// ---- messages between rings ---------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(msg_ring_posts_a_cqe_on_another_ring, ring_fixture) {
    if (skip_unless(kernel().supports(IORING_OP_MSG_RING), "IORING_OP_MSG_RING (Linux 5.18)")) return;
    zu::ring target;
    completions target_cq(target);
    auto* s = sqe();
    zu::prep_msg_ring(s, target.fd(), 12345, tag(80, 7));
    zu::set_user_data(s, tag(81));
    auto sent = cq.next(tag(81));
    BOOST_TEST(sent.res == 0);
    auto got = target_cq.next(tag(80, 7));
    BOOST_TEST(got.res == 12345);
    BOOST_TEST(got.flags == 0u);
    BOOST_TEST(cq.unclaimed() == 0u);  // nothing tagged (80, 7) on the sender

    // With cqe_flags the target CQE carries exactly those flags (6.3).
    if (skip_unless(kernel().has(IORING_FEAT_REG_REG_RING), "IORING_MSG_RING_FLAGS_PASS (Linux 6.3)")) return;
    const std::uint32_t flags = (std::uint32_t{0x2a} << IORING_CQE_BUFFER_SHIFT) | IORING_CQE_F_BUFFER;
    s = sqe();
    zu::prep_msg_ring(s, target.fd(), 99, tag(80, 8), flags);
    zu::set_user_data(s, tag(81, 1));
    BOOST_TEST(cq.next(tag(81, 1)).res == 0);
    got = target_cq.next(tag(80, 8));
    BOOST_TEST(got.res == 99);
    BOOST_TEST(got.flags == flags);
    BOOST_TEST(has_buffer(got));
    BOOST_TEST(buffer_id(got) == 0x2a);
}

BOOST_FIXTURE_TEST_CASE(msg_ring_fd_moves_a_registered_file_to_another_ring, ring_fixture) {
    if (skip_unless(kernel().supports(IORING_OP_MSG_RING) && kernel().supports(IORING_OP_SEND_ZC),
                    "IORING_MSG_SEND_FD (Linux 6.0)"))
        return;
    zu::registered_files files(ring, 4);
    zu::ring target;
    completions target_cq(target);
    zu::registered_files target_files(target, 4);
    auto [a, b] = zerg::test::unix_pair();
    BOOST_REQUIRE_EQUAL(files.update(1, a.get()), 0);
    a.reset();

    // Source slot 1 -> target slot 2: res 0 there, for a named slot.
    auto* s = sqe();
    zu::prep_msg_ring_fd(s, target.fd(), 1, 2, tag(82, 2));
    zu::set_user_data(s, tag(83));
    BOOST_TEST(cq.next(tag(83)).res == 0);
    auto got = target_cq.next(tag(82, 2));
    BOOST_TEST(got.res == 0);
    BOOST_TEST(got.flags == 0u);

    // The target ring sends through its new slot.
    s = target.get_sqe();
    zu::prep_send(s, 2, bytes_of("via target ring"));
    zu::use_fixed_file(s);
    zu::set_user_data(s, tag(84));
    BOOST_TEST(target_cq.next(tag(84)).res == 15);
    BOOST_TEST(read_exact(b.get(), 15) == "via target ring");

    // The source keeps its own reference: slot 1 still works.
    s = sqe();
    zu::prep_send(s, 1, bytes_of("via source"));
    zu::use_fixed_file(s);
    zu::set_user_data(s, tag(85));
    BOOST_TEST(cq.next(tag(85)).res == 10);
    BOOST_TEST(read_exact(b.get(), 10) == "via source");

    // Into any free slot: both CQEs have the slot the target chose.
    s = sqe();
    zu::prep_msg_ring_fd(s, target.fd(), 1, IORING_FILE_INDEX_ALLOC, tag(82, 9));
    zu::set_user_data(s, tag(83, 1));
    auto source = cq.next(tag(83, 1));
    got = target_cq.next(tag(82, 9));
    BOOST_REQUIRE_GE(got.res, 0);
    BOOST_TEST(source.res == got.res);
    BOOST_TEST(got.res < 4);
    BOOST_TEST(got.res != 2);
    s = target.get_sqe();
    zu::prep_send(s, got.res, bytes_of("allocated"));
    zu::use_fixed_file(s);
    zu::set_user_data(s, tag(84, 1));
    BOOST_TEST(target_cq.next(tag(84, 1)).res == 9);
    BOOST_TEST(read_exact(b.get(), 9) == "allocated");

    // An empty source slot: -EBADF, and nothing reaches the target.
    s = sqe();
    zu::prep_msg_ring_fd(s, target.fd(), 3, 0, tag(82, 10));
    zu::set_user_data(s, tag(83, 2));
    BOOST_TEST(cq.next(tag(83, 2)).res == -EBADF);
    BOOST_TEST(target_cq.unclaimed() == 0u);
}

// ---- sockets through the ring ----------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(socket_creates_a_regular_fd, ring_fixture) {
    if (skip_unless(kernel().supports(IORING_OP_SOCKET), "IORING_OP_SOCKET (Linux 5.19)")) return;
    auto* s = sqe();
    zu::prep_socket(s, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    zu::set_user_data(s, tag(90));
    auto c = cq.next(tag(90));
    BOOST_REQUIRE_GE(c.res, 0);
    fd_guard sock(c.res);
    BOOST_TEST(int_sockopt(sock.get(), SOL_SOCKET, SO_DOMAIN) == AF_INET);
    BOOST_TEST(int_sockopt(sock.get(), SOL_SOCKET, SO_TYPE) == SOCK_STREAM);
    BOOST_TEST((::fcntl(sock.get(), F_GETFD) & FD_CLOEXEC) != 0);

    s = sqe();
    zu::prep_socket(s, AF_UNIX, SOCK_DGRAM, 0);
    zu::set_user_data(s, tag(90, 1));
    c = cq.next(tag(90, 1));
    BOOST_REQUIRE_GE(c.res, 0);
    fd_guard unix_sock(c.res);
    BOOST_TEST(int_sockopt(unix_sock.get(), SOL_SOCKET, SO_DOMAIN) == AF_UNIX);
    BOOST_TEST(int_sockopt(unix_sock.get(), SOL_SOCKET, SO_TYPE) == SOCK_DGRAM);
    BOOST_TEST((::fcntl(unix_sock.get(), F_GETFD) & FD_CLOEXEC) == 0);

    // The socket connects like any other.
    auto listener = zerg::test::listen_loopback();
    auto addr = loopback_address(zerg::test::port_of(listener.get()));
    BOOST_REQUIRE(::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
}

BOOST_FIXTURE_TEST_CASE(socket_direct_creates_into_the_file_table, ring_fixture) {
    if (skip_unless(kernel().supports(IORING_OP_SOCKET), "IORING_OP_SOCKET (Linux 5.19)")) return;
    zu::registered_files files(ring, 4);
    auto listener = zerg::test::listen_loopback();
    auto addr = loopback_address(zerg::test::port_of(listener.get()));

    auto* s = sqe();
    zu::prep_socket_direct(s, AF_INET, SOCK_STREAM, 0, 1);
    zu::set_user_data(s, tag(91));
    BOOST_TEST(cq.next(tag(91)).res == 0);  // named slot: res 0

    s = sqe();
    zu::prep_socket_direct(s, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0, IORING_FILE_INDEX_ALLOC);
    zu::set_user_data(s, tag(91, 1));
    auto alloc = cq.next(tag(91, 1));
    BOOST_REQUIRE_GE(alloc.res, 0);
    BOOST_TEST(alloc.res < 4);
    BOOST_TEST(alloc.res != 1);

    // Both are real TCP sockets: connect each through its slot and talk.
    for (int slot : {1, alloc.res}) {
        s = sqe();
        zu::prep_connect(s, slot, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
        zu::use_fixed_file(s);
        zu::set_user_data(s, tag(92, static_cast<std::uint32_t>(slot)));
        BOOST_TEST(cq.next(tag(92, static_cast<std::uint32_t>(slot))).res == 0);
        fd_guard server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        BOOST_REQUIRE_GE(server.get(), 0);
        std::string msg = "from slot " + std::to_string(slot);
        s = sqe();
        zu::prep_send(s, slot, bytes_of(msg));
        zu::use_fixed_file(s);
        zu::set_user_data(s, tag(93, static_cast<std::uint32_t>(slot)));
        BOOST_TEST(cq.next(tag(93, static_cast<std::uint32_t>(slot))).res == static_cast<int>(msg.size()));
        BOOST_TEST(read_exact(server.get(), msg.size()) == msg);
    }
}

BOOST_FIXTURE_TEST_CASE(bind_and_listen_through_the_ring, ring_fixture) {
    if (skip_unless(kernel().supports(zu::opcode::bind) && kernel().supports(zu::opcode::listen),
                    "IORING_OP_BIND and IORING_OP_LISTEN (Linux 6.11)"))
        return;
    fd_guard sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    BOOST_REQUIRE_GE(sock.get(), 0);
    auto addr = loopback_address(0);
    auto* s = sqe();
    zu::prep_bind(s, sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    zu::set_user_data(s, tag(94));
    BOOST_TEST(cq.next(tag(94)).res == 0);
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    BOOST_REQUIRE(::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&bound), &len) == 0);
    BOOST_TEST(ntohl(bound.sin_addr.s_addr) == INADDR_LOOPBACK);
    BOOST_TEST(bound.sin_port != 0);

    s = sqe();
    zu::prep_listen(s, sock.get(), 16);
    zu::set_user_data(s, tag(95));
    BOOST_TEST(cq.next(tag(95)).res == 0);
    BOOST_TEST(int_sockopt(sock.get(), SOL_SOCKET, SO_ACCEPTCONN) == 1);

    // A client reaches it and the ring accepts it.
    s = sqe();
    zu::prep_accept(s, sock.get(), nullptr, nullptr);
    zu::set_user_data(s, tag(96));
    submit(1);
    auto client = zerg::test::connect_loopback(ntohs(bound.sin_port));
    auto c = cq.next(tag(96));
    BOOST_REQUIRE_GE(c.res, 0);
    fd_guard accepted(c.res);
    send_all(client.get(), "bound by the ring");
    BOOST_TEST(read_exact(accepted.get(), 17) == "bound by the ring");

    // The address length is honoured: a short one is refused.
    fd_guard other(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    s = sqe();
    zu::prep_bind(s, other.get(), reinterpret_cast<const sockaddr*>(&addr), 4);
    zu::set_user_data(s, tag(94, 1));
    BOOST_TEST(cq.next(tag(94, 1)).res == -EINVAL);
}

BOOST_FIXTURE_TEST_CASE(setsockopt_and_getsockopt_through_the_ring, ring_fixture) {
    if (skip_unless(kernel().socket_commands, "socket commands of IORING_OP_URING_CMD (Linux 6.7)"))
        return;
    auto [client, server] = zerg::test::tcp_pair();

    // SO_RCVBUF through the ring ends up exactly as a plain setsockopt of
    // the same value does on the peer socket (the kernel doubles it, within
    // net.core.rmem_max), and differs from the default.
    int rcvbuf = 48 * 1024;
    int before = int_sockopt(server.get(), SOL_SOCKET, SO_RCVBUF);
    auto* s = sqe();
    zu::prep_setsockopt(s, server.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    zu::set_user_data(s, tag(97));
    BOOST_TEST(cq.next(tag(97)).res == 0);
    BOOST_REQUIRE(::setsockopt(client.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0);
    int plain = int_sockopt(server.get(), SOL_SOCKET, SO_RCVBUF);
    BOOST_TEST(plain == int_sockopt(client.get(), SOL_SOCKET, SO_RCVBUF));
    BOOST_TEST(plain != before);

    // TCP_NODELAY: another level.
    BOOST_REQUIRE_EQUAL(int_sockopt(server.get(), IPPROTO_TCP, TCP_NODELAY), 0);
    int on = 1;
    s = sqe();
    zu::prep_setsockopt(s, server.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    zu::set_user_data(s, tag(97, 1));
    BOOST_TEST(cq.next(tag(97, 1)).res == 0);
    BOOST_TEST(int_sockopt(server.get(), IPPROTO_TCP, TCP_NODELAY) == 1);

    // getsockopt through the ring agrees with the plain call; res is the length.
    int through_ring = -1;
    s = sqe();
    zu::prep_getsockopt(s, server.get(), SOL_SOCKET, SO_RCVBUF, &through_ring, sizeof through_ring);
    zu::set_user_data(s, tag(98));
    BOOST_TEST(cq.next(tag(98)).res == static_cast<int>(sizeof(int)));
    BOOST_TEST(through_ring == plain);

    int type = -1;
    s = sqe();
    zu::prep_getsockopt(s, client.get(), SOL_SOCKET, SO_TYPE, &type, sizeof type);
    zu::set_user_data(s, tag(98, 1));
    BOOST_TEST(cq.next(tag(98, 1)).res == static_cast<int>(sizeof(int)));
    BOOST_TEST(type == SOCK_STREAM);

    // A non-socket fd is refused.
    auto [rd, wr] = make_pipe();
    s = sqe();
    zu::prep_setsockopt(s, rd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    zu::set_user_data(s, tag(97, 2));
    BOOST_TEST(cq.next(tag(97, 2)).res < 0);
}
