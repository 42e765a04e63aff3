// Blocking-style client I/O for protocol tests, every call bounded by a
// deadline: send everything, read an exact count, read until a condition
// holds, wait for the peer to close. Sockets are used with MSG_DONTWAIT and
// poll(2), so nothing here can hang past its timeout.
#pragma once

#include <support/sockets.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace zerg::test {

using clock = std::chrono::steady_clock;

inline void set_nodelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Waits until `fd` has any of `events`, at most until `deadline`.
inline bool wait_for_events(int fd, short events, clock::time_point deadline) {
    pollfd p{fd, events, 0};
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
        if (left < 0) left = 0;
        int n = ::poll(&p, 1, static_cast<int>(left));
        if (n > 0) return true;
        if (n == 0) return false;
        if (errno != EINTR) return false;
    }
}

// Sends all of `data`; false on error or timeout.
inline bool send_all(int fd, std::string_view data, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = clock::now() + timeout;
    while (!data.empty()) {
        ssize_t w = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            data.remove_prefix(static_cast<std::size_t>(w));
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_for_events(fd, POLLOUT, deadline)) return false;
            continue;
        }
        return false;
    }
    return true;
}

struct read_outcome {
    std::string bytes;
    bool eof = false;     // the peer closed (FIN)
    int error = 0;        // errno of a failed recv (ECONNRESET...)
    bool timed_out = false;
};

// Reads until `done(bytes)` holds, the peer closes, an error, or the timeout.
template <class Done>
read_outcome read_until(int fd, Done done, std::chrono::milliseconds timeout = std::chrono::seconds(5),
                        std::size_t max_chunk = 64 * 1024) {
    read_outcome out;
    auto deadline = clock::now() + timeout;
    std::string buffer(max_chunk, '\0');
    while (!done(out.bytes)) {
        if (!wait_for_events(fd, POLLIN, deadline)) {
            out.timed_out = true;
            return out;
        }
        ssize_t r = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (r > 0) {
            out.bytes.append(buffer.data(), static_cast<std::size_t>(r));
        } else if (r == 0) {
            out.eof = true;
            return out;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            out.error = errno;
            return out;
        }
    }
    return out;
}

// Exactly `n` bytes, never more (fewer when the peer closes first or time
// runs out), so pipelined replies can be read one at a time.
inline read_outcome read_exact(int fd, std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    read_outcome out;
    out.bytes.resize(n);
    std::size_t have = 0;
    auto deadline = clock::now() + timeout;
    while (have < n) {
        ssize_t r = ::recv(fd, out.bytes.data() + have, n - have, MSG_DONTWAIT);
        if (r > 0) {
            have += static_cast<std::size_t>(r);
            continue;
        }
        if (r == 0) {
            out.eof = true;
            break;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            out.error = errno;
            break;
        }
        if (!wait_for_events(fd, POLLIN, deadline)) {
            out.timed_out = true;
            break;
        }
    }
    out.bytes.resize(have);
    return out;
}

// Everything until the peer closes (FIN or reset), or the timeout.
inline read_outcome read_to_close(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    return read_until(fd, [](const std::string&) { return false; }, timeout);
}

}  // namespace zerg::test
