// Direct descriptors for the reactor (doc/direct-descriptors.md): one sparse
// registered file table per reactor ring, which the reuse_port listener's
// multishot accept fills (IORING_FILE_INDEX_ALLOC, 5.19) and every
// operation on such a connection names by slot (IOSQE_FIXED_FILE), so the
// kernel skips the fd-table lookup and reference count per request.
//
// The table has max_connections + 64 slots: a multishot accept may take a
// few connections past the pause at a full connection table (they wait in
// the reactor's waiting list, holding a slot each), and a slot whose close
// has not completed yet is still taken. When every slot is taken the accept
// ends with ENFILE and backs off like any other accept error.
//
// In acceptor mode the acceptor thread accepts into its own table and
// msg_ring_handoff moves each socket into the reactor's (IORING_MSG_SEND_FD,
// 6.0; the reactor's CQE carries the slot its table allocated).
//
// open() decides and says why not: the option is off, hidden
// (ZERG_URING_HIDE=direct_descriptors), nothing can fill the table (no
// listener of its own, and a hand-off that carries plain fds: spsc/mpmc
// queues, MSG_RING missing or hidden), or the kernel refused the table
// (RLIMIT_NOFILE below the slot count: EMFILE; no memory; a kernel before
// 5.19). Each reason but "off" is a reported fallback.
//
// Zero-copy sends and direct descriptors: a teardown with a zero-copy
// notification still due resets the socket (SO_LINGER 0) so the notification
// comes; on a direct descriptor that setsockopt must go through the ring
// (IORING_OP_URING_CMD's SOCKET_URING_OP_SETSOCKOPT, 6.7). Where that is
// missing, and on kernels before 6.7 in any case, zero-copy stays off while
// direct descriptors are on (zero_copy_blocked()).
//
// Thread-safety: owned by the reactor thread (the ring's owner), except the
// once-per-process probe, which any thread may call.
#pragma once

#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/kernel_release.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/registered_files.hpp>
#include <zerg/uring/ring.hpp>

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <system_error>

namespace zerg::detail {

// The kernel runs setsockopt/getsockopt as socket commands (6.7). Tried for
// real once per process: a getsockopt(SO_TYPE) on a throw-away socket.
inline bool kernel_has_socket_commands() noexcept {
    static const bool known = [] {
        io_uring r;
        if (io_uring_queue_init(4, &r, 0) != 0) return false;
        bool ok = false;
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int type = 0;
        if (io_uring_sqe* sqe = fd >= 0 ? io_uring_get_sqe(&r) : nullptr) {
            uring::prep_getsockopt(sqe, fd, SOL_SOCKET, SO_TYPE, &type, sizeof type);
            io_uring_cqe* cqe = nullptr;
            if (io_uring_submit_and_wait(&r, 1) >= 0 && io_uring_peek_cqe(&r, &cqe) == 0 && cqe)
                ok = cqe->res >= 0 && type == SOCK_STREAM;
        }
        if (fd >= 0) ::close(fd);
        io_uring_queue_exit(&r);
        return ok;
    }();
    return known;
}

class direct_table {
public:
    // Slots beyond max_connections (see the header comment).
    static constexpr unsigned headroom = 64;

    // Registers the table on `ring` when `wanted` and possible. `no_filler`
    // says why nothing could fill it, or is empty: the reactor has its own
    // listener, or the acceptor thread's MSG_RING installs into it. Returns
    // the fallback to report, or empty (in effect, or not asked for).
    std::string open(uring::ring& ring, bool wanted, const std::string& no_filler, unsigned max_connections) {
        if (!wanted) return {};
        const char* then = ": connections use plain fds";
        if (uring::is_hidden(uring::feature::direct_descriptors))
            return std::string("direct_descriptors: hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)") + then;
        if (!no_filler.empty())
            return "direct_descriptors: only a reactor with its own listener (server_config::reuse_port) or fed by "
                   "msg_ring_handoff accepts into its table; the acceptor hands over plain fds here: " +
                   no_filler + then;
        try {
            files_.emplace(ring, max_connections + headroom);
        } catch (const std::system_error& e) {
            std::string why = e.code() == std::errc::too_many_files_open
                                  ? "RLIMIT_NOFILE is below the " + std::to_string(max_connections + headroom) +
                                        " slots (max_connections + 64); raise it or lower max_connections"
                                  : e.what();
            return "direct_descriptors: the kernel refused the registered file table (" + why + ")" + then;
        }
        return {};
    }
    bool active() const noexcept { return files_.has_value(); }
    unsigned size() const noexcept { return files_ ? files_->size() : 0; }

    // Why zero-copy sends must stay off with this table in effect, or
    // empty (see the header comment).
    std::string zero_copy_blocked() const {
        if (!active()) return {};
        if (!uring::kernel_release::running().at_least(6, 7))
            return "direct descriptors are in effect and zero-copy sends on them are used from Linux 6.7 only: "
                   "every send copies";
        if (uring::is_hidden(uring::feature::ring_socket_ops) || !kernel_has_socket_commands())
            return "direct descriptors are in effect and the setsockopt socket command (Linux 6.7) that resets a "
                   "direct socket whose zero-copy notification is due is missing (or hidden: "
                   "ZERG_URING_HIDE=ring_socket_ops): every send copies";
        return {};
    }

    // The kernel puts a file that close_direct took out of the table only
    // later: 6.1 queues it behind the table's current resource node and
    // frees those from delayed work (up to a second later), so the peer
    // sees the close late (measured under qemu: ~1 s per close on 6.1,
    // none on 6.12 and 6.18). Decided by the release, on the safe side:
    // before 6.12, the first one seen to release at once. The reactor then
    // shuts the socket down before a graceful close_direct.
    bool delays_release() const noexcept {
        return active() && !uring::kernel_release::running().at_least(6, 12);
    }

    // Closes the socket in `slot` now, outside the ring: for one never
    // served (accepted while stopping, waiting when the loop ends). The
    // ring's close_direct is for the connections' own teardown.
    void release(unsigned slot) noexcept {
        if (files_) files_->clear(slot);
    }
    // Unregisters the table: every socket still in it is closed. At the end
    // of the loop, when no request uses it any more; before the ring goes.
    void reset() noexcept { files_.reset(); }
    // A failed loop: requests may still use the table, and unregistering
    // could wait for them (older kernels, 6.1 among them, quiesce the
    // table first), so the ring's teardown frees it.
    // The caller released the slots it knows of first.
    void abandon() noexcept {
        if (!files_) return;
        files_->leave_to_ring();
        files_.reset();
    }

private:
    std::optional<uring::registered_files> files_;
};

}  // namespace zerg::detail
