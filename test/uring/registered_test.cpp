#define BOOST_TEST_MODULE uring_registered
#include <boost/test/unit_test.hpp>

#include <zerg/uring/operations.hpp>
#include <zerg/uring/registered_buffers.hpp>
#include <zerg/uring/registered_files.hpp>
#include <zerg/uring/ring.hpp>

#include "support/sockets.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace uring = zerg::uring;
namespace zt = zerg::test;

namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

// Waits (bounded) until `fd` is readable; false on timeout.
bool readable(int fd, int timeout_ms = 2000) {
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, timeout_ms);
    return n == 1 && (p.revents & (POLLIN | POLLHUP));
}

// Reads exactly `n` bytes from a blocking fd, each read bounded by poll.
std::string read_exactly(int fd, std::size_t n) {
    std::string out;
    while (out.size() < n) {
        if (!readable(fd)) throw std::runtime_error("timed out reading " + std::to_string(n) + " bytes");
        char buf[4096];
        ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
        zt::check(r > 0, "read");
        out.append(buf, static_cast<std::size_t>(r));
    }
    return out;
}

void write_all(int fd, const std::string& s) {
    zt::check(::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()), "write");
}

// Submits one SQE tagged `ud` and returns its completion.
template <class Prep>
zt::completion run_one(uring::ring& r, std::uint64_t ud, Prep&& prep) {
    io_uring_sqe* sqe = r.get_sqe();
    prep(sqe);
    uring::set_user_data(sqe, ud);
    BOOST_REQUIRE_EQUAL(r.submit(), 1);
    return zt::wait_one(r, ud);
}

void fill(std::span<std::byte> s, unsigned seed) {
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<std::byte>((i * 31 + seed * 7 + i / 256) & 0xff);
}

}  // namespace

// ---- registered_files ------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_socket_updated_into_a_slot_sends_and_receives_as_a_fixed_file) {
    uring::ring r;
    uring::registered_files files(r, 8);
    BOOST_TEST(files.size() == 8u);

    auto [peer, server] = zt::tcp_pair();
    const unsigned slot = 5;
    BOOST_REQUIRE_EQUAL(files.update(slot, server.get()), 0);
    // The table holds its own reference: the regular descriptor can go.
    server.reset();

    const std::string out = "sent through registered slot 5";
    auto sent = run_one(r, 1, [&](io_uring_sqe* sqe) {
        uring::prep_send(sqe, static_cast<int>(slot), bytes_of(out));
        uring::use_fixed_file(sqe);
    });
    BOOST_TEST(sent.res == static_cast<int>(out.size()));
    BOOST_TEST(read_exactly(peer.get(), out.size()) == out);

    const std::string in = "and received through it too";
    write_all(peer.get(), in);
    std::array<std::byte, 256> buf{};
    auto got = run_one(r, 2, [&](io_uring_sqe* sqe) {
        uring::prep_recv(sqe, static_cast<int>(slot), buf);
        uring::use_fixed_file(sqe);
    });
    BOOST_REQUIRE_EQUAL(got.res, static_cast<int>(in.size()));
    BOOST_TEST(std::string(reinterpret_cast<const char*>(buf.data()), in.size()) == in);

    // A slot never filled names no file.
    auto empty = run_one(r, 3, [&](io_uring_sqe* sqe) {
        uring::prep_send(sqe, 6, bytes_of(out));
        uring::use_fixed_file(sqe);
    });
    BOOST_TEST(empty.res == -EBADF);

    // Clearing the slot drops the table's reference, the last one: the
    // socket closes and the peer sees end of file.
    BOOST_REQUIRE_EQUAL(files.clear(slot), 0);
    auto cleared = run_one(r, 4, [&](io_uring_sqe* sqe) {
        uring::prep_send(sqe, static_cast<int>(slot), bytes_of(out));
        uring::use_fixed_file(sqe);
    });
    BOOST_TEST(cleared.res == -EBADF);
    BOOST_REQUIRE(readable(peer.get()));
    char c;
    BOOST_TEST(::recv(peer.get(), &c, 1, MSG_DONTWAIT) == 0);
}

BOOST_AUTO_TEST_CASE(a_slot_can_be_refilled_and_out_of_range_slots_are_refused) {
    uring::ring r;
    uring::registered_files files(r, 4);
    auto [a1, b1] = zt::unix_pair();
    auto [a2, b2] = zt::unix_pair();

    BOOST_TEST(files.update(4, b1.get()) == -EINVAL);
    BOOST_TEST(files.update(1000, b1.get()) == -EINVAL);
    BOOST_TEST(files.update(0, 12345) == -EBADF);  // not an open descriptor

    // Slot 0 first names b1, then b2: operations follow the table.
    BOOST_REQUIRE_EQUAL(files.update(0, b1.get()), 0);
    const std::string one = "one";
    BOOST_TEST(run_one(r, 1, [&](io_uring_sqe* sqe) {
                   uring::prep_send(sqe, 0, bytes_of(one));
                   uring::use_fixed_file(sqe);
               }).res == 3);
    BOOST_TEST(read_exactly(a1.get(), 3) == one);

    BOOST_REQUIRE_EQUAL(files.update(0, b2.get()), 0);
    const std::string two = "two!";
    BOOST_TEST(run_one(r, 2, [&](io_uring_sqe* sqe) {
                   uring::prep_send(sqe, 0, bytes_of(two));
                   uring::use_fixed_file(sqe);
               }).res == 4);
    BOOST_TEST(read_exactly(a2.get(), 4) == two);
    // Nothing went to the first socket: b1 is still open (we hold it) and quiet.
    BOOST_TEST(!readable(a1.get(), 20));
}

BOOST_AUTO_TEST_CASE(one_table_per_ring) {
    uring::ring r;
    uring::registered_files files(r, 4);
    BOOST_CHECK_THROW(uring::registered_files(r, 4), std::system_error);
    // The failed second table did not tear down the first.
    auto [a, b] = zt::unix_pair();
    BOOST_TEST(files.update(2, b.get()) == 0);
}

BOOST_AUTO_TEST_CASE(direct_accepts_allocate_inside_the_allocation_range) {
    uring::ring r;
    const unsigned range = 4;
    uring::registered_files files(r, 16, range);
    auto listener = zt::listen_loopback();
    const auto port = zt::port_of(listener.get());

    auto accept_alloc = [&](std::uint64_t ud) {
        return run_one(r, ud, [&](io_uring_sqe* sqe) {
            // A direct accept may not ask for SOCK_CLOEXEC (the kernel answers
            // -EINVAL), so flags are 0. The slot is set to the allocation
            // sentinel on the SQE itself: liburing 2.3's accept_direct helper,
            // which zerg::uring::prep_accept_direct calls, adds 1 to it and
            // so turns IORING_FILE_INDEX_ALLOC into 0, a plain accept.
            uring::prep_accept_direct(sqe, listener.get(), 0, 0);
            sqe->file_index = IORING_FILE_INDEX_ALLOC;
        });
    };

    std::vector<zt::fd_guard> clients;
    std::vector<int> slots;
    for (unsigned i = 0; i < range; ++i) {
        clients.push_back(zt::connect_loopback(port));
        auto c = accept_alloc(10 + i);
        BOOST_REQUIRE_GE(c.res, 0);
        BOOST_TEST(static_cast<unsigned>(c.res) < range, "slot " << c.res << " outside the allocation range");
        slots.push_back(c.res);
    }
    BOOST_TEST(std::set<int>(slots.begin(), slots.end()).size() == range);

    // The range is full; slots 4..15 are free but are the application's.
    auto client_extra = zt::connect_loopback(port);
    BOOST_TEST(accept_alloc(20).res == -ENFILE);

    // Each allocated slot is the socket of the client accepted in its turn.
    for (unsigned i = 0; i < range; ++i) {
        const std::string msg = "client " + std::to_string(i);
        write_all(clients[i].get(), msg);
        std::array<std::byte, 64> buf{};
        auto got = run_one(r, 30 + i, [&](io_uring_sqe* sqe) {
            uring::prep_recv(sqe, slots[i], buf);
            uring::use_fixed_file(sqe);
        });
        BOOST_REQUIRE_EQUAL(got.res, static_cast<int>(msg.size()));
        BOOST_TEST(std::string(reinterpret_cast<const char*>(buf.data()), msg.size()) == msg);
    }

    // A slot outside the range is still the application's to fill by hand.
    auto [a, b] = zt::unix_pair();
    BOOST_TEST(files.update(10, b.get()) == 0);

    // Freeing one slot of the range makes exactly that one allocatable again.
    BOOST_REQUIRE_EQUAL(files.clear(static_cast<unsigned>(slots[2])), 0);
    auto client_again = zt::connect_loopback(port);
    auto again = accept_alloc(40);
    BOOST_TEST(again.res == slots[2]);
}

// ---- registered_buffers --------------------------------------------------------------

BOOST_AUTO_TEST_CASE(buffer_spans_are_the_registered_buffers) {
    uring::ring r;
    const std::size_t size = 5000;  // not a page multiple
    uring::registered_buffers bufs(r, 3, size);
    BOOST_TEST(bufs.count() == 3u);
    BOOST_TEST(bufs.buffer_size() == size);
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    for (unsigned i = 0; i < bufs.count(); ++i) {
        auto b = bufs.buffer(i);
        BOOST_TEST(b.size() == size);
        BOOST_TEST(reinterpret_cast<std::uintptr_t>(b.data()) % page == 0u, "buffer " << i << " not page-aligned");
        for (unsigned j = i + 1; j < bufs.count(); ++j) {
            auto o = bufs.buffer(j);
            bool apart = b.data() + b.size() <= o.data() || o.data() + o.size() <= b.data();
            BOOST_TEST(apart, "buffers " << i << " and " << j << " overlap");
        }
        // Writable end to end.
        fill(b, i);
    }
    for (unsigned i = 0; i < bufs.count(); ++i) {
        std::vector<std::byte> expected(size);
        fill(expected, i);
        BOOST_TEST(std::equal(expected.begin(), expected.end(), bufs.buffer(i).begin()));
    }
    BOOST_CHECK_THROW(uring::registered_buffers(r, 0, 4096), std::system_error);
    BOOST_CHECK_THROW(uring::registered_buffers(r, 2, 0), std::system_error);
}

BOOST_AUTO_TEST_CASE(write_fixed_and_read_fixed_round_trip_through_a_pipe) {
    uring::ring r;
    uring::registered_buffers bufs(r, 2, 8192);
    int p[2];
    zt::check(::pipe2(p, O_CLOEXEC) == 0, "pipe2");
    zt::fd_guard rd(p[0]), wr(p[1]);

    auto src = bufs.buffer(0).subspan(0, 5000);
    fill(src, 42);
    auto w = run_one(r, 1, [&](io_uring_sqe* sqe) { uring::prep_write_fixed(sqe, wr.get(), src, 0); });
    BOOST_REQUIRE_EQUAL(w.res, 5000);

    auto dst = bufs.buffer(1);
    std::fill(dst.begin(), dst.end(), std::byte{0xee});
    std::size_t got = 0;
    while (got < 5000) {
        auto piece = dst.subspan(got, 5000 - got);
        auto rd_c = run_one(r, 2, [&](io_uring_sqe* sqe) { uring::prep_read_fixed(sqe, rd.get(), piece, 1); });
        BOOST_REQUIRE_GT(rd_c.res, 0);
        got += static_cast<std::size_t>(rd_c.res);
    }
    BOOST_TEST(std::equal(src.begin(), src.end(), dst.begin()));
    // Nothing written past what was read.
    BOOST_TEST(std::to_integer<int>(dst[5000]) == 0xee);
}

BOOST_AUTO_TEST_CASE(fixed_io_at_file_offsets_from_inside_a_buffer) {
    uring::ring r;
    uring::registered_buffers bufs(r, 2, 4096);
    zt::fd_guard file(::memfd_create("zerg-registered-test", MFD_CLOEXEC));
    zt::check(file.get() >= 0, "memfd_create");

    // A slice from the middle of buffer 0 to offset 10000 of the file.
    auto src = bufs.buffer(0).subspan(100, 1000);
    fill(src, 9);
    auto w = run_one(r, 1, [&](io_uring_sqe* sqe) { uring::prep_write_fixed(sqe, file.get(), src, 0, 10000); });
    BOOST_REQUIRE_EQUAL(w.res, 1000);

    std::vector<std::byte> check(1000);
    BOOST_REQUIRE_EQUAL(::pread(file.get(), check.data(), check.size(), 10000), 1000);
    BOOST_TEST(std::equal(check.begin(), check.end(), src.begin()));

    // And back, into the middle of buffer 1.
    auto dst = bufs.buffer(1).subspan(7, 1000);
    auto rd = run_one(r, 2, [&](io_uring_sqe* sqe) { uring::prep_read_fixed(sqe, file.get(), dst, 1, 10000); });
    BOOST_REQUIRE_EQUAL(rd.res, 1000);
    BOOST_TEST(std::equal(dst.begin(), dst.end(), src.begin()));
}

BOOST_AUTO_TEST_CASE(fixed_io_outside_the_registered_buffer_is_refused) {
    uring::ring r;
    uring::registered_buffers bufs(r, 2, 4096);
    zt::fd_guard file(::memfd_create("zerg-registered-test", MFD_CLOEXEC));
    zt::check(file.get() >= 0, "memfd_create");

    std::array<std::byte, 64> stack{};
    auto not_registered = run_one(r, 1, [&](io_uring_sqe* sqe) { uring::prep_write_fixed(sqe, file.get(), stack, 0, 0); });
    BOOST_TEST(not_registered.res == -EFAULT);

    // Buffer 0's memory under buffer 1's index.
    auto wrong_index = run_one(r, 2, [&](io_uring_sqe* sqe) {
        uring::prep_write_fixed(sqe, file.get(), bufs.buffer(0).subspan(0, 64), 1, 0);
    });
    BOOST_TEST(wrong_index.res == -EFAULT);

    // Running past the end of the buffer.
    auto overrun = run_one(r, 3, [&](io_uring_sqe* sqe) {
        uring::prep_write_fixed(sqe, file.get(), std::span(bufs.buffer(0).data() + 4000, 200), 0, 0);
    });
    BOOST_TEST(overrun.res == -EFAULT);

    // An index past the table.
    auto no_such = run_one(r, 4, [&](io_uring_sqe* sqe) {
        uring::prep_write_fixed(sqe, file.get(), bufs.buffer(0).subspan(0, 64), 2, 0);
    });
    BOOST_TEST(no_such.res == -EFAULT);

    // Nothing reached the file.
    struct stat st {};
    BOOST_REQUIRE_EQUAL(::fstat(file.get(), &st), 0);
    BOOST_TEST(st.st_size == 0);
}

BOOST_AUTO_TEST_CASE(one_buffer_table_per_ring) {
    uring::ring r;
    uring::registered_buffers bufs(r, 1, 4096);
    BOOST_CHECK_THROW(uring::registered_buffers(r, 1, 4096), std::system_error);
    // The first table still works.
    zt::fd_guard file(::memfd_create("zerg-registered-test", MFD_CLOEXEC));
    zt::check(file.get() >= 0, "memfd_create");
    fill(bufs.buffer(0), 1);
    auto w = run_one(r, 1, [&](io_uring_sqe* sqe) { uring::prep_write_fixed(sqe, file.get(), bufs.buffer(0), 0, 0); });
    BOOST_TEST(w.res == 4096);
}

// ---- eventfd ---------------------------------------------------------------------------

namespace {

// The eventfd's counter, read and reset; 0 when it was not signalled.
std::uint64_t drain(int efd) {
    std::uint64_t value = 0;
    ssize_t n = ::read(efd, &value, sizeof value);
    if (n < 0 && errno == EAGAIN) return 0;
    zt::check(n == sizeof value, "read eventfd");
    return value;
}

}  // namespace

BOOST_AUTO_TEST_CASE(eventfd_is_signalled_by_completions_until_unregistered) {
    uring::ring r;
    zt::fd_guard efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    zt::check(efd.get() >= 0, "eventfd");

    // Not registered: a completion leaves it alone.
    BOOST_TEST(run_one(r, 1, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); }).res == 0);
    BOOST_TEST(drain(efd.get()) == 0u);

    BOOST_REQUIRE_EQUAL(r.register_eventfd(efd.get()), 0);
    BOOST_TEST(r.register_eventfd(efd.get()) == -EBUSY);
    BOOST_TEST(!readable(efd.get(), 20));  // registering alone signals nothing

    BOOST_TEST(run_one(r, 2, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); }).res == 0);
    BOOST_REQUIRE(readable(efd.get()));
    BOOST_TEST(drain(efd.get()) >= 1u);

    // Three completions: signalled again, and drained it is quiet.
    for (std::uint64_t ud = 3; ud < 6; ++ud) {
        io_uring_sqe* sqe = r.get_sqe();
        uring::prep_nop(sqe);
        uring::set_user_data(sqe, ud);
    }
    BOOST_REQUIRE_EQUAL(r.submit(), 3);
    BOOST_TEST(zt::wait_for(r, 3).size() == 3u);
    BOOST_REQUIRE(readable(efd.get()));
    BOOST_TEST(drain(efd.get()) >= 1u);
    BOOST_TEST(drain(efd.get()) == 0u);

    BOOST_REQUIRE_EQUAL(r.unregister_eventfd(), 0);
    BOOST_TEST(r.unregister_eventfd() == -ENXIO);
    BOOST_TEST(run_one(r, 6, [](io_uring_sqe* sqe) { uring::prep_nop(sqe); }).res == 0);
    BOOST_TEST(!readable(efd.get(), 50));
    BOOST_TEST(drain(efd.get()) == 0u);
}
