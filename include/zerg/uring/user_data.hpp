// user_data: the 64-bit tag the kernel hands back with every completion.
//
// zerg packs three things into it: what kind of operation completed, which
// connection slot it belongs to, and that slot's generation when the
// operation was submitted. A slot is reused for a new connection only with a
// new generation, so a late CQE for the old connection (a cancelled recv, a
// send that raced a close) is recognised as stale and dropped instead of
// being delivered to whoever owns the slot now.
//
//   63        56 55                  32 31                            0
//  +------------+----------------------+-------------------------------+
//  |    kind    |      generation      |             slot              |
//  +------------+----------------------+-------------------------------+
#pragma once

#include <cstdint>
#include <vector>

namespace zerg::uring {

class user_data {
public:
    static constexpr unsigned kind_bits = 8;
    static constexpr unsigned generation_bits = 24;
    static constexpr std::uint32_t generation_mask = (1u << generation_bits) - 1;
    // Kind 0xff is never used: liburing reserves user_data ~0 for its own
    // timeouts, and a zero tag is easy to produce by accident.
    static constexpr std::uint8_t max_kind = 0xfe;

    constexpr user_data() noexcept = default;
    constexpr explicit user_data(std::uint64_t raw) noexcept : raw_(raw) {}
    constexpr user_data(std::uint8_t kind, std::uint32_t slot, std::uint32_t generation) noexcept
        : raw_((std::uint64_t{kind} << 56) | (std::uint64_t{generation & generation_mask} << 32) | slot) {}

    constexpr std::uint64_t raw() const noexcept { return raw_; }
    constexpr std::uint8_t kind() const noexcept { return static_cast<std::uint8_t>(raw_ >> 56); }
    constexpr std::uint32_t generation() const noexcept { return static_cast<std::uint32_t>(raw_ >> 32) & generation_mask; }
    constexpr std::uint32_t slot() const noexcept { return static_cast<std::uint32_t>(raw_); }

    friend constexpr bool operator==(user_data, user_data) noexcept = default;

private:
    std::uint64_t raw_ = 0;
};

// The current generation of every slot. Tag operations with tag(), bump the
// generation with retire() when the slot's owner goes away, and check each
// completion with is_current() before acting on it.
class slot_generations {
public:
    explicit slot_generations(std::uint32_t slots) : generation_(slots, 0) {}

    std::uint32_t size() const noexcept { return static_cast<std::uint32_t>(generation_.size()); }
    std::uint32_t generation(std::uint32_t slot) const noexcept { return generation_[slot]; }

    user_data tag(std::uint8_t kind, std::uint32_t slot) const noexcept { return {kind, slot, generation_[slot]}; }

    // The slot's owner is gone; every tag made before this is now stale.
    void retire(std::uint32_t slot) noexcept { generation_[slot] = (generation_[slot] + 1) & user_data::generation_mask; }

    bool is_current(user_data ud) const noexcept {
        return ud.slot() < generation_.size() && generation_[ud.slot()] == ud.generation();
    }

private:
    std::vector<std::uint32_t> generation_;
};

}  // namespace zerg::uring
