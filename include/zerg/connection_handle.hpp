// zerg::connection_handle: names one connection of one reactor, safely, from
// any thread and for any time.
//
// A connection reference (connection<H>&) is valid during a callback only;
// a handle is three numbers: the reactor's index, the slot in its table and
// that slot's generation when the handle was made. The reactor bumps a
// slot's generation when the slot is freed (uring/user_data.hpp,
// slot_generations), so a handle to a closed connection never matches the
// slot's next owner: whoever resolves it gets "gone", never someone else's
// connection.
//
// A handle is resolved on its reactor's thread only: by
// basic_reactor::find(), by connection<H>::find() inside a callback, or by
// the server's write()/close()/post(), which carry it to that thread
// (detail/posted_work.hpp).
#pragma once

#include <zerg/address.hpp>

#include <cstdint>
#include <system_error>

namespace zerg {

struct connection_handle {
    static constexpr std::uint32_t no_reactor = 0xffffffffu;

    std::uint32_t reactor = no_reactor;
    std::uint32_t slot = 0;
    std::uint32_t generation = 0;

    // Any thread: names a connection at all (a default handle names none).
    // A valid handle may still name a connection that has closed since.
    bool valid() const noexcept { return reactor != no_reactor; }
    explicit operator bool() const noexcept { return valid(); }
    friend bool operator==(const connection_handle&, const connection_handle&) noexcept = default;
};

namespace detail {

// What a connection asks of its reactor without knowing the reactor's type:
// a few function pointers and the reactor's address, set when the table is
// made (no virtual call; Asio's operations are built the same way).
// Reactor thread only, like the connection that holds it.
template <class Connection>
struct reactor_access {
    void* reactor = nullptr;
    std::uint32_t index = 0;
    // The reactor's slot generations, for handle().
    std::uint32_t (*generation)(void* reactor, std::uint32_t slot) noexcept = nullptr;
    Connection* (*find)(void* reactor, connection_handle h) noexcept = nullptr;
    Connection* (*connect)(void* reactor, const endpoint& to, std::error_code& ec) = nullptr;
};

}  // namespace detail
}  // namespace zerg
