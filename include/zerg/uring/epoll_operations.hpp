// Typed preparation of the epoll operations, for code that keeps an epoll
// set (a library that hands out an epoll fd, say) and wants to drive it
// from a ring.
//
// Same rules as operations.hpp: each prep_* fills the whole SQE, the caller
// keeps what it points to alive until the CQE and tags the SQE afterwards.
#pragma once

#include <zerg/uring/compat.hpp>

#include <liburing.h>
#include <sys/epoll.h>

#include <span>

namespace zerg::uring {

// epoll_ctl(2) (5.6): `op` EPOLL_CTL_ADD / MOD / DEL on `fd` in `epoll_fd`;
// `event` may be null for DEL. res: 0.
inline void prep_epoll_ctl(io_uring_sqe* sqe, int epoll_fd, int fd, int op, epoll_event* event) noexcept {
    io_uring_prep_epoll_ctl(sqe, epoll_fd, fd, op, event);
}
// epoll_wait(2) without blocking a thread (6.15): completes once the set has
// a ready entry, with up to events.size() of them written to `events`.
// res: how many were written.
inline void prep_epoll_wait(io_uring_sqe* sqe, int epoll_fd, std::span<epoll_event> events) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, epoll_fd, events.data(), static_cast<unsigned>(events.size()), 0);
    sqe->opcode = opcode::epoll_wait;
}

}  // namespace zerg::uring
