// zerg::basic_reactor<Buffer, Queue, Submission, Handler>: one thread, one
// ring, one provided-buffer ring, one connection table.
//
// The four policies are chosen at compile time (see policy/*.hpp); the
// reactor inherits nothing virtual and calls the handler directly, so each
// instantiation compiles to one inlined loop:
//
//   1. take connections handed over by the acceptor (Queue policy);
//   2. reap up to completion_batch CQEs and dispatch each with one switch on
//      the operation kind in its user_data;
//   3. for every connection touched: start sends, re-arm receives, pause or
//      resume reading, finish closes; return buffers to the kernel (one
//      publish for the whole iteration);
//   4. one io_uring_enter that submits everything and waits for the next
//      completion (or only collects, when the batch limit was hit).
//
// Thread-safety: hand_over() and request_stop() may be called from any
// thread; counters() may be read from any thread; everything else belongs to
// the reactor thread.
#pragma once

#include <zerg/address.hpp>
#include <zerg/buffer_sequence.hpp>
#include <zerg/config.hpp>
#include <zerg/connection.hpp>
#include <zerg/counters.hpp>
#include <zerg/handler.hpp>
#include <zerg/policy/buffer.hpp>
#include <zerg/policy/handoff.hpp>
#include <zerg/policy/submission.hpp>
#include <zerg/task.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/user_data.hpp>

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
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

    basic_reactor(unsigned index, const server_config& config, const Handler& prototype)
        : index_(index), config_(config), handler_(prototype) {}
    basic_reactor(const basic_reactor&) = delete;
    basic_reactor& operator=(const basic_reactor&) = delete;
    ~basic_reactor() {
        if (listener_ >= 0) ::close(listener_);
    }

    // Reactor thread: makes the ring, buffers and table. Throws on failure.
    // With SINGLE_ISSUER the ring belongs to the thread that makes it, so
    // this must run on the thread that then calls run().
    void setup();
    // Reactor thread: the loop, until request_stop() and every connection is closed.
    void run();

    // Any thread: give this reactor an accepted socket. `producer` is the
    // caller's own ring, if it has one (msg_ring_handoff posts from it and
    // the caller must submit it). False when the inbox is full.
    bool hand_over(int fd, uring::ring* producer = nullptr) noexcept { return inbox_.push(fd, producer); }
    // Any thread.
    void request_stop() noexcept {
        stop_requested_.store(true, std::memory_order_release);
        inbox_.push(-1, nullptr);  // a sentinel, only to wake the reactor
    }

    unsigned index() const noexcept { return index_; }
    const reactor_counters& counters() const noexcept { return counters_; }
    // After setup(): every feature that fell back, with the reason.
    const std::vector<std::string>& fallbacks() const noexcept { return fallbacks_; }
    // After setup(): the ring's setup flags, for reports.
    unsigned ring_flags() const noexcept { return ring_flags_; }
    // After setup(): the port of this reactor's own listener (reuse_port mode).
    std::uint16_t listener_port() const noexcept { return listener_port_; }
    void use_listener_port(std::uint16_t port) noexcept { config_.port = port; }

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
    };
    static constexpr std::uint32_t no_slot = 0xffffffffu;

    uring::user_data tag(op kind, std::uint32_t slot) const noexcept { return generations_->tag(kind, slot); }
    uring::user_data reactor_tag(op kind) const noexcept { return {kind, no_slot, 0}; }

    io_uring_sqe* sqe() { return ring_->get_sqe(); }

    void open(int fd);
    void dispatch(const io_uring_cqe& cqe);
    void on_recv(connection_type& c, const io_uring_cqe& cqe);
    void on_send(connection_type& c, const io_uring_cqe& cqe);
    void on_accept(const io_uring_cqe& cqe);
    void do_work(connection_type& c);
    void arm_recv(connection_type& c);
    void submit_send(connection_type& c);
    void abort(connection_type& c, std::error_code why);
    void begin_teardown(connection_type& c);
    void finish_if_done(connection_type& c);
    void arm_accept();
    void begin_stop();
    void wait();
    void deliver(connection_type& c, received_bytes bytes);
    void after_task_step(connection_type& c);
    void resume(connection_type& c, std::coroutine_handle<>& waiting);
    void track_input(connection_type& c);
    void track_output(connection_type& c, bool progressed);
    void expire_timeouts();
    bool timeouts_enabled() const noexcept {
        return config_.idle_timeout.count() || config_.read_timeout.count() || config_.write_timeout.count();
    }
    std::chrono::steady_clock::time_point next_deadline() const noexcept;
    static void release_buffer(void* self, std::uint16_t id) noexcept { static_cast<basic_reactor*>(self)->buffers_.release(id); }
    // Received bytes kept across callbacks (sequence and coroutine handlers).
    static constexpr bool keeps_input = sequence_handler<Handler> || coroutine_handler<Handler>;

    unsigned index_;
    server_config config_;
    Handler handler_;
    std::optional<uring::ring> ring_;
    Buffer buffers_;
    Queue inbox_;
    std::optional<uring::slot_generations> generations_;
    // Before the table: connections' coroutine frames and write chunks go
    // back to these pools when the table is destroyed.
    frame_pool frames_;
    detail::chunk_pool pool_;
    std::unique_ptr<connection_type[]> table_;
    typename connection_type::table_list free_;
    typename connection_type::table_list live_;
    typename connection_type::work_list work_;
    typename connection_type::idle_list idle_;
    typename connection_type::read_list reading_;
    typename connection_type::write_list writing_;
    std::chrono::steady_clock::time_point now_{};
    reactor_counters counters_;
    std::vector<std::string> fallbacks_;
    unsigned ring_flags_ = 0;
    int listener_ = -1;
    std::uint16_t listener_port_ = 0;
    bool accept_armed_ = false;
    bool accept_paused_ = false;
    std::vector<int> waiting_;               // accepted while the table was full (reuse_port)
    std::vector<connection_type*> starved_;  // want to read while every buffer is out
    bool stopping_ = false;
    std::chrono::steady_clock::time_point stop_deadline_{};
    std::atomic<bool> stop_requested_{false};
    __kernel_timespec accept_backoff_{0, 10'000'000};
};

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

    uring::ring_options options;
    options.entries = config_.ring_entries;
    // The CQ holds at least one full batch, so a full batch is a sign that
    // more completions wait, and the loop skips the sleep.
    options.cq_entries = config_.cq_entries ? config_.cq_entries : std::max(2 * config_.ring_entries, config_.completion_batch);
    S::configure(options);
    ring_.emplace(options);
    ring_flags_ = ring_->setup_flags();
    {
        // Multishot receive (6.0) has no fallback in the reactor; the kernel
        // added SEND_ZC in the same release, so its opcode tells.
        io_uring_probe* probe = io_uring_get_probe_ring(ring_->native());
        bool recent = probe && io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);
        if (probe) io_uring_free_probe(probe);
        if (!recent)
            throw std::system_error(std::make_error_code(std::errc::function_not_supported),
                                    "zerg::basic_reactor needs Linux 6.0 or newer (multishot receive with provided "
                                    "buffers); bin/uring-info shows what this kernel has");
    }
    for (auto const& fb : ring_->fallbacks())
        fallbacks_.push_back(std::string(uring::to_string(fb.what)) + ": " + fb.reason);

    unsigned size = config_.buffer_size ? config_.buffer_size : B::default_size;
    unsigned count = config_.buffer_count ? config_.buffer_count : B::default_count;
    buffers_.setup(*ring_, size, count, 0);
    if (auto fb = buffers_.fallback(); !fb.empty()) fallbacks_.push_back("buffers: " + fb);

    frame_pool::current() = &frames_;  // coroutine frames of this thread's connections
    unsigned slots = config_.max_connections;
    generations_.emplace(slots);
    starved_.reserve(slots);
    table_ = std::make_unique<connection_type[]>(slots);
    for (std::uint32_t i = 0; i < slots; ++i) {
        connection_type& c = table_[i];
        c.slot_ = i;
        c.work_ = &work_;
        c.pool_ = &pool_;
        c.input_.bind(&release_buffer, this);
        c.input_release_ = &release_buffer;
        c.input_context_ = this;
        free_.push_back(c);
    }

    inbox_.setup(*ring_, {reactor_tag(op_wake).raw(), reactor_tag(op_handoff).raw(), index_});
    if (auto fb = inbox_.fallback(); !fb.empty()) fallbacks_.push_back("handoff: " + fb);

    if (config_.reuse_port) {
        endpoint bound;
        listener_ = open_listener(endpoint::parse(config_.address, config_.port, config_.dual_stack), config_.dual_stack,
                                  config_.backlog, true, &bound);
        listener_port_ = bound.port();
        arm_accept();
    }
    ring_->submit();
}

// ---- the loop -------------------------------------------------------------

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::run() {
    auto on_fd = [this](int fd) {
        if (fd >= 0) {
            counters_.handoffs.add();
            open(fd);
        }
    };
    auto on_cqe = [this](const io_uring_cqe& cqe) { dispatch(cqe); };
    for (;;) {
        counters_.loop_iterations.add();
        if (timeouts_enabled()) now_ = std::chrono::steady_clock::now();
        inbox_.drain(on_fd);
        unsigned reaped = ring_->for_each_completion(on_cqe, config_.completion_batch);
        if (timeouts_enabled()) expire_timeouts();
        while (!work_.empty()) {
            connection_type& c = work_.front();
            work_.pop_front();
            do_work(c);
        }
        buffers_.publish();
        if (!starved_.empty() && buffers_.in_use() < buffers_.count()) {
            for (connection_type* c : starved_) {
                c->starved_ = false;
                if (!c->tearing_down_) do_work(*c);
            }
            starved_.clear();
            buffers_.publish();
        }
        counters_.buffers_in_use.set(buffers_.in_use());

        if (stop_requested_.load(std::memory_order_acquire) && !stopping_) begin_stop();
        if (stopping_) {
            if (std::chrono::steady_clock::now() >= stop_deadline_) {
                for (auto& c : live_)
                    if (!c.tearing_down_) abort(c, std::make_error_code(std::errc::timed_out));
            }
            if (live_.empty() && !accept_armed_) break;
        }

        if (reaped == config_.completion_batch) {
            ring_->submit_and_get_events();  // more are ready: no sleep
            continue;
        }
        wait();
    }
    ring_->submit();
    // Let go of the port and the kernel resources now, not when the reactor
    // object dies: after stop() nothing should still accept connections.
    for (int fd : waiting_) ::close(fd);
    waiting_.clear();
    if (listener_ >= 0) {
        ::close(listener_);
        listener_ = -1;
    }
    buffers_ = B{};
    ring_.reset();
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::wait() {
    // Announce the sleep, then look at the inbox once more (see
    // detail/eventfd_waker.hpp): a hand-over either lands before the check
    // or wakes us through the eventfd.
    if (!inbox_.prepare_to_sleep()) {
        ring_->submit_and_get_events();
        return;
    }
    int res;
    if (stopping_) {
        res = ring_->submit_and_wait_for(1, std::chrono::milliseconds(10));
    } else if (timeouts_enabled() && !(idle_.empty() && reading_.empty() && writing_.empty())) {
        // Sleep no longer than the earliest deadline (at least 1 ms), nor than max_wait.
        std::chrono::nanoseconds left = next_deadline() - std::chrono::steady_clock::now();
        if (config_.max_wait.count()) left = std::min<std::chrono::nanoseconds>(left, config_.max_wait);
        res = ring_->submit_and_wait_for(1, std::max<std::chrono::nanoseconds>(left, std::chrono::milliseconds(1)));
    } else if (config_.max_wait.count()) {
        res = ring_->submit_and_wait_for(1, config_.max_wait);
    } else {
        res = ring_->submit_and_wait(1);
    }
    inbox_.awake();
    if (res < 0 && res != -ETIME && res != -EINTR && res != -EAGAIN && res != -EBUSY)
        uring::throw_result(res, "zerg::basic_reactor: io_uring_enter failed");
}

// ---- connections ----------------------------------------------------------

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::open(int fd) {
    if (stopping_) {
        ::close(fd);
        counters_.rejected.add();
        return;
    }
    if (free_.empty()) {
        if (!config_.reuse_port) {  // the acceptor never hands over past max_connections
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
    c.pending_ = 0;
    c.open_ = true;
    c.closing_ = c.shutting_down_ = c.shut_wr_done_ = c.tearing_down_ = c.close_submitted_ = false;
    c.recv_armed_ = c.read_paused_ = c.send_in_flight_ = false;
    c.wants_recv_ = true;
    c.starved_ = false;
    c.armed_before_ = false;
    c.reason_.clear();
    c.examined_ = 0;
    c.reader_ = c.flusher_ = {};
    c.state_ = typename connection_type::state_type{};
    if (config_.idle_timeout.count()) {
        c.idle_since_ = now_;
        idle_.push_back(c);
    }
    counters_.accepted.add();
    counters_.open_connections.add();
    counters_.busy_slots.add();
    if (config_.reuse_port && free_.empty() && !accept_paused_) {
        // Table full: stop taking connections; they wait in the backlog.
        accept_paused_ = true;
        if (accept_armed_) {
            auto* s = sqe();
            uring::prep_cancel(s, reactor_tag(op_accept));
            uring::set_user_data(s, reactor_tag(op_cancel));
        }
    }
    if constexpr (handler_has_on_open<H>) handler_.on_open(c);
    if constexpr (coroutine_handler<H>) {
        c.task_ = handler_.serve(c);
        after_task_step(c);
    }
    c.mark_for_work();
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::deliver(connection_type& c, received_bytes bytes) {
    if constexpr (span_handler<H>) {
        handler_.on_data(c, std::span<const std::byte>(bytes.data, bytes.size));
        buffers_.release(bytes.buffer_id);
    } else if constexpr (ring_item_handler<H>) {
        handler_.on_ring_item(c, ring_item{bytes.data, bytes.size, bytes.buffer_id});
    } else {
        if (c.input_.full()) c.input_.spill();
        c.input_.push(bytes.data, bytes.size, bytes.buffer_id);
        std::size_t before = c.input_.size();
        if constexpr (sequence_handler<H>) {
            handler_.on_data(c, c.input_);
        } else if (c.reader_ && c.input_.size() > c.examined_) {
            resume(c, c.reader_);
        }
        // A message was completed: what is left is a new partial one, whose
        // read deadline starts now.
        if (c.input_.size() < before && c.detail::read_hook::is_linked()) reading_.erase(reading_.iterator_to(c));
        // Bytes left for later: off the ring when it runs low (a quarter
        // left), so a slow parser never starves other connections.
        if (!c.input_.empty() && c.input_.ring_segments() && buffers_.in_use() * 4 > buffers_.count() * 3)
            c.input_.spill();
        track_input(c);
    }
}

// Resumes a coroutine that waits on `waiting` (read or flush).
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::resume(connection_type& c, std::coroutine_handle<>& waiting) {
    auto h = std::exchange(waiting, {});
    h.resume();
    after_task_step(c);
    track_input(c);
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::after_task_step(connection_type& c) {
    if (!c.task_.done()) return;
    // The coroutine returned (or threw): the connection has served its purpose.
    if (auto failure = c.task_.failure(); failure && !c.reason_) c.reason_ = std::make_error_code(std::errc::protocol_error);
    if (c.open_ && !c.closing_) {
        c.closing_ = true;
        c.mark_for_work();
    }
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
            if (cqe.res >= 0) open(cqe.res);
            return;
        case op_accept:
            on_accept(cqe);
            return;
        case op_accept_retry:
            if (!stopping_) arm_accept();
            return;
        case op_cancel:
            if (ud.slot() == no_slot) return;
            break;
        default:
            break;
    }
    if (ud.slot() >= generations_->size() || !generations_->is_current(ud)) [[unlikely]] {
        // A completion for a connection that is gone. Cannot happen while a
        // slot waits for its last CQE before reuse; counted, never delivered.
        counters_.stale_completions.add();
        if (uring::cqe_has_buffer(cqe)) buffers_.release(buffers_.take(cqe).buffer_id);
        return;
    }
    connection_type& c = table_[ud.slot()];
    switch (ud.kind()) {
        case op_recv:
            on_recv(c, cqe);
            break;
        case op_send:
            on_send(c, cqe);
            break;
        default:  // cancel, close, shutdown: only their arrival matters
            --c.pending_;
            finish_if_done(c);
            break;
    }
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::on_recv(connection_type& c, const io_uring_cqe& cqe) {
    if (uring::cqe_has_buffer(cqe)) {
        received_bytes bytes = buffers_.take(cqe);
        if (cqe.res > 0 && c.open_ && !c.closing_) {
            counters_.bytes_in.add(bytes.size);
            if (config_.idle_timeout.count()) {
                c.idle_since_ = now_;
                idle_.erase(idle_.iterator_to(c));
                idle_.push_back(c);
            }
            deliver(c, bytes);
        } else {
            buffers_.release(bytes.buffer_id);
        }
    }
    if (uring::cqe_has_more(cqe)) return;

    c.recv_armed_ = false;
    --c.pending_;
    if (cqe.res == 0) {
        // The peer sent FIN: answer what is queued, then close.
        if (c.open_ && !c.closing_) {
            c.closing_ = true;
            c.mark_for_work();
        }
    } else if (cqe.res < 0 && cqe.res != -ENOBUFS && cqe.res != -ECANCELED) {
        abort(c, uring::result_error(cqe.res));
    } else {
        // ENOBUFS (buffers come back at the end of this iteration), a cancel
        // for backpressure, or the kernel ended the multishot: read again.
        if (cqe.res == -ENOBUFS) counters_.enobufs.add();
        c.wants_recv_ = true;
        c.mark_for_work();
    }
    finish_if_done(c);
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::on_send(connection_type& c, const io_uring_cqe& cqe) {
    --c.pending_;
    c.send_in_flight_ = false;
    if (c.tearing_down_) {  // aborted meanwhile: nothing more to send or time
        finish_if_done(c);
        return;
    }
    if (cqe.res < 0) {
        abort(c, uring::result_error(cqe.res));  // EPIPE, ECONNRESET: the peer is gone
    } else {
        c.out_.consume(static_cast<std::size_t>(cqe.res), pool_);
        counters_.bytes_out.add(static_cast<std::uint64_t>(cqe.res));
        if (c.read_paused_ && c.out_.size() <= config_.max_write_queue / 2) c.read_paused_ = false;
        track_output(c, cqe.res > 0);
        c.mark_for_work();
        if constexpr (coroutine_handler<H>)
            if (c.flusher_ && c.out_.empty()) resume(c, c.flusher_);
    }
    finish_if_done(c);
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::do_work(connection_type& c) {
    if (c.tearing_down_) return;
    if (!c.send_in_flight_ && !c.out_.empty()) submit_send(c);
    track_output(c, false);
    if (c.out_.size() > config_.max_write_queue && !c.read_paused_) {
        // Backpressure: stop reading until the peer takes its answers.
        c.read_paused_ = true;
        counters_.read_pauses.add();
        if (c.recv_armed_) {
            auto* s = sqe();
            uring::prep_cancel(s, tag(op_recv, c.slot_));
            uring::set_user_data(s, tag(op_cancel, c.slot_));
            ++c.pending_;
        }
    }
    if (c.closing_) {
        if (!c.send_in_flight_ && c.out_.empty()) begin_teardown(c);
        return;
    }
    if (c.wants_recv_ && !c.recv_armed_ && !c.read_paused_) {
        if (buffers_.in_use() >= buffers_.count()) {
            // Every buffer is held by handlers: arming now would only earn
            // an ENOBUFS at once, again and again. Wait for one to come back.
            if (!c.starved_) {
                c.starved_ = true;
                starved_.push_back(&c);
            }
        } else {
            arm_recv(c);
        }
    }
    if (c.shutting_down_ && !c.shut_wr_done_ && !c.send_in_flight_ && c.out_.empty()) {
        auto* s = sqe();
        uring::prep_shutdown(s, c.fd_, SHUT_WR);
        uring::set_user_data(s, tag(op_shutdown, c.slot_));
        ++c.pending_;
        c.shut_wr_done_ = true;
    }
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::arm_recv(connection_type& c) {
    auto* s = sqe();
    uring::prep_recv_multishot(s, c.fd_, buffers_.group());
    uring::set_user_data(s, tag(op_recv, c.slot_));
    ++c.pending_;
    c.recv_armed_ = true;
    c.wants_recv_ = false;
    if (c.armed_before_) counters_.recv_rearms.add();
    c.armed_before_ = true;
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::submit_send(connection_type& c) {
    unsigned n = c.out_.gather(c.iov_);
    auto* s = sqe();
    if (n == 1) {
        uring::prep_send(s, c.fd_, std::span<const std::byte>(static_cast<const std::byte*>(c.iov_[0].iov_base), c.iov_[0].iov_len));
    } else {
        c.msg_ = {};
        c.msg_.msg_iov = c.iov_;
        c.msg_.msg_iovlen = n;
        uring::prep_sendmsg(s, c.fd_, &c.msg_);
    }
    uring::set_user_data(s, tag(op_send, c.slot_));
    ++c.pending_;
    c.send_in_flight_ = true;
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::abort(connection_type& c, std::error_code why) {
    if (!c.reason_) c.reason_ = why;
    // The kernel may still read the chunks of a send in flight; they go back
    // to the pool when the slot is released.
    if (!c.send_in_flight_) c.out_.clear(pool_);
    begin_teardown(c);
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::begin_teardown(connection_type& c) {
    if (c.tearing_down_) return;
    c.tearing_down_ = true;
    c.closing_ = true;
    if (c.open_) {
        c.open_ = false;
        counters_.open_connections.sub();
        if constexpr (coroutine_handler<H>) {
            // Cancellation: whatever the coroutine awaits completes as closed.
            if (c.reader_) resume(c, c.reader_);
            if (c.flusher_) resume(c, c.flusher_);
        }
        if constexpr (handler_has_on_close<H>) handler_.on_close(c, c.reason_);
    }
    if constexpr (keeps_input) c.input_.clear();  // every held buffer goes back
    if (c.detail::idle_hook::is_linked()) idle_.erase(idle_.iterator_to(c));
    if (c.detail::read_hook::is_linked()) reading_.erase(reading_.iterator_to(c));
    if (c.detail::write_hook::is_linked()) writing_.erase(writing_.iterator_to(c));
    if (c.recv_armed_ || c.send_in_flight_) {
        // One SQE cancels every request on the socket.
        auto* s = sqe();
        uring::prep_cancel_fd(s, c.fd_);
        uring::set_user_data(s, tag(op_cancel, c.slot_));
        ++c.pending_;
    }
    finish_if_done(c);
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::finish_if_done(connection_type& c) {
    if (!c.tearing_down_ || c.pending_ != 0) return;
    if (!c.close_submitted_) {
        // Every operation on the socket has reported back; close it.
        auto* s = sqe();
        uring::prep_close(s, c.fd_);
        uring::set_user_data(s, tag(op_close, c.slot_));
        ++c.pending_;
        c.close_submitted_ = true;
        return;
    }
    // The last CQE of this connection is in: the slot may be reused, with a
    // new generation so nothing addressed to this connection reaches the next.
    c.out_.clear(pool_);
    c.task_.reset();
    if (c.detail::idle_hook::is_linked()) idle_.erase(idle_.iterator_to(c));
    if (c.detail::read_hook::is_linked()) reading_.erase(reading_.iterator_to(c));
    if (c.detail::write_hook::is_linked()) writing_.erase(writing_.iterator_to(c));
    if (c.starved_) {
        starved_.erase(std::find(starved_.begin(), starved_.end(), &c));
        c.starved_ = false;
    }
    c.fd_ = -1;
    generations_->retire(c.slot_);
    if (c.in_work_list()) work_.erase(work_.iterator_to(c));
    live_.erase(live_.iterator_to(c));
    free_.push_back(c);
    counters_.busy_slots.sub();
    counters_.closed.add();
    if (!waiting_.empty() && !stopping_) {
        int fd = waiting_.front();
        waiting_.erase(waiting_.begin());
        open(fd);
    } else if (accept_paused_ && !stopping_) {
        // Re-armed here, or by on_accept when the cancelled accept reports back.
        accept_paused_ = false;
        if (!accept_armed_) arm_accept();
    }
}

// ---- timeouts ------------------------------------------------------------------

// Read deadline: runs while a handler holds a partial message.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::track_input(connection_type& c) {
    if (!config_.read_timeout.count()) return;
    bool linked = c.detail::read_hook::is_linked();
    if (c.input_.empty() && linked) {
        reading_.erase(reading_.iterator_to(c));
    } else if (!c.input_.empty() && !linked) {
        c.read_since_ = now_;
        reading_.push_back(c);
    }
}

// Write deadline: runs while output is queued, restarts on every byte sent.
template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::track_output(connection_type& c, bool progressed) {
    if (!config_.write_timeout.count() && !config_.idle_timeout.count()) return;
    if (progressed && config_.idle_timeout.count() && c.detail::idle_hook::is_linked()) {
        c.idle_since_ = now_;
        idle_.erase(idle_.iterator_to(c));
        idle_.push_back(c);
    }
    if (!config_.write_timeout.count()) return;
    bool linked = c.detail::write_hook::is_linked();
    if (linked && (c.out_.empty() || progressed)) writing_.erase(writing_.iterator_to(c));
    if (!c.out_.empty() && !c.detail::write_hook::is_linked()) {
        c.write_since_ = now_;
        writing_.push_back(c);
    }
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::expire_timeouts() {
    auto timed_out = std::make_error_code(std::errc::timed_out);
    while (!idle_.empty() && idle_.front().idle_since_ + config_.idle_timeout <= now_) abort(idle_.front(), timed_out);
    while (!reading_.empty() && reading_.front().read_since_ + config_.read_timeout <= now_) abort(reading_.front(), timed_out);
    while (!writing_.empty() && writing_.front().write_since_ + config_.write_timeout <= now_) abort(writing_.front(), timed_out);
}

template <class B, class Q, class S, class H>
std::chrono::steady_clock::time_point basic_reactor<B, Q, S, H>::next_deadline() const noexcept {
    auto next = std::chrono::steady_clock::time_point::max();
    if (!idle_.empty()) next = std::min(next, idle_.front().idle_since_ + config_.idle_timeout);
    if (!reading_.empty()) next = std::min(next, reading_.front().read_since_ + config_.read_timeout);
    if (!writing_.empty()) next = std::min(next, writing_.front().write_since_ + config_.write_timeout);
    return next;
}

// ---- own listener (reuse_port) --------------------------------------------

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::arm_accept() {
    auto* s = sqe();
    uring::prep_accept_multishot(s, listener_, SOCK_CLOEXEC);
    uring::set_user_data(s, reactor_tag(op_accept));
    accept_armed_ = true;
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::on_accept(const io_uring_cqe& cqe) {
    if (cqe.res >= 0) open(cqe.res);
    if (uring::cqe_has_more(cqe)) return;
    accept_armed_ = false;
    if (stopping_ || accept_paused_) return;
    if (cqe.res == -EMFILE || cqe.res == -ENFILE || cqe.res == -ENOBUFS || cqe.res == -ENOMEM) {
        // Out of descriptors or memory: try again shortly rather than spin.
        counters_.rejected.add();
        auto* s = sqe();
        uring::prep_timeout(s, &accept_backoff_);
        uring::set_user_data(s, reactor_tag(op_accept_retry));
        return;
    }
    arm_accept();
}

template <class B, class Q, class S, class H>
void basic_reactor<B, Q, S, H>::begin_stop() {
    stopping_ = true;
    stop_deadline_ = std::chrono::steady_clock::now() + config_.stop_deadline;
    if (listener_ >= 0) {
        if (accept_armed_) {
            auto* s = sqe();
            uring::prep_cancel(s, reactor_tag(op_accept));
            uring::set_user_data(s, reactor_tag(op_cancel));
        }
    }
    for (auto& c : live_) {
        if (c.open_ && !c.closing_) {
            c.closing_ = true;
            c.mark_for_work();
        }
    }
    while (!work_.empty()) {
        connection_type& c = work_.front();
        work_.pop_front();
        do_work(c);
    }
}

}  // namespace zerg
