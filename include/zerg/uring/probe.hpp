// zerg::uring::probe_kernel(): what the running kernel's io_uring can do.
//
// Opcodes come from IORING_REGISTER_PROBE (5.6); setup flags are tried one
// at a time on throw-away rings; buffer-ring modes by registering one. Hidden
// features (hidden_features.hpp) are reported as missing, exactly as the
// ring and buffer ring will treat them. Costs a few small rings: call it at
// start-up, not per connection.
#pragma once

#include <zerg/uring/buffer_ring.hpp>
#include <zerg/uring/compat.hpp>
#include <zerg/uring/error.hpp>
#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/ring.hpp>

#include <liburing.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bitset>
#include <cstdint>
#include <string>

namespace zerg::uring {

struct kernel_support {
    std::string kernel_release;
    bool available = false;   // io_uring can be used at all
    int setup_errno = 0;      // why not, when !available
    std::string unavailable_reason;
    unsigned features = 0;    // IORING_FEAT_* bits
    unsigned setup_flags = 0; // IORING_SETUP_* bits accepted one by one
    std::bitset<256> opcodes; // supported IORING_OP_* values
    unsigned last_opcode = 0; // the highest opcode the kernel knows
    bool buf_ring = false;
    bool buf_ring_incremental = false;
    bool registered_ring_fd = false;
    // Socket commands through IORING_OP_URING_CMD (setsockopt/getsockopt,
    // 6.7): tried for real, since the opcode itself dates from 5.19.
    bool socket_commands = false;
    // Ring features zerg's own mapping makes usable, each tried on a real
    // ring (a hidden one counts as missing):
    bool no_mmap = false;       // rings in user memory (NO_MMAP, 6.5)
    bool min_timeout = false;   // min_wait_usec honoured (FEAT_MIN_TIMEOUT, 6.12)
    bool wait_region = false;   // registered wait argument (6.13)
    bool resize_rings = false;  // CQ resize (IORING_REGISTER_RESIZE_RINGS, 6.13)
    bool napi = false;          // NAPI busy-poll registration (6.9)

    bool supports(std::uint8_t op) const noexcept { return opcodes.test(op); }
    bool accepts(unsigned setup_flag) const noexcept { return (setup_flags & setup_flag) == setup_flag; }
    bool has(unsigned feat) const noexcept { return features & feat; }
    // Bundle receives need the feature bit, and zerg must not hide them.
    bool recv_bundle() const noexcept { return has(IORING_FEAT_RECVSEND_BUNDLE) && !is_hidden(feature::recv_bundle); }
};

// The name of an opcode known to this header, or "op N".
inline std::string opcode_name(unsigned op) {
    static constexpr const char* names[] = {
        "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD", "POLL_REMOVE",
        "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT", "ASYNC_CANCEL",
        "LINK_TIMEOUT", "CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE", "STATX", "READ", "WRITE",
        "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2", "EPOLL_CTL", "SPLICE", "PROVIDE_BUFFERS",
        "REMOVE_BUFFERS", "TEE", "SHUTDOWN", "RENAMEAT", "UNLINKAT", "MKDIRAT", "SYMLINKAT", "LINKAT",
        "MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR", "GETXATTR", "SOCKET", "URING_CMD", "SEND_ZC",
        "SENDMSG_ZC", "READ_MULTISHOT", "WAITID", "FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV",
        "FIXED_FD_INSTALL", "FTRUNCATE", "BIND", "LISTEN", "RECV_ZC", "EPOLL_WAIT", "READV_FIXED",
        "WRITEV_FIXED", "PIPE",
    };
    static_assert(sizeof(names) / sizeof(names[0]) == opcode::known_end);
    return op < opcode::known_end ? names[op] : "op " + std::to_string(op);
}

// The first mainline kernel with opcode `op` ("5.6"), or "?" past what this
// header knows. For messages and tools; decide with supports(), not this.
inline const char* opcode_kernel(unsigned op) noexcept {
    static constexpr const char* since[] = {
        "5.1",  "5.1",  "5.1",  "5.1",  "5.1",  "5.1",  "5.1",  "5.1",  "5.2",  "5.3",  "5.3",  // NOP..RECVMSG
        "5.4",  "5.5",  "5.5",  "5.5",  "5.5",  "5.5",                                          // TIMEOUT..CONNECT
        "5.6",  "5.6",  "5.6",  "5.6",  "5.6",  "5.6",  "5.6",  "5.6",  "5.6",  "5.6",  "5.6",  // FALLOCATE..RECV
        "5.6",  "5.6",                                                                          // OPENAT2, EPOLL_CTL
        "5.7",  "5.7",  "5.7",  "5.8",  "5.11", "5.11", "5.11",                                 // SPLICE..UNLINKAT
        "5.15", "5.15", "5.15", "5.18",                                                         // MKDIRAT..MSG_RING
        "5.19", "5.19", "5.19", "5.19", "5.19", "5.19", "6.0",  "6.1",                          // xattrs..SENDMSG_ZC
        "6.7",  "6.7",  "6.7",  "6.7",  "6.7",  "6.8",  "6.9",  "6.11", "6.11",                 // READ_MULTISHOT..LISTEN
        "6.15", "6.15", "6.15", "6.15", "6.16",                                                 // RECV_ZC..PIPE
    };
    static_assert(sizeof(since) / sizeof(since[0]) == opcode::known_end);
    return op < opcode::known_end ? since[op] : "?";
}

namespace detail {

// Setup flags worth knowing about, each with what it needs beside it.
struct setup_flag_trial {
    unsigned flag;
    unsigned companions;
    feature hidden_as;
};

inline constexpr setup_flag_trial setup_flag_trials[] = {
    {IORING_SETUP_SQPOLL, 0, feature::sqpoll},
    {IORING_SETUP_SQ_AFF, IORING_SETUP_SQPOLL, feature::sqpoll},
    {IORING_SETUP_SUBMIT_ALL, 0, feature::submit_all},
    {IORING_SETUP_COOP_TASKRUN, 0, feature::coop_taskrun},
    {IORING_SETUP_TASKRUN_FLAG, IORING_SETUP_COOP_TASKRUN, feature::coop_taskrun},
    {IORING_SETUP_SINGLE_ISSUER, 0, feature::single_issuer},
    {IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_SINGLE_ISSUER, feature::defer_taskrun},
    {IORING_SETUP_NO_SQARRAY, 0, feature::no_sqarray},
    {IORING_SETUP_SQE128, 0, feature{0}},
    {IORING_SETUP_CQE32, 0, feature{0}},
    {IORING_SETUP_CQSIZE, 0, feature{0}},
    {IORING_SETUP_CLAMP, 0, feature{0}},
    {IORING_SETUP_R_DISABLED, 0, feature{0}},
};

}  // namespace detail

inline kernel_support probe_kernel() {
    kernel_support out;
    if (utsname u{}; ::uname(&u) == 0) out.kernel_release = u.release;

    std::error_code ec;
    ring_options plain;
    plain.single_issuer = plain.defer_taskrun = plain.coop_taskrun = plain.submit_all = false;
    plain.no_sqarray = false;
    plain.entries = 8;
    ring r(plain, ec);
    if (ec) {
        out.setup_errno = ec.value();
        out.unavailable_reason = r.setup_error();
        return out;
    }
    out.available = true;
    out.features = r.kernel_features();
    out.registered_ring_fd = r.ring_fd_registered();
    if (is_hidden(feature::ext_arg)) out.features &= ~IORING_FEAT_EXT_ARG;
    if (is_hidden(feature::recv_bundle)) out.features &= ~IORING_FEAT_RECVSEND_BUNDLE;

    for (auto const& trial : detail::setup_flag_trials) {
        if (static_cast<unsigned>(trial.hidden_as) && is_hidden(trial.hidden_as)) continue;
        io_uring_params params{};
        params.flags = trial.flag | trial.companions;
        if (params.flags & IORING_SETUP_CQSIZE) params.cq_entries = 16;
        if (detail::try_setup(8, params) == 0) out.setup_flags |= trial.flag;
    }

    if (auto ops = r.probe_opcodes(); ops.probed) {
        out.last_opcode = ops.last_op;
        out.opcodes = ops.ops;
    }
    if (is_hidden(feature::msg_ring)) out.opcodes.reset(IORING_OP_MSG_RING);
    if (is_hidden(feature::ring_socket_ops)) {
        out.opcodes.reset(opcode::bind);
        out.opcodes.reset(opcode::listen);
    }

    if (out.supports(IORING_OP_URING_CMD) && !is_hidden(feature::ring_socket_ops)) {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int type = 0;
        if (fd >= 0) {
            std::error_code sqe_error;
            if (io_uring_sqe* sqe = r.get_sqe(sqe_error)) {
                prep_getsockopt(sqe, fd, SOL_SOCKET, SO_TYPE, &type, sizeof type);
                if (r.submit_and_wait(1) >= 0)
                    r.for_each_completion(
                        [&](const io_uring_cqe& cqe) { out.socket_commands = cqe.res >= 0 && type == SOCK_STREAM; }, 1);
            }
            ::close(fd);
        }
    }

    {
        ring_options modern;  // the defaults, plus the opt-in features
        modern.entries = 8;
        modern.no_mmap = true;
        modern.napi_busy_poll_us = 1;
        modern.min_wait = std::chrono::microseconds(1);
        ring m(modern, ec);
        if (!ec) {
            out.no_mmap = m.user_memory();
            out.min_timeout = m.min_timeout();
            out.wait_region = m.wait_region();
            out.resize_rings = m.can_resize_cq();
            out.napi = m.napi_registered();
        }
        ec.clear();
    }

    buffer_ring_options small;
    small.entries = 1;
    small.buffer_size = 64;
    small.incremental = true;
    buffer_ring br(r, small, ec);
    out.buf_ring = !ec;
    out.buf_ring_incremental = !ec && br.incremental();
    return out;
}

}  // namespace zerg::uring
