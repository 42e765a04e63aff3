// The Handler concept: what a user's handler type must provide. One of four
// ways to take received bytes, chosen at compile time:
//
//   struct my_handler {
//       struct connection_state { ... };                             // optional
//       void on_open(zerg::connection<my_handler>&);                  // optional
//
//       // (a) each receive's bytes, valid during the call only:
//       void on_data(zerg::connection<my_handler>&, std::span<const std::byte>);
//       // (b) or every unconsumed byte, kept across calls until consumed:
//       void on_data(zerg::connection<my_handler>&, zerg::buffer_sequence&);
//       // (c) or each provided buffer itself, returned with c.release(item):
//       void on_ring_item(zerg::connection<my_handler>&, zerg::ring_item);
//       // (d) or a coroutine per connection (co_await c.read(), c.flush()):
//       zerg::task serve(zerg::connection<my_handler>&);
//
//       void on_close(zerg::connection<my_handler>&, zerg::close_reason);  // optional
//   };
//
// Callbacks run on the reactor's thread and are called directly (no virtual
// call, no std::function).
#pragma once

#include <zerg/connection.hpp>

#include <concepts>
#include <cstddef>
#include <span>
#include <system_error>

namespace zerg {

template <class H>
concept span_handler = requires(H h, connection<H>& c, std::span<const std::byte> bytes) { h.on_data(c, bytes); };
template <class H>
concept sequence_handler = requires(H h, connection<H>& c, buffer_sequence& bytes) { h.on_data(c, bytes); } &&
                           !span_handler<H>;
template <class H>
concept ring_item_handler = requires(H h, connection<H>& c, ring_item item) { h.on_ring_item(c, item); };
template <class H>
concept coroutine_handler = requires(H h, connection<H>& c) {
    { h.serve(c) } -> std::same_as<task>;
};

template <class H>
concept handler = std::copy_constructible<H> &&
                  (span_handler<H> || sequence_handler<H> || ring_item_handler<H> || coroutine_handler<H>);

template <class H>
concept handler_has_on_open = requires(H h, connection<H>& c) { h.on_open(c); };

template <class H>
concept handler_has_on_close = requires(H h, connection<H>& c, close_reason r) { h.on_close(c, r); };

// An outbound connection that could not connect (ECONNREFUSED,
// ENETUNREACH, ETIMEDOUT after server_config::connect_timeout, or
// operation_canceled when it was closed or the reactor stopped first).
// Called instead of on_open and on_close. Without it, on_close is called
// with the error.
template <class H>
concept handler_has_on_connect_error = requires(H h, connection<H>& c, std::error_code e) { h.on_connect_error(c, e); };

// The peer shut its sending side (EOF) while this side may still write:
// with this hook the connection stays open for writing until the handler
// calls close() (or shutdown(), which then closes). Without it an EOF
// flushes what is queued and closes.
template <class H>
concept handler_has_on_peer_shutdown = requires(H h, connection<H>& c) { h.on_peer_shutdown(c); };

// Spelled out so that a handler that misses the concept gets a sentence
// rather than a page of substitution failures.
template <class H>
constexpr bool check_handler() {
    static_assert(std::copy_constructible<H>,
                  "zerg: a Handler must be copy-constructible (each reactor gets its own copy)");
    static_assert(span_handler<H> || sequence_handler<H> || ring_item_handler<H> || coroutine_handler<H>,
                  "zerg: a Handler needs one of `void on_data(zerg::connection<Handler>&, std::span<const std::byte>)`, "
                  "`void on_data(zerg::connection<Handler>&, zerg::buffer_sequence&)`, "
                  "`void on_ring_item(zerg::connection<Handler>&, zerg::ring_item)` or "
                  "`zerg::task serve(zerg::connection<Handler>&)`");
    static_assert(static_cast<int>(span_handler<H> || sequence_handler<H>) + static_cast<int>(ring_item_handler<H>) +
                          static_cast<int>(coroutine_handler<H>) <=
                      1,
                  "zerg: a Handler takes received bytes one way only: on_data, on_ring_item or serve");
    // The optional callbacks are found by their signature; one with a wrong
    // signature would silently never be called, so a name alone must match.
    static_assert(!requires { &H::on_open; } || handler_has_on_open<H>,
                  "zerg: a Handler's on_open must be `void on_open(zerg::connection<Handler>&)`");
    static_assert(!requires { &H::on_close; } || handler_has_on_close<H>,
                  "zerg: a Handler's on_close must be `void on_close(zerg::connection<Handler>&, zerg::close_reason)`");
    static_assert(!requires { &H::on_connect_error; } || handler_has_on_connect_error<H>,
                  "zerg: a Handler's on_connect_error must be `void on_connect_error(zerg::connection<Handler>&, std::error_code)`");
    static_assert(!requires { &H::on_peer_shutdown; } || handler_has_on_peer_shutdown<H>,
                  "zerg: a Handler's on_peer_shutdown must be `void on_peer_shutdown(zerg::connection<Handler>&)`");
    return true;
}

}  // namespace zerg
