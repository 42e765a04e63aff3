// zerg::uring::buffer_ring: a provided-buffer ring (5.19). The kernel picks a
// buffer for each receive itself, so thousands of idle connections need no
// memory of their own; the application returns buffers when it is done.
//
// Two modes:
//  - plain: one buffer per receive completion.
//  - incremental (IOU_PBUF_RING_INC, 6.12): the kernel places successive
//    receives one after another in the same buffer and says so with
//    IORING_CQE_F_BUF_MORE, so a 64 KiB buffer can serve many small messages.
//    When the kernel refuses the mode, the ring falls back to plain and says
//    so (fell_back()).
//
// Buffers go back in batches: recycle() stages a buffer, publish() hands
// every staged buffer to the kernel with one release store of the ring tail.
//
// Thread-safety: owned by the thread that owns the ring.
#pragma once

#include <zerg/uring/compat.hpp>
#include <zerg/uring/error.hpp>
#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/kernel_release.hpp>
#include <zerg/uring/ring.hpp>

#include <liburing.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace zerg::uring {

struct buffer_ring_options {
    std::uint16_t group_id = 0;
    unsigned entries = 256;      // power of two, at most 32768
    unsigned buffer_size = 4096; // bytes per buffer
    bool incremental = false;    // ask for IOU_PBUF_RING_INC (6.12)
};

class buffer_ring {
public:
    // Part of one buffer that a completion filled.
    struct slice {
        std::byte* data;
        std::uint32_t size;
        std::uint16_t id;
        // The kernel will put nothing more in this buffer: once the
        // application is done with its bytes it may recycle(id). Always true
        // in plain mode.
        bool last_use;
    };

    buffer_ring(ring& owner, const buffer_ring_options& options) {
        if (auto ec = init(owner, options); ec) throw std::system_error(ec, error_text_);
    }
    buffer_ring(ring& owner, const buffer_ring_options& options, std::error_code& ec) { ec = init(owner, options); }
    buffer_ring(const buffer_ring&) = delete;
    buffer_ring& operator=(const buffer_ring&) = delete;
    ~buffer_ring() { release(); }

    std::uint16_t group() const noexcept { return group_; }
    unsigned entries() const noexcept { return entries_; }
    unsigned buffer_size() const noexcept { return buffer_size_; }
    bool incremental() const noexcept { return incremental_; }
    // Bundle receives may use this ring in incremental mode: Linux 6.15
    // bundles incrementally consumed buffers, and no feature bit says so, so
    // the running kernel's release decides (kernel_release.hpp); hidden as
    // feature::incremental_bundle. Before that, zerg keeps the two apart.
    bool bundles_incremental() const noexcept { return incremental_ && incremental_bundles_; }
    // Incremental mode was asked for and is not in effect; reason() says why.
    bool fell_back() const noexcept { return !fallback_reason_.empty(); }
    const std::string& fallback_reason() const noexcept { return fallback_reason_; }
    const std::string& error_text() const noexcept { return error_text_; }

    std::byte* buffer(std::uint16_t id) const noexcept { return memory_ + std::size_t{id} * buffer_size_; }

    // Buffers the application holds: their last slice taken (in plain mode,
    // every slice is the last) and not yet recycled.
    unsigned held() const noexcept { return held_; }
    // Buffers recycled but not yet published.
    unsigned staged() const noexcept { return staged_; }
    // Buffers the kernel may still fill (partly used incremental ones included).
    unsigned in_kernel() const noexcept { return entries_ - held_ - staged_; }

    // The bytes a receive completion delivered. Precondition: the CQE carries
    // IORING_CQE_F_BUFFER (cqe_has_buffer) and res >= 0, without BUNDLE.
    slice take(const io_uring_cqe& cqe) noexcept {
        auto id = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
        auto size = static_cast<std::uint32_t>(cqe.res > 0 ? cqe.res : 0);
        std::uint32_t offset = 0;
        bool last = true;
        if (incremental_) {
            offset = offset_[id];
            last = !(cqe.flags & IORING_CQE_F_BUF_MORE);
            offset_[id] = offset + size;
        }
        // A buffer leaves the kernel with its last slice: until then the
        // kernel keeps filling it (it sits at the head of the ring and may
        // serve any receive on this group), so it must not be recycled and
        // counts as in_kernel().
        if (last) ++held_;
        return {buffer(id) + offset, size, id, last};
    }

    // A bundle receive (IORING_RECVSEND_BUNDLE, 6.10) fills consecutive ring
    // entries starting at the one the CQE names; calls `on_slice(slice)` for
    // each in order. Plain mode, or incremental mode where
    // bundles_incremental(): then the first slice starts where the buffer's
    // last receive ended, every slice but the last fills its buffer to the
    // end, and the last one stays the kernel's (last_use false) when the CQE
    // says IORING_CQE_F_BUF_MORE.
    template <class OnSlice>
    void take_bundle(const io_uring_cqe& cqe, OnSlice&& on_slice) {
        auto first = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
        std::uint32_t left = static_cast<std::uint32_t>(cqe.res > 0 ? cqe.res : 0);
        if (!incremental_ && left <= buffer_size_) [[likely]] {
            // One buffer held it all (small messages, the common case): the
            // plain receive's slice, without walking the ring's order.
            on_slice(take(cqe));
            return;
        }
        unsigned position = position_of_[first];
        bool kept = incremental_ && (cqe.flags & IORING_CQE_F_BUF_MORE);
        do {
            std::uint16_t id = id_at_[position & mask_];
            std::uint32_t offset = incremental_ ? offset_[id] : 0;
            std::uint32_t room = buffer_size_ - offset;
            std::uint32_t size = left < room ? left : room;
            left -= size;
            bool last_use = left > 0 || !kept;
            if (incremental_) offset_[id] = offset + size;
            if (last_use) ++held_;
            on_slice(slice{buffer(id) + offset, size, id, last_use});
            ++position;
        } while (left > 0);
    }

    // Stages buffer `id` for return; the kernel sees it after publish().
    void recycle(std::uint16_t id) noexcept {
        if (incremental_) offset_[id] = 0;
        std::uint16_t slot = static_cast<std::uint16_t>(pending_);
        io_uring_buf_ring_add(ring_, buffer(id), buffer_size_, id, io_uring_buf_ring_mask(entries_), slot);
        id_at_[(tail_ + slot) & mask_] = id;
        position_of_[id] = tail_ + slot;
        ++pending_;
        --held_;
        ++staged_;
    }

    // Makes every staged buffer visible to the kernel: one release store.
    void publish() noexcept {
        if (!pending_) return;
        io_uring_buf_ring_advance(ring_, static_cast<int>(pending_));
        tail_ += pending_;
        pending_ = 0;
        staged_ = 0;
    }

private:
    std::error_code init(ring& owner, const buffer_ring_options& options);
    int register_ring(std::uint16_t flags) noexcept {
        abi::buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uintptr_t>(ring_);
        reg.ring_entries = entries_;
        reg.bgid = group_;
        reg.flags = flags;
        // Registered directly: liburing 2.3 drops the flags of this call.
        long r = ::syscall(__NR_io_uring_register, ring_fd_, IORING_REGISTER_PBUF_RING, &reg, 1);
        return r < 0 ? -errno : 0;
    }
    void release() noexcept {
        if (registered_) {
            abi::buf_reg reg{};
            reg.bgid = group_;
            ::syscall(__NR_io_uring_register, ring_fd_, IORING_UNREGISTER_PBUF_RING, &reg, 1);
            registered_ = false;
        }
        if (ring_) ::munmap(ring_, ring_bytes_);
        if (memory_) ::munmap(memory_, memory_bytes_);
        ring_ = nullptr;
        memory_ = nullptr;
    }

    io_uring_buf_ring* ring_ = nullptr;
    std::byte* memory_ = nullptr;
    std::size_t ring_bytes_ = 0;
    std::size_t memory_bytes_ = 0;
    int ring_fd_ = -1;
    std::uint16_t group_ = 0;
    unsigned entries_ = 0;
    unsigned mask_ = 0;
    unsigned buffer_size_ = 0;
    bool incremental_ = false;
    bool incremental_bundles_ = false;
    bool registered_ = false;
    unsigned tail_ = 0;     // ring position of the next buffer to publish
    unsigned pending_ = 0;  // staged since the last publish
    unsigned held_ = 0;
    unsigned staged_ = 0;
    std::vector<std::uint32_t> offset_;       // incremental: bytes used per buffer
    std::vector<std::uint16_t> id_at_;        // ring position -> buffer id
    std::vector<unsigned> position_of_;       // buffer id -> ring position
    std::string fallback_reason_;
    std::string error_text_;
};

inline std::error_code buffer_ring::init(ring& owner, const buffer_ring_options& options) {
    auto fail = [this](int err, std::string text) {
        error_text_ = std::move(text);
        release();
        // A ring that failed to register owns no buffers: every counter and
        // accessor reports an empty ring instead of the sizes asked for.
        entries_ = mask_ = buffer_size_ = 0;
        incremental_ = false;
        return std::error_code(err, std::system_category());
    };
    if (options.entries == 0 || options.entries > 32768 || (options.entries & (options.entries - 1)))
        return fail(EINVAL, "zerg::uring::buffer_ring: entries must be a power of two from 1 to 32768");
    if (options.buffer_size == 0)
        return fail(EINVAL, "zerg::uring::buffer_ring: buffer_size must be positive");
    ring_fd_ = owner.fd();
    group_ = options.group_id;
    entries_ = options.entries;
    mask_ = entries_ - 1;
    buffer_size_ = options.buffer_size;

    // The kernel maps the ring entries as whole pages, so the entry array is
    // a page-aligned anonymous mapping; so are the buffers, so that no buffer
    // shares a page with unrelated data.
    ring_bytes_ = std::size_t{entries_} * sizeof(io_uring_buf);
    void* r = ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) {
        int err = errno;  // before the message string is built
        return fail(err, "zerg::uring::buffer_ring: cannot map the ring entries");
    }
    ring_ = static_cast<io_uring_buf_ring*>(r);
    memory_bytes_ = std::size_t{entries_} * buffer_size_;
    void* m = ::mmap(nullptr, memory_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        int err = errno;  // before the message string is built
        return fail(err, "zerg::uring::buffer_ring: cannot map the buffers");
    }
    memory_ = static_cast<std::byte*>(m);
    io_uring_buf_ring_init(ring_);

    if (is_hidden(feature::buf_ring))
        return fail(EINVAL, "zerg::uring::buffer_ring: provided-buffer rings are hidden by zerg::uring::hide; "
                            "they need Linux 5.19");
    int res = -EINVAL;
    if (options.incremental) {
        if (is_hidden(feature::buf_ring_incremental)) {
            fallback_reason_ = "incremental consumption hidden by zerg::uring::hide (test hook or ZERG_URING_HIDE)";
        } else {
            res = register_ring(abi::pbuf_ring_incremental);
            if (res == 0)
                incremental_ = true;
            else if (res == -EINVAL)  // a kernel before 6.12 does not know the flag
                fallback_reason_ = "kernel refused IOU_PBUF_RING_INC (needs Linux 6.12): " + result_error(res).message();
            // Any other error (EEXIST for a group already registered, ENOMEM)
            // is not about the mode: the plain attempt below meets it again
            // and reports it as the error it is.
        }
    }
    if (!incremental_) res = register_ring(0);
    if (res < 0)
        return fail(-res, "zerg::uring::buffer_ring: registering buffer group " + std::to_string(group_) +
                              " failed (provided-buffer rings need Linux 5.19): " + result_error(res).message());
    registered_ = true;
    incremental_bundles_ =
        incremental_ && !is_hidden(feature::incremental_bundle) && kernel_release::running().at_least(6, 15);

    offset_.assign(incremental_ ? entries_ : 0, 0);
    id_at_.assign(entries_, 0);
    position_of_.assign(entries_, 0);
    // Every buffer starts in the kernel's hands.
    held_ = entries_;
    for (unsigned id = 0; id < entries_; ++id) recycle(static_cast<std::uint16_t>(id));
    publish();
    return {};
}

}  // namespace zerg::uring
