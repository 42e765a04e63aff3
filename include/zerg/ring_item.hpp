// zerg::ring_item: one received provided buffer, handed to a handler as is.
//
// The low-level alternative to buffer_sequence: a handler with
// `on_ring_item(connection<H>&, ring_item)` gets each receive's bytes with
// the buffer id and returns the buffer itself with connection::release()
// when done, now or later. Until then the buffer is out of the kernel's
// ring, so a handler that keeps items must keep the ring's size in mind.
// Release every item before on_close returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace zerg {

struct ring_item {
    const std::byte* data;
    std::uint32_t size;
    std::uint16_t buffer_id;

    std::span<const std::byte> bytes() const noexcept { return {data, size}; }
};

}  // namespace zerg
