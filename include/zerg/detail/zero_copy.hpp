// Zero-copy sends for the reactor: whether the kernel can do them the way
// zerg uses them, and why not when it cannot.
//
// A send of at least server_config::zero_copy_threshold bytes goes out with
// send_zc / sendmsg_zc (6.0 / 6.1): the kernel pins the pages instead of
// copying them into socket buffers. Such a send completes twice: once with
// its result (IORING_CQE_F_MORE set) and once more with a notification
// (IORING_CQE_F_NOTIF) when the kernel no longer reads the memory; the
// queued chunks stay until then (send_path.hpp). zerg asks for
// IORING_SEND_ZC_REPORT_USAGE (6.2) so the notification says whether the
// kernel copied after all (IORING_NOTIF_USAGE_ZC_COPIED: loopback, or a
// device without scatter-gather), and counts both outcomes; a connection
// whose zero-copy send was copied sends copied from then on. A kernel that
// lacks the flag (6.0, 6.1) gets copied sends; so does one where send_zc is
// hidden (zerg::uring::hide, ZERG_URING_HIDE=send_zc).
//
// Thread-safety: any thread (the probe runs once per process).
#pragma once

#include <zerg/uring/compat.hpp>
#include <zerg/uring/hidden_features.hpp>

#include <liburing.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <string>

namespace zerg::detail {

// The kernel takes send_zc with IORING_SEND_ZC_REPORT_USAGE. Tried for real
// on a throw-away ring: a send_zc on no socket (fd -1) fails with EBADF
// where the flag is known (the file is looked up after the flags are
// checked) and with EINVAL on a kernel before 6.2. Once per process.
inline bool kernel_reports_zc_usage() noexcept {
    static const bool known = [] {
        io_uring r;
        if (io_uring_queue_init(4, &r, 0) != 0) return false;
        bool ok = false;
        if (io_uring_sqe* sqe = io_uring_get_sqe(&r)) {
            static const char byte = 0;
            io_uring_prep_send_zc(sqe, -1, &byte, 1, MSG_NOSIGNAL, 0);
            sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
            io_uring_cqe* cqe = nullptr;
            if (io_uring_submit_and_wait(&r, 1) >= 0 && io_uring_peek_cqe(&r, &cqe) == 0 && cqe) ok = cqe->res != -EINVAL;
        }
        io_uring_queue_exit(&r);  // a notification still due goes with the ring
        return ok;
    }();
    return known;
}

// Empty when zero-copy sends will be used with `threshold`; otherwise why
// not, for the reactor's fallbacks().
inline std::string zero_copy_unavailable(std::size_t threshold) {
    if (threshold == 0) return "zero-copy sends off (server_config::zero_copy_threshold is 0): every send copies";
    if (uring::is_hidden(uring::feature::send_zc))
        return "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE): every send copies";
    if (!kernel_reports_zc_usage())
        return "the kernel refuses IORING_SEND_ZC_REPORT_USAGE (send_zc with usage reports needs Linux 6.2): every "
               "send copies";
    return {};
}

}  // namespace zerg::detail
