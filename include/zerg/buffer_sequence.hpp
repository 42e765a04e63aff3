// zerg::buffer_sequence: the bytes received on a connection and not yet
// consumed, as a run of contiguous segments.
//
// Segments are provided buffers (or incremental-buffer slices) still owned
// by the kernel's ring, so nothing is copied while a parser works through
// them. consume(n) drops bytes from the front and gives every buffer that is
// wholly consumed back to the ring. Bytes a handler leaves unconsumed stay
// for its next callback. When the ring runs low, or a connection holds too
// many segments, the reactor moves the unconsumed bytes into memory the
// connection owns (spill()), so one slow parser cannot starve the ring.
//
// Thread-safety: reactor thread only. Views into a sequence are valid until
// the next consume() or until the callback returns.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace zerg {

class buffer_sequence {
public:
    // How the sequence hands a ring buffer back: a plain function pointer,
    // set once by the reactor, called once per buffer (not per byte).
    using release_fn = void (*)(void* context, std::uint16_t buffer_id) noexcept;
    static constexpr std::size_t max_segments = 16;

    buffer_sequence() = default;
    buffer_sequence(const buffer_sequence&) = delete;
    buffer_sequence& operator=(const buffer_sequence&) = delete;
    ~buffer_sequence() { clear(); }

    void bind(release_fn release, void* context) noexcept {
        release_ = release;
        context_ = context;
    }
    // Hands one buffer back the way this sequence does (ring-item handlers
    // hold buffers outside any sequence; connection::release comes here).
    void release_buffer(std::uint16_t buffer_id) const noexcept { release_(context_, buffer_id); }

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    // Contiguous pieces, oldest first (the spilled bytes, when any, first).
    std::size_t segment_count() const noexcept { return (spilled() ? 1 : 0) + count_; }
    std::span<const std::byte> segment(std::size_t i) const noexcept {
        if (spilled()) {
            if (i == 0) return {spill_.data() + spill_begin_, spill_.size() - spill_begin_};
            --i;
        }
        const ring_segment& s = ring_[i];
        return {s.data, s.size};
    }
    // The first contiguous piece (empty when the sequence is).
    std::span<const std::byte> front() const noexcept { return empty() ? std::span<const std::byte>{} : segment(0); }

    // The byte at `offset` (precondition: offset < size()).
    std::byte operator[](std::size_t offset) const noexcept {
        for (std::size_t i = 0;; ++i) {
            auto s = segment(i);
            if (offset < s.size()) return s[offset];
            offset -= s.size();
        }
    }

    // Offset of the first `b` at or after `from`.
    std::optional<std::size_t> find(std::byte b, std::size_t from = 0) const noexcept {
        std::size_t base = 0;
        for (std::size_t i = 0; i < segment_count(); ++i) {
            auto s = segment(i);
            if (from < base + s.size()) {
                std::size_t start = from > base ? from - base : 0;
                if (auto* p = static_cast<const std::byte*>(std::memchr(s.data() + start, static_cast<int>(b), s.size() - start)))
                    return base + static_cast<std::size_t>(p - s.data());
            }
            base += s.size();
        }
        return std::nullopt;
    }

    // Offset of the first occurrence of `needle` at or after `from`, also
    // when it straddles two or more segments.
    std::optional<std::size_t> find(std::span<const std::byte> needle, std::size_t from = 0) const noexcept {
        if (needle.empty()) return from <= size_ ? std::optional<std::size_t>(from) : std::nullopt;
        while (auto at = find(needle[0], from)) {
            if (*at + needle.size() > size_) return std::nullopt;
            if (matches(*at, needle)) return at;
            from = *at + 1;
        }
        return std::nullopt;
    }
    std::optional<std::size_t> find(std::string_view needle, std::size_t from = 0) const noexcept {
        return find(std::as_bytes(std::span(needle.data(), needle.size())), from);
    }

    // True when the bytes at `offset` equal `what`.
    bool matches(std::size_t offset, std::span<const std::byte> what) const noexcept {
        if (offset + what.size() > size_) return false;
        bool same = true;
        std::size_t i = 0;
        for_each_piece(offset, what.size(), [&](std::span<const std::byte> piece) {
            same = std::memcmp(piece.data(), what.data() + i, piece.size()) == 0;
            i += piece.size();
            return same;
        });
        return same;
    }
    bool starts_with(std::string_view text) const noexcept {
        return matches(0, std::as_bytes(std::span(text.data(), text.size())));
    }

    // Copies up to out.size() bytes starting at `offset`; returns how many.
    std::size_t copy_to(std::span<std::byte> out, std::size_t offset = 0) const noexcept {
        if (offset >= size_) return 0;
        std::size_t n = std::min(out.size(), size_ - offset), done = 0;
        for_each_piece(offset, n, [&](std::span<const std::byte> piece) {
            std::memcpy(out.data() + done, piece.data(), piece.size());
            done += piece.size();
            return true;
        });
        return done;
    }

    // A view of [offset, offset + length) that can be searched and copied.
    class slice_view {
    public:
        slice_view(const buffer_sequence& seq, std::size_t offset, std::size_t length) noexcept
            : seq_(&seq), offset_(offset), length_(length) {}
        std::size_t size() const noexcept { return length_; }
        std::byte operator[](std::size_t i) const noexcept { return (*seq_)[offset_ + i]; }
        std::size_t copy_to(std::span<std::byte> out) const noexcept {
            return seq_->copy_to(out.first(std::min(out.size(), length_)), offset_);
        }
        std::optional<std::size_t> find(std::byte b) const noexcept {
            auto at = seq_->find(b, offset_);
            return at && *at < offset_ + length_ ? std::optional<std::size_t>(*at - offset_) : std::nullopt;
        }
        bool equals(std::string_view text) const noexcept {
            return text.size() == length_ && seq_->matches(offset_, std::as_bytes(std::span(text.data(), text.size())));
        }
        // Calls f(std::span<const std::byte>) for each contiguous piece.
        template <class F>
        void for_each_piece(F f) const {
            seq_->for_each_piece(offset_, length_, [&](std::span<const std::byte> p) {
                f(p);
                return true;
            });
        }
        // Calls f(std::span<const std::byte>, int buffer_id) for each
        // contiguous piece: the provided buffer it sits in, or -1 for bytes
        // already spilled into the sequence's own memory.
        template <class F>
        void for_each_buffer_piece(F f) const {
            seq_->for_each_buffer_piece(offset_, length_, f);
        }

    private:
        const buffer_sequence* seq_;
        std::size_t offset_, length_;
    };
    slice_view slice(std::size_t offset, std::size_t length) const noexcept {
        offset = std::min(offset, size_);
        return {*this, offset, std::min(length, size_ - offset)};
    }

    // Drops `n` bytes from the front (n <= size()). Ring buffers that are
    // wholly consumed go back to the kernel (published with the reactor's
    // next batch).
    void consume(std::size_t n) noexcept {
        n = std::min(n, size_);
        size_ -= n;
        if (spilled()) {
            std::size_t have = spill_.size() - spill_begin_;
            std::size_t take = std::min(n, have);
            spill_begin_ += take;
            n -= take;
            if (spill_begin_ == spill_.size()) {
                spill_.clear();  // keeps its capacity for the next spill
                spill_begin_ = 0;
            }
        }
        std::size_t drop = 0;
        while (n > 0 && drop < count_) {
            ring_segment& s = ring_[drop];
            std::size_t take = std::min<std::size_t>(n, s.size);
            s.data += take;
            s.size -= static_cast<std::uint32_t>(take);
            n -= take;
            if (s.size == 0) {
                release_(context_, s.buffer_id);
                ++drop;
            }
        }
        remove_front(drop);
    }

    // Gives back every buffer and forgets every byte.
    void clear() noexcept {
        for (std::size_t i = 0; i < count_; ++i) release_(context_, ring_[i].buffer_id);
        count_ = 0;
        size_ = 0;
        spill_.clear();
        spill_begin_ = 0;
    }
    // clear(), and the spill memory goes back to the allocator too (a
    // connection that once held a large message does not keep it).
    void release_memory() noexcept {
        clear();
        std::vector<std::byte>().swap(spill_);
    }
    // Heap bytes this sequence holds for spilled input.
    std::size_t spill_capacity() const noexcept { return spill_.capacity(); }

    // ---- for the reactor ----------------------------------------------------

    // Appends a received slice. Precondition: !full().
    void push(const std::byte* data, std::uint32_t size, std::uint16_t buffer_id) noexcept {
        ring_[count_++] = {data, size, buffer_id};
        size_ += size;
    }
    bool full() const noexcept { return count_ == max_segments; }
    // Ring buffers this sequence holds.
    std::size_t ring_segments() const noexcept { return count_; }
    // Copies every byte still in ring buffers into connection-owned memory
    // and gives those buffers back. Allocates only to grow past the largest
    // backlog this connection has had.
    void spill() {
        if (count_ == 0) return;
        if (spill_begin_ > 0) {
            spill_.erase(spill_.begin(), spill_.begin() + static_cast<std::ptrdiff_t>(spill_begin_));
            spill_begin_ = 0;
        }
        for (std::size_t i = 0; i < count_; ++i) {
            const ring_segment& s = ring_[i];
            spill_.insert(spill_.end(), s.data, s.data + s.size);
            release_(context_, s.buffer_id);
        }
        count_ = 0;
    }
    std::size_t spilled_bytes() const noexcept { return spilled() ? spill_.size() - spill_begin_ : 0; }

private:
    struct ring_segment {
        const std::byte* data;
        std::uint32_t size;
        std::uint16_t buffer_id;
    };

    bool spilled() const noexcept { return spill_.size() > spill_begin_; }

    void remove_front(std::size_t n) noexcept {
        if (n == 0) return;
        std::copy(ring_.begin() + static_cast<std::ptrdiff_t>(n), ring_.begin() + static_cast<std::ptrdiff_t>(count_), ring_.begin());
        count_ -= n;
    }

    // Calls f(piece) for the contiguous pieces covering [offset, offset+n);
    // stops early when f returns false.
    template <class F>
    void for_each_piece(std::size_t offset, std::size_t n, F f) const {
        for (std::size_t i = 0; i < segment_count() && n > 0; ++i) {
            auto s = segment(i);
            if (offset >= s.size()) {
                offset -= s.size();
                continue;
            }
            std::size_t take = std::min(n, s.size() - offset);
            if (!f(s.subspan(offset, take))) return;
            n -= take;
            offset = 0;
        }
    }

    // As for_each_piece, with the provided buffer of each piece (-1: spilled).
    template <class F>
    void for_each_buffer_piece(std::size_t offset, std::size_t n, F& f) const {
        for (std::size_t i = 0; i < segment_count() && n > 0; ++i) {
            auto s = segment(i);
            if (offset >= s.size()) {
                offset -= s.size();
                continue;
            }
            std::size_t take = std::min(n, s.size() - offset);
            int id = spilled() ? (i == 0 ? -1 : static_cast<int>(ring_[i - 1].buffer_id)) : static_cast<int>(ring_[i].buffer_id);
            f(s.subspan(offset, take), id);
            n -= take;
            offset = 0;
        }
    }

    static void no_release(void*, std::uint16_t) noexcept {}

    std::array<ring_segment, max_segments> ring_{};
    std::size_t count_ = 0;
    std::size_t size_ = 0;
    std::vector<std::byte> spill_;
    std::size_t spill_begin_ = 0;
    release_fn release_ = &no_release;
    void* context_ = nullptr;
};

}  // namespace zerg
