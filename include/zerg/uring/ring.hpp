// zerg::uring::ring: one io_uring instance, owned.
//
// Thread-safety: a ring belongs to the thread that makes it. With
// SINGLE_ISSUER (the default) the kernel refuses submissions from any other
// thread (-EEXIST); a registered ring fd likewise works only on the thread
// that registered it. Make each ring on the thread that will use it. Objects
// that attach to a ring (buffer_ring, registered_files, registered_buffers)
// keep a pointer to it: do not move a ring while they exist.
#pragma once

#include <zerg/uring/compat.hpp>
#include <zerg/uring/error.hpp>
#include <zerg/uring/hidden_features.hpp>

#include <liburing.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace zerg::uring {

// What a user tunes when making a ring. Every flag is a request: when the
// kernel refuses one the ring falls back (see ring::fallbacks()).
struct ring_options {
    unsigned entries = 256;        // SQ size, rounded up to a power of two by the kernel
    unsigned cq_entries = 0;       // 0: the kernel's default, twice `entries`
    bool single_issuer = true;     // 6.0: one submitting thread, no locking in the kernel
    bool defer_taskrun = true;     // 6.1: completions run when this thread waits; not with SQPOLL
    bool coop_taskrun = true;      // 5.19: no IPI to the task; used when DEFER_TASKRUN is not
    bool submit_all = true;        // 5.18: one failing SQE does not stop the rest of the batch
    bool no_sqarray = true;        // 6.6: skip the SQ index indirection (needs liburing >= 2.6)
    bool register_ring_fd = true;  // 5.18: io_uring_enter without fdget/fdput
    bool sqpoll = false;           // kernel thread polls the SQ: submit without a syscall
    int sqpoll_cpu = -1;           // >= 0: pin that thread there (SQ_AFF)
    unsigned sqpoll_idle_ms = 1000;  // SQPOLL thread sleeps after this much idle time
    bool start_disabled = false;   // R_DISABLED: nothing runs until enable(); for restrictions
};

// One feature the ring asked for and does not have, and why.
struct fallback {
    feature what;
    int error;  // errno the kernel answered, 0 when hidden or not attempted
    std::string reason;
};

// Names of the setup flags in `flags`, joined by '|'.
inline std::string setup_flag_names(unsigned flags) {
    static constexpr std::pair<unsigned, const char*> names[] = {
        {IORING_SETUP_IOPOLL, "IOPOLL"},
        {IORING_SETUP_SQPOLL, "SQPOLL"},
        {IORING_SETUP_SQ_AFF, "SQ_AFF"},
        {IORING_SETUP_CQSIZE, "CQSIZE"},
        {IORING_SETUP_CLAMP, "CLAMP"},
        {IORING_SETUP_ATTACH_WQ, "ATTACH_WQ"},
        {IORING_SETUP_R_DISABLED, "R_DISABLED"},
        {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"},
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
        {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"},
        {IORING_SETUP_SQE128, "SQE128"},
        {IORING_SETUP_CQE32, "CQE32"},
        {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
        {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
        {IORING_SETUP_NO_MMAP, "NO_MMAP"},
        {IORING_SETUP_REGISTERED_FD_ONLY, "REGISTERED_FD_ONLY"},
        {IORING_SETUP_NO_SQARRAY, "NO_SQARRAY"},
    };
    std::string out;
    for (auto [bit, name] : names) {
        if (!(flags & bit)) continue;
        if (!out.empty()) out += '|';
        out += name;
    }
    return out.empty() ? "none" : out;
}

namespace detail {

// io_uring_setup() without mapping anything: asks the kernel whether it
// accepts `flags`, and closes the ring at once. Returns 0 or -errno.
inline int try_setup(unsigned entries, io_uring_params params) noexcept {
    int fd = static_cast<int>(::syscall(__NR_io_uring_setup, entries, &params));
    if (fd < 0) return -errno;
    ::close(fd);
    return 0;
}

// liburing before 2.6 fills the SQ index array itself, so asking the kernel
// to drop it (NO_SQARRAY) would make liburing write over the ring header.
inline constexpr bool liburing_handles_no_sqarray =
#if defined(IO_URING_VERSION_MAJOR) && defined(IO_URING_VERSION_MINOR)
    (IO_URING_VERSION_MAJOR > 2 || (IO_URING_VERSION_MAJOR == 2 && IO_URING_VERSION_MINOR >= 6));
#else
    false;
#endif

}  // namespace detail

class ring {
public:
    // Throws std::system_error when no ring can be made at all; the message
    // names the cause (io_uring disabled by sysctl, seccomp, limits) and the fix.
    explicit ring(const ring_options& options = {}) {
        if (auto ec = init(options); ec) throw std::system_error(ec, setup_error_);
    }

    // Non-throwing construction: `ec` and setup_error() tell what went wrong.
    ring(const ring_options& options, std::error_code& ec) { ec = init(options); }

    ring(ring&& other) noexcept : ring_(other.ring_), fallbacks_(std::move(other.fallbacks_)),
                                  ring_fd_registered_(other.ring_fd_registered_) {
        other.ring_.ring_fd = -1;
    }
    ring& operator=(ring&& other) noexcept {
        if (this != &other) {
            close();
            ring_ = other.ring_;
            fallbacks_ = std::move(other.fallbacks_);
            ring_fd_registered_ = other.ring_fd_registered_;
            other.ring_.ring_fd = -1;
        }
        return *this;
    }
    ring(const ring&) = delete;
    ring& operator=(const ring&) = delete;
    ~ring() { close(); }

    bool is_open() const noexcept { return ring_.ring_fd >= 0; }
    // The message that explains why the non-throwing constructor failed.
    const std::string& setup_error() const noexcept { return setup_error_; }

    // ---- what the ring is ---------------------------------------------------
    io_uring* native() noexcept { return &ring_; }
    int fd() const noexcept { return ring_.ring_fd; }
    unsigned setup_flags() const noexcept { return ring_.flags; }
    unsigned kernel_features() const noexcept { return ring_.features; }
    bool has_setup_flag(unsigned flag) const noexcept { return ring_.flags & flag; }
    bool has_kernel_feature(unsigned feat) const noexcept { return ring_.features & feat; }
    bool ring_fd_registered() const noexcept { return ring_fd_registered_; }
    unsigned sq_entries() const noexcept { return ring_.sq.ring_entries; }
    unsigned cq_entries() const noexcept { return ring_.cq.ring_entries; }
    // Every requested feature the ring does not have, with the reason.
    const std::vector<fallback>& fallbacks() const noexcept { return fallbacks_; }
    bool fell_back(feature f) const noexcept {
        return std::any_of(fallbacks_.begin(), fallbacks_.end(), [f](auto const& fb) { return fb.what == f; });
    }

    // ---- submission ---------------------------------------------------------

    // The next free SQE. A prep_* function fills it; tag it afterwards with
    // set_user_data() (liburing's helpers leave user_data as the slot's last
    // user left it). When the SQ is full this submits what is queued and
    // retries, so an IOSQE_IO_LINK chain must fit in sq_space_left(); it
    // returns nullptr only when that submission fails, with the error in `ec`.
    io_uring_sqe* get_sqe(std::error_code& ec) noexcept {
        if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) [[likely]]
            return sqe;
        return get_sqe_slow(ec);
    }

    // As above, throwing std::system_error instead of returning nullptr.
    io_uring_sqe* get_sqe() {
        std::error_code ec;
        io_uring_sqe* sqe = get_sqe(ec);
        if (!sqe) throw std::system_error(ec, "zerg::uring::ring: no submission queue entry available");
        return sqe;
    }

    unsigned sq_space_left() const noexcept { return io_uring_sq_space_left(&ring_); }
    unsigned sq_ready() const noexcept { return io_uring_sq_ready(&ring_); }

    // Returns the number of SQEs submitted, or -errno.
    int submit() noexcept { return io_uring_submit(&ring_); }

    // Submits and waits until at least `wait_nr` completions are ready, in
    // one io_uring_enter. Returns the number submitted, or -errno.
    int submit_and_wait(unsigned wait_nr) noexcept { return io_uring_submit_and_wait(&ring_, wait_nr); }

    // Submits and waits for `wait_nr` completions or until `timeout` passes.
    // With IORING_FEAT_EXT_ARG (5.11) the timeout rides in io_uring_enter;
    // without it a timeout SQE bounds the wait (its CQE is never shown to
    // the user), and the wait ends at the first completion even when wait_nr
    // is larger. Returns 0 when completions are ready, -ETIME on timeout, or
    // -errno.
    int submit_and_wait_for(unsigned wait_nr, std::chrono::nanoseconds timeout) noexcept {
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
        __kernel_timespec ts{secs.count(), (timeout - secs).count()};
        if (ring_.features & IORING_FEAT_EXT_ARG) [[likely]] {
            io_uring_cqe* cqe = nullptr;
            int res = io_uring_submit_and_wait_timeout(&ring_, &cqe, wait_nr, &ts, nullptr);
            return res < 0 ? res : 0;
        }
        return submit_and_wait_with_timeout_sqe(wait_nr, ts);
    }

    // Submits and, in the same io_uring_enter, lets the kernel post pending
    // completions (DEFER_TASKRUN) without waiting for any. Returns the number
    // submitted, or -errno.
    int submit_and_get_events() noexcept { return io_uring_submit_and_get_events(&ring_); }

    // With DEFER_TASKRUN completions are only posted when this thread enters
    // the kernel; this does that without waiting. Returns 0 or -errno.
    int flush_completions() noexcept { return io_uring_get_events(&ring_); }

    // Lets a ring made with start_disabled run. Returns 0 or -errno.
    // Registered directly: liburing 2.3 declares io_uring_enable_rings but
    // does not export it.
    int enable() noexcept {
        long r = ::syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
        return r < 0 ? -errno : 0;
    }

    // ---- completion ---------------------------------------------------------

    unsigned cq_ready() const noexcept { return io_uring_cq_ready(&ring_); }

    // Calls `handler(const io_uring_cqe&)` for up to `max` ready completions,
    // then releases them to the kernel with a single CQ head store. Returns
    // how many were consumed. The handler may prepare and submit new SQEs.
    template <class Handler>
    unsigned for_each_completion(Handler&& handler, unsigned max = 4096) {
        unsigned head = *ring_.cq.khead;
        unsigned tail = std::atomic_ref<unsigned>(*ring_.cq.ktail).load(std::memory_order_acquire);
        unsigned count = std::min(tail - head, max);
        unsigned delivered = 0;
        unsigned seen = 0;
        // If the handler throws, the CQEs it already saw (the throwing one
        // included) are released all the same, so none is delivered twice.
        struct release_seen {
            io_uring* ring;
            unsigned& seen;
            ~release_seen() {
                if (seen) io_uring_cq_advance(ring, seen);
            }
        } release{&ring_, seen};
        while (seen < count) {
            const io_uring_cqe& cqe = ring_.cq.cqes[(head + seen) & ring_.cq.ring_mask];
            ++seen;
            // The timeout of submit_and_wait_for without EXT_ARG.
            if (cqe.user_data == internal_timeout_tag) [[unlikely]]
                continue;
            ++delivered;
            handler(cqe);
        }
        return delivered;
    }

    // The CQ was full and the kernel is holding completions back (with
    // IORING_FEAT_NODROP, 5.5, none are lost: the next wait flushes them).
    bool cq_overflow_pending() const noexcept { return io_uring_cq_has_overflow(&ring_); }
    // Completions the kernel had to drop (only when it could not hold them back).
    unsigned cq_dropped() const noexcept {
        return std::atomic_ref<unsigned>(*ring_.cq.koverflow).load(std::memory_order_relaxed);
    }

    // ---- eventfd ------------------------------------------------------------
    // The kernel signals `fd` when a completion is on its way (with
    // DEFER_TASKRUN: when there is work for the next wait to run, before the
    // CQE is visible). 0 or -errno.
    int register_eventfd(int fd) noexcept { return io_uring_register_eventfd(&ring_, fd); }
    int unregister_eventfd() noexcept { return io_uring_unregister_eventfd(&ring_); }

private:
    // The tag of zerg's own timeout SQEs; for_each_completion skips them.
    static constexpr std::uint64_t internal_timeout_tag = LIBURING_UDATA_TIMEOUT;

    int submit_and_wait_with_timeout_sqe(unsigned wait_nr, const __kernel_timespec& ts) noexcept {
        std::error_code ec;
        io_uring_sqe* sqe = get_sqe(ec);
        if (!sqe) return -ec.value();
        // The kernel copies the timespec while preparing the request, so a
        // local is enough. It also completes after `wait_nr` completions.
        io_uring_prep_timeout(sqe, const_cast<__kernel_timespec*>(&ts), wait_nr, 0);
        sqe->user_data = internal_timeout_tag;
        int res = io_uring_submit_and_wait(&ring_, 1);
        if (res < 0) return res;
        unsigned head = *ring_.cq.khead;
        unsigned tail = std::atomic_ref<unsigned>(*ring_.cq.ktail).load(std::memory_order_acquire);
        for (unsigned i = head; i != tail; ++i)
            if (ring_.cq.cqes[i & ring_.cq.ring_mask].user_data != internal_timeout_tag) return 0;
        // Only timeouts are ready: drop them and report the timeout.
        io_uring_cq_advance(&ring_, tail - head);
        return -ETIME;
    }

    std::error_code init(const ring_options& options);
    io_uring_sqe* get_sqe_slow(std::error_code& ec) noexcept;
    unsigned choose_flags(const ring_options& options, io_uring_params& params);
    void close() noexcept {
        if (ring_.ring_fd >= 0) {
            io_uring_queue_exit(&ring_);
            ring_.ring_fd = -1;
        }
    }
    void note(feature f, int error, std::string reason) { fallbacks_.push_back({f, error, std::move(reason)}); }

    io_uring ring_{};
    std::vector<fallback> fallbacks_;
    std::string setup_error_;
    bool ring_fd_registered_ = false;
};

// ---- definitions ----------------------------------------------------------

inline io_uring_sqe* ring::get_sqe_slow(std::error_code& ec) noexcept {
    // The SQ is full: hand what is queued to the kernel and try again. With
    // SQPOLL the kernel thread may not have consumed the entries yet, so wait
    // for room rather than spin.
    for (int attempt = 0; attempt < 3; ++attempt) {
        int submitted = io_uring_submit(&ring_);
        if (submitted < 0) {
            ec = result_error(submitted);
            return nullptr;
        }
        if (ring_.flags & IORING_SETUP_SQPOLL) {
            int waited = io_uring_sqring_wait(&ring_);
            if (waited < 0) {
                ec = result_error(waited);
                return nullptr;
            }
        }
        if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
    }
    ec = std::make_error_code(std::errc::resource_unavailable_try_again);
    return nullptr;
}

// Builds the flag set from the options, minus hidden features; records each
// hidden or unsupported request as a fallback.
inline unsigned ring::choose_flags(const ring_options& options, io_uring_params& params) {
    unsigned flags = IORING_SETUP_CLAMP;
    if (options.cq_entries) {
        flags |= IORING_SETUP_CQSIZE;
        params.cq_entries = options.cq_entries;
    }
    if (options.start_disabled) flags |= IORING_SETUP_R_DISABLED;
    auto wanted = [&](bool requested, feature f) {
        if (requested && is_hidden(f)) note(f, 0, "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)");
        return requested && !is_hidden(f);
    };
    bool sqpoll = wanted(options.sqpoll, feature::sqpoll);
    if (sqpoll) {
        flags |= IORING_SETUP_SQPOLL;
        params.sq_thread_idle = options.sqpoll_idle_ms;
        if (options.sqpoll_cpu >= 0) {
            flags |= IORING_SETUP_SQ_AFF;
            params.sq_thread_cpu = static_cast<unsigned>(options.sqpoll_cpu);
        }
    }
    bool single_issuer = wanted(options.single_issuer, feature::single_issuer);
    if (single_issuer) flags |= IORING_SETUP_SINGLE_ISSUER;
    // DEFER_TASKRUN needs SINGLE_ISSUER and cannot run with SQPOLL.
    bool defer = options.defer_taskrun && !sqpoll && single_issuer && wanted(options.defer_taskrun, feature::defer_taskrun);
    if (options.defer_taskrun && !defer && !is_hidden(feature::defer_taskrun))
        note(feature::defer_taskrun, 0, sqpoll ? "not combinable with SQPOLL" : "needs SINGLE_ISSUER");
    if (defer)
        flags |= IORING_SETUP_DEFER_TASKRUN;
    else if (!sqpoll && wanted(options.coop_taskrun, feature::coop_taskrun))
        // With SQPOLL the kernel thread runs the task work itself.
        flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    if (wanted(options.submit_all, feature::submit_all)) flags |= IORING_SETUP_SUBMIT_ALL;
    if (wanted(options.no_sqarray, feature::no_sqarray)) {
        if constexpr (detail::liburing_handles_no_sqarray)
            flags |= IORING_SETUP_NO_SQARRAY;
        else
            note(feature::no_sqarray, 0, "liburing older than 2.6 maps the SQ index array itself");
    }
    return flags;
}

inline std::error_code ring::init(const ring_options& options) {
    io_uring_params params{};
    unsigned flags = choose_flags(options, params);

    // Fast path: a modern kernel accepts the whole set at once.
    params.flags = flags;
    int res = detail::try_setup(options.entries, params);
    if (res == -EINVAL || (res == -EPERM && (flags & IORING_SETUP_SQPOLL))) {
        // Something was refused. Find out what, one optional flag at a time
        // in order of importance, so each fallback names the flag the kernel
        // really refused.
        struct optional_flag {
            unsigned bits;
            feature what;
        };
        const optional_flag optional[] = {
            {IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF, feature::sqpoll},
            {IORING_SETUP_SINGLE_ISSUER, feature::single_issuer},
            {IORING_SETUP_DEFER_TASKRUN, feature::defer_taskrun},
            {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, feature::coop_taskrun},
            {IORING_SETUP_SUBMIT_ALL, feature::submit_all},
            {IORING_SETUP_NO_SQARRAY, feature::no_sqarray},
        };
        unsigned base = flags;
        for (auto const& opt : optional) base &= ~opt.bits;
        unsigned accepted = base;
        for (auto const& opt : optional) {
            unsigned bits = flags & opt.bits;
            if (!bits) continue;
            if (opt.what == feature::defer_taskrun && !(accepted & IORING_SETUP_SINGLE_ISSUER)) {
                note(opt.what, EINVAL, "needs SINGLE_ISSUER, which the kernel refused");
                // Cooperative task running is the next best thing.
                if (options.coop_taskrun && !is_hidden(feature::coop_taskrun))
                    flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
                continue;
            }
            params.flags = accepted | bits;
            int r = detail::try_setup(options.entries, params);
            if (r == 0) {
                accepted |= bits;
                continue;
            }
            note(opt.what, -r, "refused by the kernel: " + result_error(r).message());
            if (opt.what == feature::defer_taskrun && options.coop_taskrun && !is_hidden(feature::coop_taskrun))
                flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
        }
        flags = accepted;
    }

    params.flags = flags;
    res = io_uring_queue_init_params(options.entries, &ring_, &params);
    if (res < 0) {
        ring_.ring_fd = -1;
        setup_error_ = explain_setup_failure(-res, read_io_uring_disabled_sysctl());
        return result_error(res);
    }

    if (is_hidden(feature::ext_arg) && (ring_.features & IORING_FEAT_EXT_ARG)) {
        // liburing reads this bit to choose between EXT_ARG and a timeout SQE.
        ring_.features &= ~IORING_FEAT_EXT_ARG;
        note(feature::ext_arg, 0, "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)");
    } else if (!(ring_.features & IORING_FEAT_EXT_ARG)) {
        note(feature::ext_arg, 0, "kernel lacks IORING_FEAT_EXT_ARG: waits with a timeout use a timeout SQE");
    }

    if (options.register_ring_fd && !options.start_disabled) {
        if (is_hidden(feature::registered_ring_fd)) {
            note(feature::registered_ring_fd, 0, "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)");
        } else if (int r = io_uring_register_ring_fd(&ring_); r < 0) {
            note(feature::registered_ring_fd, -r, "refused by the kernel: " + result_error(r).message());
        } else {
            ring_fd_registered_ = true;
        }
    }
    return {};
}

}  // namespace zerg::uring
