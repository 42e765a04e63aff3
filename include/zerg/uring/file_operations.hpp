// Typed preparation of the file and directory operations: open, stat,
// sync, allocate, advise, truncate, rename, unlink, mkdir, link, the xattr
// family, and vectored reads and writes from registered buffers.
//
// Same rules as operations.hpp (where plain and fixed read/write live): each
// prep_* fills the whole SQE, the caller keeps every path, buffer and struct
// alive until the CQE, and tags the SQE with set_user_data() afterwards.
// Paths are NUL-terminated C strings; `dir_fd` is a directory fd or AT_FDCWD.
// Each comment names the first kernel with the operation and what the CQE's
// res is on success (failures are -errno everywhere). The probe
// (probe.hpp, kernel_support::supports) tells what the running kernel has.
#pragma once

#include <zerg/uring/compat.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace zerg::uring {

namespace detail {
// The kernel counts direct-descriptor slots from 1 (0 means "a regular fd")
// and takes IORING_FILE_INDEX_ALLOC as is; liburing 2.3 adds 1 to ALLOC too.
inline void set_target_slot(io_uring_sqe* sqe, unsigned file_index) noexcept {
    sqe->file_index = file_index == IORING_FILE_INDEX_ALLOC ? IORING_FILE_INDEX_ALLOC : file_index + 1;
}
}  // namespace detail

// ---- open --------------------------------------------------------------------
// openat(2) (5.6). res: the new fd.
inline void prep_openat(io_uring_sqe* sqe, int dir_fd, const char* path, int flags = O_RDONLY | O_CLOEXEC,
                        mode_t mode = 0) noexcept {
    io_uring_prep_openat(sqe, dir_fd, path, flags, mode);
}
// openat(2) into registered-file slot `file_index` (5.15), or a free one with
// IORING_FILE_INDEX_ALLOC (5.19). res: 0 for a named slot, the chosen slot
// with ALLOC. O_CLOEXEC is dropped: the kernel refuses it for a direct
// descriptor (-EINVAL), which never enters the fd table anyway.
inline void prep_openat_direct(io_uring_sqe* sqe, int dir_fd, const char* path, int flags, mode_t mode,
                               unsigned file_index) noexcept {
    io_uring_prep_openat(sqe, dir_fd, path, flags & ~O_CLOEXEC, mode);
    detail::set_target_slot(sqe, file_index);
}
// openat2(2) (5.6): flags, mode and RESOLVE_* rules in `how`, which the
// kernel copies when it reads the SQE. res: the new fd.
inline void prep_openat2(io_uring_sqe* sqe, int dir_fd, const char* path, open_how* how) noexcept {
    io_uring_prep_openat2(sqe, dir_fd, path, how);
}
// openat2(2) into a registered-file slot (5.15; ALLOC 5.19); res as for
// prep_openat_direct. `how->flags` must not contain O_CLOEXEC.
inline void prep_openat2_direct(io_uring_sqe* sqe, int dir_fd, const char* path, open_how* how,
                                unsigned file_index) noexcept {
    io_uring_prep_openat2(sqe, dir_fd, path, how);
    detail::set_target_slot(sqe, file_index);
}

// ---- metadata ----------------------------------------------------------------
// statx(2) (5.6): `mask` is STATX_* fields wanted, `flags` AT_* (AT_EMPTY_PATH
// with path "" stats `dir_fd` itself). res: 0, `out` filled.
inline void prep_statx(io_uring_sqe* sqe, int dir_fd, const char* path, int flags, unsigned mask,
                       struct statx* out) noexcept {
    io_uring_prep_statx(sqe, dir_fd, path, flags, mask, out);
}

// ---- durability ----------------------------------------------------------------
// fsync(2) (5.1); with IORING_FSYNC_DATASYNC, fdatasync(2). res: 0.
// Ordering: an fsync does not wait for writes still in flight in the same
// ring; link it after them (link_next) to sync what they wrote.
inline void prep_fsync(io_uring_sqe* sqe, int fd, unsigned flags = 0) noexcept { io_uring_prep_fsync(sqe, fd, flags); }
// fdatasync(2) (5.1): data and the metadata needed to read it back. res: 0.
inline void prep_fdatasync(io_uring_sqe* sqe, int fd) noexcept { io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC); }
// sync_file_range(2) (5.2): `flags` SYNC_FILE_RANGE_*; `len` 0 means to the end. res: 0.
inline void prep_sync_file_range(io_uring_sqe* sqe, int fd, std::uint64_t offset, std::uint32_t len,
                                 unsigned flags = SYNC_FILE_RANGE_WRITE) noexcept {
    io_uring_prep_sync_file_range(sqe, fd, len, offset, static_cast<int>(flags));
}

// ---- size and layout -------------------------------------------------------------
// fallocate(2) (5.6): `mode` 0 allocates (and extends), FALLOC_FL_* punch holes etc. res: 0.
inline void prep_fallocate(io_uring_sqe* sqe, int fd, int mode, std::uint64_t offset, std::uint64_t len) noexcept {
    io_uring_prep_fallocate(sqe, fd, mode, static_cast<off_t>(offset), static_cast<off_t>(len));
}
// ftruncate(2) (6.9). res: 0.
inline void prep_ftruncate(io_uring_sqe* sqe, int fd, std::uint64_t length) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, fd, nullptr, 0, length);
    sqe->opcode = opcode::ftruncate;
}
// posix_fadvise(2) (5.6): POSIX_FADV_* for `len` bytes at `offset` (len 0:
// to the end). The SQE carries 32 bits of length. res: 0.
inline void prep_fadvise(io_uring_sqe* sqe, int fd, std::uint64_t offset, std::uint32_t len, int advice) noexcept {
    io_uring_prep_fadvise(sqe, fd, offset, static_cast<off_t>(len), advice);
}
// madvise(2) (5.6) on `range` (page aligned, under 4 GiB): MADV_*. res: 0.
inline void prep_madvise(io_uring_sqe* sqe, std::span<std::byte> range, int advice) noexcept {
    io_uring_prep_madvise(sqe, range.data(), static_cast<off_t>(range.size()), advice);
}

// ---- directory entries -------------------------------------------------------------
// renameat2(2) (5.11): `flags` RENAME_NOREPLACE / RENAME_EXCHANGE. res: 0.
inline void prep_renameat(io_uring_sqe* sqe, int old_dir_fd, const char* old_path, int new_dir_fd,
                          const char* new_path, unsigned flags = 0) noexcept {
    io_uring_prep_renameat(sqe, old_dir_fd, old_path, new_dir_fd, new_path, flags);
}
// unlinkat(2) (5.11): AT_REMOVEDIR removes an empty directory. res: 0.
inline void prep_unlinkat(io_uring_sqe* sqe, int dir_fd, const char* path, int flags = 0) noexcept {
    io_uring_prep_unlinkat(sqe, dir_fd, path, flags);
}
// mkdirat(2) (5.15). res: 0.
inline void prep_mkdirat(io_uring_sqe* sqe, int dir_fd, const char* path, mode_t mode = 0755) noexcept {
    io_uring_prep_mkdirat(sqe, dir_fd, path, mode);
}
// symlinkat(2) (5.15): a link at `link_path` whose content is `target`. res: 0.
inline void prep_symlinkat(io_uring_sqe* sqe, const char* target, int new_dir_fd, const char* link_path) noexcept {
    io_uring_prep_symlinkat(sqe, target, new_dir_fd, link_path);
}
// linkat(2) (5.15): a hard link; AT_SYMLINK_FOLLOW follows `old_path`. res: 0.
inline void prep_linkat(io_uring_sqe* sqe, int old_dir_fd, const char* old_path, int new_dir_fd,
                        const char* new_path, int flags = 0) noexcept {
    io_uring_prep_linkat(sqe, old_dir_fd, old_path, new_dir_fd, new_path, flags);
}

// ---- extended attributes (5.19) ------------------------------------------------------
// fsetxattr(2): `flags` XATTR_CREATE / XATTR_REPLACE. res: 0.
inline void prep_fsetxattr(io_uring_sqe* sqe, int fd, const char* name, std::span<const std::byte> value,
                           int flags = 0) noexcept {
    io_uring_prep_fsetxattr(sqe, fd, name, reinterpret_cast<const char*>(value.data()), flags,
                            static_cast<unsigned>(value.size()));
}
// setxattr(2) on `path` (symlinks followed). res: 0.
inline void prep_setxattr(io_uring_sqe* sqe, const char* path, const char* name, std::span<const std::byte> value,
                          int flags = 0) noexcept {
    io_uring_prep_setxattr(sqe, name, reinterpret_cast<const char*>(value.data()), path, flags,
                           static_cast<unsigned>(value.size()));
}
// fgetxattr(2) into `out`. res: the value's length (-ERANGE when `out` is
// too small, -ENODATA when there is no such attribute). An empty `out` asks
// for the length only.
inline void prep_fgetxattr(io_uring_sqe* sqe, int fd, const char* name, std::span<std::byte> out) noexcept {
    io_uring_prep_fgetxattr(sqe, fd, name, reinterpret_cast<char*>(out.data()), static_cast<unsigned>(out.size()));
}
// getxattr(2) on `path`. res as for prep_fgetxattr.
inline void prep_getxattr(io_uring_sqe* sqe, const char* path, const char* name, std::span<std::byte> out) noexcept {
    io_uring_prep_getxattr(sqe, name, reinterpret_cast<char*>(out.data()), path, static_cast<unsigned>(out.size()));
}

// ---- vectored I/O on registered buffers (6.15) ------------------------------------------
// readv/writev whose iovecs all lie inside registered buffer `buf_index`:
// the pages are already pinned, so nothing is looked up per call. res: bytes.
inline void prep_readv_fixed(io_uring_sqe* sqe, int fd, std::span<const iovec> iov, unsigned buf_index,
                             std::uint64_t offset = -1ull) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, fd, iov.data(), static_cast<unsigned>(iov.size()), offset);
    sqe->opcode = opcode::readv_fixed;
    sqe->buf_index = static_cast<std::uint16_t>(buf_index);
}
inline void prep_writev_fixed(io_uring_sqe* sqe, int fd, std::span<const iovec> iov, unsigned buf_index,
                              std::uint64_t offset = -1ull) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, fd, iov.data(), static_cast<unsigned>(iov.size()), offset);
    sqe->opcode = opcode::writev_fixed;
    sqe->buf_index = static_cast<std::uint16_t>(buf_index);
}

}  // namespace zerg::uring
