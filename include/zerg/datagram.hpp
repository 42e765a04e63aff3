// UDP on io_uring: zerg::datagram_endpoint<Handler>, one socket served by one
// thread's ring, and zerg::udp_server<Handler>, N of them on one port
// (SO_REUSEPORT spreads peers over them by address hash).
//
//   struct echo {
//       void on_datagram(zerg::datagram_endpoint<echo>& e, const zerg::endpoint& peer,
//                        std::span<const std::byte> bytes) { e.send_to(peer, bytes); }
//   };
//   zerg::udp_server<echo> s(config);
//   s.start();  ...  s.stop();
//
// Receiving is one multishot IORING_OP_RECVMSG (Linux 6.0) with provided
// buffers: each datagram lands in its own buffer behind a header
// (io_uring_recvmsg_out) and its source address, so one SQE serves every
// datagram until the buffers run out. Then the kernel ends it with -ENOBUFS
// (counted); the endpoint returns the buffers and arms it again, and what
// the socket's receive queue could not hold meanwhile is lost, as UDP is.
// A datagram larger than a buffer arrives cut (MSG_TRUNC): it is counted
// and dropped, never handed to the handler in part.
//
// Sending copies the datagram into one of max_outbound slots and submits a
// sendmsg (or, from zero_copy_threshold bytes on, a sendmsg_zc, 6.1; it
// falls back to sendmsg when refused). With every slot in flight the
// datagram is dropped and counted: memory stays bounded.
//
// Thread-safety is given per member. In short: the handler, send_to() and
// handler() belong to the endpoint's thread; request_stop(), counters(),
// join_group()/leave_group() to any thread.
#pragma once

#include <zerg/address.hpp>
#include <zerg/detail/datagram_outbox.hpp>
#include <zerg/detail/eventfd_waker.hpp>
#include <zerg/detail/worker_thread.hpp>
#include <zerg/error.hpp>
#include <zerg/multicast.hpp>
#include <zerg/uring/buffer_ring.hpp>
#include <zerg/uring/compat.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/user_data.hpp>

#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

// X(name, kind, help), as ZERG_REACTOR_COUNTERS in counters.hpp.
#define ZERG_DATAGRAM_COUNTERS(X)                                                           \
    X(datagrams_in, counter, "datagrams received and handed to the handler")                \
    X(bytes_in, counter, "payload bytes of those datagrams")                                \
    X(datagrams_out, counter, "datagrams the kernel accepted for sending")                  \
    X(bytes_out, counter, "payload bytes of those datagrams")                               \
    X(enobufs, counter, "times the buffer ring ran dry and receiving stopped (ENOBUFS)")   \
    X(recv_rearms, counter, "multishot recvmsg armed again after the kernel ended it")      \
    X(recv_errors, counter, "receive completions with an error other than ENOBUFS")         \
    X(truncated, counter, "datagrams larger than a buffer (MSG_TRUNC), dropped")            \
    X(send_errors, counter, "sends the kernel refused (EMSGSIZE, ENETUNREACH...)")          \
    X(send_dropped, counter, "datagrams dropped: max_outbound or max_outbound_bytes in flight") \
    X(sends_zero_copy, counter, "datagrams sent with sendmsg_zc")                           \
    X(zero_copy_refusals, counter, "sendmsg_zc refused at run time: sendmsg from then on")  \
    X(handler_exceptions, counter, "on_datagram calls that threw (the endpoint goes on)")   \
    X(outbound_in_flight, gauge, "send slots in the kernel's hands now")

namespace zerg {

template <class Handler>
class datagram_endpoint;

// What a handler must provide: called on the endpoint's thread for each
// datagram received whole. `peer` and `bytes` are valid during the call
// only (`bytes` lies in a provided buffer that goes back to the kernel
// right after); send_to() copies what it sends.
template <class H>
concept datagram_handler =
    std::copy_constructible<H> &&
    requires(H h, datagram_endpoint<H>& e, const endpoint& peer, std::span<const std::byte> bytes) {
        h.on_datagram(e, peer, bytes);
    };

struct udp_config {
    std::string address = "127.0.0.1";  // IPv4 or IPv6 literal, "::" for all, or a group to receive only it
    std::uint16_t port = 0;              // 0: the kernel picks; udp_server::port() tells
    bool dual_stack = false;             // one IPv6 socket that takes IPv4 too
    unsigned reactors = 1;               // endpoints, each its own thread, ring and socket
    unsigned ring_entries = 256;
    // The largest datagram received whole (payload bytes); each buffer adds
    // 44 bytes for the header and the address. 65507 takes any IPv4 datagram.
    unsigned buffer_size = 2048;
    unsigned buffer_count = 256;         // per endpoint, a power of two
    unsigned max_outbound = 1024;        // datagrams in flight per endpoint; past it dropped
    std::size_t max_outbound_bytes = 4 << 20;  // their bytes in flight; past it dropped
    std::size_t zero_copy_threshold = 16384;  // sendmsg_zc from this many bytes; 0: never
    int receive_buffer = 0;              // SO_RCVBUF bytes, 0: the kernel's default
    int send_buffer = 0;                 // SO_SNDBUF bytes, 0: the kernel's default
    multicast_options multicast;
    std::chrono::milliseconds stop_deadline{1000};  // wait this long for sends in flight at stop
    std::chrono::milliseconds max_wait{0};          // longest single sleep, 0: until a completion
    error_hook on_error;                 // handler exceptions, failures, fallbacks
};

// The same two kinds as counters.hpp's counter_kind; its own enum so this
// header stands without the TCP reactor's.
enum class datagram_counter_kind { counter, gauge };

// Per-endpoint counters: written by the endpoint's thread only (relaxed
// stores), readable from any thread at any time.
struct alignas(64) datagram_counters {
    struct counter {
        std::atomic<std::uint64_t> value{0};
        void add(std::uint64_t n = 1) noexcept { value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
        void set(std::uint64_t n) noexcept { value.store(n, std::memory_order_relaxed); }
        std::uint64_t get() const noexcept { return value.load(std::memory_order_relaxed); }
    };
#define ZERG_DATAGRAM_MEMBER(name, kind, help) counter name;
    ZERG_DATAGRAM_COUNTERS(ZERG_DATAGRAM_MEMBER)
#undef ZERG_DATAGRAM_MEMBER
};

struct datagram_snapshot {
#define ZERG_DATAGRAM_SNAPSHOT_MEMBER(name, kind, help) std::uint64_t name = 0;
    ZERG_DATAGRAM_COUNTERS(ZERG_DATAGRAM_SNAPSHOT_MEMBER)
#undef ZERG_DATAGRAM_SNAPSHOT_MEMBER
    datagram_snapshot& operator+=(const datagram_snapshot& o) noexcept {
#define ZERG_DATAGRAM_SNAPSHOT_ADD(name, kind, help) name += o.name;
        ZERG_DATAGRAM_COUNTERS(ZERG_DATAGRAM_SNAPSHOT_ADD)
#undef ZERG_DATAGRAM_SNAPSHOT_ADD
        return *this;
    }
};

// Any thread: one relaxed read per counter.
inline datagram_snapshot snapshot(const datagram_counters& c) noexcept {
    datagram_snapshot s;
#define ZERG_DATAGRAM_SNAPSHOT_READ(name, kind, help) s.name = c.name.get();
    ZERG_DATAGRAM_COUNTERS(ZERG_DATAGRAM_SNAPSHOT_READ)
#undef ZERG_DATAGRAM_SNAPSHOT_READ
    return s;
}

// Calls f(name, kind, help, value) for every counter of `s`, in list order
// (for metrics pages: the names are the counters' member names).
template <class F>
void for_each_counter(const datagram_snapshot& s, F&& f) {
#define ZERG_DATAGRAM_SNAPSHOT_VISIT(name, kind, help) f(#name, datagram_counter_kind::kind, help, s.name);
    ZERG_DATAGRAM_COUNTERS(ZERG_DATAGRAM_SNAPSHOT_VISIT)
#undef ZERG_DATAGRAM_SNAPSHOT_VISIT
}

// Any thread. A UDP socket bound to `where` (SO_REUSEPORT when asked, the buffer sizes
// and multicast options of `config`), its groups joined. `bound` gets the
// address the kernel gave it. Throws std::system_error naming the step.
inline int open_datagram_socket(const endpoint& where, const udp_config& config, bool reuse_port,
                                endpoint* bound = nullptr) {
    int fd = ::socket(where.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) uring::throw_result(errno, "zerg: UDP socket");
    auto fail = [fd](int e, const std::string& what) {
        ::close(fd);
        uring::throw_result(e, "zerg: " + what);
    };
    int one = 1;
    if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) fail(errno, "SO_REUSEPORT");
    if (config.receive_buffer > 0 &&
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &config.receive_buffer, sizeof config.receive_buffer) < 0)
        fail(errno, "SO_RCVBUF");
    if (config.send_buffer > 0 &&
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &config.send_buffer, sizeof config.send_buffer) < 0)
        fail(errno, "SO_SNDBUF");
    if (where.family() == AF_INET6) {
        int v6only = config.dual_stack ? 0 : 1;
        if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) fail(errno, "IPV6_V6ONLY");
    }
    if (auto ec = apply_multicast_options(fd, where.family(), config.multicast))
        fail(ec.value(), "multicast options (interface '" + config.multicast.interface + "')");
    if (::bind(fd, where.get(), where.length) < 0) fail(errno, "bind " + where.to_string());
    for (auto const& group : config.multicast.groups)
        if (auto ec = join_group(fd, group, config.multicast.interface)) fail(ec.value(), "join multicast group " + group);
    if (bound) {
        bound->length = sizeof bound->storage;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound->storage), &bound->length);
    }
    return fd;
}

template <class Handler>
class datagram_endpoint {
    static_assert(datagram_handler<Handler>,
                  "zerg: a datagram Handler must be copy-constructible and have `void on_datagram("
                  "zerg::datagram_endpoint<Handler>&, const zerg::endpoint& peer, std::span<const std::byte>)`");

public:
    using handler_type = Handler;

    // Any thread. Takes ownership of `fd`, a bound UDP socket
    // (open_datagram_socket); setup() and run() then belong to one thread.
    datagram_endpoint(unsigned index, const udp_config& config, const Handler& prototype, int fd)
        : index_(index), config_(config), handler_(prototype), fd_(fd), outbox_(config.max_outbound, config.max_outbound_bytes) {
        local_.length = sizeof local_.storage;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&local_.storage), &local_.length);
    }
    datagram_endpoint(const datagram_endpoint&) = delete;
    datagram_endpoint& operator=(const datagram_endpoint&) = delete;
    // Any thread, once run() has returned (or never ran).
    ~datagram_endpoint() {
        // The ring first: its exit ends every request that still points
        // into the buffers and the outbox.
        buffers_.reset();
        ring_.reset();
        ::close(fd_);
    }

    // The endpoint's thread: makes the ring and the buffer ring and arms the
    // receive. Throws std::system_error (io_uring unavailable, a kernel
    // before 6.0, buffer memory). With SINGLE_ISSUER the ring belongs to the
    // thread that makes it: call run() on the same thread.
    void setup();
    // The endpoint's thread: serves until request_stop(), then waits up to
    // stop_deadline for the sends in flight and returns. An error it cannot
    // survive is reported through on_error and rethrown.
    void run();

    // Any thread, any number of times: run() returns soon after.
    void request_stop() noexcept {
        stop_requested_.store(true, std::memory_order_seq_cst);
        waker_.signal();
    }

    // The endpoint's thread (from on_datagram, typically): sends `bytes` to
    // `peer`. The bytes are copied; the call never blocks. False when the
    // datagram was dropped because max_outbound datagrams or
    // max_outbound_bytes bytes are in flight (counted in send_dropped); a
    // refusal by the kernel comes later, in send_errors.
    // Effects: one copy and one SQE; the SQE is submitted at the end of the
    // loop iteration, with the others.
    bool send_to(const endpoint& peer, std::span<const std::byte> bytes);

    // Any thread while the endpoint exists (each is one setsockopt on its
    // socket): join or leave a multicast group on `interface` (a name, or an
    // IPv4 address of it; empty: the kernel picks). See multicast.hpp.
    std::error_code join_group(const std::string& group, const std::string& interface = {}) noexcept {
        return zerg::join_group(fd_, group, interface);
    }
    std::error_code leave_group(const std::string& group, const std::string& interface = {}) noexcept {
        return zerg::leave_group(fd_, group, interface);
    }

    // Any thread.
    unsigned index() const noexcept { return index_; }
    const endpoint& local_endpoint() const noexcept { return local_; }
    const datagram_counters& counters() const noexcept { return counters_; }
    // Any thread: the socket, for options zerg does not set (setsockopt is
    // thread-safe); never close it.
    int native_handle() const noexcept { return fd_; }
    // After setup(), any thread: features setup() found not in effect, and
    // why. (A sendmsg_zc refused later is in counters().zero_copy_refusals.)
    const std::vector<std::string>& fallbacks() const noexcept { return fallbacks_; }
    // The endpoint's thread.
    Handler& handler() noexcept { return handler_; }

private:
    enum op : std::uint8_t { op_recv = 1, op_send, op_wake, op_cancel };
    // Room for either address family's sockaddr in each buffer.
    static constexpr std::uint32_t name_room = sizeof(sockaddr_in6);
    static constexpr std::uint32_t header_room = sizeof(uring::abi::recvmsg_out) + name_room;

    void arm_recv();
    void dispatch(const io_uring_cqe& cqe);
    void on_recv(const io_uring_cqe& cqe);
    void on_send(std::uint32_t slot, const io_uring_cqe& cqe);
    void submit_send(std::uint32_t slot, bool zero_copy);
    void wait(bool busy);
    void report(error_report::kind what, std::error_code code, std::string message) noexcept {
        if (!config_.on_error) return;
        try {
            config_.on_error(error_report{what, static_cast<int>(index_), {}, code, std::move(message)});
        } catch (...) {
            // A hook that throws must not take the endpoint down.
        }
    }

    unsigned index_;
    udp_config config_;
    Handler handler_;
    int fd_;  // owned; closed by the destructor, after the ring
    endpoint local_;
    detail::eventfd_waker waker_;
    // The outbox outlives the ring (declared first, destroyed last): an
    // in-flight sendmsg reads its slot until the ring is gone.
    detail::datagram_outbox outbox_;
    std::optional<uring::ring> ring_;
    std::optional<uring::buffer_ring> buffers_;
    // The kernel keeps reading namelen/controllen from here while the
    // multishot receive lives.
    msghdr recv_msg_{};
    static constexpr unsigned max_failed_receives = 64;
    unsigned failed_receives_ = 0;  // receives ended by an error, none delivering since
    bool recv_armed_ = false;
    bool rearm_wanted_ = false;
    bool zero_copy_ = false;  // SENDMSG_ZC is there and has not been refused
    bool stopping_ = false;
    std::chrono::steady_clock::time_point stop_by_{};
    std::atomic<bool> stop_requested_{false};
    std::vector<std::string> fallbacks_;
    datagram_counters counters_;
};

template <class H>
void datagram_endpoint<H>::setup() {
    uring::ring_options options;
    options.entries = config_.ring_entries;
    ring_.emplace(options);
    for (auto const& fb : ring_->fallbacks())
        fallbacks_.push_back(std::string(uring::to_string(fb.what)) + ": " + fb.reason);
    // Multishot recvmsg came in 6.0 without an opcode of its own; SEND_ZC
    // came in the same release, so its opcode tells. SENDMSG_ZC is 6.1.
    auto ops = ring_->probe_opcodes();
    bool recent = ops.supports(IORING_OP_SEND_ZC);
    zero_copy_ = ops.supports(IORING_OP_SENDMSG_ZC) && config_.zero_copy_threshold > 0;
    if (!recent)
        throw std::system_error(std::make_error_code(std::errc::function_not_supported),
                                "zerg::datagram_endpoint needs Linux 6.0 or newer (multishot recvmsg with provided "
                                "buffers); bin/uring-info shows what this kernel has");
    if (!zero_copy_ && config_.zero_copy_threshold > 0)
        fallbacks_.push_back("sendmsg_zc: not in this kernel (6.1): every datagram is sent with sendmsg");
    uring::buffer_ring_options b;
    b.entries = config_.buffer_count;
    b.buffer_size = config_.buffer_size + header_room;
    buffers_.emplace(*ring_, b);
    recv_msg_.msg_namelen = name_room;
    recv_msg_.msg_controllen = 0;
    waker_.arm(*ring_, uring::user_data(op_wake, 0, 0).raw());
    arm_recv();
    for (auto const& fb : fallbacks_) report(error_report::kind::fallback, {}, "endpoint " + std::to_string(index_) + ": " + fb);
}

template <class H>
void datagram_endpoint<H>::arm_recv() {
    io_uring_sqe* sqe = ring_->get_sqe();
    uring::prep_recvmsg_multishot(sqe, fd_, &recv_msg_, buffers_->group());
    uring::set_user_data(sqe, uring::user_data(op_recv, 0, 0));
    recv_armed_ = true;
    rearm_wanted_ = false;
}

template <class H>
bool datagram_endpoint<H>::send_to(const endpoint& peer, std::span<const std::byte> bytes) {
    auto slot = outbox_.acquire(peer, bytes);
    if (!slot) {
        counters_.send_dropped.add();
        return false;
    }
    submit_send(*slot, zero_copy_ && bytes.size() >= config_.zero_copy_threshold);
    return true;
}

template <class H>
void datagram_endpoint<H>::submit_send(std::uint32_t slot, bool zero_copy) {
    detail::outbound_datagram& d = outbox_.at(slot);
    d.zero_copy = zero_copy;
    io_uring_sqe* sqe = nullptr;
    try {
        sqe = ring_->get_sqe();
    } catch (...) {
        outbox_.release(slot);  // never submitted: no CQE will free it
        throw;
    }
    if (zero_copy)
        uring::prep_sendmsg_zc(sqe, fd_, &d.message);
    else
        uring::prep_sendmsg(sqe, fd_, &d.message);
    uring::set_user_data(sqe, uring::user_data(op_send, slot, 0));
    counters_.outbound_in_flight.set(outbox_.in_flight());
}

template <class H>
void datagram_endpoint<H>::dispatch(const io_uring_cqe& cqe) {
    uring::user_data ud(cqe.user_data);
    switch (ud.kind()) {
        case op_recv:
            on_recv(cqe);
            break;
        case op_send:
            on_send(ud.slot(), cqe);
            break;
        case op_wake:
            // Only stop requests write the eventfd; the loop reads the flag.
            if (!stop_requested_.load(std::memory_order_relaxed))
                waker_.arm(*ring_, uring::user_data(op_wake, 0, 0).raw());
            break;
        default:
            break;  // op_cancel: the receive's own CQE tells the outcome
    }
}

template <class H>
void datagram_endpoint<H>::on_recv(const io_uring_cqe& cqe) {
    if (!(cqe.flags & IORING_CQE_F_MORE)) {
        recv_armed_ = false;
        rearm_wanted_ = !stopping_;
    }
    if (cqe.res < 0) {
        if (cqe.res == -ENOBUFS) {
            counters_.enobufs.add();
        } else if (cqe.res != -ECANCELED) {
            counters_.recv_errors.add();
            // An error that ends every new receive at once (the socket is
            // broken) would make re-arming a busy loop: fail instead.
            if (!(cqe.flags & IORING_CQE_F_MORE) && ++failed_receives_ >= max_failed_receives)
                uring::throw_result(cqe.res, "zerg::datagram_endpoint: the receive failed " +
                                                 std::to_string(max_failed_receives) + " times in a row");
        }
        return;
    }
    failed_receives_ = 0;
    if (!(cqe.flags & IORING_CQE_F_BUFFER)) return;
    uring::buffer_ring::slice s = buffers_->take(cqe);
    struct give_back {  // whatever the handler does, the buffer returns
        uring::buffer_ring& ring;
        std::uint16_t id;
        ~give_back() { ring.recycle(id); }
    } back{*buffers_, s.id};
    uring::abi::recvmsg_out out;
    if (s.size < header_room) {
        counters_.recv_errors.add();
        return;
    }
    std::memcpy(&out, s.data, sizeof out);
    if (out.flags & MSG_TRUNC) {
        counters_.truncated.add();
        return;
    }
    endpoint peer;
    peer.length = out.namelen < name_room ? out.namelen : name_room;
    std::memcpy(&peer.storage, s.data + sizeof out, peer.length);
    std::uint32_t in_buffer = s.size - header_room;
    std::uint32_t size = out.payloadlen < in_buffer ? out.payloadlen : in_buffer;
    counters_.datagrams_in.add();
    counters_.bytes_in.add(size);
    try {
        handler_.on_datagram(*this, peer, std::span<const std::byte>(s.data + header_room, size));
    } catch (const std::exception& e) {
        counters_.handler_exceptions.add();
        report(error_report::kind::handler_exception, make_error_code(error::handler_exception), e.what());
    } catch (...) {
        counters_.handler_exceptions.add();
        report(error_report::kind::handler_exception, make_error_code(error::handler_exception),
               "on_datagram threw a non-std::exception");
    }
}

template <class H>
void datagram_endpoint<H>::on_send(std::uint32_t slot, const io_uring_cqe& cqe) {
    detail::outbound_datagram& d = outbox_.at(slot);
    if (!(cqe.flags & IORING_CQE_F_NOTIF)) {
        if (cqe.res >= 0) {
            counters_.datagrams_out.add();
            counters_.bytes_out.add(static_cast<std::uint64_t>(cqe.res));
            if (d.zero_copy) counters_.sends_zero_copy.add();
        } else if (d.zero_copy && (cqe.res == -EOPNOTSUPP || cqe.res == -EINVAL) && !(cqe.flags & IORING_CQE_F_MORE)) {
            // Refused as a kind of request, not as this datagram: every
            // later one goes by plain sendmsg, this one too.
            // fallbacks_ is setup()'s alone (other threads read it): the
            // hook and a counter tell of this one.
            zero_copy_ = false;
            counters_.zero_copy_refusals.add();
            report(error_report::kind::fallback, uring::result_error(cqe.res),
                   "endpoint " + std::to_string(index_) + ": sendmsg_zc refused: every datagram is sent with sendmsg");
            submit_send(slot, false);
            return;
        } else {
            counters_.send_errors.add();
        }
    }
    // A zero-copy send's result comes with F_MORE: the kernel still reads
    // the slot until the notification.
    if (cqe.flags & IORING_CQE_F_MORE) return;
    outbox_.release(slot);
    counters_.outbound_in_flight.set(outbox_.in_flight());
}

template <class H>
void datagram_endpoint<H>::wait(bool busy) {
    int res = 0;
    if (busy) {
        res = ring_->submit_and_get_events();
    } else if (stopping_) {
        auto left = stop_by_ - std::chrono::steady_clock::now();
        res = ring_->submit_and_wait_for(1, std::max<std::chrono::nanoseconds>(left, std::chrono::milliseconds(1)));
    } else if (config_.max_wait.count()) {
        res = ring_->submit_and_wait_for(1, config_.max_wait);
    } else {
        res = ring_->submit_and_wait(1);
    }
    if (res < 0 && res != -ETIME && res != -EINTR && res != -EBUSY)
        uring::throw_result(res, "zerg::datagram_endpoint: io_uring_enter failed");
}

template <class H>
void datagram_endpoint<H>::run() {
    try {
        const unsigned batch = 1024;
        for (;;) {
            unsigned reaped = ring_->for_each_completion([this](const io_uring_cqe& cqe) { dispatch(cqe); }, batch);
            if (!stopping_ && stop_requested_.load(std::memory_order_relaxed)) {
                stopping_ = true;
                stop_by_ = std::chrono::steady_clock::now() + config_.stop_deadline;
                rearm_wanted_ = false;
                if (recv_armed_) {
                    io_uring_sqe* sqe = ring_->get_sqe();
                    uring::prep_cancel(sqe, uring::user_data(op_recv, 0, 0));
                    uring::set_user_data(sqe, uring::user_data(op_cancel, 0, 0));
                }
            }
            buffers_->publish();
            // After ENOBUFS: only once some buffer is back in the kernel's
            // hands, or the new receive would end at once the same way.
            if (rearm_wanted_ && buffers_->in_kernel() > 0) {
                arm_recv();
                counters_.recv_rearms.add();
            }
            if (stopping_ && ((!recv_armed_ && outbox_.in_flight() == 0) || std::chrono::steady_clock::now() >= stop_by_))
                break;
            wait(reaped == batch || ring_->cq_ready() > 0);
        }
    } catch (...) {
        std::string what = "endpoint " + std::to_string(index_) + " stopped";
        try {
            std::rethrow_exception(std::current_exception());
        } catch (const std::exception& e) {
            what += std::string(": ") + e.what();
        } catch (...) {
        }
        report(error_report::kind::reactor_failure, make_error_code(error::reactor_failed), what);
        throw;
    }
}

// N endpoints on one address and port, each with its own thread.
//
// start() and stop() are for one controlling thread; counters(), totals(),
// failure() and wait_for_failure() for any thread while the server exists;
// endpoint(i) for any thread between start() and stop() (the endpoint's own
// members say what each thread may do with it).
template <class Handler>
class udp_server {
public:
    using handler_type = Handler;
    using endpoint_type = datagram_endpoint<Handler>;

    // The controlling thread: binds nothing yet; start() does.
    explicit udp_server(udp_config config, Handler prototype = Handler{})
        : config_(std::move(config)), prototype_(std::move(prototype)) {}
    udp_server(const udp_server&) = delete;
    udp_server& operator=(const udp_server&) = delete;
    // The controlling thread: stop(), its exception swallowed.
    ~udp_server() {
        try {
            stop();
        } catch (...) {
            // Reported through on_error already; nobody is left to tell.
        }
    }

    // Binds every socket, starts every endpoint's thread, and returns once
    // each is receiving. Throws std::system_error and leaves nothing
    // running when a part fails.
    void start() {
        if (running_) return;
        endpoints_.clear();
        failure_ = nullptr;
        if (config_.reactors == 0) config_.reactors = 1;
        endpoint where = endpoint::parse(config_.address, config_.port, config_.dual_stack);
        bool reuse = config_.reactors > 1;
        try {
            for (unsigned i = 0; i < config_.reactors; ++i) {
                // The first socket picks the port when asked for 0; the rest bind it.
                int fd = open_datagram_socket(where, config_, reuse, i == 0 ? &bound_ : nullptr);
                if (i == 0) where = bound_;
                try {
                    endpoints_.push_back(std::make_unique<endpoint_type>(i, config_, prototype_, fd));
                } catch (...) {
                    ::close(fd);
                    throw;
                }
            }
            for (auto& e : endpoints_) threads_.push_back(start_thread(*e));
        } catch (...) {
            running_ = true;
            stop_quietly();
            throw;
        }
        running_ = true;
    }

    // Stops every endpoint (each waits up to stop_deadline for its sends in
    // flight) and joins the threads. Rethrows the first endpoint's failure.
    // Safe to call twice.
    void stop() {
        stop_quietly();
        std::exception_ptr failure;
        {
            std::lock_guard lock(mutex_);
            failure = std::exchange(failure_, nullptr);
        }
        if (failure) std::rethrow_exception(failure);
    }

    // Any thread: waits until an endpoint failed (true), or stop() began or
    // `timeout` passed (false).
    bool wait_for_failure(std::chrono::milliseconds timeout) const {
        std::unique_lock lock(mutex_);
        failed_.wait_for(lock, timeout, [this] { return failure_ != nullptr || stopping_; });
        return failure_ != nullptr;
    }
    // Any thread: the error an endpoint stopped on, or nullptr.
    std::exception_ptr failure() const {
        std::lock_guard lock(mutex_);
        return failure_;
    }

    // After start() and until the next start(), any thread (an endpoint's own
    // members say which thread may use each).
    std::uint16_t port() const noexcept { return bound_.port(); }
    const endpoint& local_endpoint() const noexcept { return bound_; }
    std::size_t endpoint_count() const noexcept { return endpoints_.size(); }
    endpoint_type& endpoint_at(std::size_t i) noexcept { return *endpoints_[i]; }
    const datagram_counters& counters(std::size_t i) const noexcept { return endpoints_[i]->counters(); }
    datagram_snapshot totals() const noexcept {
        datagram_snapshot t;
        for (auto& e : endpoints_) t += snapshot(e->counters());
        return t;
    }
    // After start(), the controlling thread: each fallback reason once.
    std::vector<std::string> fallbacks() const {
        std::vector<std::string> all;
        for (auto& e : endpoints_)
            for (auto const& f : e->fallbacks())
                if (std::find(all.begin(), all.end(), f) == all.end()) all.push_back(f);
        return all;
    }

private:
    void stop_quietly() {
        if (!running_) return;
        running_ = false;
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        failed_.notify_all();
        for (auto& e : endpoints_) e->request_stop();
        for (auto& t : threads_) t.join();
        threads_.clear();
        std::lock_guard lock(mutex_);
        stopping_ = false;
    }

    // Runs setup() then run() on a new thread (detail::start_worker); an
    // exception from run() is kept for failure() and stop().
    std::thread start_thread(endpoint_type& e) {
        return detail::start_worker([&e] { e.setup(); }, [&e] { e.run(); }, [this](std::exception_ptr x) {
            {
                std::lock_guard lock(mutex_);
                if (!failure_) failure_ = x;
            }
            failed_.notify_all();
        });
    }

    udp_config config_;
    Handler prototype_;
    std::vector<std::unique_ptr<endpoint_type>> endpoints_;
    std::vector<std::thread> threads_;
    mutable std::mutex mutex_;
    mutable std::condition_variable failed_;
    std::exception_ptr failure_;  // under mutex_
    bool stopping_ = false;       // under mutex_
    endpoint bound_;
    bool running_ = false;
};

}  // namespace zerg
