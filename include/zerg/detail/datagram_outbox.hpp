// The outbound side of a datagram endpoint: a fixed number of slots, each
// holding one datagram from send_to() until the kernel is done with it (its
// sendmsg CQE, or for sendmsg_zc its notification). Two caps, a slot count
// and a byte count in flight: a datagram past either is dropped and
// counted, never queued without bound. Slots keep their allocation for the
// next datagram while the memory kept stays under the byte cap; past it a
// released slot gives its memory back, so the outbox never holds much more
// than twice the byte cap.
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
    datagram_outbox(unsigned capacity, std::size_t max_bytes) : slots_(capacity), max_bytes_(max_bytes) {
        free_.reserve(capacity);
        for (unsigned i = capacity; i-- > 0;) free_.push_back(i);
    }

    unsigned capacity() const noexcept { return static_cast<unsigned>(slots_.size()); }
    unsigned in_flight() const noexcept { return capacity() - static_cast<unsigned>(free_.size()); }
    std::size_t bytes_in_flight() const noexcept { return bytes_in_flight_; }
    // Bytes allocated for slots, in flight or kept for reuse.
    std::size_t bytes_kept() const noexcept { return kept_; }

    // Copies `bytes` and `peer` into a free slot and points its message at
    // them. Nothing when every slot is in flight or the bytes would pass the
    // byte cap (the caller counts the drop).
    // Effects: one copy of the payload; an allocation only the first time a
    // slot holds a datagram that large.
    std::optional<std::uint32_t> acquire(const endpoint& peer, std::span<const std::byte> bytes) {
        if (free_.empty() || bytes_in_flight_ + bytes.size() > max_bytes_) return std::nullopt;
        std::uint32_t index = free_.back();
        outbound_datagram& d = slots_[index];
        kept_ -= d.bytes.capacity();
        d.bytes.assign(bytes.begin(), bytes.end());
        kept_ += d.bytes.capacity();
        bytes_in_flight_ += d.bytes.size();
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
    void release(std::uint32_t index) noexcept {
        outbound_datagram& d = slots_[index];
        bytes_in_flight_ -= d.bytes.size();
        if (kept_ > max_bytes_) {
            kept_ -= d.bytes.capacity();
            std::vector<std::byte>().swap(d.bytes);
        }
        free_.push_back(index);
    }

private:
    std::vector<outbound_datagram> slots_;  // never resized: messages point into it
    std::vector<std::uint32_t> free_;
    std::size_t max_bytes_;
    std::size_t bytes_in_flight_ = 0;
    std::size_t kept_ = 0;
};

}  // namespace zerg::detail
