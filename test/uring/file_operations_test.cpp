#define BOOST_TEST_MODULE file_operations
#include <boost/test/unit_test.hpp>

// Every prep_* of zerg/uring/file_operations.hpp run through a real ring
// against files in a temporary directory. Each test checks the CQE's res and
// what the operation did to the file system, and one failing call per
// operation shows the arguments reach the kernel. Operations newer than the
// running kernel are skipped with the opcode and version they need.

#include <zerg/uring/compat.hpp>
#include <zerg/uring/file_operations.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/probe.hpp>
#include <zerg/uring/registered_buffers.hpp>
#include <zerg/uring/registered_files.hpp>

#include "support/stale_sqe.hpp"
#include "support/op_ring.hpp"
#include "support/skip.hpp"
#include "support/sockets.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace zu = zerg::uring;
namespace fs = std::filesystem;
using zerg::test::fd_guard;
using zerg::test::kernel;
using zerg::test::op_ring;
using zerg::test::skip_unless;
using zerg::test::temp_dir;

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string contents(const std::string& path) {
    fd_guard f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    zerg::test::check(f.get() >= 0, "open");
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(f.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    return out;
}

void put_file(const std::string& path, std::string_view text) {
    fd_guard f(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    zerg::test::check(f.get() >= 0, "open");
    zerg::test::check(::write(f.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()), "write");
}

off_t size_of(int fd) {
    struct stat st{};
    zerg::test::check(::fstat(fd, &st) == 0, "fstat");
    return st.st_size;
}

// Permission bits as stat(2) reports them (the umask applies to what was asked).
unsigned mode_of(const std::string& path) {
    struct stat st{};
    zerg::test::check(::stat(path.c_str(), &st) == 0, "stat");
    return st.st_mode & 07777;
}

fd_guard open_rw(const std::string& path) {
    fd_guard f(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    zerg::test::check(f.get() >= 0, "open");
    return f;
}

struct fixture {
    op_ring r;
    temp_dir dir;
};

}  // namespace

// As operations_test checks for the socket preps: an SQE full of stale
// bytes comes out of every prep identical to a zeroed one.
BOOST_AUTO_TEST_CASE(every_file_prep_overwrites_a_stale_sqe) {
    static std::byte buf[64];
    static iovec iov[2] = {{buf, 8}, {buf + 8, 8}};
    static open_how how{};
    static struct statx sx{};
    std::span<std::byte> b(buf);
    std::span<const iovec> v(iov);
    const std::vector<std::pair<const char*, std::function<void(io_uring_sqe*)>>> preps = {
        {"openat", [](io_uring_sqe* s) { zu::prep_openat(s, AT_FDCWD, "x"); }},
        {"openat_direct", [](io_uring_sqe* s) { zu::prep_openat_direct(s, AT_FDCWD, "x", O_RDONLY, 0, 3); }},
        {"openat_direct alloc",
         [](io_uring_sqe* s) { zu::prep_openat_direct(s, AT_FDCWD, "x", O_RDONLY, 0, IORING_FILE_INDEX_ALLOC); }},
        {"openat2", [](io_uring_sqe* s) { zu::prep_openat2(s, AT_FDCWD, "x", &how); }},
        {"openat2_direct", [](io_uring_sqe* s) { zu::prep_openat2_direct(s, AT_FDCWD, "x", &how, 2); }},
        {"statx", [](io_uring_sqe* s) { zu::prep_statx(s, AT_FDCWD, "x", 0, STATX_SIZE, &sx); }},
        {"fsync", [](io_uring_sqe* s) { zu::prep_fsync(s, 3); }},
        {"fdatasync", [](io_uring_sqe* s) { zu::prep_fdatasync(s, 3); }},
        {"sync_file_range", [](io_uring_sqe* s) { zu::prep_sync_file_range(s, 3, 0, 100); }},
        {"fallocate", [](io_uring_sqe* s) { zu::prep_fallocate(s, 3, 0, 0, 4096); }},
        {"ftruncate", [](io_uring_sqe* s) { zu::prep_ftruncate(s, 3, 10); }},
        {"fadvise", [](io_uring_sqe* s) { zu::prep_fadvise(s, 3, 0, 10, POSIX_FADV_NORMAL); }},
        {"madvise", [&](io_uring_sqe* s) { zu::prep_madvise(s, b, MADV_NORMAL); }},
        {"renameat", [](io_uring_sqe* s) { zu::prep_renameat(s, AT_FDCWD, "a", AT_FDCWD, "b"); }},
        {"unlinkat", [](io_uring_sqe* s) { zu::prep_unlinkat(s, AT_FDCWD, "a"); }},
        {"mkdirat", [](io_uring_sqe* s) { zu::prep_mkdirat(s, AT_FDCWD, "a"); }},
        {"symlinkat", [](io_uring_sqe* s) { zu::prep_symlinkat(s, "t", AT_FDCWD, "a"); }},
        {"linkat", [](io_uring_sqe* s) { zu::prep_linkat(s, AT_FDCWD, "a", AT_FDCWD, "b"); }},
        {"fsetxattr", [&](io_uring_sqe* s) { zu::prep_fsetxattr(s, 3, "user.x", b); }},
        {"setxattr", [&](io_uring_sqe* s) { zu::prep_setxattr(s, "p", "user.x", b); }},
        {"fgetxattr", [&](io_uring_sqe* s) { zu::prep_fgetxattr(s, 3, "user.x", b); }},
        {"getxattr", [&](io_uring_sqe* s) { zu::prep_getxattr(s, "p", "user.x", b); }},
        {"readv_fixed", [&](io_uring_sqe* s) { zu::prep_readv_fixed(s, 3, v, 1); }},
        {"writev_fixed", [&](io_uring_sqe* s) { zu::prep_writev_fixed(s, 3, v, 1, 0); }},
    };
    zerg::test::check_preps_overwrite_stale_sqes(preps);
}

// The opcode table the probe and uring-info print from.
BOOST_AUTO_TEST_CASE(opcode_names_and_kernels) {
    BOOST_TEST(zu::opcode_name(IORING_OP_OPENAT2) == "OPENAT2");
    BOOST_TEST(zu::opcode_name(zu::opcode::ftruncate) == "FTRUNCATE");
    BOOST_TEST(zu::opcode_name(zu::opcode::pipe) == "PIPE");
    BOOST_TEST(std::string_view(zu::opcode_kernel(IORING_OP_NOP)) == "5.1");
    BOOST_TEST(std::string_view(zu::opcode_kernel(IORING_OP_STATX)) == "5.6");
    BOOST_TEST(std::string_view(zu::opcode_kernel(IORING_OP_MKDIRAT)) == "5.15");
    BOOST_TEST(std::string_view(zu::opcode_kernel(IORING_OP_SENDMSG_ZC)) == "6.1");
    BOOST_TEST(std::string_view(zu::opcode_kernel(zu::opcode::fixed_fd_install)) == "6.8");
    BOOST_TEST(std::string_view(zu::opcode_kernel(zu::opcode::ftruncate)) == "6.9");
    BOOST_TEST(std::string_view(zu::opcode_kernel(zu::opcode::epoll_wait)) == "6.15");
    BOOST_TEST(std::string_view(zu::opcode_kernel(zu::opcode::pipe)) == "6.16");
    BOOST_TEST(std::string_view(zu::opcode_kernel(zu::opcode::known_end)) == "?");
}

BOOST_FIXTURE_TEST_CASE(openat_creates_and_opens, fixture) {
    auto path = dir.file("created");
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_openat(s, AT_FDCWD, path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600); });
    BOOST_REQUIRE_GE(c.res, 0);
    fd_guard f(c.res);
    BOOST_TEST((::fcntl(f.get(), F_GETFD) & FD_CLOEXEC) != 0);
    BOOST_TEST(::write(f.get(), "abc", 3) == 3);
    BOOST_TEST(contents(path) == "abc");
    BOOST_TEST(mode_of(path) == 0600u);

    // Relative to a directory fd; a missing file is -ENOENT.
    fd_guard d(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    c = r.run([&](io_uring_sqe* s) { zu::prep_openat(s, d.get(), "created"); });
    BOOST_REQUIRE_GE(c.res, 0);
    fd_guard again(c.res);
    char got[3];
    BOOST_TEST(::read(again.get(), got, 3) == 3);
    BOOST_TEST(std::string_view(got, 3) == "abc");
    c = r.run([&](io_uring_sqe* s) { zu::prep_openat(s, d.get(), "missing"); });
    BOOST_TEST(c.res == -ENOENT);
}

BOOST_FIXTURE_TEST_CASE(openat_direct_opens_into_the_file_table, fixture) {
    zu::registered_files files(r.ring, 4);
    auto path = dir.file("direct");
    put_file(path, "through a slot");
    // O_CLOEXEC is dropped by the prep; the kernel would refuse it.
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_openat_direct(s, AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC, 0, 2); });
    BOOST_REQUIRE_EQUAL(c.res, 0);
    std::array<std::byte, 32> buf{};
    c = r.run([&](io_uring_sqe* s) {
        zu::prep_read(s, 2, buf, 0);
        zu::use_fixed_file(s);
    });
    BOOST_REQUIRE_EQUAL(c.res, 14);
    BOOST_TEST(std::string_view(reinterpret_cast<const char*>(buf.data()), 14) == "through a slot");

    c = r.run([&](io_uring_sqe* s) { zu::prep_openat_direct(s, AT_FDCWD, path.c_str(), O_RDONLY, 0, IORING_FILE_INDEX_ALLOC); });
    BOOST_REQUIRE_GE(c.res, 0);
    BOOST_TEST(c.res != 2);
    BOOST_TEST(c.res < 4);
}

BOOST_FIXTURE_TEST_CASE(openat2_applies_resolve_rules, fixture) {
    auto sub = dir.file("sub");
    fs::create_directory(sub);
    put_file(dir.file("outside"), "x");
    put_file(sub + "/inside", "y");
    fd_guard d(::open(sub.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));

    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH;
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_openat2(s, d.get(), "inside", &how); });
    BOOST_REQUIRE_GE(c.res, 0);
    fd_guard f(c.res);
    char ch = 0;
    BOOST_TEST(::read(f.get(), &ch, 1) == 1);
    BOOST_TEST(ch == 'y');
    // RESOLVE_BENEATH forbids climbing out of `sub`.
    c = r.run([&](io_uring_sqe* s) { zu::prep_openat2(s, d.get(), "../outside", &how); });
    BOOST_TEST(c.res == -EXDEV);

    zu::registered_files files(r.ring, 2);
    open_how direct{};
    direct.flags = O_RDONLY;
    c = r.run([&](io_uring_sqe* s) { zu::prep_openat2_direct(s, d.get(), "inside", &direct, 1); });
    BOOST_TEST(c.res == 0);
}

BOOST_FIXTURE_TEST_CASE(statx_reports_size_and_type, fixture) {
    auto path = dir.file("stat-me");
    put_file(path, std::string(1234, 'z'));
    struct statx sx{};
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_statx(s, AT_FDCWD, path.c_str(), 0, STATX_SIZE | STATX_TYPE, &sx); });
    BOOST_REQUIRE_EQUAL(c.res, 0);
    BOOST_TEST((sx.stx_mask & STATX_SIZE) != 0u);
    BOOST_TEST(sx.stx_size == 1234u);
    BOOST_TEST(S_ISREG(sx.stx_mode));

    // AT_EMPTY_PATH: the fd itself.
    fd_guard d(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct statx dx{};
    c = r.run([&](io_uring_sqe* s) { zu::prep_statx(s, d.get(), "", AT_EMPTY_PATH, STATX_TYPE, &dx); });
    BOOST_REQUIRE_EQUAL(c.res, 0);
    BOOST_TEST(S_ISDIR(dx.stx_mode));
}

BOOST_FIXTURE_TEST_CASE(fsync_and_fdatasync_complete, fixture) {
    auto f = open_rw(dir.file("sync"));
    BOOST_TEST(::write(f.get(), "durable", 7) == 7);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_fsync(s, f.get()); }).res == 0);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_fdatasync(s, f.get()); }).res == 0);
    // The datasync flag is a flag the kernel checks: anything else is -EINVAL.
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_fsync(s, f.get(), 0x80); }).res == -EINVAL);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_fsync(s, 1 << 20); }).res == -EBADF);
}

BOOST_FIXTURE_TEST_CASE(fsync_linked_after_a_write_runs_after_it, fixture) {
    auto path = dir.file("linked");
    auto f = open_rw(path);
    static constexpr std::string_view text = "written then synced";
    io_uring_sqe* w = r.sqe(1);
    zu::prep_write(w, f.get(), bytes_of(text), 0);
    zu::link_next(w);
    zu::prep_fdatasync(r.sqe(2), f.get());
    BOOST_TEST(r.next(1).res == static_cast<int>(text.size()));
    BOOST_TEST(r.next(2).res == 0);
    BOOST_TEST(contents(path) == text);
}

BOOST_FIXTURE_TEST_CASE(sync_file_range_completes, fixture) {
    auto f = open_rw(dir.file("range"));
    BOOST_TEST(::write(f.get(), "0123456789", 10) == 10);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_sync_file_range(s, f.get(), 0, 10); }).res == 0);
    BOOST_TEST(r.run([&](io_uring_sqe* s) {
                   zu::prep_sync_file_range(s, f.get(), 0, 0,
                                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
               }).res == 0);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_sync_file_range(s, f.get(), 0, 10, 0x100); }).res == -EINVAL);
}

BOOST_FIXTURE_TEST_CASE(fallocate_extends_and_punches, fixture) {
    auto f = open_rw(dir.file("alloc"));
    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_fallocate(s, f.get(), 0, 0, 65536); }).res, 0);
    BOOST_TEST(size_of(f.get()) == 65536);
    // KEEP_SIZE allocates beyond the end without changing the size.
    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_fallocate(s, f.get(), FALLOC_FL_KEEP_SIZE, 65536, 4096); }).res, 0);
    BOOST_TEST(size_of(f.get()) == 65536);
    // Punching a hole reads back as zeros.
    std::string ones(8192, '\1');
    BOOST_TEST(::pwrite(f.get(), ones.data(), ones.size(), 0) == 8192);
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_fallocate(s, f.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096); });
    if (c.res == -EOPNOTSUPP) {
        BOOST_TEST_MESSAGE("file system cannot punch holes; checked allocation only");
        return;
    }
    BOOST_REQUIRE_EQUAL(c.res, 0);
    char head[2] = {};
    BOOST_TEST(::pread(f.get(), head, 2, 0) == 2);
    BOOST_TEST(head[0] == 0);
    BOOST_TEST(::pread(f.get(), head, 2, 4096) == 2);
    BOOST_TEST(head[0] == 1);
}

BOOST_FIXTURE_TEST_CASE(ftruncate_sets_the_size, fixture) {
    if (skip_unless(kernel().supports(zu::opcode::ftruncate), "IORING_OP_FTRUNCATE (Linux 6.9)")) return;
    auto f = open_rw(dir.file("trunc"));
    BOOST_TEST(::write(f.get(), "0123456789", 10) == 10);
    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_ftruncate(s, f.get(), 4); }).res, 0);
    BOOST_TEST(size_of(f.get()) == 4);
    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_ftruncate(s, f.get(), 100000); }).res, 0);
    BOOST_TEST(size_of(f.get()) == 100000);
    fd_guard ro(::open(dir.file("trunc").c_str(), O_RDONLY | O_CLOEXEC));
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_ftruncate(s, ro.get(), 0); }).res == -EINVAL);
}

BOOST_FIXTURE_TEST_CASE(fadvise_and_madvise_reach_the_kernel, fixture) {
    auto f = open_rw(dir.file("advice"));
    BOOST_TEST(::write(f.get(), "abc", 3) == 3);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_fadvise(s, f.get(), 0, 0, POSIX_FADV_SEQUENTIAL); }).res == 0);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_fadvise(s, f.get(), 0, 3, POSIX_FADV_DONTNEED); }).res == 0);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_fadvise(s, f.get(), 0, 3, 12345); }).res == -EINVAL);

    // MADV_DONTNEED on private anonymous memory drops the pages: they read
    // back as zeros, which shows the advice was applied, not just accepted.
    long page = ::sysconf(_SC_PAGESIZE);
    auto len = static_cast<std::size_t>(page) * 2;
    void* mem = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    BOOST_REQUIRE(mem != MAP_FAILED);
    std::span<std::byte> range(static_cast<std::byte*>(mem), len);
    std::memset(mem, 0x5a, len);
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_madvise(s, range.first(static_cast<std::size_t>(page)), MADV_DONTNEED); });
    BOOST_TEST(c.res == 0);
    BOOST_TEST(std::to_integer<int>(range[0]) == 0);
    BOOST_TEST(std::to_integer<int>(range[static_cast<std::size_t>(page)]) == 0x5a);  // the second page is untouched
    // Unaligned start: -EINVAL.
    c = r.run([&](io_uring_sqe* s) { zu::prep_madvise(s, range.subspan(1, 16), MADV_DONTNEED); });
    BOOST_TEST(c.res == -EINVAL);
    ::munmap(mem, len);
}

BOOST_FIXTURE_TEST_CASE(renameat_moves_and_respects_noreplace, fixture) {
    auto a = dir.file("a");
    auto b = dir.file("b");
    put_file(a, "first");
    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_renameat(s, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str()); }).res, 0);
    BOOST_TEST(!fs::exists(a));
    BOOST_TEST(contents(b) == "first");
    put_file(a, "second");
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_renameat(s, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_NOREPLACE); });
    BOOST_TEST(c.res == -EEXIST);
    BOOST_TEST(contents(b) == "first");
    c = r.run([&](io_uring_sqe* s) { zu::prep_renameat(s, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE); });
    BOOST_TEST(c.res == 0);
    BOOST_TEST(contents(a) == "first");
    BOOST_TEST(contents(b) == "second");
}

BOOST_FIXTURE_TEST_CASE(mkdirat_unlinkat_symlinkat_linkat, fixture) {
    fd_guard d(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_mkdirat(s, d.get(), "made", 0700); }).res, 0);
    BOOST_TEST(fs::is_directory(dir.file("made")));
    BOOST_TEST(mode_of(dir.file("made")) == 0700u);
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_mkdirat(s, d.get(), "made"); }).res == -EEXIST);

    put_file(dir.file("target"), "pointed at");
    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_symlinkat(s, "target", d.get(), "sym"); }).res, 0);
    BOOST_TEST(fs::is_symlink(dir.file("sym")));
    BOOST_TEST(fs::read_symlink(dir.file("sym")) == fs::path("target"));
    BOOST_TEST(contents(dir.file("sym")) == "pointed at");

    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_linkat(s, d.get(), "target", d.get(), "hard"); }).res, 0);
    BOOST_TEST(fs::hard_link_count(dir.file("target")) == 2u);
    BOOST_TEST(fs::equivalent(dir.file("target"), dir.file("hard")));
    // AT_SYMLINK_FOLLOW links what the symlink names, not the symlink.
    BOOST_REQUIRE_EQUAL(
        r.run([&](io_uring_sqe* s) { zu::prep_linkat(s, d.get(), "sym", d.get(), "hard2", AT_SYMLINK_FOLLOW); }).res, 0);
    BOOST_TEST(fs::hard_link_count(dir.file("target")) == 3u);

    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_unlinkat(s, d.get(), "hard"); }).res, 0);
    BOOST_TEST(!fs::exists(dir.file("hard")));
    BOOST_TEST(fs::hard_link_count(dir.file("target")) == 2u);
    // A directory needs AT_REMOVEDIR.
    BOOST_TEST(r.run([&](io_uring_sqe* s) { zu::prep_unlinkat(s, d.get(), "made"); }).res == -EISDIR);
    BOOST_REQUIRE_EQUAL(r.run([&](io_uring_sqe* s) { zu::prep_unlinkat(s, d.get(), "made", AT_REMOVEDIR); }).res, 0);
    BOOST_TEST(!fs::exists(dir.file("made")));
}

BOOST_FIXTURE_TEST_CASE(xattrs_set_and_get_by_fd_and_path, fixture) {
    auto path = dir.file("attrs");
    auto f = open_rw(path);
    static constexpr std::string_view value = "zerg value";
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_fsetxattr(s, f.get(), "user.zerg", bytes_of(value)); });
    if (skip_unless(c.res != -EOPNOTSUPP, "user extended attributes on the file system of $TMPDIR")) return;
    BOOST_REQUIRE_EQUAL(c.res, 0);
    char raw[64] = {};
    BOOST_TEST(::fgetxattr(f.get(), "user.zerg", raw, sizeof raw) == static_cast<ssize_t>(value.size()));
    BOOST_TEST(std::string_view(raw, value.size()) == value);

    std::array<std::byte, 64> out{};
    c = r.run([&](io_uring_sqe* s) { zu::prep_fgetxattr(s, f.get(), "user.zerg", out); });
    BOOST_REQUIRE_EQUAL(c.res, static_cast<int>(value.size()));
    BOOST_TEST(std::string_view(reinterpret_cast<const char*>(out.data()), value.size()) == value);
    // An empty buffer asks for the length; a short one is -ERANGE.
    c = r.run([&](io_uring_sqe* s) { zu::prep_fgetxattr(s, f.get(), "user.zerg", {}); });
    BOOST_TEST(c.res == static_cast<int>(value.size()));
    c = r.run([&](io_uring_sqe* s) { zu::prep_fgetxattr(s, f.get(), "user.zerg", std::span(out).first(3)); });
    BOOST_TEST(c.res == -ERANGE);
    c = r.run([&](io_uring_sqe* s) { zu::prep_fgetxattr(s, f.get(), "user.none", out); });
    BOOST_TEST(c.res == -ENODATA);

    // By path; XATTR_CREATE refuses an existing name.
    static constexpr std::string_view other = "by path";
    c = r.run([&](io_uring_sqe* s) { zu::prep_setxattr(s, path.c_str(), "user.path", bytes_of(other)); });
    BOOST_REQUIRE_EQUAL(c.res, 0);
    c = r.run([&](io_uring_sqe* s) { zu::prep_setxattr(s, path.c_str(), "user.path", bytes_of(other), XATTR_CREATE); });
    BOOST_TEST(c.res == -EEXIST);
    out.fill(std::byte{0});
    c = r.run([&](io_uring_sqe* s) { zu::prep_getxattr(s, path.c_str(), "user.path", out); });
    BOOST_REQUIRE_EQUAL(c.res, static_cast<int>(other.size()));
    BOOST_TEST(std::string_view(reinterpret_cast<const char*>(out.data()), other.size()) == other);
    c = r.run([&](io_uring_sqe* s) { zu::prep_fsetxattr(s, f.get(), "user.path", bytes_of(value), XATTR_REPLACE); });
    BOOST_TEST(c.res == 0);
    BOOST_TEST(::getxattr(path.c_str(), "user.path", raw, sizeof raw) == static_cast<ssize_t>(value.size()));
}

BOOST_FIXTURE_TEST_CASE(readv_fixed_and_writev_fixed_use_a_registered_buffer, fixture) {
    if (skip_unless(kernel().supports(zu::opcode::writev_fixed) && kernel().supports(zu::opcode::readv_fixed),
                    "IORING_OP_READV_FIXED / IORING_OP_WRITEV_FIXED (Linux 6.15)"))
        return;
    zu::registered_buffers bufs(r.ring, 2, 4096);
    auto f = open_rw(dir.file("vectored"));
    auto src = bufs.buffer(1);
    std::memcpy(src.data(), "HEAD", 4);
    std::memcpy(src.data() + 1000, "-and-tail", 9);
    std::array<iovec, 2> out = {iovec{src.data(), 4}, iovec{src.data() + 1000, 9}};
    auto c = r.run([&](io_uring_sqe* s) { zu::prep_writev_fixed(s, f.get(), out, 1, 0); });
    BOOST_REQUIRE_EQUAL(c.res, 13);
    BOOST_TEST(contents(dir.file("vectored")) == "HEAD-and-tail");

    auto dst = bufs.buffer(0);
    std::memset(dst.data(), 0, dst.size());
    std::array<iovec, 2> in = {iovec{dst.data() + 10, 5}, iovec{dst.data() + 2000, 8}};
    c = r.run([&](io_uring_sqe* s) { zu::prep_readv_fixed(s, f.get(), in, 0, 0); });
    BOOST_REQUIRE_EQUAL(c.res, 13);
    BOOST_TEST(std::string_view(reinterpret_cast<const char*>(dst.data()) + 10, 5) == "HEAD-");
    BOOST_TEST(std::string_view(reinterpret_cast<const char*>(dst.data()) + 2000, 8) == "and-tail");

    // An iovec outside the named buffer is refused.
    std::array<iovec, 1> wrong = {iovec{src.data(), 4}};
    c = r.run([&](io_uring_sqe* s) { zu::prep_readv_fixed(s, f.get(), wrong, 0, 0); });
    BOOST_TEST(c.res == -EFAULT);
}
