#define BOOST_TEST_MODULE pipe_operations
#include <boost/test/unit_test.hpp>

// splice, tee and pipe creation (zerg/uring/pipe_operations.hpp) through a
// real ring, against pipes and a file in a temporary directory.

#include <zerg/uring/compat.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/pipe_operations.hpp>
#include <zerg/uring/registered_files.hpp>

#include "support/stale_sqe.hpp"
#include "support/op_ring.hpp"
#include "support/skip.hpp"
#include "support/sockets.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace zu = zerg::uring;
using zerg::test::fd_guard;
using zerg::test::kernel;
using zerg::test::op_ring;
using zerg::test::skip_unless;
using zerg::test::temp_dir;

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::pair<fd_guard, fd_guard> make_pipe() {
    int p[2];
    zerg::test::check(::pipe2(p, O_CLOEXEC) == 0, "pipe2");
    return {fd_guard(p[0]), fd_guard(p[1])};
}

// What is in the pipe right now (non-blocking: nothing waits).
std::string drain(int fd) {
    std::string out;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) return out;
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) return out;
        out.append(buf, static_cast<std::size_t>(n));
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_pipe_prep_overwrites_a_stale_sqe) {
    static int fds[2];
    const std::vector<std::pair<const char*, std::function<void(io_uring_sqe*)>>> preps = {
        {"splice", [](io_uring_sqe* s) { zu::prep_splice(s, 3, -1, 4, 0, 100); }},
        {"tee", [](io_uring_sqe* s) { zu::prep_tee(s, 3, 4, 100); }},
        {"pipe", [](io_uring_sqe* s) { zu::prep_pipe(s, fds); }},
        {"pipe_direct", [](io_uring_sqe* s) { zu::prep_pipe_direct(s, fds, 0, 2); }},
        {"pipe_direct alloc", [](io_uring_sqe* s) { zu::prep_pipe_direct(s, fds, 0, IORING_FILE_INDEX_ALLOC); }},
    };
    zerg::test::check_preps_overwrite_stale_sqes(preps);
}

BOOST_AUTO_TEST_CASE(splice_moves_bytes_between_a_pipe_and_a_file) {
    op_ring r;
    temp_dir dir;
    fd_guard file(::open(dir.file("spliced").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    BOOST_REQUIRE_GE(file.get(), 0);
    auto [rd, wr] = make_pipe();
    BOOST_REQUIRE_EQUAL(::write(wr.get(), "pipe to file", 12), 12);

    // Pipe -> file at offset 4 (the pipe side has no offset: -1).
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_splice(s, rd.get(), -1, file.get(), 4, 64); });
    BOOST_REQUIRE_EQUAL(c.res, 12);
    char got[16] = {};
    BOOST_TEST(::pread(file.get(), got, 12, 4) == 12);
    BOOST_TEST(std::string_view(got, 12) == "pipe to file");
    BOOST_TEST(drain(rd.get()).empty());  // consumed from the pipe

    // File -> pipe from offset 12: the last word, "file".
    c = r.run([&](io_uring_sqe* s) { zu::prep_splice(s, file.get(), 12, wr.get(), -1, 4); });
    BOOST_REQUIRE_EQUAL(c.res, 4);
    BOOST_TEST(drain(rd.get()) == "file");

    // Neither side a pipe: -EINVAL.
    fd_guard other(::open(dir.file("other").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    c = r.run([&](io_uring_sqe* s) { zu::prep_splice(s, file.get(), 0, other.get(), 0, 4); });
    BOOST_TEST(c.res == -EINVAL);
}

BOOST_AUTO_TEST_CASE(splice_from_a_registered_file) {
    op_ring r;
    zu::registered_files files(r.ring, 2);
    auto [rd, wr] = make_pipe();
    auto [rd2, wr2] = make_pipe();
    BOOST_REQUIRE_EQUAL(files.update(1, rd.get()), 0);
    BOOST_REQUIRE_EQUAL(::write(wr.get(), "fixed in", 8), 8);
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_splice(s, 1, -1, wr2.get(), -1, 64, SPLICE_F_FD_IN_FIXED); });
    BOOST_REQUIRE_EQUAL(c.res, 8);
    BOOST_TEST(drain(rd2.get()) == "fixed in");
}

BOOST_AUTO_TEST_CASE(tee_duplicates_without_consuming) {
    op_ring r;
    auto [a_rd, a_wr] = make_pipe();
    auto [b_rd, b_wr] = make_pipe();
    BOOST_REQUIRE_EQUAL(::write(a_wr.get(), "twice seen", 10), 10);
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_tee(s, a_rd.get(), b_wr.get(), 64); });
    BOOST_REQUIRE_EQUAL(c.res, 10);
    BOOST_TEST(drain(b_rd.get()) == "twice seen");
    BOOST_TEST(drain(a_rd.get()) == "twice seen");  // still there
}

BOOST_AUTO_TEST_CASE(pipe_creates_two_connected_ends) {
    if (skip_unless(kernel().supports(zu::opcode::pipe), "IORING_OP_PIPE (Linux 6.16)")) return;
    op_ring r;
    int fds[2] = {-1, -1};
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_pipe(s, fds); });
    BOOST_REQUIRE_EQUAL(c.res, 0);
    fd_guard rd(fds[0]), wr(fds[1]);
    BOOST_REQUIRE_GE(fds[0], 0);
    BOOST_REQUIRE_GE(fds[1], 0);
    BOOST_TEST((::fcntl(fds[0], F_GETFD) & FD_CLOEXEC) != 0);
    BOOST_TEST((::fcntl(fds[1], F_GETFL) & O_NONBLOCK) == 0);
    BOOST_REQUIRE_EQUAL(::write(wr.get(), "through", 7), 7);
    BOOST_TEST(drain(rd.get()) == "through");

    int nb[2] = {-1, -1};
    c = r.run([&](io_uring_sqe* s) { zu::prep_pipe(s, nb, O_NONBLOCK | O_CLOEXEC); });
    BOOST_REQUIRE_EQUAL(c.res, 0);
    fd_guard nrd(nb[0]), nwr(nb[1]);
    BOOST_TEST((::fcntl(nb[0], F_GETFL) & O_NONBLOCK) != 0);
    char ch;
    BOOST_TEST(::read(nb[0], &ch, 1) == -1);  // empty and non-blocking
    BOOST_TEST(errno == EAGAIN);

    c = r.run([&](io_uring_sqe* s) { zu::prep_pipe(s, nb, O_APPEND); });
    BOOST_TEST(c.res == -EINVAL);
}

BOOST_AUTO_TEST_CASE(pipe_direct_fills_registered_slots) {
    if (skip_unless(kernel().supports(zu::opcode::pipe), "IORING_OP_PIPE (Linux 6.16)")) return;
    op_ring r;
    zu::registered_files files(r.ring, 8);
    int fds[2] = {-1, -1};
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_pipe_direct(s, fds, O_CLOEXEC, 2); });
    BOOST_REQUIRE_EQUAL(c.res, 0);
    BOOST_TEST(fds[0] == 2);
    BOOST_TEST(fds[1] == 3);

    static constexpr std::string_view text = "slot to slot";
    c = r.run([&](io_uring_sqe* s) {
        zu::prep_write(s, fds[1], bytes_of(text));
        zu::use_fixed_file(s);
    });
    BOOST_REQUIRE_EQUAL(c.res, static_cast<int>(text.size()));
    std::array<std::byte, 32> buf{};
    c = r.run([&](io_uring_sqe* s) {
        zu::prep_read(s, fds[0], buf);
        zu::use_fixed_file(s);
    });
    BOOST_REQUIRE_EQUAL(c.res, static_cast<int>(text.size()));
    BOOST_TEST(std::string_view(reinterpret_cast<const char*>(buf.data()), text.size()) == text);

    int alloc[2] = {-1, -1};
    c = r.run([&](io_uring_sqe* s) { zu::prep_pipe_direct(s, alloc, 0, IORING_FILE_INDEX_ALLOC); });
    BOOST_REQUIRE_EQUAL(c.res, 0);
    BOOST_TEST(alloc[0] >= 0);
    BOOST_TEST(alloc[0] < 8);
    BOOST_TEST(alloc[1] >= 0);
    BOOST_TEST(alloc[1] < 8);
    BOOST_TEST(alloc[0] != alloc[1]);
    BOOST_TEST(alloc[0] != 2);
    BOOST_TEST(alloc[0] != 3);
}
