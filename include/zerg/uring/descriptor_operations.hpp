// Typed preparation of the operations on the ring's own tables: the
// registered file table (files_update, fixed_fd_install) and the legacy
// provided-buffer groups (provide_buffers, remove_buffers).
//
// Same rules as operations.hpp: each prep_* fills the whole SQE, the caller
// keeps what it points to alive until the CQE and tags the SQE afterwards.
// registered_files.hpp and buffer_ring.hpp do the same jobs synchronously
// (files) or faster (buffer rings, 5.19); these are for doing them in order
// with other SQEs, e.g. linked after the request that made the fd.
#pragma once

#include <zerg/uring/compat.hpp>

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace zerg::uring {

// Replaces registered-file slots `offset`.. with `fds` (5.6); -1 empties a
// slot. With `offset` IORING_FILE_INDEX_ALLOC (5.19) the kernel picks free
// slots and writes them back into `fds`. res: how many slots were updated.
inline void prep_files_update(io_uring_sqe* sqe, std::span<int> fds, int offset) noexcept {
    io_uring_prep_files_update(sqe, fds.data(), static_cast<unsigned>(fds.size()), offset);
}
// Gives registered file `file_index` a regular fd as well (6.8), e.g. to hand
// a direct descriptor to code that only knows fds; the slot keeps its own
// reference. The new fd is O_CLOEXEC unless `flags` has
// IORING_FIXED_FD_NO_CLOEXEC. res: the new fd.
inline void prep_fixed_fd_install(io_uring_sqe* sqe, unsigned file_index, unsigned flags = 0) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, static_cast<int>(file_index), nullptr, 0, 0);
    sqe->opcode = opcode::fixed_fd_install;
    sqe->flags = IOSQE_FIXED_FILE;  // the kernel insists on it (-EBADF otherwise)
    sqe->rw_flags = static_cast<int>(flags);
}

// Legacy provided buffers (5.7): hands `count` buffers of `size` bytes each,
// laid out back to back from `memory`, to group `group` with ids `first_id`,
// `first_id + 1`, …; a receive with IOSQE_BUFFER_SELECT takes one and names
// it in its CQE. Every recycled buffer costs an SQE; buffer_ring.hpp (5.19)
// does the same with a store into shared memory. A group is either legacy or
// a ring, never both. `memory` must hold count * size bytes. res: 0.
inline void prep_provide_buffers(io_uring_sqe* sqe, std::span<std::byte> memory, std::uint32_t size,
                                 std::uint16_t count, std::uint16_t group, std::uint16_t first_id) noexcept {
    io_uring_prep_provide_buffers(sqe, memory.data(), static_cast<int>(size), count, group, first_id);
}
// Takes up to `count` unused buffers back from legacy group `group` (5.7).
// res: how many were removed (-ENOENT when the group has none).
inline void prep_remove_buffers(io_uring_sqe* sqe, std::uint16_t count, std::uint16_t group) noexcept {
    io_uring_prep_remove_buffers(sqe, count, group);
}

}  // namespace zerg::uring
