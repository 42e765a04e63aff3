// zerg::basic_reactor<Buffer, Queue, Submission, Handler>: one thread, one
// ring, one provided-buffer ring, one connection table; and
// zerg::reactor<Handler, Options...>, the same with named policies and
// defaults (reactor_options.hpp).
//
// The four policies are chosen at compile time (see policy/*.hpp); the
// reactor inherits nothing virtual and calls the handler directly, so each
// instantiation compiles to one inlined loop (run()):
//
//   1. take connections handed over by the acceptor (Queue policy);
//   2. reap up to completion_batch CQEs and dispatch each with one switch on
//      the operation kind in its user_data;
//   3. expire deadlines; for every connection touched: start sends, re-arm
//      receives, pause or resume reading, finish closes;
//   4. return buffers to the kernel (one publish for the whole iteration);
//   5. one io_uring_enter that submits everything and waits for the next
//      completion (or only collects, when the batch limit was hit).
//
// The concerns live in their own headers: a connection's phase and read
// state in detail/connection_phase.hpp, its outbound side in
// detail/send_path.hpp, the deadlines in detail/deadlines.hpp, the
// reuse_port listener's accept in detail/multishot_accept.hpp, the table
// of direct descriptors in detail/direct_table.hpp. Every operation on a
// connection goes through submit(), which counts it in the connection's
// pending_: the slot is reused only once that count is back to zero after
// the close, so no CQE can reach the slot's next connection.
//
// Thread-safety is given per member below: most belong to the reactor
// thread; hand_over() to the Queue policy's producers; request_stop(),
// counters() and post() (with write() and close() through a handle) to
// any thread. Outbound connections and posted work are defined in
// impl/reactor_outbound.hpp.
#pragma once

#include <zerg/address.hpp>
#include <zerg/buffer_sequence.hpp>
#include <zerg/config.hpp>
#include <zerg/connection.hpp>
#include <zerg/connection_handle.hpp>
#include <zerg/counters.hpp>
#include <zerg/detail/connection_phase.hpp>
#include <zerg/detail/deadlines.hpp>
#include <zerg/detail/direct_table.hpp>
#include <zerg/detail/multishot_accept.hpp>
#include <zerg/detail/posted_work.hpp>
#include <zerg/detail/zero_copy.hpp>
#include <zerg/error.hpp>
#include <zerg/handler.hpp>
#include <zerg/policy/buffer.hpp>
#include <zerg/policy/handoff.hpp>
#include <zerg/policy/submission.hpp>
#include <zerg/reactor_options.hpp>
#include <zerg/task.hpp>
#include <zerg/uring/compat.hpp>
#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/user_data.hpp>

#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <system_error>
#include <string>
#include <vector>

namespace zerg {

template <class Buffer, class Queue, class Submission, class Handler>
class basic_reactor {
    static_assert(buffer_policy<Buffer>,
                  "zerg: Buffer must model zerg::buffer_policy (see policy/buffer.hpp), e.g. provided_buffers<4096, 1024>");
    static_assert(handoff_policy<Queue>,
                  "zerg: Queue must model zerg::handoff_policy (see policy/handoff.hpp), e.g. spsc_handoff<4096>");
    static_assert(submission_policy<Submission>,
                  "zerg: Submission must model zerg::submission_policy (see policy/submission.hpp), e.g. plain_submission");
    static_assert(check_handler<Handler>());

public:
    using buffer_type = Buffer;
    using queue_type = Queue;
    using submission_type = Submission;
    using handler_type = Handler;
    using connection_type = connection<Handler>;

    // Any thread; setup() and run() then belong to the reactor thread.
    basic_reactor(unsigned index, const server_config& config, const Handler& prototype)
        : index_(index), config_(config), handler_(prototype),
          deadlines_(config.idle_timeout, config.read_timeout, config.write_timeout) {}
    basic_reactor(const basic_reactor&) = delete;
    basic_reactor& operator=(const basic_reactor&) = delete;
    ~basic_reactor() {
        // A loop that failed leaves connections behind: their queued chunks
        // go back before the pool does.
        for (auto& c : live_) c.send_.reset(pool_);
        if (listener_ >= 0) ::close(listener_);
    }

    // Reactor thread: makes the ring, buffers and table. Throws on failure.
    // With SINGLE_ISSUER the ring belongs to the thread that makes it, so
    // this must run on the thread that then calls run().
    void setup();
    // Reactor thread: the loop, until request_stop() and every connection
    // is closed. An error it cannot survive (io_uring_enter failing, say)
    // marks it failed(), is reported through server_config::on_error,
    // closes every socket it holds, and is rethrown.
    void run();

    // Gives this reactor an accepted socket. Thread-safety is the Queue
    // policy's: one producer at a time when Queue::single_producer (the
    // acceptor thread), any thread otherwise. `producer` is the caller's
    // own ring, if it has one (msg_ring_handoff posts from it and the
    // caller must submit it). False when the inbox is full.
    bool hand_over(int fd, uring::ring* producer = nullptr) noexcept { return inbox_.push(fd, producer); }
    // The acceptor thread, with direct descriptors in effect here and a
    // Queue that can carry them (msg_ring_handoff): moves the socket in slot
    // `slot` of `producer`'s registered file table into this reactor's
    // (doc/direct-descriptors.md). False when the producer's SQ is full.
    bool hand_over_direct(unsigned slot, uring::ring& producer) noexcept
        requires requires(Queue q) { q.push_direct(slot, producer); }
    {
        return inbox_.push_direct(slot, producer);
    }
    // Any thread, any number of times: the reactor closes its connections
    // gracefully and run() returns. A flag plus a wake-up, never an item in
    // the inbox, so it is no second producer of a single-producer queue.
    void request_stop() noexcept {
        stop_requested_.store(true, std::memory_order_seq_cst);
        inbox_.wake();
    }
    // Any thread, after request_stop(): the graceful close ends now; what
    // is still open is aborted (a second SIGTERM).
    void hurry_stop() noexcept {
        hurry_.store(true, std::memory_order_seq_cst);
        request_stop();
    }
    // Any thread: run() ended on an error; hand nothing more to it.
    bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }

    // Any thread.
    unsigned index() const noexcept { return index_; }
    // Any thread: written only by the reactor thread (relaxed).
    const reactor_counters& counters() const noexcept { return counters_; }
    // Any thread: the reuse_port listener's accept counts (zero otherwise).
    const accept_stats& listener_counters() const noexcept { return listener_stats_; }
    // After setup(), any thread: every feature that fell back, with the reason.
    const std::vector<std::string>& fallbacks() const noexcept { return fallbacks_; }
    // After setup(), any thread: receives are bundles (several buffers per completion).
    bool bundles() const noexcept { return bundles_; }
    // After setup(), any thread: sends of zero_copy_threshold bytes or more go zero-copy.
    bool zero_copy() const noexcept { return zero_copy_; }
    // After setup(), any thread: accepted connections are direct descriptors
    // (server_config::direct_descriptors in effect; doc/direct-descriptors.md).
    bool direct_descriptors() const noexcept { return direct_active_; }
    // After setup(), any thread: the ring's setup flags, for reports.
    unsigned ring_flags() const noexcept { return ring_flags_; }
    // After setup(), any thread: the port of this reactor's own listener (reuse_port mode).
    std::uint16_t listener_port() const noexcept { return listener_port_; }
    // Before setup(), the controlling thread.
    void use_listener_port(std::uint16_t port) noexcept { config_.port = port; }

    // ---- outbound connections, handles, posted work (doc/outbound.md) ------
    // Reactor thread (a handler, or a callable given to post()): opens a TCP
    // connection to `to`, IPv4 or IPv6, with socket (IORING_OP_SOCKET, 5.19;
    // socket(2) before) and connect (5.5) through the ring. Returns the new
    // connection at once: it takes write()s, sent once it connects; the
    // handler sees it in on_open when it connects, or in on_connect_error
    // when it cannot (refused, unreachable, server_config::connect_timeout).
    // It shares max_connections with accepted ones. Null, with `ec` set,
    // when the table is full (ENOBUFS), the reactor stops (ECANCELED) or
    // socket(2) fails.
    connection_type* connect(const endpoint& to, std::error_code& ec);
    // Reactor thread: the open connection `h` names, or null when it closed,
    // its slot was reused or it is another reactor's.
    connection_type* find(connection_handle h) noexcept;
    // Any thread: runs `f(*this)` on the reactor thread at the start of its
    // next loop iteration (waking it if it sleeps); what one thread posts
    // runs in order. False when the reactor does not run (before setup(),
    // after run() returned): `f` is dropped. An exception from `f` is
    // reported (error_report::kind::handler_exception) and the loop goes
    // on. Costs one allocation and, if the reactor sleeps, one eventfd write.
    template <class F>
    bool post(F&& f) {
        if (!accepting_posts_.load(std::memory_order_acquire)) return false;
        posted_.push(new detail::posted_call<basic_reactor, std::decay_t<F>>(std::forward<F>(f)));
        inbox_.wake();
        return true;
    }
    // Any thread: queues a copy of `bytes` on the connection `h` names, on
    // the reactor thread. `done(std::error_code)` runs there: empty when
    // queued, ENOTCONN when that connection is gone (closed, or its slot
    // now holds another: never written to the wrong peer). False as post().
    template <class Done = detail::ignore_result>
    bool write(connection_handle h, std::span<const std::byte> bytes, Done done = {}) {
        return post([h, data = std::vector<std::byte>(bytes.begin(), bytes.end()), done = std::move(done)](
                        basic_reactor& r) mutable {
            connection_type* c = r.find(h);
            if (c && c->life_.accepts_writes()) {
                c->write(data);
                done(std::error_code{});
            } else {
                r.handle_refusals_.fetch_add(1, std::memory_order_relaxed);
                done(std::make_error_code(std::errc::not_connected));
            }
        });
    }
    // Any thread: close() on the connection `h` names (queued output is
    // sent first), on the reactor thread; `done` as for write().
    template <class Done = detail::ignore_result>
    bool close(connection_handle h, Done done = {}) {
        return post([h, done = std::move(done)](basic_reactor& r) mutable {
            if (connection_type* c = r.find(h)) {
                c->close();
                done(std::error_code{});
            } else {
                r.handle_refusals_.fetch_add(1, std::memory_order_relaxed);
                done(std::make_error_code(std::errc::not_connected));
            }
        });
    }
    // Any thread: writes and closes through a handle refused because its
    // connection was gone.
    std::uint64_t handle_refusals() const noexcept { return handle_refusals_.load(std::memory_order_relaxed); }

    static std::string policy_names() {
        return std::string(Buffer::name) + "/" + Queue::name + "/" + Submission::name;
    }

private:
    // The operation kinds in user_data; one switch dispatches them.
    enum op : std::uint8_t {
        op_recv = 1,
        op_send,
        op_cancel,
        op_close,
        op_shutdown,
        op_wake,
        op_handoff,
        op_accept,
        op_accept_retry,
        op_socket,           // an outbound connection's socket (5.19)
        op_connect,          // its connect
        op_connect_timeout,  // the connect's linked timeout
        op_setsockopt,       // SO_LINGER through the ring on a direct descriptor (6.7)
        op_handoff_direct,   // a MSG_RING installed a socket into the table: the slot in res (6.0)
    };
    static constexpr std::uint32_t no_slot = 0xffffffffu;
    using phase = detail::phase;
    using read_state = detail::read_state;

    uring::user_data reactor_tag(op kind) const noexcept { return {kind, no_slot, 0}; }

    // Every operation on a connection: prepare, tag with the slot's
    // generation, count as pending until its last CQE. On a direct
    // descriptor the SQE names the registered-file slot (IOSQE_FIXED_FILE),
    // except a close (close_direct names it in file_index and the kernel
    // refuses the flag there) and a cancel (by tag, or by file with
    // IORING_ASYNC_CANCEL_FD_FIXED, which its prep site sets).
    template <class Prepare>
    void submit(connection_type& c, op kind, Prepare&& prepare) {
        io_uring_sqe* s = ring_->get_sqe();
        prepare(s);
        if (c.direct_ && kind != op_close && kind != op_cancel) uring::use_fixed_file(s);
        uring::set_user_data(s, generations_->tag(kind, c.slot_));
        ++c.pending_;
    }

    // `fd` is a registered-file slot when `direct`.
    void open(int fd, bool direct = false);
    // Closes an accepted socket that is never served (stopping, or waiting
    // when the loop ends).
    void drop_accepted(int fd) noexcept {
        if (direct_active_)
            direct_.release(static_cast<unsigned>(fd));
        else
            ::close(fd);
    }
    void begin_serving(connection_type& c);
    void start_connect(connection_type& c, int fd);
    void on_socket(connection_type& c, const io_uring_cqe& cqe);
    void on_connect(connection_type& c, const io_uring_cqe& cqe);
    void end_connect(connection_type& c, std::error_code why);
    // Whose reading pauses when c's output is over its limit (throttle()).
    connection_type& source_of(connection_type& c) noexcept {
        if (!c.throttle_.valid()) return c;
        connection_type* t = find(c.throttle_);
        return t ? *t : c;
    }
    void run_posted();
    void dispatch(const io_uring_cqe& cqe);
    void on_recv(connection_type& c, const io_uring_cqe& cqe);
    void on_send(connection_type& c, const io_uring_cqe& cqe);
    // The common case (an open connection whose receive is armed wrote an
    // answer) inline: start its send and stop. What the general path checks
    // next cannot apply: no drain, shutdown or lingering while open, and an
    // armed receive needs no arming.
    void do_work(connection_type& c) {
        if (c.life_.now == phase::open && c.life_.read == read_state::armed && !c.connecting_) [[likely]] {
            if (c.send_.ready()) start_send(c);
            deadlines_.output(c, !c.send_.empty(), false, now_);
            if (c.send_.over(config_.max_write_queue) || input_over(c)) pause_reading(input_over(c) ? c : source_of(c));
            return;
        }
        do_other_work(c);
    }
    void do_other_work(connection_type& c);
    void start_send(connection_type& c);  // precondition: c.send_.ready()
    void run_work_list();
    void feed_starved();
    void want_to_read(connection_type& c);
    void pause_reading(connection_type& c);
    void resume_reading(connection_type& c);
    void arm_recv(connection_type& c);
    void abort(connection_type& c, std::error_code why);
    void begin_teardown(connection_type& c);
    // Called after every completion of a connection; only one being torn
    // down or closed has anything to finish, so the check stays inline.
    void finish_if_done(connection_type& c) {
        if (c.life_.now == phase::tearing_down || c.life_.now == phase::closing) [[unlikely]]
            finish_teardown(c);
    }
    void finish_teardown(connection_type& c);
    // The close of c's socket: close_direct frees a direct one's slot (5.15).
    // Where the kernel puts a file taken out of the table only later (see
    // direct_table::delays_release()), a graceful close first shuts the
    // socket down, hard-linked, so the peer sees the end now; the close
    // runs whatever the shutdown returns (ENOTCONN after a reset).
    void submit_close(connection_type& c) {
        if (c.direct_ && direct_shutdown_first_) {
            if (ring_->sq_space_left() < 2) ring_->submit();  // the linked pair in one submission
            submit(c, op_shutdown, [&](io_uring_sqe* s) {
                uring::prep_shutdown(s, c.fd_, SHUT_RDWR);
                uring::add_flags(s, IOSQE_IO_HARDLINK);
            });
        }
        submit_close_only(c);
    }
    void submit_close_only(connection_type& c) {
        submit(c, op_close, [&](io_uring_sqe* s) {
            if (c.direct_)
                uring::prep_close_direct(s, static_cast<unsigned>(c.fd_));
            else
                uring::prep_close(s, c.fd_);
        });
    }
    void release_slot(connection_type& c);
    void begin_stop();
    bool finished();
    // `end` is when the iteration's work ended (read once for the loop-time
    // histogram and the sleep's length both).
    void wait(unsigned reaped, std::chrono::steady_clock::time_point end);
    void loop();
    void fail(std::exception_ptr why) noexcept;
    static std::string describe(std::exception_ptr e, std::error_code* code = nullptr) noexcept;
    template <class Call>
    bool guarded(connection_type& c, Call&& call) noexcept;
    void handler_failed(connection_type& c, std::error_code code, const char* message) noexcept;
    void report(error_report::kind what, std::error_code code, std::string message, const connection_type* c) noexcept;
    bool input_over(const connection_type& c) const noexcept {
        if constexpr (keeps_input) return c.input_.size() > config_.max_input;
        return false;
    }
    connection_type& slot_at(std::uint32_t slot) noexcept { return chunks_[slot >> chunk_shift][slot & (chunk_slots - 1)]; }
    bool grow_table();
    void count_close_reason(const std::error_code& why) noexcept {
        if (!why)
            counters_.closed_clean.add();
        else if (why == std::errc::timed_out)
            counters_.closed_timeout.add();
        else if (why == std::errc::connection_reset || why == std::errc::broken_pipe)
            counters_.closed_reset.add();
        else if (why == error::handler_exception || why == error::out_of_memory)
            counters_.closed_handler.add();
        else if (why == error::input_limit)
            counters_.closed_input_limit.add();
        else
            counters_.closed_other.add();
    }
    bool table_full() const noexcept { return free_.empty() && slots_ == config_.max_connections; }
    void deliver(connection_type& c, received_bytes bytes, bool last = true);
    void after_task_step(connection_type& c);
    void resume(connection_type& c, std::coroutine_handle<>& waiting);
    static void release_buffer(void* self, std::uint16_t id) noexcept { static_cast<basic_reactor*>(self)->buffers_.release(id); }
    static void hold_buffer(void* self, std::uint16_t id) noexcept { static_cast<basic_reactor*>(self)->buffers_.hold(id); }
    // A quarter of the ring or less is free (the same rule as a sequence's spill).
    static bool buffers_low(void* self) noexcept {
        auto& b = static_cast<basic_reactor*>(self)->buffers_;
        return b.in_use() * 4 > b.count() * 3;
    }
    // Received bytes kept across callbacks (sequence and coroutine handlers).
    static constexpr bool keeps_input = sequence_handler<Handler> || coroutine_handler<Handler>;

    unsigned index_;
    server_config config_;
    Handler handler_;
    std::optional<uring::ring> ring_;
    // After the ring, so it is unregistered before the ring goes.
    detail::direct_table direct_;
    Buffer buffers_;
    Queue inbox_;
    std::optional<uring::slot_generations> generations_;
    // Before the table: connections' coroutine frames and write chunks go
    // back to these pools when the table is destroyed.
    frame_pool frames_;
    detail::chunk_pool pool_;
    // The table grows in chunks of chunk_slots as connections arrive, so a
    // large max_connections costs nothing until it is used.
    static constexpr unsigned chunk_shift = 8;
    static constexpr unsigned chunk_slots = 1u << chunk_shift;
    std::vector<std::unique_ptr<connection_type[]>> chunks_;
    std::uint32_t slots_ = 0;
    // After the table, so they go first and unlink what they hold.
    typename connection_type::table_list free_;
    typename connection_type::table_list live_;
    typename connection_type::work_list work_;
    typename connection_type::starved_list starved_;  // want to read while every buffer is out
    detail::deadlines<connection_type> deadlines_;
    std::chrono::steady_clock::time_point now_{};
    reactor_counters counters_;
    accept_stats listener_stats_;
    std::vector<std::string> fallbacks_;
    unsigned ring_flags_ = 0;
    bool bundles_ = false;  // receives are armed as bundles (IORING_RECVSEND_BUNDLE, 6.10)
    bool zero_copy_ = false;  // large sends go zero-copy (send_zc with usage reports, 6.2)
    bool direct_active_ = false;  // the listener accepts into direct_ (written by setup() only)
    bool direct_shutdown_first_ = false;  // direct_.delays_release(): shut down before close_direct
    int listener_ = -1;
    std::uint16_t listener_port_ = 0;
    detail::multishot_accept accept_;        // reuse_port: this reactor's own listener
    std::vector<int> waiting_;               // accepted while the table was full (reuse_port; slots when direct)
    bool stopping_ = false;
    std::chrono::steady_clock::time_point stop_deadline_{};
    std::atomic<bool> stop_requested_{false};
    std::atomic<bool> hurry_{false};
    std::atomic<bool> failed_{false};
    // Outbound connections and posted work (doc/outbound.md).
    detail::reactor_access<connection_type> access_;
    detail::posted_work posted_;
    std::atomic<bool> accepting_posts_{false};
    std::atomic<std::uint64_t> handle_refusals_{0};
    bool ring_socket_ = false;             // IORING_OP_SOCKET (5.19), else socket(2)
    __kernel_timespec connect_timeout_{};  // the connects' linked timeout; read by the kernel at submit
};

// The short form: zerg::reactor<my_handler> with every default, or any
// policy overridden by name, in any order (reactor_options.hpp).
template <class Handler, class... Options>
using reactor = basic_reactor<typename reactor_policies<Options...>::buffer_type,
                              typename reactor_policies<Options...>::queue_type,
                              typename reactor_policies<Options...>::submission_type, Handler>;

// ---- setup --------------------------------------------------------------

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::setup() {
    if (config_.pin_reactors) {
        unsigned cpus = static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN));
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((config_.first_cpu + index_) % (cpus ? cpus : 1), &set);
        if (::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) != 0)
            fallbacks_.push_back("pinning: pthread_setaffinity_np refused; the reactor runs unpinned");
    }

    // The one place the run-time buffer geometry is decided and checked.
    unsigned size = config_.buffer_size ? config_.buffer_size : B::default_size;
    unsigned count = config_.buffer_count ? config_.buffer_count : B::default_count;
    if (const char* why = buffer_geometry_error(size, count))
        throw std::system_error(std::make_error_code(std::errc::invalid_argument), why);

    uring::ring_options options;
    options.entries = config_.ring_entries;
    // The CQ holds at least one full batch, so a full batch is a sign that
    // more completions wait, and the loop skips the sleep.
    options.cq_entries = config_.cq_entries ? config_.cq_entries : std::max(2 * config_.ring_entries, config_.completion_batch);
    options.min_wait = config_.min_wait;  // 6.12, see server_config::min_wait
    S::configure(options);
    ring_.emplace(options);
    ring_flags_ = ring_->setup_flags();
    {
        // Multishot receive (6.0) has no fallback in the reactor; the kernel
        // added SEND_ZC in the same release, so its opcode tells.
        if (!ring_->supports_opcode(IORING_OP_SEND_ZC))
            throw std::system_error(std::make_error_code(std::errc::function_not_supported),
                                    "zerg::basic_reactor needs Linux 6.0 or newer (multishot receive with provided "
                                    "buffers); bin/uring-info shows what this kernel has");
        ring_socket_ = ring_->supports_opcode(IORING_OP_SOCKET) && !uring::is_hidden(uring::feature::ring_socket);
    }
    for (auto const& fb : ring_->fallbacks())
        fallbacks_.push_back(std::string(uring::to_string(fb.what)) + ": " + fb.reason);
    struct report_fallbacks {  // whatever setup() found, once it is done (or fails)
        basic_reactor* r;
        ~report_fallbacks() {
            for (auto const& fb : r->fallbacks_) r->report(error_report::kind::fallback, {}, fb, nullptr);
        }
    } at_exit{this};

    buffers_.setup(*ring_, size, count, 0);
    pool_.bind_buffers(&hold_buffer, &release_buffer, &buffers_low, this);  // connection::write_from
    // Bundle receives (6.10): one CQE fills several consecutive buffers.
    if (!config_.receive_bundles) {
        // Off by configuration: not a fallback; bundles() says false.
    } else if (!buffers_.can_bundle())
        fallbacks_.push_back(uring::is_hidden(uring::feature::incremental_bundle)
                                 ? "recv_bundle: bundles into incremental buffers hidden by zerg::uring::hide (test hook or "
                                   "ZERG_URING_HIDE=incremental_bundle): one buffer slice per receive completion"
                                 : "recv_bundle: incremental buffers are in effect and the kernel bundles them only from "
                                   "Linux 6.15 (no feature bit says so; the release decides): one buffer slice per "
                                   "receive completion");
    else if (uring::is_hidden(uring::feature::recv_bundle))
        fallbacks_.push_back("recv_bundle: hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE): one buffer per "
                             "receive completion");
    else if (!ring_->has_kernel_feature(IORING_FEAT_RECVSEND_BUNDLE))
        fallbacks_.push_back("recv_bundle: the kernel lacks IORING_RECVSEND_BUNDLE (needs Linux 6.10): one buffer per "
                             "receive completion");
    else
        bundles_ = true;
    if (auto why = detail::zero_copy_unavailable(config_.zero_copy_threshold); !why.empty())
        fallbacks_.push_back("send_zc: " + why);
    else
        zero_copy_ = true;
    if (auto fb = buffers_.fallback(); !fb.empty()) fallbacks_.push_back("buffers: " + fb);
    // Direct descriptors (5.19): the reuse_port listener accepts into a
    // registered file table of this ring, or the acceptor's MSG_RING
    // installs into it (detail/direct_table.hpp).
    if (auto fb = direct_.open(*ring_, config_.direct_descriptors,
                               config_.reuse_port ? std::string() : detail::direct_handoff_unavailable<Q>(),
                               config_.max_connections);
        !fb.empty())
        fallbacks_.push_back(fb);
    direct_active_ = direct_.active();
    direct_shutdown_first_ = direct_.delays_release();
    if (auto why = direct_.zero_copy_blocked(); zero_copy_ && !why.empty()) {
        zero_copy_ = false;
        fallbacks_.push_back("send_zc: " + why);
    }

    frame_pool::current() = &frames_;  // coroutine frames of this thread's connections
    if (config_.max_connections == 0)
        throw std::system_error(std::make_error_code(std::errc::invalid_argument), "zerg: max_connections must be positive");
    generations_.emplace(config_.max_connections);
    access_.reactor = this;
    access_.index = index_;
    access_.generation = [](void* r, std::uint32_t slot) noexcept {
        return static_cast<basic_reactor*>(r)->generations_->generation(slot);
    };
    access_.find = [](void* r, connection_handle h) noexcept { return static_cast<basic_reactor*>(r)->find(h); };
    access_.connect = [](void* r, const endpoint& to, std::error_code& ec) { return static_cast<basic_reactor*>(r)->connect(to, ec); };
    connect_timeout_ = uring::to_timespec(config_.connect_timeout);
    if (!ring_socket_) fallbacks_.push_back("outbound: IORING_OP_SOCKET (5.19) not available; connect() makes its socket with socket(2)");
    chunks_.reserve((config_.max_connections + chunk_slots - 1) / chunk_slots);
    grow_table();

    inbox_.setup(*ring_, {reactor_tag(op_wake).raw(), reactor_tag(op_handoff).raw(), index_,
                          reactor_tag(op_handoff_direct).raw()});
    if (auto fb = inbox_.fallback(); !fb.empty()) fallbacks_.push_back("handoff: " + fb);

    if (config_.reuse_port) {
        endpoint bound;
        listener_ = open_listener(endpoint::parse(config_.address, config_.port, config_.dual_stack), config_.dual_stack,
                                  config_.backlog, true, &bound);
        listener_port_ = bound.port();
        accept_ = detail::multishot_accept(listener_,
                                           {reactor_tag(op_accept), reactor_tag(op_accept_retry), reactor_tag(op_cancel)},
                                           &listener_stats_, direct_active_);
        accept_.arm(*ring_);
    }
    ring_->submit();
    accepting_posts_.store(true, std::memory_order_release);
}

// ---- the loop -------------------------------------------------------------

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::run() {
    try {
        loop();
    } catch (...) {
        fail(std::current_exception());
        throw;
    }
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::fail(std::exception_ptr why) noexcept {
    failed_.store(true, std::memory_order_release);
    std::error_code code = make_error_code(error::reactor_failed);
    std::string what = describe(why, &code);
    report(error_report::kind::reactor_failure, code, "reactor " + std::to_string(index_) + " stopped: " + what, nullptr);
    // Without a working ring nothing can be closed gracefully: every socket
    // goes now, so peers see a reset or EOF instead of a hang. The handler
    // still hears of each connection it was told of (on_close with
    // reactor_failed), so what it keeps per connection (a proxy's pairing, a
    // session registry) is let go as after any other close. Nothing it does
    // there can reach the dead ring: writes and closes only mark the
    // connection, and the loop that would act on them is gone.
    for (auto& c : live_) {
        if (c.life_.is_open() || c.life_.now == phase::read_shut || c.life_.now == phase::draining) {
            if (!c.reason_) c.reason_ = code;
            if constexpr (handler_has_on_close<H>) {
                try {
                    handler_.on_close(c, c.reason_);
                } catch (...) {  // nothing is left to contain it in; the failure is reported already
                }
            }
        }
        if (c.fd_ >= 0) {
            // A direct socket leaves the table now, as a plain fd leaves the
            // fd table (requests still in the kernel keep their reference).
            if (c.direct_)
                direct_.release(static_cast<unsigned>(c.fd_));
            else
                ::close(c.fd_);
            c.fd_ = -1;
        }
    }
    // Requests still in the kernel (a connection's armed receive) hold a
    // reference to their socket, so neither close(2) nor emptying its slot
    // ends it while they run. Best effort on a ring that may be broken:
    // cancel them all, then enter once more so their completions' task work
    // (deferred with DEFER_TASKRUN) runs and the references go.
    if (ring_) {
        std::error_code ec;
        if (io_uring_sqe* s = ring_->get_sqe(ec)) {
            uring::prep_cancel_all(s);
            uring::set_user_data(s, reactor_tag(op_cancel));
            ring_->submit_and_get_events();
            ring_->flush_completions();
        }
    }
    for (int fd : waiting_) drop_accepted(fd);
    waiting_.clear();
    direct_.abandon();  // what else it holds goes with the ring
    inbox_.drain([](int fd) { ::close(fd); });
    accepting_posts_.store(false, std::memory_order_release);
    posted_.discard();
    if (listener_ >= 0) {
        ::close(listener_);
        listener_ = -1;
    }
    counters_.open_connections.set(0);
}

// The what() of an exception; `code` gets its error code when it has one.
template <class B, class Q, class S, class H>
std::string basic_reactor<B, Q, S, H>::describe(std::exception_ptr e, std::error_code* code) noexcept {
    try {
        try {
            std::rethrow_exception(e);
        } catch (const std::system_error& x) {
            if (code) *code = x.code();
            return x.what();
        } catch (const std::exception& x) {
            return x.what();
        } catch (...) {
            return "an exception not derived from std::exception";
        }
    } catch (...) {
        return {};  // copying the message failed: nothing better to say
    }
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::report(error_report::kind what, std::error_code code, std::string message,
                                       const connection_type* c) noexcept {
    if (!config_.on_error) return;
    try {
        error_report r{what, static_cast<int>(index_), {}, code, std::move(message)};
        if (c && c->fd_ >= 0 && !c->direct_) {  // a direct descriptor has no fd to ask
            endpoint peer;
            peer.length = sizeof peer.storage;
            if (::getpeername(c->fd_, reinterpret_cast<sockaddr*>(&peer.storage), &peer.length) == 0)
                r.peer = peer.to_string();
        }
        config_.on_error(r);
    } catch (...) {
        // The hook's own failure must not take the reactor down.
    }
}

// Runs one handler callback for `c`. An exception closes that connection
// alone (zerg::error::handler_exception, or out_of_memory for bad_alloc),
// is counted and reported; the reactor goes on. False when it threw.
template <class B, class Q, class S, class H>
template <class Call>
bool basic_reactor<B, Q, S, H>::guarded(connection_type& c, Call&& call) noexcept {
    // Nothing is built before the call (no message string per callback):
    // the failure path alone pays for its report.
    try {
        call();
        return true;
    } catch (const std::bad_alloc&) {
        handler_failed(c, make_error_code(error::out_of_memory), "std::bad_alloc");
    } catch (const std::exception& e) {
        handler_failed(c, make_error_code(error::handler_exception), e.what());
    } catch (...) {
        handler_failed(c, make_error_code(error::handler_exception), "an exception not derived from std::exception");
    }
    return false;
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::handler_failed(connection_type& c, std::error_code code, const char* message) noexcept {
    counters_.handler_exceptions.add();
    std::string text;
    try {
        text = message;
    } catch (...) {  // no memory for the message: reported without it
    }
    report(error_report::kind::handler_exception, code, std::move(text), &c);
    if (!c.life_.torn_down()) abort(c, code);
}

template <class B, class Q, class S, class H>
bool basic_reactor<B, Q, S, H>::grow_table() {
    if (slots_ >= config_.max_connections) return false;
    std::uint32_t n = std::min<std::uint32_t>(chunk_slots, config_.max_connections - slots_);
    // Always a whole chunk, so slot_at's mask stays valid; only `n` are used.
    chunks_.push_back(std::make_unique<connection_type[]>(chunk_slots));
    connection_type* chunk = chunks_.back().get();
    for (std::uint32_t i = 0; i < n; ++i) {
        connection_type& c = chunk[i];
        c.slot_ = slots_ + i;
        c.work_ = &work_;
        c.pool_ = &pool_;
        c.input_.bind(&release_buffer, this);
        c.access_ = &access_;
        free_.push_back(c);
    }
    slots_ += n;
    return true;
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::loop() {
    auto on_fd = [this](int fd) {
        counters_.handoffs.add();
        open(fd, false);
    };
    auto on_cqe = [this](const io_uring_cqe& cqe) { dispatch(cqe); };
    for (;;) {
        counters_.loop_iterations.add();
        now_ = std::chrono::steady_clock::now();  // the deadlines' clock and the iteration's start
        inbox_.drain(on_fd);
        run_posted();
        unsigned reaped = ring_->for_each_completion(on_cqe, config_.completion_batch);
        counters_.completions.add(reaped);
        if (deadlines_.enabled())
            deadlines_.expire(now_, [this](connection_type& c) { abort(c, std::make_error_code(std::errc::timed_out)); });
        run_work_list();
        buffers_.publish();
        feed_starved();
        counters_.buffers_in_use.set(buffers_.in_use());
        counters_.buffer_writes.set(pool_.held_total());
        if (finished()) break;
        auto end = std::chrono::steady_clock::now();
        counters_.loop_time.record(
            static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(end - now_).count()));
        wait(reaped, end);
    }
    accepting_posts_.store(false, std::memory_order_release);
    posted_.discard();  // posted after the last iteration: freed, not run
    ring_->submit();
    // Let go of the port and the kernel resources now, not when the reactor
    // object dies: after stop() nothing should still accept connections.
    for (int fd : waiting_) drop_accepted(fd);
    waiting_.clear();
    if (listener_ >= 0) {
        ::close(listener_);
        listener_ = -1;
    }
    direct_.reset();  // every connection closed: no request uses the table
    buffers_ = B{};
    ring_.reset();
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::run_work_list() {
    while (!work_.empty()) {
        connection_type& c = work_.front();
        work_.pop_front();
        do_work(c);
    }
}

// Connections that wanted to read while every buffer was out: once some
// came back (published this iteration), they arm again.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::feed_starved() {
    if (starved_.empty() || buffers_.in_use() >= buffers_.count()) return;
    typename connection_type::starved_list batch;
    batch.swap(starved_);
    while (!batch.empty()) {
        connection_type& c = batch.front();
        batch.pop_front();
        c.life_.move_to(read_state::wanted);
        do_work(c);
    }
    buffers_.publish();
}

// Stop requested: begin the graceful close; past its deadline, abort what
// is left. True once every connection is closed.
template <class B, class Q, class S, class H>
bool basic_reactor<B, Q, S, H>::finished() {
    if (!stopping_ && stop_requested_.load(std::memory_order_acquire)) begin_stop();
    if (!stopping_) return false;
    if (hurry_.load(std::memory_order_acquire) || std::chrono::steady_clock::now() >= stop_deadline_) {
        for (auto& c : live_)
            if (!c.life_.torn_down()) abort(c, std::make_error_code(std::errc::timed_out));
    }
    return live_.empty() && !accept_.armed();
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::wait(unsigned reaped, std::chrono::steady_clock::time_point end) {
    if (reaped == config_.completion_batch) {
        ring_->submit_and_get_events();  // more are ready: no sleep
        return;
    }
    // Announce the sleep, then look at the inbox and the stop flag once
    // more (see detail/eventfd_waker.hpp): a hand-over or a stop request
    // either is seen here or wakes us through the eventfd.
    if (!inbox_.prepare_to_sleep()) {
        ring_->submit_and_get_events();
        return;
    }
    if ((!stopping_ && stop_requested_.load(std::memory_order_seq_cst)) || !posted_.empty()) {
        inbox_.awake();
        ring_->submit_and_get_events();
        return;
    }
    int res;
    if (stopping_) {
        res = ring_->submit_and_wait_for(1, std::chrono::milliseconds(10));
    } else if (deadlines_.any_running()) {
        // Sleep no longer than the earliest deadline (at least 1 ms), nor than max_wait.
        std::chrono::nanoseconds left = deadlines_.next() - end;
        if (config_.max_wait.count()) left = std::min<std::chrono::nanoseconds>(left, config_.max_wait);
        res = ring_->submit_and_wait_batch(config_.min_wait_completions,
                                           std::max<std::chrono::nanoseconds>(left, std::chrono::milliseconds(1)));
    } else {
        // Without min_wait (or MIN_TIMEOUT) this waits for the first completion.
        res = ring_->submit_and_wait_batch(config_.min_wait_completions, config_.max_wait);
    }
    inbox_.awake();
    counters_.cq_overflows.set(ring_->cq_overflows());
    counters_.cq_resizes.set(ring_->cq_resizes());
    if (res < 0 && res != -ETIME && res != -EINTR && res != -EAGAIN && res != -EBUSY)
        uring::throw_result(res, "zerg::basic_reactor: io_uring_enter failed");
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::dispatch(const io_uring_cqe& cqe) {
    uring::user_data ud(cqe.user_data);
    switch (ud.kind()) {
        case op_wake:
            counters_.wakeups.add();
            inbox_.on_wake(*ring_);
            return;
        case op_handoff:
            counters_.handoffs.add();
            if (cqe.res >= 0) open(cqe.res, false);
            return;
        case op_handoff_direct:  // only ever posted when direct_active_ (the acceptor checks)
            counters_.handoffs.add();
            if (cqe.res >= 0) open(cqe.res, true);
            return;
        case op_accept:
            if (int e = accept_.on_accept(*ring_, cqe, stopping_, [this](int fd) { open(fd, accept_.direct()); }))
                report(error_report::kind::accept_backoff, std::error_code(e, std::system_category()),
                       "accept failed; retrying every 10 ms until it works", nullptr);
            return;
        case op_accept_retry:
            accept_.on_retry(*ring_, stopping_);
            return;
        case op_cancel:
            if (ud.slot() == no_slot) return;
            break;
        default:
            break;
    }
    if (!generations_->is_current(ud)) [[unlikely]] {  // is_current checks the slot's range too
        // A completion for a connection that is gone. Cannot happen while a
        // slot waits for its last CQE before reuse; counted, never delivered.
        counters_.stale_completions.add();
        if (uring::cqe_has_buffer(cqe)) {
            if (bundles_)
                buffers_.take_bundle(cqe, [this](received_bytes b, bool) { buffers_.release(b.buffer_id); });
            else
                buffers_.release(buffers_.take(cqe).buffer_id);
        }
        return;
    }
    connection_type& c = slot_at(ud.slot());
    switch (ud.kind()) {
        case op_recv:
            on_recv(c, cqe);
            break;
        case op_send:
            on_send(c, cqe);
            break;
        case op_socket:
            on_socket(c, cqe);
            break;
        case op_connect:
            on_connect(c, cqe);
            break;
        default:  // cancel, close, shutdown: only their arrival matters
            --c.pending_;
            finish_if_done(c);
            break;
    }
}

// ---- a connection's life ----------------------------------------------------

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::open(int fd, bool direct) {
    if (stopping_) {
        if (direct)
            direct_.release(static_cast<unsigned>(fd));
        else
            ::close(fd);
        counters_.rejected.add();
        return;
    }
    if (free_.empty() && !grow_table()) {
        if (!config_.reuse_port) {  // the acceptor never hands over past max_connections
            if (direct)
                direct_.release(static_cast<unsigned>(fd));
            else
                ::close(fd);
            counters_.rejected.add();
            return;
        }
        // Own listener, table full: the multishot accept took more of the
        // backlog than there is room for. These wait, they are not closed.
        waiting_.push_back(fd);
        return;
    }
    connection_type& c = free_.front();
    free_.pop_front();
    live_.push_back(c);
    c.fd_ = fd;
    c.direct_ = direct;
    c.pending_ = 0;
    c.recv_arms_ = 0;
    c.life_.move_to(phase::open);
    c.life_.move_to(read_state::wanted);
    c.reason_.clear();
    c.examined_ = 0;
    c.partial_ = c.completed_ = false;
    c.reader_ = c.flusher_ = {};
    c.state_ = typename connection_type::state_type{};
    counters_.accepted.add();
    counters_.busy_slots.add();
    // Own listener, table full: stop taking connections; they wait in the backlog.
    if (config_.reuse_port && table_full()) accept_.pause(*ring_);
    begin_serving(c);
}

// A connection is open (accepted, or connected by connect()): its idle
// deadline starts and the handler meets it.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::begin_serving(connection_type& c) {
    deadlines_.opened(c, now_);
    counters_.open_connections.add();
    c.mark_for_work();
    if constexpr (handler_has_on_open<H>)
        if (!guarded(c, [&] { handler_.on_open(c); })) return;
    if constexpr (coroutine_handler<H>) {
        if (!guarded(c, [&] { c.task_ = handler_.serve(c); })) return;
        after_task_step(c);
    }
}

// One buffer's bytes to the handler. A bundle completion delivers several in
// a row; `last` marks its final one (sequence and coroutine handlers are
// called once per completion, with every buffer of it in their input).
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::deliver(connection_type& c, received_bytes bytes, bool last) {
    if (c.lingering_) {  // lingering_close(): read only to drop
        buffers_.release(bytes.buffer_id);
        return;
    }
    if constexpr (span_handler<H>) {
        bool ok = guarded(c, [&] { handler_.on_data(c, std::span<const std::byte>(bytes.data, bytes.size)); });
        buffers_.release(bytes.buffer_id);
        if (!ok) return;
        deadlines_.input(c, c.partial_, std::exchange(c.completed_, false), now_);
    } else if constexpr (ring_item_handler<H>) {
        // A handler that throws has not released the item (it would have
        // no reason to throw after): the buffer goes back here.
        if (!guarded(c, [&] { handler_.on_ring_item(c, ring_item{bytes.data, bytes.size, bytes.buffer_id}); })) {
            buffers_.release(bytes.buffer_id);
            return;
        }
        deadlines_.input(c, c.partial_, std::exchange(c.completed_, false), now_);
    } else {
        if (!last) {
            guarded(c, [&] {
                if (c.input_.full()) c.input_.spill();  // may allocate
                c.input_.push(bytes.data, bytes.size, bytes.buffer_id);
            });
            return;
        }
        std::size_t before = 0;
        bool ok = guarded(c, [&] {
            if (c.input_.full()) c.input_.spill();  // may allocate
            c.input_.push(bytes.data, bytes.size, bytes.buffer_id);
            before = c.input_.size();
            if constexpr (sequence_handler<H>) handler_.on_data(c, c.input_);
        });
        if (!ok) return;
        if (c.lingering_) {  // what is left of the input is never looked at
            c.input_.clear();
            c.examined_ = 0;
            return;
        }
        if constexpr (coroutine_handler<H>)
            if (c.reader_ && c.input_.size() > c.examined_) resume(c, c.reader_);
        if (c.life_.torn_down()) return;
        if (input_over(c)) {
            // A handler waiting for more while holding this much is waiting
            // for a message larger than the limit; one that is busy (a
            // coroutine awaiting flush) gets backpressure instead (do_work).
            bool waiting_for_more = sequence_handler<H> || c.reader_;
            if (waiting_for_more) {
                abort(c, make_error_code(error::input_limit));
                return;
            }
            c.mark_for_work();
        }
        // Bytes left for later: off the ring when it runs low (a quarter
        // left), so a slow parser never starves other connections.
        if (!c.input_.empty() && c.input_.ring_segments() && buffers_low(this))
            guarded(c, [&] { c.input_.spill(); });
        if (c.life_.torn_down()) return;
        // A message was completed: what is left is a new partial one, whose
        // read deadline starts now.
        deadlines_.input(c, !c.input_.empty(), c.input_.size() < before, now_);
    }
}

// Resumes a coroutine that waits on `waiting` (read or flush).
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::resume(connection_type& c, std::coroutine_handle<>& waiting) {
    auto h = std::exchange(waiting, {});
    h.resume();
    after_task_step(c);
    if (!c.lingering_) deadlines_.input(c, !c.input_.empty(), false, now_);
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::after_task_step(connection_type& c) {
    if (!c.task_.done()) return;
    // The coroutine returned (or threw): the connection has served its purpose.
    if (auto failure = c.task_.failure(); failure && !c.reason_) {
        c.reason_ = make_error_code(error::handler_exception);
        counters_.handler_exceptions.add();
        report(error_report::kind::handler_exception, c.reason_, describe(failure), &c);
    }
    if (c.life_.closable() && c.life_.now != phase::draining && !c.lingering_) {
        c.life_.move_to(phase::draining);
        c.mark_for_work();
    }
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::on_recv(connection_type& c, const io_uring_cqe& cqe) {
    if (uring::cqe_has_buffer(cqe)) {
        bool live = cqe.res > 0 && c.life_.is_open();
        if (live) {
            counters_.bytes_in.add(static_cast<std::uint64_t>(cqe.res));
            if (!c.lingering_) deadlines_.activity(c, now_);  // dropped bytes never extend a lingering close
        }
        if (bundles_) {
            // Buffers after one the handler closed on are dropped, as later
            // completions would be.
            unsigned n = buffers_.take_bundle(cqe, [&](received_bytes bytes, bool last) {
                if (live && c.life_.is_open())
                    deliver(c, bytes, last);
                else
                    buffers_.release(bytes.buffer_id);
            });
            if (n > 1) counters_.bundle_completions.add();
        } else {
            received_bytes bytes = buffers_.take(cqe);
            if (live)
                deliver(c, bytes);
            else
                buffers_.release(bytes.buffer_id);
        }
    }
    if (uring::cqe_has_more(cqe)) return;

    // The receive ended.
    --c.pending_;
    if (c.life_.read == read_state::stopped) {
        // Torn down meanwhile: its cancel ended it.
    } else if (cqe.res == 0) {
        // The peer sent FIN: answer what is queued, then close. A coroutine
        // still has the bytes it did not read yet and may answer them: it
        // runs on (read() now says closed) and its return drains.
        c.life_.move_to(read_state::stopped);
        if (c.life_.is_open()) {
            if ((coroutine_handler<H> || handler_has_on_peer_shutdown<H>) && c.life_.now == phase::open) {
                c.life_.move_to(phase::read_shut);
                if constexpr (coroutine_handler<H>)
                    if (c.reader_) resume(c, c.reader_);
                if constexpr (handler_has_on_peer_shutdown<H>) guarded(c, [&] { handler_.on_peer_shutdown(c); });
            } else {
                c.life_.move_to(phase::draining);
            }
            c.mark_for_work();
        }
    } else if (cqe.res < 0 && cqe.res != -ENOBUFS && cqe.res != -ECANCELED) {
        abort(c, uring::result_error(cqe.res));
    } else {
        // ENOBUFS (buffers come back at the end of this iteration), a cancel
        // for backpressure, or the kernel ended the multishot: read again,
        // unless paused meanwhile.
        if (cqe.res == -ENOBUFS) counters_.enobufs.add();
        c.life_.move_to(c.life_.read == read_state::cancelling ? read_state::paused : read_state::wanted);
        c.mark_for_work();
    }
    finish_if_done(c);
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::on_send(connection_type& c, const io_uring_cqe& cqe) {
    int res = cqe.res;
    bool notified = uring::cqe_is_notification(cqe);
    if (notified) {
        // A zero-copy send's last CQE: the kernel is done with the memory.
        counters_.zc_sends.add();
        if (static_cast<unsigned>(cqe.res) & IORING_NOTIF_USAGE_ZC_COPIED) {
            counters_.zc_copied.add();
            c.send_.decline_zc();  // copied anyway: this connection copies from now on
        }
        res = c.send_.zc_result();
    } else if (uring::cqe_has_more(cqe)) {
        // A zero-copy send's result; the notification follows (for a slow
        // reader, once its window took the bytes). They left: counted now.
        c.send_.keep_zc_result(res);
        if (res > 0) counters_.bytes_out.add(static_cast<std::uint64_t>(res));
        return;
    }
    --c.pending_;
    connection_type& source = source_of(c);  // c itself unless it relays (throttle())
    bool paused = source.life_.read == read_state::paused || source.life_.read == read_state::cancelling;
    detail::send_outcome sent = c.send_.complete(res, pool_, paused, config_.max_write_queue,
                                                 [this](std::uint16_t id) noexcept { buffers_.release(id); });
    if (c.life_.torn_down()) {  // aborted meanwhile: nothing more to send or time
        finish_if_done(c);
        return;
    }
    if (sent.failed) {
        abort(c, uring::result_error(res));  // EPIPE, ECONNRESET: the peer is gone
    } else {
        if (!notified) counters_.bytes_out.add(static_cast<std::uint64_t>(res));
        if (sent.resume_reading && !input_over(source)) {
            resume_reading(source);
            source.mark_for_work();
        }
        deadlines_.output(c, !c.send_.empty(), sent.progressed, now_);
        // All sent, open and reading: do_work would find nothing to do (no
        // send, no pause or resume, no drain or shutdown, receive armed).
        if (!sent.drained || c.life_.now != phase::open || c.life_.read != read_state::armed || coroutine_handler<H> ||
            input_over(c))
            c.mark_for_work();
        if constexpr (coroutine_handler<H>)
            if (c.flusher_ && sent.drained) resume(c, c.flusher_);
    }
    finish_if_done(c);
}

// What a connection in the work list needs when do_work's common case does
// not apply: a send started, reading paused or (re)armed, a SHUT_WR, or its
// teardown once flushed.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::do_other_work(connection_type& c) {
    if (c.life_.torn_down()) return;
    if (c.connecting_) {  // writes wait for the connect; a close() now ends it
        if (c.life_.now == phase::draining)
            end_connect(c, std::make_error_code(std::errc::operation_canceled));
        else if (c.send_.over(config_.max_write_queue))
            pause_reading(source_of(c));
        return;
    }
    if (c.send_.ready()) start_send(c);
    deadlines_.output(c, !c.send_.empty(), false, now_);
    if (c.send_.over(config_.max_write_queue) || input_over(c)) {
        pause_reading(input_over(c) ? c : source_of(c));
    } else if constexpr (keeps_input) {
        // Paused for input (a busy coroutine held too much): read again
        // once it consumed down to half, unless output holds it back.
        if ((c.life_.read == read_state::paused || c.life_.read == read_state::cancelling) &&
            c.input_.size() <= config_.max_input / 2 && c.send_.size() <= config_.max_write_queue / 2)
            resume_reading(c);
    }
    bool flushed = !c.send_.in_flight() && c.send_.empty();
    if (c.life_.now == phase::draining) {
        if (flushed) begin_teardown(c);
        return;
    }
    if (c.lingering_) {
        // The handler's input is dropped (a coroutine that awaits read()
        // gets closed), and the read deadline bounds the lingering: it
        // starts once, here, and nothing restarts it.
        if constexpr (keeps_input) {
            c.input_.clear();
            c.examined_ = 0;
            if constexpr (coroutine_handler<H>)
                if (c.reader_) resume(c, c.reader_);
        }
        deadlines_.input(c, true, false, now_);  // starts it unless it runs already
    }
    want_to_read(c);
    if (c.life_.now == phase::half_closing && flushed) {
        submit(c, op_shutdown, [&](io_uring_sqe* s) { uring::prep_shutdown(s, c.fd_, SHUT_WR); });
        c.life_.move_to(phase::write_shut);
    }
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::start_send(connection_type& c) {
    submit(c, op_send, [&](io_uring_sqe* s) {
        if (c.send_.prepare_send(s, c.fd_, zero_copy_, config_.zero_copy_threshold) ==
            detail::send_path::send_kind::copied_above_threshold)
            counters_.zc_unavailable.add();
    });
}

// Arms a receive if the connection wants one and a buffer can take it.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::want_to_read(connection_type& c) {
    read_state r = c.life_.read;
    if (r != read_state::wanted && r != read_state::starved) return;
    if (buffers_.in_use() < buffers_.count()) {
        if (r == read_state::starved) starved_.erase(starved_.iterator_to(c));
        arm_recv(c);
    } else if (r == read_state::wanted) {
        // Every buffer is held by handlers: arming now would only earn an
        // ENOBUFS at once, again and again. Wait for one to come back.
        c.life_.move_to(read_state::starved);
        starved_.push_back(c);
    }
}

// Backpressure: stop reading until the peer takes its answers.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::pause_reading(connection_type& c) {
    switch (c.life_.read) {
        case read_state::armed:
            submit(c, op_cancel, [&](io_uring_sqe* s) { uring::prep_cancel(s, generations_->tag(op_recv, c.slot_)); });
            c.life_.move_to(read_state::cancelling);
            break;
        case read_state::starved:
            starved_.erase(starved_.iterator_to(c));
            c.life_.move_to(read_state::paused);
            break;
        case read_state::wanted:
            c.life_.move_to(read_state::paused);
            break;
        default:  // already paused, or no longer reading
            return;
    }
    counters_.read_pauses.add();
}

// The send queue drained to half its limit: read again.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::resume_reading(connection_type& c) {
    if (c.life_.read == read_state::paused)
        c.life_.move_to(read_state::wanted);
    else if (c.life_.read == read_state::cancelling)
        c.life_.move_to(read_state::armed);  // the cancelled receive ends, then arms again
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::arm_recv(connection_type& c) {
    submit(c, op_recv, [&](io_uring_sqe* s) {
        if (bundles_)
            uring::prep_recv_bundle(s, c.fd_, buffers_.group(), true);
        else
            uring::prep_recv_multishot(s, c.fd_, buffers_.group());
    });
    c.life_.move_to(read_state::armed);
    if (c.recv_arms_++) counters_.recv_rearms.add();
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::abort(connection_type& c, std::error_code why) {
    if (!c.reason_) c.reason_ = why;
    c.send_.discard(pool_);
    begin_teardown(c);
}

// The handler lets go (on_close), every request on the socket is
// cancelled, and the close follows once they all reported back.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::begin_teardown(connection_type& c) {
    if (c.life_.torn_down()) return;
    if (c.connecting_) return end_connect(c, std::make_error_code(std::errc::operation_canceled));
    if (connection_type& source = source_of(c); &source != &c) {  // a relay's source reads again
        resume_reading(source);
        source.mark_for_work();
    }
    bool in_kernel = c.life_.recv_in_kernel() || c.send_.in_flight();
    if (c.life_.read == read_state::starved) starved_.erase(starved_.iterator_to(c));
    c.life_.move_to(phase::tearing_down);
    c.life_.move_to(read_state::stopped);
    counters_.open_connections.sub();
    count_close_reason(c.reason_);
    if constexpr (coroutine_handler<H>) {
        // Cancellation: whatever the coroutine awaits completes as closed.
        if (c.reader_) resume(c, c.reader_);
        if (c.flusher_) resume(c, c.flusher_);
    }
    if constexpr (handler_has_on_close<H>) guarded(c, [&] { handler_.on_close(c, c.reason_); });
    if constexpr (keeps_input) c.input_.clear();  // every held buffer goes back
    deadlines_.forget(c);
    // One SQE cancels every request on the socket (a direct one by its slot, 6.0).
    if (in_kernel)
        submit(c, op_cancel, [&](io_uring_sqe* s) {
            uring::prep_cancel_fd(s, c.fd_, c.direct_ ? IORING_ASYNC_CANCEL_FD_FIXED : 0u);
        });
    finish_if_done(c);
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::finish_teardown(connection_type& c) {
    // A zero-copy notification still due does not hold the close back: the
    // socket keeps the pages until its peer acknowledges them, which a peer
    // that stopped reading never does. The close, with SO_LINGER 0 (a
    // reset, which drops the queued bytes), lets the notification come.
    bool notification_due = c.send_.awaiting_notification();
    if (c.life_.now == phase::tearing_down && notification_due && c.pending_ == 1) {
        static constexpr linger drop{1, 0};
        if (c.direct_) {
            // No fd for setsockopt(2): the socket command (6.7; zero-copy
            // is off with direct descriptors where it is missing, see
            // detail/direct_table.hpp), hard-linked so the close runs
            // whatever it returns. One submission holds the pair.
            if (ring_->sq_space_left() < 2) ring_->submit();
            submit(c, op_setsockopt, [&](io_uring_sqe* s) {
                uring::prep_setsockopt(s, c.fd_, SOL_SOCKET, SO_LINGER, &drop, sizeof drop);
                uring::add_flags(s, IOSQE_IO_HARDLINK);
            });
        } else {
            ::setsockopt(c.fd_, SOL_SOCKET, SO_LINGER, &drop, sizeof drop);
        }
        submit_close_only(c);  // a reset: no shutdown's FIN first
        c.life_.move_to(phase::closing);
        return;
    }
    if (c.pending_ != 0) return;
    if (c.life_.now == phase::tearing_down) {
        if (c.fd_ < 0) {  // an outbound connection whose socket never came
            c.life_.move_to(phase::closing);
            release_slot(c);
            return;
        }
        // Every operation on the socket has reported back; close it.
        submit_close(c);
        c.life_.move_to(phase::closing);
    } else if (c.life_.now == phase::closing) {
        release_slot(c);
    }
}

// The last CQE of this connection is in: the slot may be reused, with a new
// generation so nothing addressed to this connection reaches the next.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::release_slot(connection_type& c) {
    c.send_.reset(pool_);
    c.task_.reset();
    c.input_.release_memory();  // a large spill is not kept for the slot's next connection
    deadlines_.forget(c);
    c.fd_ = -1;
    c.direct_ = false;
    c.outbound_ = c.connecting_ = c.connect_in_kernel_ = c.lingering_ = false;
    c.throttle_ = {};
    generations_->retire(c.slot_);
    if (c.in_work_list()) work_.erase(work_.iterator_to(c));
    live_.erase(live_.iterator_to(c));
    c.life_.move_to(phase::free);
    free_.push_back(c);
    counters_.busy_slots.sub();
    counters_.closed.add();
    if (stopping_) return;
    if (!waiting_.empty()) {
        int fd = waiting_.front();
        waiting_.erase(waiting_.begin());
        open(fd, direct_active_);
    } else {
        accept_.resume(*ring_);  // own listener, paused while the table was full
    }
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::begin_stop() {
    stopping_ = true;
    stop_deadline_ = std::chrono::steady_clock::now() + config_.stop_deadline;
    accept_.cancel(*ring_);
    for (auto& c : live_) {
        if (c.life_.closable() && c.life_.now != phase::draining) {
            c.life_.move_to(phase::draining);
            c.mark_for_work();
        }
    }
    run_work_list();
}

}  // namespace zerg

#include <zerg/impl/reactor_outbound.hpp>
