// The Handler concept: what a user's handler type must provide.
//
//   struct my_handler {
//       struct connection_state { ... };                 // optional
//       void on_open(zerg::connection<my_handler>&);      // optional
//       void on_data(zerg::connection<my_handler>&, std::span<const std::byte>);
//       void on_close(zerg::connection<my_handler>&, zerg::close_reason);  // optional
//   };
//
// Callbacks run on the reactor's thread and are called directly (no virtual
// call, no std::function). The bytes passed to on_data are valid only during
// the call: the buffer goes back to the kernel right after it returns.
#pragma once

#include <zerg/connection.hpp>

#include <concepts>
#include <cstddef>
#include <span>

namespace zerg {

template <class H>
concept handler = std::copy_constructible<H> &&
    requires(H h, connection<H>& c, std::span<const std::byte> bytes) {
        h.on_data(c, bytes);
    };

template <class H>
concept handler_has_on_open = requires(H h, connection<H>& c) { h.on_open(c); };

template <class H>
concept handler_has_on_close = requires(H h, connection<H>& c, close_reason r) { h.on_close(c, r); };

// Spelled out so that a handler that misses the concept gets a sentence
// rather than a page of substitution failures.
template <class H>
constexpr bool check_handler() {
    static_assert(std::copy_constructible<H>,
                  "zerg: a Handler must be copy-constructible (each reactor gets its own copy)");
    static_assert(requires(H h, connection<H>& c, std::span<const std::byte> bytes) { h.on_data(c, bytes); },
                  "zerg: a Handler needs `void on_data(zerg::connection<Handler>&, std::span<const std::byte>)`");
    return true;
}

}  // namespace zerg
