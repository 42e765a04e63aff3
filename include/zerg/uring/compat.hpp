// Kernel io_uring ABI that Debian bookworm's liburing 2.3 and its 6.1 kernel
// headers do not define yet. Every value comes from the kernel's uapi header
// (include/uapi/linux/io_uring.h); each one is guarded so a newer liburing or
// linux-libc-dev that defines it wins and this file silently steps aside.
//
// Nothing here is liburing code: only constants, and one struct whose layout
// is fixed by the kernel ABI.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>

// ---- io_uring_setup() flags ------------------------------------------------
#ifndef IORING_SETUP_NO_MMAP
#define IORING_SETUP_NO_MMAP (1U << 14)               // 6.5
#endif
#ifndef IORING_SETUP_REGISTERED_FD_ONLY
#define IORING_SETUP_REGISTERED_FD_ONLY (1U << 15)    // 6.5
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)            // 6.6
#endif

// ---- opcodes newer than 6.1 ------------------------------------------------
// The kernel numbers opcodes in one enum; liburing 2.3 stops after SENDMSG_ZC
// (48). These are the values of the kernel's enum io_uring_op.
namespace zerg::uring::opcode {
inline constexpr std::uint8_t read_multishot = 49;    // 6.7
inline constexpr std::uint8_t waitid = 50;            // 6.7
inline constexpr std::uint8_t futex_wait = 51;        // 6.7
inline constexpr std::uint8_t futex_wake = 52;        // 6.7
inline constexpr std::uint8_t futex_waitv = 53;       // 6.7
inline constexpr std::uint8_t fixed_fd_install = 54;  // 6.8
inline constexpr std::uint8_t ftruncate = 55;         // 6.9
inline constexpr std::uint8_t bind = 56;              // 6.11
inline constexpr std::uint8_t listen = 57;            // 6.11
inline constexpr std::uint8_t recv_zc = 58;           // 6.15
inline constexpr std::uint8_t epoll_wait = 59;        // 6.15
inline constexpr std::uint8_t readv_fixed = 60;       // 6.15
inline constexpr std::uint8_t writev_fixed = 61;      // 6.15
// One past the highest opcode this header knows; probes read up to here.
inline constexpr std::uint8_t known_end = 62;
}  // namespace zerg::uring::opcode

// ---- CQE flags -------------------------------------------------------------
#ifndef IORING_CQE_F_BUF_MORE
// Incremental buffer ring: the buffer named in this CQE is not used up and
// the kernel will place the next receive right behind this one (6.12).
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

// ---- send/recv flags (sqe->ioprio) -----------------------------------------
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)        // 6.2
#endif
#ifndef IORING_RECVSEND_BUNDLE
// One receive fills several consecutive provided buffers (6.10).
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

// ---- accept flags (sqe->ioprio) --------------------------------------------
#ifndef IORING_ACCEPT_DONTWAIT
#define IORING_ACCEPT_DONTWAIT (1U << 1)              // 6.10
#endif
#ifndef IORING_ACCEPT_POLL_FIRST
#define IORING_ACCEPT_POLL_FIRST (1U << 2)            // 6.10
#endif

// ---- async cancel flags ----------------------------------------------------
#ifndef IORING_ASYNC_CANCEL_USERDATA
#define IORING_ASYNC_CANCEL_USERDATA (1U << 4)        // 6.6
#endif
#ifndef IORING_ASYNC_CANCEL_OP
#define IORING_ASYNC_CANCEL_OP (1U << 5)              // 6.6
#endif

// ---- MSG_RING --------------------------------------------------------------
#ifndef IORING_MSG_RING_FLAGS_PASS
// sqe->file_index carries the flags of the CQE posted to the target (6.3).
#define IORING_MSG_RING_FLAGS_PASS (1U << 1)
#endif

// ---- feature bits returned by io_uring_setup() -----------------------------
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)           // 6.3
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)        // 6.10
#endif
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)            // 6.12
#endif

// ---- enter flags -----------------------------------------------------------
#ifndef IORING_ENTER_REGISTERED_RING
#define IORING_ENTER_REGISTERED_RING (1U << 4)        // 5.18
#endif

// ---- provided buffer ring registration -------------------------------------
namespace zerg::uring::abi {

// Flags of io_uring_buf_reg::flags. liburing 2.3 names that field `pad` and
// drops the flags argument of io_uring_register_buf_ring(), so zerg registers
// buffer rings with its own copy of the struct.
inline constexpr std::uint16_t pbuf_ring_mmap = 1;         // IOU_PBUF_RING_MMAP, 6.4
inline constexpr std::uint16_t pbuf_ring_incremental = 2;  // IOU_PBUF_RING_INC, 6.12

// Layout of the kernel's struct io_uring_buf_reg (IORING_REGISTER_PBUF_RING).
struct buf_reg {
    std::uint64_t ring_addr;
    std::uint32_t ring_entries;
    std::uint16_t bgid;
    std::uint16_t flags;
    std::uint64_t resv[3];
};
static_assert(sizeof(buf_reg) == 40, "io_uring_buf_reg is 40 bytes in the kernel ABI");
static_assert(sizeof(buf_reg) == sizeof(io_uring_buf_reg));

// IORING_OP_URING_CMD sub-commands on sockets (6.7).
inline constexpr std::uint32_t socket_op_siocinq = 0;
inline constexpr std::uint32_t socket_op_siocoutq = 1;
inline constexpr std::uint32_t socket_op_getsockopt = 2;
inline constexpr std::uint32_t socket_op_setsockopt = 3;

// Byte offsets inside the 64-byte SQE of fields liburing 2.3's struct does
// not name: the socket-command operands share storage with addr, file_index
// and addr3.
inline constexpr std::size_t sqe_level_offset = 16;    // __u32 level   (addr, low half)
inline constexpr std::size_t sqe_optname_offset = 20;  // __u32 optname (addr, high half)
inline constexpr std::size_t sqe_optlen_offset = 44;   // __u32 optlen  (file_index)
inline constexpr std::size_t sqe_optval_offset = 48;   // __u64 optval  (addr3)

}  // namespace zerg::uring::abi
