// The liburing reference for the benchmark's HTTP section: a TechEmpower
// plaintext server written directly on liburing 2.3, as one would without a
// framework. No zerg code here, on purpose: bin/http_plaintext's CPU per
// request is compared against it.
//
//   baseline::liburing_http_server s("127.0.0.1", 0, 1);
//   s.start();           // returns once connections are accepted
//   ... s.port() ...
//   s.stop();            // joins every thread; also done by the destructor
//
// Each thread owns a ring, a SO_REUSEPORT listener with a multishot accept,
// and a provided-buffer ring that multishot receives fill. Each received
// buffer is scanned for complete request heads at once and given back to
// the kernel; the answers to pipelined requests are appended, in order, to
// the connection's output, which goes out with one send at a time.
//
// What it does not do, and http_plaintext does: validate header syntax,
// honour "Connection: close", read request bodies, enforce limits beyond one
// (a head over 8 KiB is answered 400 and closed). It is the fast path a
// hand-written loop would have, which is the point of the comparison.
#pragma once

#include "baseline_liburing.hpp"  // uring_detail::open_listener, fail

#include <liburing.h>

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace baseline {

class liburing_http_server {
public:
    // `max_wait_ms` > 0 caps each sleep in io_uring_enter (valgrind).
    liburing_http_server(std::string address, std::uint16_t port, unsigned threads, unsigned max_wait_ms = 0)
        : address_(std::move(address)), port_(port), thread_count_(threads ? threads : 1), max_wait_ms_(max_wait_ms) {}
    liburing_http_server(const liburing_http_server&) = delete;
    liburing_http_server& operator=(const liburing_http_server&) = delete;
    ~liburing_http_server() { stop(); }

    void start() {
        if (!workers_.empty()) return;
        try {
            for (unsigned i = 0; i < thread_count_; ++i) {
                workers_.push_back(std::make_unique<worker>());
                worker& w = *workers_.back();
                w.max_wait_ms = max_wait_ms_;
                w.listener = uring_detail::open_listener(address_, port_, port_);
                w.stop_event = ::eventfd(0, EFD_CLOEXEC);
                if (w.stop_event < 0) uring_detail::fail("eventfd");
            }
            for (auto& w : workers_) {
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
    static constexpr unsigned buffer_count = 1024;  // a power of two
    static constexpr unsigned buffer_size = 4096;
    static constexpr unsigned sq_entries = 1024;
    static constexpr unsigned cq_entries = 8192;
    static constexpr std::size_t max_head = 8192;

    enum kind : std::uint64_t { accept_op = 1, stop_op, recv_op, send_op, cancel_op };

    struct connection {
        int fd = -1;
        std::uint32_t index = 0;
        std::uint32_t generation = 0;
        bool receiving = false, sending = false, closing = false, eof = false, close_after_send = false;
        std::string partial;  // the start of a request head split across receives
        std::string out;      // answers not yet handed to the kernel
        std::string wire;     // the send in flight: the kernel reads it until it completes
        std::size_t wire_sent = 0;
    };

    struct worker {
        unsigned max_wait_ms = 0;
        int listener = -1, stop_event = -1;
        std::thread thread;
        std::promise<void> ready;

        io_uring ring{};
        bool ring_open = false;
        void* region = nullptr;
        io_uring_buf_ring* buffers = nullptr;
        std::byte* buffer_memory = nullptr;
        unsigned returned = 0;

        std::vector<std::unique_ptr<connection>> connections;
        std::vector<std::uint32_t> free_slots;
        std::vector<std::uint64_t> starved;
        std::uint64_t stop_value = 0;
        unsigned in_flight = 0;
        bool stopping = false;

        // The whole answer, with the Date rewritten in place once a second.
        std::string ok_response, not_found_response;
        std::size_t date_at = 0;
        std::time_t date_time = 0;

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
            (void)written;
        }

        void run() noexcept {
            try {
                setup();
            } catch (...) {
                in_flight = 0;
                teardown();
                ready.set_exception(std::current_exception());
                return;
            }
            ready.set_value();
            while (!stopping) {
                if (returned) io_uring_buf_ring_advance(buffers, static_cast<int>(returned));
                returned = 0;
                for (std::uint64_t t : starved)
                    if (connection* c = find(t); c && !c->closing && !c->receiving && !c->eof) arm_recv(*c);
                starved.clear();
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
                refresh_date();
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
            io_uring_buf_ring_advance(buffers, static_cast<int>(returned));
            returned = 0;

            const std::string date(29, ' ');  // "Wed, 02 Dec 2026 15:50:29 GMT"
            ok_response = "HTTP/1.1 200 OK\r\nServer: baseline\r\nDate: " + date +
                          "\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
            not_found_response = "HTTP/1.1 404 Not Found\r\nServer: baseline\r\nDate: " + date + "\r\nContent-Length: 0\r\n\r\n";
            date_at = ok_response.find("Date: ") + 6;
            refresh_date();

            arm_accept();
            arm_stop();
            r = io_uring_submit(&ring);
            if (r < 0) uring_detail::fail("io_uring_submit", -r);
        }

        void refresh_date() {
            std::time_t now = std::time(nullptr);
            if (now == date_time) return;
            date_time = now;
            std::tm tm{};
            ::gmtime_r(&now, &tm);
            char text[64];
            std::size_t n = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
            if (n != 29) return;  // always 29 in the C locale
            ok_response.replace(date_at, 29, text, 29);
            not_found_response.replace(date_at, 29, text, 29);
        }

        void teardown() noexcept {
            for (auto& c : connections)
                if (c->fd >= 0) ::close(c->fd);
            if (ring_open) io_uring_queue_exit(&ring);
            ring_open = false;
            if (region && in_flight == 0) ::munmap(region, region_bytes);
            region = nullptr;
        }

        [[noreturn]] static void die(const char* what, int error) {
            std::fprintf(stderr, "liburing_http_server: %s: %s\n", what, std::strerror(error));
            std::abort();
        }

        static std::uint64_t tag(kind k, const connection* c = nullptr) {
            std::uint64_t t = std::uint64_t{k} << 56;
            if (c) t |= std::uint64_t{c->generation & 0xffffffu} << 32 | c->index;
            return t;
        }

        io_uring_sqe* next_sqe() {
            io_uring_sqe* sqe = io_uring_get_sqe(&ring);
            while (!sqe) {
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

        void recycle(int bid) {
            io_uring_buf_ring_add(buffers, buffer_memory + static_cast<std::size_t>(bid) * buffer_size, buffer_size,
                                  static_cast<unsigned short>(bid), io_uring_buf_ring_mask(buffer_count),
                                  static_cast<int>(returned++));
        }

        // One send in flight per connection keeps the answers in order.
        void pump(connection& c) {
            if (c.sending || c.closing || stopping) return;
            if (c.out.empty()) {
                if (c.eof || c.close_after_send) close(c);
                return;
            }
            c.wire.swap(c.out);
            c.out.clear();
            c.wire_sent = 0;
            send_rest(c);
        }

        void send_rest(connection& c) {
            io_uring_sqe* sqe = next_sqe();
            io_uring_prep_send(sqe, c.fd, c.wire.data() + c.wire_sent, c.wire.size() - c.wire_sent, MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, tag(send_op, &c));
            c.sending = true;
        }

        // Answers every complete head in `in`; returns the bytes consumed.
        std::size_t answer(connection& c, std::string_view in) {
            std::size_t at = 0;
            for (;;) {
                auto end = in.find("\r\n\r\n", at);
                if (end == std::string_view::npos) return at;
                std::string_view head = in.substr(at, end - at);
                if (head.rfind("GET /plaintext ", 0) == 0)
                    c.out += ok_response;
                else
                    c.out += not_found_response;
                at = end + 4;
            }
        }

        void on_data(connection& c, std::string_view data) {
            if (c.close_after_send) return;
            if (c.partial.empty()) {
                std::size_t used = answer(c, data);
                c.partial.assign(data.substr(used));
            } else {
                c.partial.append(data);
                std::size_t used = answer(c, c.partial);
                c.partial.erase(0, used);
            }
            if (c.partial.size() > max_head) {
                c.out += "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                c.partial.clear();
                c.close_after_send = true;
            }
            pump(c);
        }

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
                if (!more && !stopping) arm_accept();
            } else if (k == recv_op || k == send_op) {
                connection* c = find(cqe.user_data);
                if (!c) {
                    if (cqe.flags & IORING_CQE_F_BUFFER) recycle(static_cast<int>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
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
            c->receiving = c->sending = c->closing = c->eof = c->close_after_send = false;
            c->partial.clear();
            c->out.clear();
            c->wire.clear();
            arm_recv(*c);
        }

        void on_recv(connection& c, int res, std::uint32_t flags) {
            bool more = flags & IORING_CQE_F_MORE;
            if (!more) c.receiving = false;
            int bid = (flags & IORING_CQE_F_BUFFER) ? static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT) : -1;
            if (res > 0 && bid >= 0) {
                if (!c.closing && !stopping)
                    on_data(c, std::string_view(reinterpret_cast<const char*>(buffer_memory) +
                                                    static_cast<std::size_t>(bid) * buffer_size,
                                                static_cast<std::size_t>(res)));
                recycle(bid);  // copied out: the buffer goes straight back
                if (!more && !c.closing && !stopping) arm_recv(c);
            } else {
                if (bid >= 0) recycle(bid);
                if (res == -ENOBUFS) {
                    if (!more && !c.closing) starved.push_back(tag(recv_op, &c));
                } else if (res == 0) {
                    c.eof = true;  // answer what is complete, then close
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
                    close(c);
                } else {
                    c.wire_sent += static_cast<std::size_t>(res);
                    if (c.wire_sent < c.wire.size())
                        send_rest(c);
                    else
                        pump(c);
                }
            }
            release_if_idle(c);
        }

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
            ++c.generation;
            free_slots.push_back(c.index);
        }

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
