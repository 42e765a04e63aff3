// The liburing reference for the benchmark: an echo server written directly
// on liburing 2.3, the way one would without a framework. No zerg code here,
// on purpose: this is what zerg's numbers are compared against.
//
//   baseline::liburing_echo_server s("127.0.0.1", 0, 2);
//   s.start();           // returns once connections are accepted
//   ... s.port() ...
//   s.stop();            // joins every thread; also done by the destructor
//
// Each thread owns a ring, a SO_REUSEPORT listener with a multishot accept,
// and a provided-buffer ring that multishot receives fill; each received
// buffer is sent back as it is and recycled once its send completes.
#pragma once

#include <liburing.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <future>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace baseline {

namespace uring_detail {

[[noreturn]] inline void fail(const char* what, int error = errno) {
    throw std::system_error(error, std::system_category(), what);
}

// A blocking listener in the SO_REUSEPORT group for address:port (`port` 0:
// the kernel picks). Blocking, because io_uring completes an accept on an
// O_NONBLOCK socket with -EAGAIN instead of waiting for a connection.
inline int open_listener(const std::string& address, std::uint16_t port, std::uint16_t& bound) {
    sockaddr_storage storage{};
    socklen_t length = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
    if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        length = sizeof *v4;
    } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        length = sizeof *v6;
    } else {
        fail("not a numeric IP address", EINVAL);
    }
    int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    int one = 1;
    const char* step = nullptr;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) step = "SO_REUSEADDR";
    else if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) step = "SO_REUSEPORT";
    // Accepted sockets inherit it, which saves a setsockopt per connection.
    else if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) step = "TCP_NODELAY";
    else if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0) step = "bind";
    else if (::listen(fd, SOMAXCONN) != 0) step = "listen";
    else if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) step = "getsockname";
    if (step) {
        int error = errno;
        ::close(fd);
        fail(step, error);
    }
    bound = ntohs(storage.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    return fd;
}

}  // namespace uring_detail

class liburing_echo_server {
public:
    // `max_wait_ms` > 0 caps each sleep in io_uring_enter: valgrind holds its
    // lock across that call, so an idle worker would stall the other threads.
    liburing_echo_server(std::string address, std::uint16_t port, unsigned threads, unsigned max_wait_ms = 0)
        : address_(std::move(address)), port_(port), thread_count_(threads ? threads : 1), max_wait_ms_(max_wait_ms) {}
    liburing_echo_server(const liburing_echo_server&) = delete;
    liburing_echo_server& operator=(const liburing_echo_server&) = delete;
    ~liburing_echo_server() { stop(); }

    void start() {
        if (!workers_.empty()) return;
        try {
            for (unsigned i = 0; i < thread_count_; ++i) {
                workers_.push_back(std::make_unique<worker>());
                worker& w = *workers_.back();
                w.max_wait_ms = max_wait_ms_;
                // The first listener fixes the port the others must share.
                w.listener = uring_detail::open_listener(address_, port_, port_);
                // Blocking for the same reason as the listener: the ring waits on it.
                w.stop_event = ::eventfd(0, EFD_CLOEXEC);
                if (w.stop_event < 0) uring_detail::fail("eventfd");
            }
            for (auto& w : workers_) {
                // The ring is created on its own thread: SINGLE_ISSUER binds it
                // to its creator and DEFER_TASKRUN runs work only for that task.
                w->thread = std::thread([w = w.get()] { w->run(); });
                w->ready.get_future().get();
            }
        } catch (...) {
            stop();
            throw;
        }
    }

    std::uint16_t port() const noexcept { return port_; }

    void stop() {
        for (auto& w : workers_) w->request_stop();
        for (auto& w : workers_)
            if (w->thread.joinable()) w->thread.join();
        workers_.clear();
    }

private:
    static constexpr unsigned buffer_count = 1024;  // a power of two: the ring index is masked
    static constexpr unsigned buffer_size = 4096;
    static constexpr unsigned sq_entries = 1024;
    static constexpr unsigned cq_entries = 8192;  // multishot receives post many CQEs per SQE

    // Queued buffers go out together: one 4 KiB send per buffer would cost a
    // trip through the TCP stack each, where epoll sends 64 KiB at once.
    static constexpr unsigned max_gather = 32;

    enum kind : std::uint64_t { accept_op = 1, stop_op, recv_op, send_op, cancel_op };

    struct connection {
        int fd = -1;
        std::uint32_t index = 0;
        std::uint32_t generation = 0;
        bool receiving = false, sending = false, closing = false, eof = false;
        // Received buffers not yet fully sent, in order, linked through
        // worker::next: no allocation, and a buffer is in one queue at a time.
        int head = -1, tail = -1;
        std::uint32_t head_sent = 0;
        // The send in flight: the kernel reads these until it completes.
        iovec iov[max_gather];
        msghdr msg{};
    };

    struct worker {
        unsigned max_wait_ms = 0;
        int listener = -1, stop_event = -1;
        std::thread thread;
        std::promise<void> ready;

        io_uring ring{};
        bool ring_open = false;
        void* region = nullptr;  // the buffer ring, then the buffers themselves
        io_uring_buf_ring* buffers = nullptr;
        std::byte* buffer_memory = nullptr;
        int next[buffer_count] = {};
        std::uint32_t length[buffer_count] = {};
        unsigned returned = 0;   // recycled but not yet published to the kernel
        unsigned available = 0;  // owned by the kernel, or about to be

        std::vector<std::unique_ptr<connection>> connections;
        std::vector<std::uint32_t> free_slots;
        std::vector<std::uint64_t> starved;  // hit ENOBUFS: re-armed once buffers return
        std::uint64_t stop_value = 0;
        unsigned in_flight = 0;  // submitted operations whose last CQE has not arrived
        bool stopping = false;

        static constexpr std::size_t ring_bytes = buffer_count * sizeof(io_uring_buf);
        static constexpr std::size_t region_bytes = ring_bytes + std::size_t{buffer_count} * buffer_size;

        ~worker() {
            for (int fd : {listener, stop_event})
                if (fd >= 0) ::close(fd);
        }

        void request_stop() {
            if (stop_event < 0) return;
            std::uint64_t one = 1;
            ssize_t written = ::write(stop_event, &one, sizeof one);
            (void)written;  // cannot fail short of a full counter, which is still a wakeup
        }

        // noexcept: a baseline that quietly stopped serving would skew the
        // benchmark, so anything unexpected after setup ends the process.
        void run() noexcept {
            try {
                setup();
            } catch (...) {
                in_flight = 0;  // nothing was submitted, or the submission failed
                teardown();
                ready.set_exception(std::current_exception());
                return;
            }
            ready.set_value();
            while (!stopping) {
                publish_buffers();
                int r;
                if (max_wait_ms) {
                    __kernel_timespec limit{0, static_cast<long long>(max_wait_ms) * 1'000'000};
                    io_uring_cqe* first = nullptr;
                    r = io_uring_submit_and_wait_timeout(&ring, &first, 1, &limit, nullptr);
                    if (r == -ETIME) r = 0;
                } else {
                    r = io_uring_submit_and_wait(&ring, 1);
                }
                if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) die("io_uring_submit_and_wait", -r);
                reap();
            }
            drain();
            teardown();
        }

        void setup() {
            io_uring_params p{};
            p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
            p.cq_entries = cq_entries;
            int r = io_uring_queue_init_params(sq_entries, &ring, &p);
            if (r == -EINVAL) {  // a kernel before 6.1
                p = io_uring_params{};
                p.flags = IORING_SETUP_CQSIZE;
                p.cq_entries = cq_entries;
                r = io_uring_queue_init_params(sq_entries, &ring, &p);
            }
            if (r < 0) uring_detail::fail("io_uring_queue_init_params", -r);
            ring_open = true;

            // liburing 2.3 has no io_uring_setup_buf_ring: map page-aligned
            // memory for the ring ourselves and register it.
            void* m = ::mmap(nullptr, region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) uring_detail::fail("mmap");
            region = m;
            buffers = static_cast<io_uring_buf_ring*>(m);
            buffer_memory = static_cast<std::byte*>(m) + ring_bytes;
            io_uring_buf_reg reg{};
            reg.ring_addr = reinterpret_cast<std::uintptr_t>(m);
            reg.ring_entries = buffer_count;
            reg.bgid = 0;
            r = io_uring_register_buf_ring(&ring, &reg, 0);
            if (r < 0) uring_detail::fail("io_uring_register_buf_ring", -r);
            io_uring_buf_ring_init(buffers);
            for (unsigned bid = 0; bid < buffer_count; ++bid) recycle(static_cast<int>(bid));
            publish_buffers();

            arm_accept();
            arm_stop();
            r = io_uring_submit(&ring);
            if (r < 0) uring_detail::fail("io_uring_submit", -r);
        }

        void teardown() noexcept {
            for (auto& c : connections)
                if (c->fd >= 0) ::close(c->fd);
            if (ring_open) io_uring_queue_exit(&ring);
            ring_open = false;
            // Had the drain timed out, the kernel might still write into
            // the buffers: leaking them is then the safe choice.
            if (region && in_flight == 0) ::munmap(region, region_bytes);
            region = nullptr;
        }

        [[noreturn]] static void die(const char* what, int error) {
            std::fprintf(stderr, "liburing_echo_server: %s: %s\n", what, std::strerror(error));
            std::abort();
        }

        // --- submissions ---------------------------------------------------

        static std::uint64_t tag(kind k, const connection* c = nullptr) {
            std::uint64_t t = std::uint64_t{k} << 56;
            if (c) t |= std::uint64_t{c->generation & 0xffffffu} << 32 | c->index;
            return t;
        }

        io_uring_sqe* next_sqe() {
            io_uring_sqe* sqe = io_uring_get_sqe(&ring);
            while (!sqe) {  // the SQ is full: hand it to the kernel and go on
                int r = io_uring_submit(&ring);
                if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) die("io_uring_submit", -r);
                sqe = io_uring_get_sqe(&ring);
            }
            ++in_flight;
            return sqe;
        }

        void arm_accept() {
            io_uring_sqe* sqe = next_sqe();
            io_uring_prep_multishot_accept(sqe, listener, nullptr, nullptr, SOCK_CLOEXEC);
            io_uring_sqe_set_data64(sqe, tag(accept_op));
        }

        void arm_stop() {
            io_uring_sqe* sqe = next_sqe();
            io_uring_prep_read(sqe, stop_event, &stop_value, sizeof stop_value, 0);
            io_uring_sqe_set_data64(sqe, tag(stop_op));
        }

        void arm_recv(connection& c) {
            io_uring_sqe* sqe = next_sqe();
            io_uring_prep_recv_multishot(sqe, c.fd, nullptr, 0, 0);
            sqe->flags |= IOSQE_BUFFER_SELECT;
            sqe->buf_group = 0;
            io_uring_sqe_set_data64(sqe, tag(recv_op, &c));
            c.receiving = true;
        }

        // One send in flight per connection keeps the bytes in order.
        void pump(connection& c) {
            if (c.sending || c.closing || stopping) return;
            if (c.head < 0) {
                if (c.eof) close(c);
                return;
            }
            unsigned n = 0;
            std::uint32_t skip = c.head_sent;
            for (int bid = c.head; bid >= 0 && n < max_gather; bid = next[bid], skip = 0)
                c.iov[n++] = {buffer_memory + static_cast<std::size_t>(bid) * buffer_size + skip, length[bid] - skip};
            c.msg = msghdr{};
            c.msg.msg_iov = c.iov;
            c.msg.msg_iovlen = n;
            io_uring_sqe* sqe = next_sqe();
            io_uring_prep_sendmsg(sqe, c.fd, &c.msg, MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, tag(send_op, &c));
            c.sending = true;
        }

        // --- buffers -------------------------------------------------------

        void recycle(int bid) {
            ++available;
            io_uring_buf_ring_add(buffers, buffer_memory + static_cast<std::size_t>(bid) * buffer_size, buffer_size,
                                  static_cast<unsigned short>(bid), io_uring_buf_ring_mask(buffer_count),
                                  static_cast<int>(returned++));
        }

        // One tail update per loop iteration, however many buffers came back.
        // Starved receives wait for a sixteenth of the pool: re-armed on every
        // returned buffer, they would only hit ENOBUFS again at once.
        void publish_buffers() {
            if (returned) io_uring_buf_ring_advance(buffers, static_cast<int>(returned));
            returned = 0;
            if (starved.empty() || available < buffer_count / 16) return;
            for (std::uint64_t t : starved)
                if (connection* c = find(t); c && !c->closing && !c->receiving && !c->eof && !stopping) arm_recv(*c);
            starved.clear();
        }

        // --- completions ---------------------------------------------------

        void reap() {
            io_uring_cqe* batch[256];
            while (unsigned n = io_uring_peek_batch_cqe(&ring, batch, 256)) {
                for (unsigned i = 0; i < n; ++i) complete(*batch[i]);
                io_uring_cq_advance(&ring, n);
            }
        }

        connection* find(std::uint64_t t) {
            auto index = static_cast<std::uint32_t>(t);
            if (index >= connections.size()) return nullptr;
            connection* c = connections[index].get();
            if (c->fd < 0 || (c->generation & 0xffffffu) != ((t >> 32) & 0xffffffu)) return nullptr;
            return c;
        }

        void complete(const io_uring_cqe& cqe) {
            bool more = cqe.flags & IORING_CQE_F_MORE;
            if (!more) --in_flight;
            auto k = static_cast<kind>(cqe.user_data >> 56);
            if (k == stop_op) {
                stopping = true;
            } else if (k == accept_op) {
                if (cqe.res >= 0) on_accept(cqe.res);
                // Re-armed even after an error such as EMFILE: giving up on
                // accepting would be worse for a server than retrying.
                if (!more && !stopping) arm_accept();
            } else if (k == recv_op || k == send_op) {
                connection* c = find(cqe.user_data);
                if (!c) {  // unreachable: a slot is reused only after its last CQE
                    if (cqe.flags & IORING_CQE_F_BUFFER) {
                        --available;
                        recycle(static_cast<int>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
                    }
                    return;
                }
                if (k == recv_op)
                    on_recv(*c, cqe.res, cqe.flags);
                else
                    on_send(*c, cqe.res);
            }
        }

        void on_accept(int fd) {
            if (stopping) {
                ::close(fd);
                return;
            }
            connection* c;
            if (!free_slots.empty()) {
                c = connections[free_slots.back()].get();
                free_slots.pop_back();
            } else {
                connections.push_back(std::make_unique<connection>());
                c = connections.back().get();
                c->index = static_cast<std::uint32_t>(connections.size() - 1);
            }
            c->fd = fd;
            c->receiving = c->sending = c->closing = c->eof = false;
            c->head = c->tail = -1;
            c->head_sent = 0;
            arm_recv(*c);
        }

        void on_recv(connection& c, int res, std::uint32_t flags) {
            bool more = flags & IORING_CQE_F_MORE;
            if (!more) c.receiving = false;
            if (flags & IORING_CQE_F_BUFFER) --available;
            if (res > 0) {
                int bid = static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT);
                if (c.closing || stopping) {
                    recycle(bid);
                } else {
                    length[bid] = static_cast<std::uint32_t>(res);
                    next[bid] = -1;
                    (c.tail < 0 ? c.head : next[c.tail]) = bid;
                    c.tail = bid;
                    pump(c);
                    if (!more && !stopping) arm_recv(c);
                }
            } else {
                if (flags & IORING_CQE_F_BUFFER) recycle(static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT));
                if (res == -ENOBUFS) {
                    // Every buffer is queued for sending: wait for some to come back.
                    if (!more && !c.closing) starved.push_back(tag(recv_op, &c));
                } else if (res == 0) {
                    c.eof = true;  // send back what is queued, then close
                    pump(c);
                } else {
                    close(c);
                }
            }
            release_if_idle(c);
        }

        void on_send(connection& c, int res) {
            c.sending = false;
            if (!c.closing) {
                if (res <= 0) {
                    close(c);  // EPIPE, ECONNRESET: the client is gone
                } else {
                    // Recycle what went out whole; a partial send leaves the
                    // rest of one buffer at the head.
                    for (auto sent = static_cast<std::uint32_t>(res); sent > 0;) {
                        std::uint32_t rest = length[c.head] - c.head_sent;
                        if (sent < rest) {
                            c.head_sent += sent;
                            break;
                        }
                        sent -= rest;
                        int bid = c.head;
                        c.head = next[bid];
                        if (c.head < 0) c.tail = -1;
                        c.head_sent = 0;
                        recycle(bid);
                    }
                    pump(c);  // what is left, and what arrived meanwhile
                }
            }
            release_if_idle(c);
        }

        // Closing is two steps: cancel what is in flight, then free the slot
        // when its last CQE has arrived, so no CQE can name a reused slot and
        // no send reads a buffer that went back to the kernel.
        void close(connection& c) {
            if (c.closing) return;
            c.closing = true;
            if ((c.receiving || c.sending) && !stopping) {
                io_uring_sqe* sqe = next_sqe();
                io_uring_prep_cancel_fd(sqe, c.fd, IORING_ASYNC_CANCEL_ALL);
                io_uring_sqe_set_data64(sqe, tag(cancel_op));
            }
        }

        void release_if_idle(connection& c) {
            if (c.fd < 0 || !c.closing || c.receiving || c.sending) return;
            ::close(c.fd);
            c.fd = -1;
            for (int bid = c.head; bid >= 0; bid = next[bid]) recycle(bid);
            c.head = c.tail = -1;
            ++c.generation;
            free_slots.push_back(c.index);
        }

        // Cancels everything still in flight and waits (bounded) for the
        // last CQEs, so the kernel is done with our memory before it is freed.
        void drain() {
            io_uring_sqe* sqe = next_sqe();
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
            io_uring_sqe_set_data64(sqe, tag(cancel_op));
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
            while (in_flight > 0 && std::chrono::steady_clock::now() < deadline) {
                __kernel_timespec wait{0, 50'000'000};
                io_uring_cqe* first = nullptr;
                int r = io_uring_submit_and_wait_timeout(&ring, &first, 1, &wait, nullptr);
                if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) break;
                reap();
            }
            if (in_flight == 0) io_uring_unregister_buf_ring(&ring, 0);
        }
    };

    std::string address_;
    std::uint16_t port_;
    unsigned thread_count_;
    unsigned max_wait_ms_ = 0;
    std::vector<std::unique_ptr<worker>> workers_;
};

}  // namespace baseline
