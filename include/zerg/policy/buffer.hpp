// Buffer policies: where a reactor's receives land.
//
//   provided_buffers<Size, Count>     one provided buffer per receive (5.19)
//   incremental_buffers<Size, Count>  receives packed one after another into
//                                     the same buffer (IOU_PBUF_RING_INC, 6.12);
//                                     falls back to one buffer per receive,
//                                     and says so, when the kernel refuses
//
// Buffer sizing has one source of truth at run time, server_config's
// buffer_size and buffer_count; the policy's Size and Count are only their
// defaults (used when the config leaves them 0). Both go through the one
// check below, buffer_geometry_error(): at compile time for the policy's
// defaults (a static_assert), and in the reactor's setup() for what the
// config finally asks, so server::start() fails with the same sentence
// either way. Memory: size × count per reactor.
//
// A buffer policy is a class the reactor owns; the members it calls are
// listed in the buffer_policy concept below.
#pragma once

#include <zerg/uring/buffer_ring.hpp>
#include <zerg/uring/ring.hpp>

#include <concepts>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zerg {

// The bytes of one receive completion, and the buffer they sit in.
struct received_bytes {
    const std::byte* data;
    std::uint32_t size;
    std::uint16_t buffer_id;
};

// Why a receive-buffer geometry is refused, or nullptr when it is fine.
// The kernel indexes a buffer ring with a mask (a power of two entries,
// at most 32768) and a buffer id is 16 bits.
constexpr const char* buffer_geometry_error(unsigned size, unsigned count) noexcept {
    if (count == 0 || (count & (count - 1)) != 0 || count > 32768)
        return "zerg: the buffer count must be a power of two from 1 to 32768 (buffer rings are indexed by a mask)";
    if (size == 0) return "zerg: the buffer size must be positive";
    return nullptr;
}

namespace detail {

// Shared by both policies: a buffer_ring plus a count of references the
// application still holds per buffer (slices taken, plus holds by sends from
// the receive buffer), because a buffer can go back to the kernel only when
// every reference has been released and, in incremental mode, the kernel is
// done with it (no BUF_MORE).
template <bool Incremental>
class buffer_pool {
public:
    void setup(uring::ring& ring, unsigned size, unsigned count, std::uint16_t group) {
        uring::buffer_ring_options options;
        options.group_id = group;
        options.entries = count;
        options.buffer_size = size;
        options.incremental = Incremental;
        ring_ = std::make_unique<uring::buffer_ring>(ring, options);
        refs_.assign(count, 0);
        if constexpr (Incremental) kernel_done_.assign(count, 0);
    }

    std::uint16_t group() const noexcept { return ring_->group(); }
    std::string fallback() const { return ring_->fell_back() ? ring_->fallback_reason() : std::string(); }
    // Buffers out of the kernel's hands: held by handlers or awaiting publish.
    unsigned in_use() const noexcept { return ring_->held() + ring_->staged(); }
    unsigned count() const noexcept { return ring_->entries(); }

    // Precondition: the CQE carries a buffer (IORING_CQE_F_BUFFER).
    received_bytes take(const io_uring_cqe& cqe) noexcept {
        auto s = ring_->take(cqe);
        ++refs_[s.id];
        if constexpr (Incremental) {
            if (ring_->incremental()) kernel_done_[s.id] = s.last_use;
        }
        return {s.data, s.size, s.id};
    }

    // Bundle receives (IORING_RECVSEND_BUNDLE, 6.10) can be used with this
    // pool: in plain mode, and in incremental mode from Linux 6.15, which
    // first bundled incrementally consumed buffers (see
    // buffer_ring::bundles_incremental()).
    bool can_bundle() const noexcept { return ring_ && (!ring_->incremental() || ring_->bundles_incremental()); }

    // The buffers of one bundle receive completion, in stream order: calls
    // f(received_bytes, last) for each, `last` for the final one. Returns
    // how many buffers the completion filled. Precondition: can_bundle()
    // and the CQE carries a buffer.
    template <class F>
    unsigned take_bundle(const io_uring_cqe& cqe, F&& f) {
        std::uint32_t total = cqe.res > 0 ? static_cast<std::uint32_t>(cqe.res) : 0, seen = 0;
        unsigned n = 0;
        ring_->take_bundle(cqe, [&](const uring::buffer_ring::slice& s) {
            ++refs_[s.id];
            if constexpr (Incremental) {
                if (ring_->incremental()) kernel_done_[s.id] = s.last_use;
            }
            seen += s.size;
            ++n;
            f(received_bytes{s.data, s.size, s.id}, seen >= total);
        });
        return n;
    }

    // One more reference on buffer `id`, which the application holds (a
    // send from the receive buffer): release() must be called once more.
    void hold(std::uint16_t id) noexcept { ++refs_[id]; }

    // The application is done with the bytes of one take() (or one hold()).
    // The buffer goes back when the last reference goes and, in incremental
    // mode, the kernel put its last slice in it.
    [[gnu::always_inline]] void release(std::uint16_t id) noexcept {
        if (--refs_[id] != 0) return;  // inline: a send from the buffer holds it past the handler's release
        last_release(id);
    }

    // One publish per reactor loop iteration, however many were released.
    void publish() noexcept { ring_->publish(); }

private:
    void last_release(std::uint16_t id) noexcept {
        if constexpr (Incremental) {
            if (ring_->incremental()) {
                if (!kernel_done_[id]) return;
                kernel_done_[id] = 0;
            }
        }
        ring_->recycle(id);
    }

    std::unique_ptr<uring::buffer_ring> ring_;
    std::vector<std::uint32_t> refs_;  // per buffer: takes (slices) and holds not yet released
    std::vector<std::uint8_t> kernel_done_;
};

// The compile-time size and count both policies take, checked once.
template <bool Incremental, unsigned Size, unsigned Count>
struct sized_buffer_pool : buffer_pool<Incremental> {
    static_assert(buffer_geometry_error(Size, Count) == nullptr,
                  "Count must be a power of two up to 32768 and Size positive (see buffer_geometry_error)");
    static constexpr unsigned default_size = Size;
    static constexpr unsigned default_count = Count;
};

}  // namespace detail

template <unsigned Size = 4096, unsigned Count = 1024>
struct provided_buffers : detail::sized_buffer_pool<false, Size, Count> {
    static constexpr const char* name = "provided";
};

template <unsigned Size = 16384, unsigned Count = 256>
struct incremental_buffers : detail::sized_buffer_pool<true, Size, Count> {
    static constexpr const char* name = "incremental";
};

// What basic_reactor calls on its Buffer policy.
template <class B>
concept buffer_policy = std::default_initializable<B> && requires(B b, const B cb, uring::ring& r, const io_uring_cqe& cqe,
                                                                 std::uint16_t id) {
    { B::default_size } -> std::convertible_to<unsigned>;
    { B::default_count } -> std::convertible_to<unsigned>;
    { B::name } -> std::convertible_to<const char*>;
    b.setup(r, 4096u, 64u, id);          // make the ring's buffer group
    { b.take(cqe) } -> std::same_as<received_bytes>;
    b.hold(id);                          // one more reference (a send from the buffer)
    b.release(id);                       // handler (or send) done with those bytes
    b.publish();                         // end of loop iteration
    { cb.can_bundle() } -> std::convertible_to<bool>;  // bundle receives possible (plain mode)
    { b.take_bundle(cqe, +[](received_bytes, bool) {}) } -> std::convertible_to<unsigned>;
    { cb.group() } -> std::convertible_to<std::uint16_t>;
    { cb.in_use() } -> std::convertible_to<unsigned>;
    { cb.count() } -> std::convertible_to<unsigned>;
    { cb.fallback() } -> std::convertible_to<std::string>;
};

}  // namespace zerg
