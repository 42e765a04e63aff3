// The outbound side of a datagram endpoint: a fixed number of slots, each
// holding one datagram from send_to() until the kernel is done with it (its
// sendmsg CQE, or for sendmsg_zc its notification). The slot count is the
// endpoint's cap: a datagram past it is dropped and counted, never queued
// without bound.
//
// Thread-safety: owned by the endpoint's reactor thread.
#pragma once

#include <zerg/address.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

namespace zerg::detail {

// One datagram on its way out. The kernel reads `message`, `vector`, `peer`
// and `bytes` until the slot's last CQE: none of them may move or change
// while the slot is in flight.
struct outbound_datagram {
    msghdr message{};
    iovec vector{};
    sockaddr_storage peer{};
    std::vector<std::byte> bytes;  // keeps its capacity from one use to the next
    bool zero_copy = false;        // sent with SENDMSG_ZC: a notification CQE follows
};

class datagram_outbox {
public:
    // Allocates the slot table; the bytes of each slot grow on first use,
    // so memory is at most capacity × the largest datagram sent.
    explicit datagram_outbox(unsigned capacity) : slots_(capacity) {
        free_.reserve(capacity);
        for (unsigned i = capacity; i-- > 0;) free_.push_back(i);
    }

    unsigned capacity() const noexcept { return static_cast<unsigned>(slots_.size()); }
    unsigned in_flight() const noexcept { return capacity() - static_cast<unsigned>(free_.size()); }

    // Copies `bytes` and `peer` into a free slot and points its message at
    // them. Nothing when every slot is in flight (the caller counts the drop).
    // Effects: one copy of the payload; an allocation only the first time a
    // slot holds a datagram that large.
    std::optional<std::uint32_t> acquire(const endpoint& peer, std::span<const std::byte> bytes) {
        if (free_.empty()) return std::nullopt;
        std::uint32_t index = free_.back();
        outbound_datagram& d = slots_[index];
        d.bytes.assign(bytes.begin(), bytes.end());
        std::memcpy(&d.peer, &peer.storage, sizeof d.peer);
        d.vector = {d.bytes.data(), d.bytes.size()};
        d.message = {};
        d.message.msg_name = &d.peer;
        d.message.msg_namelen = peer.length;
        d.message.msg_iov = &d.vector;
        d.message.msg_iovlen = 1;
        d.zero_copy = false;
        free_.pop_back();  // after the copy: a bad_alloc leaves the slot free
        return index;
    }

    outbound_datagram& at(std::uint32_t index) noexcept { return slots_[index]; }

    // The slot's last CQE arrived: the kernel reads it no more.
    void release(std::uint32_t index) noexcept { free_.push_back(index); }

private:
    std::vector<outbound_datagram> slots_;  // never resized: messages point into it
    std::vector<std::uint32_t> free_;
};

}  // namespace zerg::detail
