// The epoll reference for the benchmark: an edge-triggered echo server
// written the way one would without any framework. No zerg code here, on
// purpose: this is what zerg's numbers are compared against.
//
//   baseline::epoll_echo_server s("127.0.0.1", 0, 2);
//   s.start();           // returns once connections are accepted
//   ... s.port() ...
//   s.stop();            // joins every thread; also done by the destructor
//
// Each thread owns a SO_REUSEPORT listener, an epoll instance and the
// connections the kernel hands to that listener, so threads share nothing.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace baseline {

namespace epoll_detail {

[[noreturn]] inline void fail(const char* what, int error = errno) {
    throw std::system_error(error, std::system_category(), what);
}

// A listener in the SO_REUSEPORT group for address:port; `port` 0 lets the
// kernel pick. Returns the fd and the port actually bound.
inline int open_listener(const std::string& address, std::uint16_t port, bool nonblocking, std::uint16_t& bound) {
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
    int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
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

}  // namespace epoll_detail

class epoll_echo_server {
public:
    epoll_echo_server(std::string address, std::uint16_t port, unsigned threads)
        : address_(std::move(address)), port_(port), thread_count_(threads ? threads : 1) {}
    epoll_echo_server(const epoll_echo_server&) = delete;
    epoll_echo_server& operator=(const epoll_echo_server&) = delete;
    ~epoll_echo_server() { stop(); }

    void start() {
        if (!workers_.empty()) return;
        try {
            for (unsigned i = 0; i < thread_count_; ++i) {
                workers_.push_back(std::make_unique<worker>());
                // The first listener fixes the port the others must share.
                workers_.back()->open(address_, port_, port_);
            }
            for (auto& w : workers_) w->thread = std::thread([w = w.get()] { w->run(); });
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
    struct connection {
        int fd = -1;
        // Bytes the socket would not take yet; capacity survives reuse.
        std::vector<char> pending;
        std::size_t pending_offset = 0;
    };

    struct worker {
        static constexpr std::size_t scratch_size = 64 * 1024;

        int listener = -1, epoll = -1, stop_event = -1;
        std::thread thread;
        // Indexed by fd: the epoll data is the fd itself, so a lookup is an index.
        std::vector<std::unique_ptr<connection>> by_fd;
        std::vector<char> scratch = std::vector<char>(scratch_size);

        ~worker() {
            for (auto& c : by_fd)
                if (c && c->fd >= 0) ::close(c->fd);
            for (int fd : {listener, epoll, stop_event})
                if (fd >= 0) ::close(fd);
        }

        void open(const std::string& address, std::uint16_t port, std::uint16_t& bound) {
            listener = epoll_detail::open_listener(address, port, true, bound);
            epoll = ::epoll_create1(EPOLL_CLOEXEC);
            if (epoll < 0) epoll_detail::fail("epoll_create1");
            stop_event = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (stop_event < 0) epoll_detail::fail("eventfd");
            watch(listener, EPOLLIN | EPOLLET);
            watch(stop_event, EPOLLIN);
        }

        void watch(int fd, std::uint32_t events) {
            epoll_event ev{};
            ev.events = events;
            ev.data.fd = fd;
            if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev) != 0) epoll_detail::fail("epoll_ctl");
        }

        void request_stop() {
            if (stop_event < 0) return;
            std::uint64_t one = 1;
            ssize_t written = ::write(stop_event, &one, sizeof one);
            (void)written;  // cannot fail short of a full counter, which is still a wakeup
        }

        // noexcept, and abort on the impossible: a baseline that quietly
        // stopped serving would only skew the benchmark.
        void run() noexcept {
            epoll_event events[256];
            for (;;) {
                int n = ::epoll_wait(epoll, events, 256, -1);
                if (n < 0) {
                    if (errno == EINTR) continue;
                    std::perror("epoll_echo_server: epoll_wait");
                    std::abort();
                }
                for (int i = 0; i < n; ++i) {
                    int fd = events[i].data.fd;
                    if (fd == stop_event) return;
                    if (fd == listener)
                        accept_all();
                    else
                        serve(fd, events[i].events);
                }
            }
        }

        void accept_all() {
            for (;;) {
                int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EINTR || errno == ECONNABORTED) continue;
                    // EAGAIN: drained. EMFILE and the like: the next connection
                    // retries, which is as far as a baseline needs to go.
                    return;
                }
                auto index = static_cast<std::size_t>(fd);
                if (index >= by_fd.size()) by_fd.resize(index + 64);
                if (!by_fd[index]) by_fd[index] = std::make_unique<connection>();
                connection& c = *by_fd[index];
                c.fd = fd;
                c.pending.clear();
                c.pending_offset = 0;
                // EPOLLOUT is registered once and costs nothing: edge-triggered,
                // it only fires after a send has hit EAGAIN. No epoll_ctl churn.
                epoll_event ev{};
                ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                ev.data.fd = fd;
                if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev) != 0) close(c);
            }
        }

        void serve(int fd, std::uint32_t events) {
            auto index = static_cast<std::size_t>(fd);
            // An event for a connection closed earlier in this batch: stale.
            if (index >= by_fd.size() || !by_fd[index] || by_fd[index]->fd < 0) return;
            connection& c = *by_fd[index];
            if (events & EPOLLERR) return close(c);
            if (c.pending_offset < c.pending.size() && !flush(c)) return;
            echo(c);
        }

        // Sends what is pending; true when all of it went out.
        bool flush(connection& c) {
            while (c.pending_offset < c.pending.size()) {
                ssize_t w = ::send(c.fd, c.pending.data() + c.pending_offset, c.pending.size() - c.pending_offset,
                                   MSG_NOSIGNAL);
                if (w > 0) {
                    c.pending_offset += static_cast<std::size_t>(w);
                } else if (w < 0 && errno == EINTR) {
                    continue;
                } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    return false;
                } else {
                    close(c);
                    return false;
                }
            }
            c.pending.clear();
            c.pending_offset = 0;
            return true;
        }

        // Reads until EAGAIN (edge-triggered: no second notice comes for bytes
        // already there), sending each chunk straight back. When the peer's
        // window is full the rest is kept and reading pauses, so a client that
        // does not read cannot make us buffer without bound; EPOLLOUT resumes.
        void echo(connection& c) {
            for (;;) {
                ssize_t r = ::recv(c.fd, scratch.data(), scratch.size(), 0);
                if (r == 0) return close(c);
                if (r < 0) {
                    if (errno == EINTR) continue;
                    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
                    return close(c);
                }
                auto size = static_cast<std::size_t>(r);
                std::size_t sent = 0;
                while (sent < size) {
                    ssize_t w = ::send(c.fd, scratch.data() + sent, size - sent, MSG_NOSIGNAL);
                    if (w > 0) {
                        sent += static_cast<std::size_t>(w);
                    } else if (w < 0 && errno == EINTR) {
                        continue;
                    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        c.pending.assign(scratch.data() + sent, scratch.data() + size);
                        c.pending_offset = 0;
                        return;
                    } else {
                        return close(c);  // EPIPE, ECONNRESET: the client is gone
                    }
                }
            }
        }

        void close(connection& c) {
            // close() also removes the fd from the epoll set.
            ::close(c.fd);
            c.fd = -1;
            c.pending.clear();
            c.pending_offset = 0;
        }
    };

    std::string address_;
    std::uint16_t port_;
    unsigned thread_count_;
    std::vector<std::unique_ptr<worker>> workers_;
};

}  // namespace baseline
