// Typed preparation of the operations that wait for another thread or
// process: futex wait/wake/waitv and waitid, all from 6.7.
//
// Same rules as operations.hpp: each prep_* fills the whole SQE, the caller
// keeps what it points to alive until the CQE and tags the SQE afterwards.
// A pending wait is cancelled like any request (prep_cancel) and then
// completes with -ECANCELED.
#pragma once

#include <zerg/uring/compat.hpp>

#include <liburing.h>
#include <linux/futex.h>
#include <sys/wait.h>

#include <cstdint>
#include <span>

namespace zerg::uring {

// futex2 flags for a 32-bit futex private to this process, the common case.
inline constexpr std::uint32_t futex_private_u32 = abi::futex2_size_u32 | abi::futex2_private;

// Waits until `*word` is woken, provided it still holds `expected` when the
// kernel looks (6.7). `flags` are futex2 flags (abi::futex2_*), `mask` a
// FUTEX_WAIT_BITSET mask. res: 0 when woken; -EAGAIN at once when `*word`
// no longer equals `expected`.
inline void prep_futex_wait(io_uring_sqe* sqe, std::uint32_t* word, std::uint32_t expected,
                            std::uint32_t flags = futex_private_u32,
                            std::uint32_t mask = abi::futex_match_any) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, static_cast<int>(flags), word, 0, expected);
    sqe->opcode = opcode::futex_wait;
    sqe->addr3 = mask;
}
// Wakes up to `count` waiters on `word` whose mask meets `mask` (6.7); they
// may be threads in futex(2) or waits in any ring. res: how many woke.
inline void prep_futex_wake(io_uring_sqe* sqe, std::uint32_t* word, std::uint32_t count,
                            std::uint32_t flags = futex_private_u32,
                            std::uint32_t mask = abi::futex_match_any) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, static_cast<int>(flags), word, 0, count);
    sqe->opcode = opcode::futex_wake;
    sqe->addr3 = mask;
}
// Waits on up to FUTEX_WAITV_MAX (128) futexes at once (6.7); each entry
// carries its word, its expected value and its own futex2 flags. res: the
// index of the entry that was woken (-EAGAIN when one already differs).
inline void prep_futex_waitv(io_uring_sqe* sqe, std::span<futex_waitv> waiters) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, 0, waiters.data(), static_cast<unsigned>(waiters.size()), 0);
    sqe->opcode = opcode::futex_waitv;
}

// waitid(2) without blocking a thread (6.7): `type` P_PID / P_PGID / P_ALL /
// P_PIDFD, `options` WEXITED and friends (WNOHANG is not needed). The child's
// state lands in `info` when the CQE is posted. res: 0.
inline void prep_waitid(io_uring_sqe* sqe, idtype_t type, id_t id, siginfo_t* info, int options = WEXITED) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, static_cast<int>(id), nullptr, static_cast<unsigned>(type), 0);
    sqe->opcode = opcode::waitid;
    sqe->file_index = static_cast<std::uint32_t>(options);
    sqe->addr2 = reinterpret_cast<std::uintptr_t>(info);
}

}  // namespace zerg::uring
