// Typed preparation of every SQE a TCP server needs. The rest of the
// operation set has its own headers: file_operations.hpp,
// pipe_operations.hpp, wait_operations.hpp, epoll_operations.hpp,
// descriptor_operations.hpp and zcrx.hpp.
//
// Each prep_* fills one SQE completely (liburing's helpers zero the entry
// first), so a reused entry never carries stale fields. Buffers are spans;
// the caller keeps every buffer, address and iovec alive until the operation
// completes (for send_zc: until its notification CQE). Tag the entry with
// set_user_data() afterwards. The kernel version each operation needs is
// noted; the probe (probe.hpp) tells what the running kernel has.
#pragma once

#include <zerg/uring/compat.hpp>
#include <zerg/uring/user_data.hpp>

#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace zerg::uring {

inline void set_user_data(io_uring_sqe* sqe, user_data ud) noexcept { sqe->user_data = ud.raw(); }
inline void set_user_data(io_uring_sqe* sqe, std::uint64_t raw) noexcept { sqe->user_data = raw; }
inline void add_flags(io_uring_sqe* sqe, unsigned flags) noexcept { sqe->flags |= static_cast<std::uint8_t>(flags); }
// Link the next SQE after this one (IOSQE_IO_LINK), e.g. for link_timeout.
inline void link_next(io_uring_sqe* sqe) noexcept { add_flags(sqe, IOSQE_IO_LINK); }
// `fd` in this SQE is an index into the registered file table.
inline void use_fixed_file(io_uring_sqe* sqe) noexcept { add_flags(sqe, IOSQE_FIXED_FILE); }
// Post no CQE when the operation succeeds (5.17).
inline void skip_success_cqe(io_uring_sqe* sqe) noexcept { add_flags(sqe, IOSQE_CQE_SKIP_SUCCESS); }

// A duration as the kernel's timespec; keep it alive until the SQE is submitted.
inline __kernel_timespec to_timespec(std::chrono::nanoseconds d) noexcept {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(d);
    return {secs.count(), (d - secs).count()};
}

// ---- no-op ----------------------------------------------------------------
inline void prep_nop(io_uring_sqe* sqe) noexcept { io_uring_prep_nop(sqe); }

// ---- accept ---------------------------------------------------------------
// One connection per SQE (5.5). `addr`/`addrlen` may be null.
inline void prep_accept(io_uring_sqe* sqe, int listen_fd, sockaddr* addr, socklen_t* addrlen, int flags = SOCK_CLOEXEC) noexcept {
    io_uring_prep_accept(sqe, listen_fd, addr, addrlen, flags);
}
// One SQE, a CQE per connection, until a CQE comes without IORING_CQE_F_MORE (5.19).
inline void prep_accept_multishot(io_uring_sqe* sqe, int listen_fd, int flags = SOCK_CLOEXEC) noexcept {
    io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, flags);
}
// Accept into the registered file table: slot `file_index`, or any free one
// with IORING_FILE_INDEX_ALLOC (5.19). The CQE's res is 0 for a named slot,
// the chosen slot with IORING_FILE_INDEX_ALLOC. A direct descriptor is never
// in the fd table, and the kernel refuses SOCK_CLOEXEC with one (-EINVAL), so
// that flag is dropped; SOCK_NONBLOCK is kept.
inline void prep_accept_direct(io_uring_sqe* sqe, int listen_fd, unsigned file_index, int flags = 0) noexcept {
    io_uring_prep_accept(sqe, listen_fd, nullptr, nullptr, flags & ~SOCK_CLOEXEC);
    // The kernel counts named slots from 1 (0 means "not direct") and takes
    // IORING_FILE_INDEX_ALLOC as is. liburing 2.3's io_uring_prep_accept_direct
    // adds 1 to ALLOC too, which wraps to 0 and silently makes a plain accept.
    sqe->file_index = file_index == IORING_FILE_INDEX_ALLOC ? IORING_FILE_INDEX_ALLOC : file_index + 1;
}
// Multishot accept into slots the kernel allocates (5.19); each CQE's res is
// a slot. Ends with -ENFILE when the table is full. SOCK_CLOEXEC is dropped
// as for prep_accept_direct.
inline void prep_accept_multishot_direct(io_uring_sqe* sqe, int listen_fd, int flags = 0) noexcept {
    io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, flags & ~SOCK_CLOEXEC);
    sqe->file_index = IORING_FILE_INDEX_ALLOC;
}

// ---- connect (clients, tests) ---------------------------------------------
inline void prep_connect(io_uring_sqe* sqe, int fd, const sockaddr* addr, socklen_t len) noexcept {
    io_uring_prep_connect(sqe, fd, addr, len);
}

// ---- receive ----------------------------------------------------------------
inline void prep_recv(io_uring_sqe* sqe, int fd, std::span<std::byte> buffer, int flags = 0) noexcept {
    io_uring_prep_recv(sqe, fd, buffer.data(), buffer.size(), flags);
}
// Receive into a buffer the kernel picks from provided-buffer group `group`;
// the CQE names it (IORING_CQE_F_BUFFER, id in the upper 16 bits).
inline void prep_recv_select(io_uring_sqe* sqe, int fd, std::uint16_t group, int flags = 0) noexcept {
    io_uring_prep_recv(sqe, fd, nullptr, 0, flags);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
}
// Multishot receive with buffer selection (6.0): a CQE per arrival, each in
// its own provided buffer, until a CQE comes without IORING_CQE_F_MORE.
inline void prep_recv_multishot(io_uring_sqe* sqe, int fd, std::uint16_t group, int flags = 0) noexcept {
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, flags);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
}
// Bundle receive (6.10): one CQE may cover several consecutive provided
// buffers, starting at the id it names; res is the total byte count.
inline void prep_recv_bundle(io_uring_sqe* sqe, int fd, std::uint16_t group, bool multishot, int flags = 0) noexcept {
    if (multishot)
        prep_recv_multishot(sqe, fd, group, flags);
    else
        prep_recv_select(sqe, fd, group, flags);
    sqe->ioprio |= IORING_RECVSEND_BUNDLE;
}
inline void prep_recvmsg(io_uring_sqe* sqe, int fd, msghdr* msg, unsigned flags = 0) noexcept {
    io_uring_prep_recvmsg(sqe, fd, msg, flags);
}
// Multishot recvmsg (6.0): each provided buffer starts with an
// io_uring_recvmsg_out header laid out as `msg` describes.
inline void prep_recvmsg_multishot(io_uring_sqe* sqe, int fd, msghdr* msg, std::uint16_t group, unsigned flags = 0) noexcept {
    io_uring_prep_recvmsg_multishot(sqe, fd, msg, flags);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
}

// ---- send -------------------------------------------------------------------
inline void prep_send(io_uring_sqe* sqe, int fd, std::span<const std::byte> data, int flags = MSG_NOSIGNAL) noexcept {
    io_uring_prep_send(sqe, fd, data.data(), data.size(), flags);
}
inline void prep_sendmsg(io_uring_sqe* sqe, int fd, const msghdr* msg, unsigned flags = MSG_NOSIGNAL) noexcept {
    io_uring_prep_sendmsg(sqe, fd, msg, flags);
}
// Zero-copy send (6.0): two CQEs, the result (with IORING_CQE_F_MORE) and a
// notification (IORING_CQE_F_NOTIF) once the kernel no longer reads `data`.
// Worth it above roughly 10 KiB per send; below, the copy is cheaper.
inline void prep_send_zc(io_uring_sqe* sqe, int fd, std::span<const std::byte> data, int flags = MSG_NOSIGNAL,
                         unsigned zc_flags = 0) noexcept {
    io_uring_prep_send_zc(sqe, fd, data.data(), data.size(), flags, zc_flags);
}
// Zero-copy send from registered buffer `buf_index` (6.0).
inline void prep_send_zc_fixed(io_uring_sqe* sqe, int fd, std::span<const std::byte> data, unsigned buf_index,
                               int flags = MSG_NOSIGNAL) noexcept {
    io_uring_prep_send_zc_fixed(sqe, fd, data.data(), data.size(), flags, 0, buf_index);
}
inline void prep_sendmsg_zc(io_uring_sqe* sqe, int fd, const msghdr* msg, unsigned flags = MSG_NOSIGNAL) noexcept {
    io_uring_prep_sendmsg_zc(sqe, fd, msg, flags);
}

// ---- read / write -----------------------------------------------------------
inline void prep_read(io_uring_sqe* sqe, int fd, std::span<std::byte> buffer, std::uint64_t offset = -1ull) noexcept {
    io_uring_prep_read(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset);
}
inline void prep_write(io_uring_sqe* sqe, int fd, std::span<const std::byte> data, std::uint64_t offset = -1ull) noexcept {
    io_uring_prep_write(sqe, fd, data.data(), static_cast<unsigned>(data.size()), offset);
}
// Read into / write from registered buffer `buf_index`; `buffer` must lie inside it.
inline void prep_read_fixed(io_uring_sqe* sqe, int fd, std::span<std::byte> buffer, unsigned buf_index,
                            std::uint64_t offset = -1ull) noexcept {
    io_uring_prep_read_fixed(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset, static_cast<int>(buf_index));
}
inline void prep_write_fixed(io_uring_sqe* sqe, int fd, std::span<const std::byte> data, unsigned buf_index,
                             std::uint64_t offset = -1ull) noexcept {
    io_uring_prep_write_fixed(sqe, fd, data.data(), static_cast<unsigned>(data.size()), offset, static_cast<int>(buf_index));
}
inline void prep_readv(io_uring_sqe* sqe, int fd, std::span<const iovec> iov, std::uint64_t offset = -1ull) noexcept {
    io_uring_prep_readv(sqe, fd, iov.data(), static_cast<unsigned>(iov.size()), offset);
}
inline void prep_writev(io_uring_sqe* sqe, int fd, std::span<const iovec> iov, std::uint64_t offset = -1ull) noexcept {
    io_uring_prep_writev(sqe, fd, iov.data(), static_cast<unsigned>(iov.size()), offset);
}
// Multishot read from a pipe, eventfd or similar into provided buffers (6.7).
inline void prep_read_multishot(io_uring_sqe* sqe, int fd, std::uint16_t group) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, fd, nullptr, 0, -1ull);
    sqe->opcode = opcode::read_multishot;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
}

// ---- close / shutdown -------------------------------------------------------
inline void prep_close(io_uring_sqe* sqe, int fd) noexcept { io_uring_prep_close(sqe, fd); }
// Close registered-file slot `file_index` (5.15).
inline void prep_close_direct(io_uring_sqe* sqe, unsigned file_index) noexcept { io_uring_prep_close_direct(sqe, file_index); }
inline void prep_shutdown(io_uring_sqe* sqe, int fd, int how) noexcept { io_uring_prep_shutdown(sqe, fd, how); }

// ---- cancel -----------------------------------------------------------------
// Cancel the request tagged `target` (5.5): res 0, -ENOENT, or -EALREADY.
// With IORING_ASYNC_CANCEL_ALL, every request with that tag (5.19), and res is
// how many were cancelled (0, not -ENOENT, when none).
inline void prep_cancel(io_uring_sqe* sqe, user_data target, int flags = 0) noexcept {
    io_uring_prep_cancel64(sqe, target.raw(), flags);
}
// Cancel every request on `fd` (5.19); res is how many were found (0 when none).
inline void prep_cancel_fd(io_uring_sqe* sqe, int fd, unsigned flags = 0) noexcept {
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL | flags);
}
// Cancel every request in the ring (5.19).
inline void prep_cancel_all(io_uring_sqe* sqe) noexcept {
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
}

// ---- timeouts ---------------------------------------------------------------
// Completes with -ETIME after `ts`, or with 0 after `count` other completions
// (count 0: time only). `ts` must stay alive until submitted.
inline void prep_timeout(io_uring_sqe* sqe, __kernel_timespec* ts, unsigned count = 0, unsigned flags = 0) noexcept {
    io_uring_prep_timeout(sqe, ts, count, flags);
}
// Bounds the SQE linked before it (IOSQE_IO_LINK): cancels it after `ts` (5.5).
inline void prep_link_timeout(io_uring_sqe* sqe, __kernel_timespec* ts, unsigned flags = 0) noexcept {
    io_uring_prep_link_timeout(sqe, ts, flags);
}
inline void prep_timeout_remove(io_uring_sqe* sqe, user_data target, unsigned flags = 0) noexcept {
    io_uring_prep_timeout_remove(sqe, target.raw(), flags);
}
// Re-arms the pending prep_timeout tagged `target` with `ts` (5.11); `flags`
// may add IORING_TIMEOUT_ABS or a clock. res: 0, or -ENOENT when no such
// timeout is pending. The timeout itself does not complete.
inline void prep_timeout_update(io_uring_sqe* sqe, user_data target, __kernel_timespec* ts, unsigned flags = 0) noexcept {
    io_uring_prep_timeout_update(sqe, ts, target.raw(), flags);
}
// Re-arms the pending link timeout tagged `target` with `ts` (5.15): its
// linked operation gets a new deadline. res: 0, or -ENOENT.
inline void prep_link_timeout_update(io_uring_sqe* sqe, user_data target, __kernel_timespec* ts,
                                     unsigned flags = 0) noexcept {
    // Both bits: without IORING_TIMEOUT_UPDATE the kernel reads the SQE as
    // a timeout *removal* and looks for a plain timeout (-ENOENT).
    io_uring_prep_timeout_update(sqe, ts, target.raw(), flags | IORING_LINK_TIMEOUT_UPDATE);
}

// ---- poll -------------------------------------------------------------------
inline void prep_poll_add(io_uring_sqe* sqe, int fd, unsigned poll_mask) noexcept { io_uring_prep_poll_add(sqe, fd, poll_mask); }
// A CQE on every readiness change until cancelled (5.13).
inline void prep_poll_multishot(io_uring_sqe* sqe, int fd, unsigned poll_mask) noexcept {
    io_uring_prep_poll_multishot(sqe, fd, poll_mask);
}
inline void prep_poll_remove(io_uring_sqe* sqe, user_data target) noexcept { io_uring_prep_poll_remove(sqe, target.raw()); }
// Changes the pending poll tagged `target` in place (5.13): its mask to
// `poll_mask` when `flags` has IORING_POLL_UPDATE_EVENTS, its tag to
// `new_tag` with IORING_POLL_UPDATE_USER_DATA; IORING_POLL_ADD_MULTI keeps
// (or makes) it multishot. res: 0, or -ENOENT. The poll's later CQEs carry
// the new tag and report against the new mask. Without UPDATE_USER_DATA
// `new_tag` is not sent (the kernel refuses a tag it is not to apply).
inline void prep_poll_update(io_uring_sqe* sqe, user_data target, user_data new_tag, unsigned poll_mask,
                             unsigned flags = IORING_POLL_UPDATE_EVENTS) noexcept {
    std::uint64_t tag = (flags & IORING_POLL_UPDATE_USER_DATA) ? new_tag.raw() : 0;
    io_uring_prep_poll_update(sqe, target.raw(), tag, poll_mask, flags);
}

// ---- messages between rings (5.18) -----------------------------------------
// Posts a CQE with res = `res` and user_data = `ud` to the ring `target_ring_fd`.
// With `cqe_flags` nonzero the target CQE carries those flags (6.3).
inline void prep_msg_ring(io_uring_sqe* sqe, int target_ring_fd, std::uint32_t res, user_data ud,
                          std::uint32_t cqe_flags = 0) noexcept {
    io_uring_prep_msg_ring(sqe, target_ring_fd, res, ud.raw(), 0);
    if (cqe_flags) {
        sqe->msg_ring_flags |= IORING_MSG_RING_FLAGS_PASS;
        sqe->file_index = cqe_flags;
    }
}
// Installs this ring's registered file `source_index` into the target ring's
// file table at `target_index` (or a free slot with IORING_FILE_INDEX_ALLOC),
// and posts a CQE there tagged `ud` (6.0). Both that CQE and the sender's have
// res 0 for a named slot, the chosen slot with IORING_FILE_INDEX_ALLOC.
inline void prep_msg_ring_fd(io_uring_sqe* sqe, int target_ring_fd, unsigned source_index, unsigned target_index,
                             user_data ud) noexcept {
    io_uring_prep_rw(IORING_OP_MSG_RING, sqe, target_ring_fd, reinterpret_cast<void*>(std::uintptr_t{IORING_MSG_SEND_FD}), 0,
                     ud.raw());
    sqe->addr3 = source_index;
    // The kernel counts target slots from 1 so that 0 can mean "none".
    sqe->file_index = target_index == IORING_FILE_INDEX_ALLOC ? IORING_FILE_INDEX_ALLOC : target_index + 1;
}

// ---- sockets through the ring ----------------------------------------------
// socket(2) as an SQE (5.19); res is the new fd.
inline void prep_socket(io_uring_sqe* sqe, int domain, int type, int protocol) noexcept {
    io_uring_prep_socket(sqe, domain, type, protocol, 0);
}
// socket(2) into a registered-file slot (5.19), or any free one with
// IORING_FILE_INDEX_ALLOC; res is 0 for a named slot, else the chosen slot.
// SOCK_CLOEXEC in `type` is dropped: the kernel refuses it for a direct
// descriptor, which is never in the fd table anyway.
inline void prep_socket_direct(io_uring_sqe* sqe, int domain, int type, int protocol, unsigned file_index) noexcept {
    type &= ~SOCK_CLOEXEC;
    if (file_index == IORING_FILE_INDEX_ALLOC)
        io_uring_prep_socket_direct_alloc(sqe, domain, type, protocol, 0);
    else
        io_uring_prep_socket_direct(sqe, domain, type, protocol, file_index, 0);
}
// bind(2) as an SQE (6.11).
inline void prep_bind(io_uring_sqe* sqe, int fd, const sockaddr* addr, socklen_t len) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, fd, addr, 0, len);
    sqe->opcode = opcode::bind;
}
// listen(2) as an SQE (6.11).
inline void prep_listen(io_uring_sqe* sqe, int fd, int backlog) noexcept {
    io_uring_prep_rw(IORING_OP_NOP, sqe, fd, nullptr, static_cast<unsigned>(backlog), 0);
    sqe->opcode = opcode::listen;
}

namespace detail {
inline void prep_socket_command(io_uring_sqe* sqe, std::uint32_t command, int fd, int level, int optname,
                                void* optval, int optlen) noexcept {
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, nullptr, 0, 0);
    sqe->cmd_op = command;
    auto* bytes = reinterpret_cast<unsigned char*>(sqe);
    auto put32 = [bytes](std::size_t at, std::uint32_t v) { std::memcpy(bytes + at, &v, sizeof v); };
    put32(abi::sqe_level_offset, static_cast<std::uint32_t>(level));
    put32(abi::sqe_optname_offset, static_cast<std::uint32_t>(optname));
    put32(abi::sqe_optlen_offset, static_cast<std::uint32_t>(optlen));
    std::uint64_t ptr = reinterpret_cast<std::uintptr_t>(optval);
    std::memcpy(bytes + abi::sqe_optval_offset, &ptr, sizeof ptr);
}
}  // namespace detail

// setsockopt(2) as an SQE (6.7). `value` must stay alive until submitted.
inline void prep_setsockopt(io_uring_sqe* sqe, int fd, int level, int optname, const void* value, int len) noexcept {
    detail::prep_socket_command(sqe, abi::socket_op_setsockopt, fd, level, optname, const_cast<void*>(value), len);
}
// getsockopt(2) as an SQE (6.7); res is the option's length.
inline void prep_getsockopt(io_uring_sqe* sqe, int fd, int level, int optname, void* value, int len) noexcept {
    detail::prep_socket_command(sqe, abi::socket_op_getsockopt, fd, level, optname, value, len);
}

// ---- reading a CQE -----------------------------------------------------------
// More CQEs will follow for this (multishot) request.
inline bool cqe_has_more(const io_uring_cqe& cqe) noexcept { return cqe.flags & IORING_CQE_F_MORE; }
// The CQE carries a provided buffer, named by cqe_buffer_id().
inline bool cqe_has_buffer(const io_uring_cqe& cqe) noexcept { return cqe.flags & IORING_CQE_F_BUFFER; }
inline std::uint16_t cqe_buffer_id(const io_uring_cqe& cqe) noexcept {
    return static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
}
// A zero-copy send's notification: the kernel is done with the data.
inline bool cqe_is_notification(const io_uring_cqe& cqe) noexcept { return cqe.flags & IORING_CQE_F_NOTIF; }

}  // namespace zerg::uring
