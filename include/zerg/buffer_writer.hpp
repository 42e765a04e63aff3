// zerg::buffer_writer: writing a response in place into a connection's
// outbound queue (no intermediate buffer). Obtained from connection::writer().
//
//   auto w = c.writer();
//   w.write("HTTP/1.1 200 OK\r\nContent-Length: ");
//   w.append(body.size());
//   auto room = w.prepare(64);  ... w.commit(n);
//   w.flush();
//
// Bytes are queued in order with the connection's other writes; they go out
// with the reactor's next batch of sends, or right away after flush() from
// outside a callback. Reactor thread only.
#pragma once

#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdio>
#include <span>
#include <string_view>

namespace zerg {

template <class Connection>
class buffer_writer {
public:
    explicit buffer_writer(Connection& c) noexcept : c_(&c) {}

    // At least `n` contiguous writable bytes (n up to 16 KiB).
    std::span<std::byte> prepare(std::size_t n) { return c_->prepare(n); }
    void commit(std::size_t n) { c_->commit(n); }

    void write(std::span<const std::byte> bytes) { c_->write(bytes); }
    void write(std::string_view text) { c_->write(text); }

    // Decimal text of an integer, without a temporary string.
    template <std::integral T>
    void append(T value) {
        auto room = prepare(24);
        auto* first = reinterpret_cast<char*>(room.data());
        auto [end, ec] = std::to_chars(first, first + room.size(), value);
        commit(static_cast<std::size_t>(end - first));
    }

    // printf-style formatting straight into the queue (up to 1 KiB at once).
    template <class... Args>
    void format(const char* fmt, Args... args) {
        auto room = prepare(1024);
        int n = std::snprintf(reinterpret_cast<char*>(room.data()), room.size(), fmt, args...);
        if (n > 0) commit(std::min(static_cast<std::size_t>(n), room.size() - 1));
    }

    // Ask for the queued bytes to be sent with the next batch.
    void flush() { c_->flush(); }

private:
    Connection* c_;
};

}  // namespace zerg
