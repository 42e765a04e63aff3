// One multishot accept (5.19) on a listening socket, with the back-off it
// needs when the process runs out of descriptors or memory. The acceptor
// thread and the reuse_port reactor (its own listener) both use it, so the
// rules below exist once:
//
//   - the kernel ends a multishot accept with a CQE without F_MORE; it is
//     armed again at once, unless it was paused or stopped;
//   - an error (EMFILE, ENFILE, ENOBUFS, ENOMEM...): try again after a
//     short timeout rather than spin on it (every retry is one more error);
//   - pause() cancels it (connections wait in the listen backlog) and
//     resume() arms it again, at once or when the cancelled one reports back.
//
// With `direct` the sockets go straight into the ring's registered file
// table (IORING_FILE_INDEX_ALLOC, 5.19) and on_socket gets slot indices,
// not fds; a full table ends the request with ENFILE, which backs off.
//
// Owner thread only: the thread whose ring holds the accept.
#pragma once

#include <zerg/counters.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/user_data.hpp>

#include <sys/socket.h>

#include <linux/time_types.h>

#include <cerrno>
#include <cstdint>
#include <utility>

namespace zerg::detail {

// The user_data tags of the three operations it submits.
struct accept_tags {
    uring::user_data accept;  // the multishot accept
    uring::user_data retry;   // the back-off timeout
    uring::user_data cancel;  // a cancel of the accept (its own CQE carries nothing)
};

class multishot_accept {
public:
    multishot_accept() = default;
    multishot_accept(int listener, accept_tags tags, accept_stats* stats, bool direct = false) noexcept
        : listener_(listener), tags_(tags), stats_(stats), direct_(direct) {}

    bool armed() const noexcept { return armed_; }
    bool paused() const noexcept { return paused_; }
    int listener() const noexcept { return listener_; }
    // Accepted sockets are registered-file slots (see above).
    bool direct() const noexcept { return direct_; }

    void arm(uring::ring& ring) {
        auto* s = ring.get_sqe();
        if (direct_)
            uring::prep_accept_multishot_direct(s, listener_);
        else
            uring::prep_accept_multishot(s, listener_, SOCK_CLOEXEC);
        uring::set_user_data(s, tags_.accept);
        armed_ = true;
    }

    // A CQE tagged `accept`: calls on_socket(fd) for an accepted socket (its
    // slot when direct()), re-arms or backs off when the kernel ended the
    // request. `stopping`
    // leaves it ended. Returns the errno when this CQE began a back-off
    // episode (the first error since the last accepted socket), else 0, so
    // the owner reports each episode once, not every 10 ms.
    template <class OnSocket>
    int on_accept(uring::ring& ring, const io_uring_cqe& cqe, bool stopping, OnSocket&& on_socket) {
        if (cqe.res >= 0) {
            backing_off_ = false;
            if (stats_) stats_->accepted.add();
            on_socket(cqe.res);
        }
        if (uring::cqe_has_more(cqe)) return 0;
        armed_ = false;
        if (stopping || paused_) return 0;
        if (cqe.res < 0 && cqe.res != -ECANCELED) {
            // Arming again at once would earn the same error at once.
            if (stats_) stats_->errors.add();
            auto* s = ring.get_sqe();
            uring::prep_timeout(s, &backoff_);
            uring::set_user_data(s, tags_.retry);
            return std::exchange(backing_off_, true) ? 0 : -cqe.res;
        }
        if (stats_) stats_->rearms.add();
        arm(ring);
        return 0;
    }

    // A CQE tagged `retry`: the back-off passed.
    void on_retry(uring::ring& ring, bool stopping) {
        if (!stopping && !paused_ && !armed_) arm(ring);
    }

    // Stops taking connections: they wait in the listen backlog.
    void pause(uring::ring& ring) {
        if (paused_) return;
        paused_ = true;
        if (stats_) stats_->pauses.add();
        cancel(ring);
    }
    // Takes connections again: arms now, or on_accept does when the
    // cancelled request reports back.
    void resume(uring::ring& ring) {
        if (!paused_) return;
        paused_ = false;
        if (!armed_) arm(ring);
    }
    // Ends the request for good (stop); its last CQE still arrives.
    void cancel(uring::ring& ring) {
        if (!armed_) return;
        auto* s = ring.get_sqe();
        uring::prep_cancel(s, tags_.accept);
        uring::set_user_data(s, tags_.cancel);
    }

private:
    int listener_ = -1;
    accept_tags tags_{};
    accept_stats* stats_ = nullptr;
    bool direct_ = false;
    bool armed_ = false;
    bool paused_ = false;
    bool backing_off_ = false;
    __kernel_timespec backoff_{0, 10'000'000};  // 10 ms
};

}  // namespace zerg::detail
