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
inline constexpr std::uint8_t pipe = 62;              // 6.16
// One past the highest opcode this header knows; probes read up to here.
inline constexpr std::uint8_t known_end = 63;
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

// ---- file, process and table operations (the full operation set) -----------
// Flags and structs of the operations in file_operations.hpp,
// pipe_operations.hpp, wait_operations.hpp, epoll_operations.hpp,
// descriptor_operations.hpp and zcrx.hpp that liburing 2.3 and the 6.1 uapi
// headers do not have. Values from include/uapi/linux/io_uring.h and
// include/uapi/linux/futex.h.
#ifndef IORING_FIXED_FD_NO_CLOEXEC
// IORING_OP_FIXED_FD_INSTALL: install the new fd without O_CLOEXEC (6.8).
#define IORING_FIXED_FD_NO_CLOEXEC (1U << 0)
#endif
#ifndef IORING_REGISTER_ZCRX_IFQ
// io_uring_register() opcode: attach a NIC receive queue for zero-copy receive (6.15).
#define IORING_REGISTER_ZCRX_IFQ 32
#endif

namespace zerg::uring::abi {

// futex2 flags (sqe->fd of FUTEX_WAIT/WAKE, futex_waitv::flags); the 6.1
// uapi header has only FUTEX_32 (== size_u32) and no private flag.
inline constexpr std::uint32_t futex2_size_u32 = 0x02;  // FUTEX2_SIZE_U32
inline constexpr std::uint32_t futex2_private = 128;    // FUTEX2_PRIVATE, 6.7
inline constexpr std::uint32_t futex_match_any = 0xffffffffu;  // FUTEX_BITSET_MATCH_ANY

// IORING_MEM_REGION_TYPE_USER: the region is memory the caller allocated (6.13).
inline constexpr std::uint32_t mem_region_type_user = 1;

// Layout of struct io_uring_region_desc (6.13).
struct region_desc {
    std::uint64_t user_addr;
    std::uint64_t size;
    std::uint32_t flags;
    std::uint32_t id;
    std::uint64_t mmap_offset;
    std::uint64_t resv[4];
};
static_assert(sizeof(region_desc) == 64, "io_uring_region_desc is 64 bytes in the kernel ABI");

// Layout of struct io_uring_zcrx_area_reg (6.15).
struct zcrx_area_reg {
    std::uint64_t addr;
    std::uint64_t len;
    std::uint64_t rq_area_token;  // out: the token refill entries carry
    std::uint32_t flags;
    std::uint32_t dmabuf_fd;
    std::uint64_t resv2[2];
};
static_assert(sizeof(zcrx_area_reg) == 48, "io_uring_zcrx_area_reg is 48 bytes in the kernel ABI");

// Layout of struct io_uring_zcrx_offsets (6.15): where the refill ring's
// head, tail and entries lie inside the region.
struct zcrx_offsets {
    std::uint32_t head;
    std::uint32_t tail;
    std::uint32_t rqes;
    std::uint32_t resv2;
    std::uint64_t resv[2];
};
static_assert(sizeof(zcrx_offsets) == 32, "io_uring_zcrx_offsets is 32 bytes in the kernel ABI");

// Layout of struct io_uring_zcrx_ifq_reg (IORING_REGISTER_ZCRX_IFQ, 6.15).
struct zcrx_ifq_reg {
    std::uint32_t if_idx;
    std::uint32_t if_rxq;
    std::uint32_t rq_entries;
    std::uint32_t flags;
    std::uint64_t area_ptr;    // struct zcrx_area_reg*
    std::uint64_t region_ptr;  // struct region_desc*
    zcrx_offsets offsets;      // out
    std::uint32_t zcrx_id;     // out
    std::uint32_t resv2;
    std::uint64_t resv[3];
};
static_assert(sizeof(zcrx_ifq_reg) == 96, "io_uring_zcrx_ifq_reg is 96 bytes in the kernel ABI");

// Layout of struct io_uring_zcrx_rqe, one refill-ring entry (6.15).
struct zcrx_rqe {
    std::uint64_t off;
    std::uint32_t len;
    std::uint32_t pad;
};
static_assert(sizeof(zcrx_rqe) == 16);

}  // namespace zerg::uring::abi

// ---- multishot recvmsg (6.0) -----------------------------------------------
namespace zerg::uring::abi {

// Layout of the kernel's struct io_uring_recvmsg_out: the header a multishot
// IORING_OP_RECVMSG writes at the start of every provided buffer. After it
// come msg_namelen bytes of source address, msg_controllen bytes of control
// data, then the payload. `namelen`, `controllen` and `payloadlen` are the
// true sizes: larger than the room given when the kernel had to cut them
// (`flags` then carries MSG_TRUNC or MSG_CTRUNC, as recvmsg(2) says).
struct recvmsg_out {
    std::uint32_t namelen;
    std::uint32_t controllen;
    std::uint32_t payloadlen;
    std::uint32_t flags;
};
static_assert(sizeof(recvmsg_out) == 16, "io_uring_recvmsg_out is 16 bytes in the kernel ABI");

}  // namespace zerg::uring::abi

// ---- waiting, ring resizing and busy polling (6.9 .. 6.13) ------------------
// Values from include/uapi/linux/io_uring.h; see ring.hpp for their use.
#ifndef IORING_ENTER_ABS_TIMER
#define IORING_ENTER_ABS_TIMER (1U << 5)             // 6.12
#endif
#ifndef IORING_ENTER_EXT_ARG_REG
// The EXT_ARG argument is the offset of a registered wait region (6.13).
#define IORING_ENTER_EXT_ARG_REG (1U << 6)
#endif
#ifndef IORING_REGISTER_NAPI
#define IORING_REGISTER_NAPI 27                       // 6.9
#define IORING_UNREGISTER_NAPI 28                     // 6.9
#endif
#ifndef IORING_REGISTER_RESIZE_RINGS
#define IORING_REGISTER_RESIZE_RINGS 33               // 6.13
#endif
#ifndef IORING_REGISTER_MEM_REGION
#define IORING_REGISTER_MEM_REGION 34                 // 6.13
#endif

namespace zerg::uring::abi {

// Layout of struct io_uring_getevents_arg as of 6.12: the field liburing 2.3
// calls `pad` carries min_wait_usec when IORING_FEAT_MIN_TIMEOUT is set.
struct getevents_arg {
    std::uint64_t sigmask;
    std::uint32_t sigmask_sz;
    std::uint32_t min_wait_usec;
    std::uint64_t ts;  // struct __kernel_timespec*
};
static_assert(sizeof(getevents_arg) == sizeof(io_uring_getevents_arg));

// IORING_MEM_REGION_REG_WAIT_ARG: the region holds wait arguments (6.13).
inline constexpr std::uint64_t mem_region_reg_wait_arg = 1;
// io_uring_reg_wait::flags: `ts` is valid.
inline constexpr std::uint32_t reg_wait_ts = 1;

// Layout of struct io_uring_mem_region_reg (IORING_REGISTER_MEM_REGION).
struct mem_region_reg {
    std::uint64_t region_uptr;  // struct region_desc*
    std::uint64_t flags;
    std::uint64_t resv[2];
};
static_assert(sizeof(mem_region_reg) == 32);

// Layout of struct io_uring_reg_wait: one registered wait argument.
struct reg_wait {
    std::int64_t ts_sec;   // struct __kernel_timespec, seconds
    std::int64_t ts_nsec;  // and nanoseconds
    std::uint32_t min_wait_usec;
    std::uint32_t flags;
    std::uint64_t sigmask;
    std::uint32_t sigmask_sz;
    std::uint32_t pad[3];
    std::uint64_t pad2[2];
};
static_assert(sizeof(reg_wait) == 64, "io_uring_reg_wait is 64 bytes in the kernel ABI");

// Layout of struct io_uring_napi (IORING_REGISTER_NAPI, 6.9; `opcode` 6.13,
// 0 = register with dynamic id tracking, what 6.9 did).
struct napi {
    std::uint32_t busy_poll_to;  // µs
    std::uint8_t prefer_busy_poll;
    std::uint8_t opcode;
    std::uint8_t pad[2];
    std::uint32_t op_param;
    std::uint32_t resv;
};
static_assert(sizeof(napi) == 16);

}  // namespace zerg::uring::abi
