// Typed preparation of the pipe operations: splice, tee, and pipe creation.
//
// Same rules as operations.hpp: each prep_* fills the whole SQE, the caller
// keeps what it points to alive until the CQE and tags the SQE afterwards.
// Each comment names the first kernel with the operation and the CQE's res
// on success (failures are -errno).
#pragma once

#include <zerg/uring/compat.hpp>

#include <fcntl.h>
#include <liburing.h>

#include <cstdint>

namespace zerg::uring {

// splice(2) (5.7): moves up to `len` bytes between `fd_in` and `fd_out`, one
// of which must be a pipe, without copying through user space. An offset of
// -1 means "the fd's own position" (and is required for the pipe side).
// SPLICE_F_FD_IN_FIXED in `flags` makes `fd_in` a registered-file slot
// (use_fixed_file() covers `fd_out`). res: bytes moved; 0 at end of input.
inline void prep_splice(io_uring_sqe* sqe, int fd_in, std::int64_t off_in, int fd_out, std::int64_t off_out,
                        std::uint32_t len, unsigned flags = 0) noexcept {
    io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, len, flags);
}
// tee(2) (5.8): duplicates up to `len` bytes from pipe `fd_in` into pipe
// `fd_out` without consuming them. res: bytes duplicated.
inline void prep_tee(io_uring_sqe* sqe, int fd_in, int fd_out, std::uint32_t len, unsigned flags = 0) noexcept {
    io_uring_prep_tee(sqe, fd_in, fd_out, len, flags);
}
// pipe2(2) (6.16): writes the read and write ends to fds[0] and fds[1]
// when it completes; `flags` O_CLOEXEC, O_NONBLOCK, O_DIRECT. res: 0.
inline void prep_pipe(io_uring_sqe* sqe, int* fds, int flags = O_CLOEXEC) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, 0, fds, 0, 0);
    sqe->opcode = opcode::pipe;
    sqe->rw_flags = flags;
}
// pipe2(2) into the registered file table (6.16): both ends go to free
// slots with IORING_FILE_INDEX_ALLOC, else to slots `file_index` and
// `file_index + 1`; fds[0] and fds[1] receive the slots. O_CLOEXEC is
// dropped as for the other direct variants. res: 0.
inline void prep_pipe_direct(io_uring_sqe* sqe, int* fds, int flags, unsigned file_index) noexcept {
    prep_pipe(sqe, fds, flags & ~O_CLOEXEC);
    sqe->file_index = file_index == IORING_FILE_INDEX_ALLOC ? IORING_FILE_INDEX_ALLOC : file_index + 1;
}

}  // namespace zerg::uring
