// zerg::uring::ring: one io_uring instance, owned.
//
// Thread-safety: a ring belongs to the thread that makes it. With
// SINGLE_ISSUER (the default) the kernel refuses submissions from any other
// thread (-EEXIST); a registered ring fd likewise works only on the thread
// that registered it. Make each ring on the thread that will use it. Objects
// that attach to a ring (buffer_ring, registered_files, registered_buffers)
// keep a pointer to it: do not move a ring while they exist.
//
// The rings are zerg's own: io_uring_setup(2), then the SQ ring, CQ ring and
// SQE array mapped from the offsets the kernel reports (ring_memory.hpp),
// and io_uring_enter(2) called directly (syscalls.hpp). liburing provides
// only the inline io_uring_prep_* helpers that fill an SQE. That is what
// lets Debian's liburing 2.3 use IORING_SETUP_NO_SQARRAY (6.6), NO_MMAP
// (6.5), min_wait_usec (6.12), registered wait regions and CQ resizing
// (6.13) and NAPI busy polling (6.9); see doc/uring/ring.md.
#pragma once

#include <zerg/uring/compat.hpp>
#include <zerg/uring/error.hpp>
#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/ring_memory.hpp>
#include <zerg/uring/syscalls.hpp>

#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bitset>
#include <chrono>
#include <cstdint>
#include <cstring>
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
    bool no_sqarray = true;        // 6.6: no SQ index array: the kernel reads SQEs in ring order
    bool no_mmap = false;          // 6.5: rings in memory zerg allocates (see ring_memory.hpp)
    bool register_ring_fd = true;  // 5.18: io_uring_enter without fdget/fdput
    bool sqpoll = false;           // kernel thread polls the SQ: submit without a syscall
    int sqpoll_cpu = -1;           // >= 0: pin that thread there (SQ_AFF)
    unsigned sqpoll_idle_ms = 1000;  // SQPOLL thread sleeps after this much idle time
    bool start_disabled = false;   // R_DISABLED: nothing runs until enable(); for restrictions
    // 6.13: waits with a timeout or min_wait read their argument from one
    // registered 64-byte slot instead of copying it in on every enter.
    // Costs a page per ring and two register calls at setup.
    bool wait_region = true;
    // 6.13: when the kernel reports a CQ overflow, grow the CQ (doubling)
    // up to this many entries; 0 = four times the initial CQ. Needs
    // DEFER_TASKRUN and NO_SQARRAY; otherwise overflowed CQEs are drained
    // by the next wait.
    unsigned cq_max_entries = 0;
    bool resize_cq_on_overflow = true;
    // 6.9: NAPI busy polling of the sockets' receive queues for this many
    // µs per wait, 0 = off. Only pays on real NICs (nothing on loopback).
    unsigned napi_busy_poll_us = 0;
    bool napi_prefer_busy_poll = false;  // NIC interrupts stay deferred while the ring busy-polls
    // 6.12: what submit_and_wait_batch() gives a batch to fill once the
    // first completion is there, 0 = wake at the first. Reported as a
    // fallback when set and the kernel lacks IORING_FEAT_MIN_TIMEOUT.
    std::chrono::microseconds min_wait{0};
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
    params.flags &= ~IORING_SETUP_NO_MMAP;  // the trial maps nothing
    int fd = sys::setup(entries, &params);
    if (fd < 0) return fd;
    ::close(fd);
    return 0;
}


inline std::uint32_t next_pow2(std::uint32_t v) noexcept {
    std::uint32_t p = 1;
    while (p < v) p <<= 1;
    return p;
}

}  // namespace detail

// Which opcodes the kernel knows (IORING_REGISTER_PROBE, 5.6).
struct opcode_support {
    bool probed = false;  // the kernel answered the probe
    unsigned last_op = 0;
    std::bitset<256> ops;
    bool supports(unsigned op) const noexcept { return op < 256 && ops.test(op); }
};

class ring {
public:
    // Throws std::system_error when no ring can be made at all; the message
    // names the cause (io_uring disabled by sysctl, seccomp, limits) and the fix.
    explicit ring(const ring_options& options = {}) {
        if (auto ec = init(options); ec) throw std::system_error(ec, setup_error_);
    }

    // Non-throwing construction: `ec` and setup_error() tell what went wrong.
    ring(const ring_options& options, std::error_code& ec) { ec = init(options); }

    ring(ring&& other) noexcept { take(other); }
    ring& operator=(ring&& other) noexcept {
        if (this != &other) {
            close();
            take(other);
        }
        return *this;
    }
    ring(const ring&) = delete;
    ring& operator=(const ring&) = delete;
    ~ring() { close(); }

    bool is_open() const noexcept { return fd_ >= 0; }
    // The message that explains why the non-throwing constructor failed.
    const std::string& setup_error() const noexcept { return setup_error_; }

    // ---- what the ring is ---------------------------------------------------
    int fd() const noexcept { return fd_; }
    unsigned setup_flags() const noexcept { return flags_; }
    unsigned kernel_features() const noexcept { return features_; }
    bool has_setup_flag(unsigned flag) const noexcept { return flags_ & flag; }
    bool has_kernel_feature(unsigned feat) const noexcept { return features_ & feat; }
    bool ring_fd_registered() const noexcept { return enter_flags_ & IORING_ENTER_REGISTERED_RING; }
    unsigned sq_entries() const noexcept { return mem_.sq().entries; }
    unsigned cq_entries() const noexcept { return mem_.cq().entries; }
    // The rings live in memory zerg allocated (IORING_SETUP_NO_MMAP, 6.5).
    bool user_memory() const noexcept { return mem_.user_memory(); }
    // Bytes the SQ/CQ rings and the SQE array take in this process.
    std::size_t ring_bytes() const noexcept { return mem_.bytes(); }
    // min_wait is honoured by the kernel (IORING_FEAT_MIN_TIMEOUT, 6.12).
    bool min_timeout() const noexcept { return min_timeout_; }
    // Waits read their argument from a registered region (6.13).
    bool wait_region() const noexcept { return wait_arg_ != nullptr; }
    // The CQ can grow on overflow (IORING_REGISTER_RESIZE_RINGS, 6.13).
    bool can_resize_cq() const noexcept { return resize_ok_; }
    // NAPI busy polling is registered (6.9), with this timeout in µs.
    bool napi_registered() const noexcept { return napi_us_ != 0; }
    unsigned napi_busy_poll_us() const noexcept { return napi_us_; }
    // Every requested feature the ring does not have, with the reason.
    const std::vector<fallback>& fallbacks() const noexcept { return fallbacks_; }
    bool fell_back(feature f) const noexcept {
        return std::any_of(fallbacks_.begin(), fallbacks_.end(), [f](auto const& fb) { return fb.what == f; });
    }

    // io_uring_register(2) on this ring: 0 (or the call's positive result)
    // or -errno. For registrations zerg has no wrapper for.
    int register_op(unsigned opcode, const void* arg, unsigned nr_args) noexcept {
        return sys::register_op(fd_, opcode, arg, nr_args);
    }

    // Which opcodes the running kernel knows (IORING_REGISTER_PROBE, 5.6).
    opcode_support probe_opcodes() const noexcept {
        opcode_support out;
        constexpr unsigned n = 256;
        alignas(io_uring_probe) unsigned char buf[sizeof(io_uring_probe) + n * sizeof(io_uring_probe_op)] = {};
        auto* p = reinterpret_cast<io_uring_probe*>(buf);
        if (sys::register_op(fd_, IORING_REGISTER_PROBE, p, n) < 0) return out;
        out.probed = true;
        out.last_op = p->last_op;
        for (unsigned i = 0; i < p->ops_len && i < n; ++i)
            if (p->ops[i].flags & IO_URING_OP_SUPPORTED) out.ops.set(p->ops[i].op);
        return out;
    }
    bool supports_opcode(unsigned op) const noexcept { return probe_opcodes().supports(op); }

    // ---- submission ---------------------------------------------------------

    // The next free SQE. A prep_* function fills it; tag it afterwards with
    // set_user_data() (liburing's helpers leave user_data as the slot's last
    // user left it). When the SQ is full this submits what is queued and
    // retries, so an IOSQE_IO_LINK chain must fit in sq_space_left(); it
    // returns nullptr only when that submission fails, with the error in `ec`.
    io_uring_sqe* get_sqe(std::error_code& ec) noexcept {
        if (io_uring_sqe* sqe = try_get_sqe()) [[likely]]
            return sqe;
        return get_sqe_slow(ec);
    }

    // As above, throwing std::system_error instead of returning nullptr.
    io_uring_sqe* get_sqe() {
        if (io_uring_sqe* sqe = try_get_sqe()) [[likely]]
            return sqe;
        return get_sqe_or_throw();  // out of line: the error_code stays off the fast path
    }

    unsigned sq_space_left() const noexcept { return mem_.sq().entries - (sqe_tail_ - sq_head()); }
    // SQEs prepared or published that the kernel has not consumed yet.
    unsigned sq_ready() const noexcept { return sqe_tail_ - sq_head(); }

    // Returns the number of SQEs submitted, or -errno.
    int submit() noexcept { return enter_common(0, 0, nullptr); }

    // Submits and waits until at least `wait_nr` completions are ready, in
    // one io_uring_enter. Returns the number submitted, or -errno.
    int submit_and_wait(unsigned wait_nr) noexcept { return enter_common(wait_nr, IORING_ENTER_GETEVENTS, nullptr); }

    // Submits and waits for `wait_nr` completions or until `timeout` passes.
    // With IORING_FEAT_EXT_ARG (5.11) the timeout rides in io_uring_enter
    // (from the registered wait region where there is one, 6.13); without
    // it a timeout SQE bounds the wait (its CQE is never shown to the user),
    // and the wait ends at the first completion even when wait_nr is
    // larger. Returns 0 when completions are ready, -ETIME on timeout, or
    // -errno.
    int submit_and_wait_for(unsigned wait_nr, std::chrono::nanoseconds timeout) noexcept {
        if (features_ & IORING_FEAT_EXT_ARG) [[likely]]
            return wait_ext(wait_nr, &timeout, 0);
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
        __kernel_timespec ts{secs.count(), (timeout - secs).count()};
        return submit_and_wait_with_timeout_sqe(wait_nr, ts);
    }

    // Batching the wait (IORING_FEAT_MIN_TIMEOUT, 6.12): submits and sleeps
    // until `wait_nr` completions are ready, or `min_wait` has passed and at
    // least one is, or `timeout` (when nonzero) passes. Fewer wake-ups per
    // completion under load, at most min_wait of added latency. Without the
    // feature (older kernel, or hidden) it waits for the first completion
    // instead, which is always safe. Returns as submit_and_wait_for.
    int submit_and_wait_min(unsigned wait_nr, std::chrono::microseconds min_wait,
                            std::chrono::nanoseconds timeout = {}) noexcept {
        if (!min_timeout_ || min_wait.count() <= 0)
            return timeout.count() > 0 ? submit_and_wait_for(1, timeout) : std::min(submit_and_wait(1), 0);
        auto usec = static_cast<std::uint32_t>(std::min<std::int64_t>(min_wait.count(), UINT32_MAX));
        return wait_ext(std::max(wait_nr, 1u), timeout.count() > 0 ? &timeout : nullptr, usec);
    }

    // submit_and_wait_min() with ring_options::min_wait.
    int submit_and_wait_batch(unsigned wait_nr, std::chrono::nanoseconds timeout = {}) noexcept {
        return submit_and_wait_min(wait_nr, min_wait_, timeout);
    }
    std::chrono::microseconds min_wait() const noexcept { return min_wait_; }

    // Submits and, in the same io_uring_enter, lets the kernel post pending
    // completions (DEFER_TASKRUN) without waiting for any. Returns the number
    // submitted, or -errno.
    int submit_and_get_events() noexcept { return enter_common(0, IORING_ENTER_GETEVENTS, nullptr); }

    // With DEFER_TASKRUN completions are only posted when this thread enters
    // the kernel; this does that without waiting. Returns 0 or -errno.
    int flush_completions() noexcept {
        int r = sys::enter(enter_fd_, 0, 0, IORING_ENTER_GETEVENTS | enter_flags_, nullptr, 0);
        return r < 0 ? r : 0;
    }

    // Lets a ring made with start_disabled run. Returns 0 or -errno.
    int enable() noexcept { return sys::register_op(fd_, IORING_REGISTER_ENABLE_RINGS, nullptr, 0); }

    // ---- completion ---------------------------------------------------------

    unsigned cq_ready() const noexcept {
        return std::atomic_ref<unsigned>(*mem_.cq().ktail).load(std::memory_order_acquire) - *mem_.cq().khead;
    }

    // Calls `handler(const io_uring_cqe&)` for up to `max` ready completions,
    // then releases them to the kernel with a single CQ head store. Returns
    // how many were consumed. The handler may prepare and submit new SQEs
    // (the CQ is never resized while it runs).
    template <class Handler>
    unsigned for_each_completion(Handler&& handler, unsigned max = 4096) {
        auto& cq = mem_.cq();
        unsigned head = *cq.khead;
        unsigned tail = std::atomic_ref<unsigned>(*cq.ktail).load(std::memory_order_acquire);
        unsigned count = std::min(tail - head, max);
        unsigned delivered = 0;
        unsigned seen = 0;
        // If the handler throws, the CQEs it already saw (the throwing one
        // included) are released all the same, so none is delivered twice.
        struct release_seen {
            ring* self;
            unsigned head;
            unsigned& seen;
            ~release_seen() {
                if (seen) self->cq_advance_to(head + seen);
                self->in_completion_ = false;
            }
        } release{this, head, seen};
        in_completion_ = true;
        const io_uring_cqe* cqes = cq.cqes;
        const unsigned mask = cq.mask;
        while (seen < count) {
            const io_uring_cqe& cqe = cqes[(head + seen) & mask];
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
    bool cq_overflow_pending() const noexcept {
        return std::atomic_ref<unsigned>(*mem_.sq().kflags).load(std::memory_order_relaxed) & IORING_SQ_CQ_OVERFLOW;
    }
    // Completions the kernel had to drop (only when it could not hold them back).
    unsigned cq_dropped() const noexcept {
        return std::atomic_ref<unsigned>(*mem_.cq().koverflow).load(std::memory_order_relaxed);
    }
    // Times a submission saw the kernel holding completions back.
    std::uint64_t cq_overflows() const noexcept { return cq_overflows_; }
    // Times the CQ was grown because of that (IORING_REGISTER_RESIZE_RINGS).
    std::uint64_t cq_resizes() const noexcept { return cq_resizes_; }

    // Grows the CQ to `cq_entries` (rounded up to a power of two by the
    // kernel), keeping every pending SQE and CQE. Needs 6.13 and a
    // DEFER_TASKRUN ring. Not from inside for_each_completion. 0 or -errno.
    int resize_cq(unsigned cq_entries) noexcept;

    // ---- eventfd ------------------------------------------------------------
    // The kernel signals `fd` when a completion is on its way (with
    // DEFER_TASKRUN: when there is work for the next wait to run, before the
    // CQE is visible). 0 or -errno.
    int register_eventfd(int fd) noexcept {
        int r = sys::register_op(fd_, IORING_REGISTER_EVENTFD, &fd, 1);
        return r < 0 ? r : 0;
    }
    int unregister_eventfd() noexcept {
        int r = sys::register_op(fd_, IORING_UNREGISTER_EVENTFD, nullptr, 0);
        return r < 0 ? r : 0;
    }

private:
    // The tag of zerg's own timeout SQEs; for_each_completion skips them.
    static constexpr std::uint64_t internal_timeout_tag = LIBURING_UDATA_TIMEOUT;

    unsigned sq_head() const noexcept {
        // With SQPOLL the kernel thread moves the head concurrently.
        return std::atomic_ref<unsigned>(*mem_.sq().khead).load(std::memory_order_acquire);
    }
    io_uring_sqe* try_get_sqe() noexcept {
        auto& sq = mem_.sq();
        if (sqe_tail_ - sq_head() >= sq.entries) return nullptr;
        return &sq.sqes[sqe_tail_++ & sq.mask];
    }
    // Publishes the prepared SQEs with one release store of the SQ tail;
    // returns how many the kernel has not consumed yet.
    unsigned flush_sq() noexcept {
        auto& sq = mem_.sq();
        std::atomic_ref<unsigned>(*sq.ktail).store(sqe_tail_, std::memory_order_release);
        return sqe_tail_ - sq_head();
    }
    void cq_advance_to(unsigned head) noexcept {
        std::atomic_ref<unsigned>(*mem_.cq().khead).store(head, std::memory_order_release);
    }

    // One io_uring_enter that submits what is prepared, waits per `flags`,
    // and passes `arg` (EXT_ARG). Enters only when it has to.
    int enter_common(unsigned wait_nr, unsigned flags, const void* arg, std::size_t argsz = 0) noexcept {
        unsigned submit = flush_sq();
        unsigned sq_flags = std::atomic_ref<unsigned>(*mem_.sq().kflags).load(std::memory_order_relaxed);
        if (sq_flags & IORING_SQ_CQ_OVERFLOW) [[unlikely]] {
            on_overflow();
            flags |= IORING_ENTER_GETEVENTS;  // lets the kernel flush what it holds back
        }
        if (flags_ & IORING_SETUP_SQPOLL) {
            // The tail store must be visible before we read NEED_WAKEUP, or
            // the kernel thread could go to sleep without seeing our SQEs. A
            // locked read-modify-write that changes nothing is that full
            // barrier and the read in one (and, unlike atomic_thread_fence,
            // ThreadSanitizer builds accept it); the kernel only ever sets
            // and clears these bits atomically, so nothing of its is lost.
            sq_flags = std::atomic_ref<unsigned>(*mem_.sq().kflags).fetch_or(0, std::memory_order_seq_cst);
            if (sq_flags & IORING_SQ_NEED_WAKEUP) flags |= IORING_ENTER_SQ_WAKEUP;
            if (!(flags & (IORING_ENTER_GETEVENTS | IORING_ENTER_SQ_WAKEUP))) return static_cast<int>(submit);
            int r = sys::enter(enter_fd_, submit, wait_nr, flags | enter_flags_, arg, argsz);
            return r < 0 ? r : static_cast<int>(submit);
        }
        if (sq_flags & IORING_SQ_TASKRUN) flags |= IORING_ENTER_GETEVENTS;
        if (!submit && !(flags & IORING_ENTER_GETEVENTS)) return 0;
        return sys::enter(enter_fd_, submit, wait_nr, flags | enter_flags_, arg, argsz);
    }

    // A wait with an EXT_ARG argument: the timeout (nullptr: none) and
    // min_wait. Returns 0 when completions are ready, -ETIME, or -errno.
    int wait_ext(unsigned wait_nr, const std::chrono::nanoseconds* timeout, std::uint32_t min_wait_usec) noexcept {
        int res;
        if (wait_arg_) {
            // The kernel reads the registered slot on this enter; nothing is copied in.
            abi::reg_wait& w = *wait_arg_;
            w.min_wait_usec = min_wait_usec;
            if (timeout) {
                auto secs = std::chrono::duration_cast<std::chrono::seconds>(*timeout);
                w.ts_sec = secs.count();
                w.ts_nsec = (*timeout - secs).count();
                w.flags = abi::reg_wait_ts;
            } else {
                w.flags = 0;
            }
            // The argument is the slot's byte offset in the region: 0.
            res = enter_common(wait_nr, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG | IORING_ENTER_EXT_ARG_REG,
                               nullptr, sizeof(abi::reg_wait));
        } else {
            __kernel_timespec ts{};
            abi::getevents_arg arg{};
            arg.sigmask_sz = sys::kernel_sigset_bytes;
            arg.min_wait_usec = min_wait_usec;
            if (timeout) {
                auto secs = std::chrono::duration_cast<std::chrono::seconds>(*timeout);
                ts = {secs.count(), (*timeout - secs).count()};
                arg.ts = reinterpret_cast<std::uintptr_t>(&ts);
            }
            res = enter_common(wait_nr, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
        }
        if (res < 0) return res == -ETIME && cq_ready() ? 0 : res;
        // Something was submitted, so the kernel reported that count rather
        // than the wait's own result: tell a timeout by the empty CQ.
        return cq_ready() ? 0 : -ETIME;
    }

    int submit_and_wait_with_timeout_sqe(unsigned wait_nr, const __kernel_timespec& ts) noexcept {
        std::error_code ec;
        io_uring_sqe* sqe = get_sqe(ec);
        if (!sqe) return -ec.value();
        // The kernel copies the timespec while preparing the request, so a
        // local is enough. It also completes after `wait_nr` completions.
        io_uring_prep_timeout(sqe, const_cast<__kernel_timespec*>(&ts), wait_nr, 0);
        sqe->user_data = internal_timeout_tag;
        int res = submit_and_wait(1);
        if (res < 0) return res;
        auto& cq = mem_.cq();
        unsigned head = *cq.khead;
        unsigned tail = std::atomic_ref<unsigned>(*cq.ktail).load(std::memory_order_acquire);
        for (unsigned i = head; i != tail; ++i)
            if (cq.cqes[i & cq.mask].user_data != internal_timeout_tag) return 0;
        // Only timeouts are ready: drop them and report the timeout.
        cq_advance_to(tail);
        return -ETIME;
    }

    std::error_code init(const ring_options& options);
    io_uring_sqe* get_sqe_slow(std::error_code& ec) noexcept;
    [[gnu::noinline]] io_uring_sqe* get_sqe_or_throw() {
        std::error_code ec;
        io_uring_sqe* sqe = get_sqe_slow(ec);
        if (!sqe) throw std::system_error(ec, "zerg::uring::ring: no submission queue entry available");
        return sqe;
    }
    unsigned choose_flags(const ring_options& options, io_uring_params& params);
    int create(unsigned entries, io_uring_params& params, bool user_memory);
    void setup_wait_region();
    void setup_napi(const ring_options& options);
    void on_overflow() noexcept;
    void close() noexcept {
        if (fd_ < 0) return;
        if (enter_flags_ & IORING_ENTER_REGISTERED_RING) {
            io_uring_rsrc_update up{};
            up.offset = static_cast<unsigned>(enter_fd_);
            sys::register_op(fd_, IORING_UNREGISTER_RING_FDS, &up, 1);
        }
        ::close(fd_);
        mem_.release();
        if (wait_arg_) ::munmap(wait_arg_, wait_region_bytes_);
        fd_ = -1;
        wait_arg_ = nullptr;
    }
    void take(ring& o) noexcept {
        mem_ = std::move(o.mem_);
        fd_ = std::exchange(o.fd_, -1);
        enter_fd_ = o.enter_fd_;
        enter_flags_ = o.enter_flags_;
        flags_ = o.flags_;
        features_ = o.features_;
        sqe_tail_ = o.sqe_tail_;
        min_timeout_ = o.min_timeout_;
        resize_ok_ = o.resize_ok_;
        cq_max_ = o.cq_max_;
        napi_us_ = o.napi_us_;
        min_wait_ = o.min_wait_;
        wait_arg_ = std::exchange(o.wait_arg_, nullptr);
        wait_region_bytes_ = o.wait_region_bytes_;
        cq_overflows_ = o.cq_overflows_;
        cq_resizes_ = o.cq_resizes_;
        overflow_seen_ = o.overflow_seen_;
        fallbacks_ = std::move(o.fallbacks_);
        setup_error_ = std::move(o.setup_error_);
    }
    void note(feature f, int error, std::string reason) { fallbacks_.push_back({f, error, std::move(reason)}); }

    ring_memory mem_;
    int fd_ = -1;
    int enter_fd_ = -1;         // the registered index, or fd_
    unsigned enter_flags_ = 0;  // IORING_ENTER_REGISTERED_RING when enter_fd_ is an index
    unsigned flags_ = 0;
    unsigned features_ = 0;
    unsigned sqe_tail_ = 0;     // next SQE to hand out; published by flush_sq()
    bool in_completion_ = false;
    bool min_timeout_ = false;
    bool resize_ok_ = false;
    bool overflow_seen_ = false;
    unsigned cq_max_ = 0;
    unsigned napi_us_ = 0;
    std::chrono::microseconds min_wait_{0};
    abi::reg_wait* wait_arg_ = nullptr;  // slot 0 of the registered wait region
    std::size_t wait_region_bytes_ = 0;
    std::uint64_t cq_overflows_ = 0;
    std::uint64_t cq_resizes_ = 0;
    std::vector<fallback> fallbacks_;
    std::string setup_error_;
};

// ---- definitions ----------------------------------------------------------

inline io_uring_sqe* ring::get_sqe_slow(std::error_code& ec) noexcept {
    // The SQ is full: hand what is queued to the kernel and try again. With
    // SQPOLL the kernel thread may not have consumed the entries yet, so wait
    // for room rather than spin.
    for (int attempt = 0; attempt < 3; ++attempt) {
        int submitted = submit();
        if (submitted < 0) {
            ec = result_error(submitted);
            return nullptr;
        }
        if (flags_ & IORING_SETUP_SQPOLL) {
            int waited = sys::enter(enter_fd_, 0, 0, IORING_ENTER_SQ_WAIT | enter_flags_, nullptr, 0);
            if (waited < 0) {
                ec = result_error(waited);
                return nullptr;
            }
        }
        if (io_uring_sqe* sqe = try_get_sqe()) return sqe;
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
    // zerg maps the rings itself, so dropping the index array is only the
    // kernel's business: 6.6 accepts it, 6.1 refuses it (EINVAL, reported).
    if (wanted(options.no_sqarray, feature::no_sqarray)) flags |= IORING_SETUP_NO_SQARRAY;
    return flags;
}

// io_uring_setup() for real, then the mapping. With `user_memory` the rings
// go into memory allocated here (NO_MMAP). Returns 0 or -errno.
inline int ring::create(unsigned entries, io_uring_params& params, bool user_memory) {
    io_uring_params p = params;
    if (user_memory) {
        p.flags |= IORING_SETUP_NO_MMAP;
        // The sizes the kernel will pick: powers of two, clamped (CLAMP).
        unsigned sq = std::min(detail::next_pow2(entries), 32768u);
        unsigned cq = (p.flags & IORING_SETUP_CQSIZE) ? std::min(detail::next_pow2(p.cq_entries), 65536u) : 2 * sq;
        if (int r = mem_.allocate_user(sq, cq, p.flags, p); r < 0) return r;
    }
    int fd = sys::setup(entries, &p);
    if (fd < 0) {
        mem_.release();
        return fd;
    }
    if (int r = mem_.attach(fd, p); r < 0) {
        ::close(fd);
        mem_.release();
        return r;
    }
    fd_ = fd;
    enter_fd_ = fd;
    flags_ = p.flags;
    features_ = p.features;
    return 0;
}

// One page of wait arguments registered with the kernel (6.13), so a wait
// with a timeout or min_wait passes an offset instead of a struct the kernel
// copies in. Registration is only allowed while the ring is disabled.
inline void ring::setup_wait_region() {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    void* m = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) {
        note(feature::wait_region, errno, "cannot map the wait region: plain EXT_ARG waits");
        return;
    }
    abi::region_desc desc{};
    desc.user_addr = reinterpret_cast<std::uintptr_t>(m);
    desc.size = page;
    desc.flags = abi::mem_region_type_user;
    abi::mem_region_reg reg{};
    reg.region_uptr = reinterpret_cast<std::uintptr_t>(&desc);
    reg.flags = abi::mem_region_reg_wait_arg;
    if (int r = register_op(IORING_REGISTER_MEM_REGION, &reg, 1); r < 0) {
        ::munmap(m, page);
        note(feature::wait_region, -r,
             "kernel refused IORING_REGISTER_MEM_REGION (needs 6.13): waits copy their argument in (plain EXT_ARG)");
        return;
    }
    wait_arg_ = static_cast<abi::reg_wait*>(m);
    wait_region_bytes_ = page;
    wait_arg_->sigmask_sz = sys::kernel_sigset_bytes;
}

inline void ring::setup_napi(const ring_options& options) {
    if (!options.napi_busy_poll_us) return;
    if (is_hidden(feature::napi)) {
        note(feature::napi, 0, "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)");
        return;
    }
    abi::napi n{};
    n.busy_poll_to = options.napi_busy_poll_us;
    n.prefer_busy_poll = options.napi_prefer_busy_poll ? 1 : 0;
    if (int r = register_op(IORING_REGISTER_NAPI, &n, 1); r < 0) {
        note(feature::napi, -r, "kernel refused IORING_REGISTER_NAPI (needs 6.9): no busy polling");
        return;
    }
    napi_us_ = options.napi_busy_poll_us;
}

inline int ring::resize_cq(unsigned cq_entries) noexcept {
    if (fd_ < 0) return -EBADF;
    if (in_completion_) return -EBUSY;  // the handler loop holds pointers into the CQ
    // 6.13 reports no index array offset after a resize (sq_off.array is 0),
    // so only rings without the array (NO_SQARRAY) are resized.
    if (mem_.user_memory() || !(flags_ & IORING_SETUP_NO_SQARRAY)) return -EOPNOTSUPP;
    flush_sq();  // the kernel carries published SQEs over; unpublished ones would be lost
    io_uring_params p{};
    p.sq_entries = mem_.sq().entries;
    p.cq_entries = cq_entries;
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
    if (int r = register_op(IORING_REGISTER_RESIZE_RINGS, &p, 1); r < 0) return r;
    // The kernel now uses new rings at the same mmap offsets; the old
    // mapping stays valid until unmapped, so map first, then swap.
    p.flags = flags_;
    p.features = features_ | IORING_FEAT_SINGLE_MMAP;
    ring_memory fresh;
    if (int r = fresh.attach(fd_, p); r < 0) return r;
    mem_ = std::move(fresh);
    return 0;
}

inline void ring::on_overflow() noexcept {
    ++cq_overflows_;
    if (!resize_ok_ || in_completion_ || mem_.cq().entries >= cq_max_) return;
    unsigned target = std::min(cq_max_, mem_.cq().entries * 2);
    if (resize_cq(target) == 0) {
        ++cq_resizes_;
    } else {
        resize_ok_ = false;  // drain from now on
    }
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

    // A wait region can only be registered while the ring is disabled, so
    // such a ring starts disabled and is enabled once it is registered.
    bool region = options.wait_region && !is_hidden(feature::wait_region);
    if (options.wait_region && !region) note(feature::wait_region, 0, "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)");
    bool user_memory = options.no_mmap && !is_hidden(feature::no_mmap);
    if (options.no_mmap && !user_memory) note(feature::no_mmap, 0, "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)");

    params.flags = flags | (region ? IORING_SETUP_R_DISABLED : 0);
    res = create(options.entries, params, user_memory);
    if (res < 0 && user_memory) {
        note(feature::no_mmap, -res,
             "kernel refused rings in user memory (NO_MMAP needs 6.5; early ones take one page per part): "
             "kernel-allocated rings, mapped");
        res = create(options.entries, params, false);
    }
    if (res < 0) {
        fd_ = -1;
        setup_error_ = explain_setup_failure(-res, read_io_uring_disabled_sysctl());
        return result_error(res);
    }

    if (is_hidden(feature::ext_arg) && (features_ & IORING_FEAT_EXT_ARG)) {
        features_ &= ~IORING_FEAT_EXT_ARG;
        note(feature::ext_arg, 0, "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)");
    } else if (!(features_ & IORING_FEAT_EXT_ARG)) {
        note(feature::ext_arg, 0, "kernel lacks IORING_FEAT_EXT_ARG: waits with a timeout use a timeout SQE");
    }
    if (is_hidden(feature::min_timeout)) features_ &= ~IORING_FEAT_MIN_TIMEOUT;
    min_timeout_ = (features_ & IORING_FEAT_MIN_TIMEOUT) && (features_ & IORING_FEAT_EXT_ARG);
    min_wait_ = options.min_wait;
    if (options.min_wait.count() > 0 && !min_timeout_)
        note(feature::min_timeout, 0,
             is_hidden(feature::min_timeout)
                 ? "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)"
                 : "kernel lacks IORING_FEAT_MIN_TIMEOUT (6.12): batched waits wake at the first completion");

    if (region) {
        if (features_ & IORING_FEAT_EXT_ARG)
            setup_wait_region();
        else
            note(feature::wait_region, 0, "no EXT_ARG waits to register");
        if (!options.start_disabled) {
            if (int r = enable(); r < 0) {
                setup_error_ = "zerg::uring::ring: IORING_REGISTER_ENABLE_RINGS failed";
                close();
                return result_error(r);
            }
            flags_ &= ~IORING_SETUP_R_DISABLED;
        }
    }

    if (options.register_ring_fd && !options.start_disabled) {
        io_uring_rsrc_update up{};
        up.offset = ~0u;  // any free slot
        up.data = static_cast<std::uint64_t>(fd_);
        if (is_hidden(feature::registered_ring_fd)) {
            note(feature::registered_ring_fd, 0, "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)");
        } else if (int r = register_op(IORING_REGISTER_RING_FDS, &up, 1); r != 1) {
            note(feature::registered_ring_fd, r < 0 ? -r : EINVAL,
                 "refused by the kernel: " + result_error(r < 0 ? r : -EINVAL).message());
        } else {
            enter_fd_ = static_cast<int>(up.offset);
            enter_flags_ = IORING_ENTER_REGISTERED_RING;
        }
    }

    if (options.resize_cq_on_overflow) {
        cq_max_ = options.cq_max_entries ? detail::next_pow2(options.cq_max_entries) : 4 * mem_.cq().entries;
        if (is_hidden(feature::resize_rings)) {
            note(feature::resize_rings, 0, "hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)");
        } else if (!(flags_ & IORING_SETUP_DEFER_TASKRUN)) {
            note(feature::resize_rings, 0, "the kernel resizes only DEFER_TASKRUN rings: a CQ overflow is drained");
        } else if (mem_.user_memory()) {
            note(feature::resize_rings, 0, "rings in user memory (NO_MMAP) are not resized: a CQ overflow is drained");
        } else if (!(flags_ & IORING_SETUP_NO_SQARRAY)) {
            note(feature::resize_rings, 0, "only rings without the SQ index array (NO_SQARRAY) are resized: a CQ overflow is drained");
        } else if (options.start_disabled) {
            note(feature::resize_rings, 0, "not probed on a disabled ring: a CQ overflow is drained");
        } else if (int r = resize_cq(mem_.cq().entries); r < 0) {
            // Resizing to the same size is how to ask: 6.12 and older answer EINVAL.
            note(feature::resize_rings, -r,
                 "kernel refused IORING_REGISTER_RESIZE_RINGS (needs 6.13): a CQ overflow is drained");
        } else {
            resize_ok_ = true;
        }
    }
    setup_napi(options);
    return {};
}

}  // namespace zerg::uring
