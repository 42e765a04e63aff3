// zerg::stream: plain-stream coroutines over a connection, for code that
// wants read_some/write rather than buffer sequences. Both copy: read_some
// moves bytes out of the ring buffers into the caller's span.
//
//   zerg::task serve(zerg::connection<H>& c) {
//       zerg::stream s(c);
//       std::array<std::byte, 4096> buf;
//       while (std::size_t n = co_await s.read_some(buf))
//           if (!co_await s.write(std::span(buf).first(n))) break;
//   }
#pragma once

#include <zerg/connection.hpp>

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <span>

namespace zerg {

template <class Connection>
class stream {
public:
    explicit stream(Connection& c) noexcept : c_(&c) {}

    // Up to out.size() bytes, at least one; 0 when the connection has closed.
    auto read_some(std::span<std::byte> out) noexcept {
        struct awaiter {
            Connection* c;
            std::span<std::byte> out;
            typename Connection::read_awaiter inner;
            bool await_ready() const noexcept { return inner.await_ready(); }
            void await_suspend(std::coroutine_handle<> h) noexcept { inner.await_suspend(h); }
            std::size_t await_resume() const noexcept {
                auto r = inner.await_resume();
                std::size_t n = r.buffer.copy_to(out);
                c->advance(n);
                return n;
            }
        };
        return awaiter{c_, out, c_->read()};
    }

    // Queues `bytes` and waits until they are sent; false if the connection closed.
    auto write(std::span<const std::byte> bytes) { return c_->write_all(bytes); }

private:
    Connection* c_;
};

template <class Connection>
stream(Connection&) -> stream<Connection>;

}  // namespace zerg
