// Outbound bytes of one connection: a chain of segments, each either a
// fixed-size chunk taken from a per-reactor pool (copied writes) or a
// reference to bytes that still sit in a received provided buffer (sends
// from the receive buffer: nothing copied, the buffer goes back to the
// kernel's ring when its last byte is sent or the queue is cleared). It
// grows with what the handler writes (no fixed slab that fails under load)
// and, once the pool is warm, allocates nothing.
#pragma once

#include <boost/intrusive/slist.hpp>

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace zerg::detail {

// One piece of the outbound queue: bytes [begin, end) at `base`. A chunk's
// base is its own array; a held segment's is a provided buffer, which
// `buffer_id` names (no_buffer for a chunk).
struct write_segment : boost::intrusive::slist_base_hook<boost::intrusive::link_mode<boost::intrusive::normal_link>> {
    static constexpr std::int32_t no_buffer = -1;
    std::byte* base = nullptr;
    std::size_t begin = 0;  // first unsent byte
    std::size_t end = 0;    // one past the last written byte
    std::int32_t buffer_id = no_buffer;

    bool held() const noexcept { return buffer_id != no_buffer; }
    std::size_t size() const noexcept { return end - begin; }
};

struct write_chunk : write_segment {
    static constexpr std::size_t capacity = 16 * 1024 - 64;
    std::byte data[capacity];

    write_chunk() noexcept { base = data; }
    std::size_t room() const noexcept { return capacity - end; }
};

using chunk_list = boost::intrusive::slist<write_chunk, boost::intrusive::cache_last<true>,
                                           boost::intrusive::constant_time_size<false>>;
using segment_list = boost::intrusive::slist<write_segment, boost::intrusive::cache_last<true>,
                                             boost::intrusive::constant_time_size<false>>;

// Per-reactor: chunks come from here and go back here. Grows on demand;
// past `keep` free chunks (1 MiB by default) a returned chunk goes back to
// the allocator, so a burst of output does not hold its high-water mark of
// memory forever. Every chunk must be released before the pool dies (the
// reactor resets its connections' queues first).
//
// It also keeps the small segments that reference provided buffers, and
// the two calls that take and drop a reference on such a buffer (bound by
// the reactor to its Buffer policy's hold() and release()).
class chunk_pool {
public:
    static constexpr std::size_t default_keep = 64;
    using buffer_fn = void (*)(void* context, std::uint16_t buffer_id) noexcept;
    using low_fn = bool (*)(void* context) noexcept;

    explicit chunk_pool(std::size_t keep = default_keep) noexcept : keep_(keep) {}
    chunk_pool(const chunk_pool&) = delete;
    chunk_pool& operator=(const chunk_pool&) = delete;
    ~chunk_pool() {
        while (!free_.empty()) {
            write_chunk& c = free_.front();
            free_.pop_front();
            delete &c;
        }
        while (!free_refs_.empty()) {
            write_segment& r = free_refs_.front();
            free_refs_.pop_front();
            delete &r;
        }
    }

    void bind_buffers(buffer_fn hold, buffer_fn release, low_fn low, void* context) noexcept {
        hold_ = hold;
        release_buffer_ = release;
        low_ = low;
        context_ = context;
    }
    // Without bound buffers (a pool outside a reactor) nothing can be held.
    bool holds_buffers() const noexcept { return hold_ != nullptr; }
    // The ring runs low on buffers: a write should copy rather than hold one.
    bool ring_low() const noexcept { return low_ && low_(context_); }

    // A segment for `bytes` of provided buffer `id`, which now has one more
    // reference (dropped by release()).
    write_segment* acquire_ref(std::span<const std::byte> bytes, std::uint16_t id) {
        write_segment* r;
        if (free_refs_.empty()) {
            r = new write_segment;
        } else {
            r = &free_refs_.front();
            free_refs_.pop_front();
            --free_refs_count_;
        }
        r->base = const_cast<std::byte*>(bytes.data());  // only ever read, by the kernel's send
        r->begin = 0;
        r->end = bytes.size();
        r->buffer_id = id;
        hold_(context_, id);
        ++refs_;
        ++held_total_;
        return r;
    }
    // Segments that hold a provided buffer now (in queues).
    std::size_t held_buffers() const noexcept { return refs_; }
    // Segments ever queued by reference (for the reactor's counters).
    std::uint64_t held_total() const noexcept { return held_total_; }

    // Any segment: a chunk goes back to the pool, a held one drops its
    // buffer reference through `release_held(id)` (the reactor passes its
    // Buffer policy's release, called directly, no function pointer).
    template <class ReleaseHeld>
    void release(write_segment* s, ReleaseHeld&& release_held) noexcept {
        if (s->held()) {
            release_held(static_cast<std::uint16_t>(s->buffer_id));
            drop_ref(s);
            return;
        }
        release(static_cast<write_chunk*>(s));
    }
    // The bound buffer release, as a callable for the templates here.
    struct bound_releaser {
        const chunk_pool* pool;
        void operator()(std::uint16_t id) const noexcept { pool->release_buffer_(pool->context_, id); }
    };
    bound_releaser bound_release() const noexcept { return {this}; }
    // The same through the bound release (paths off the send completion).
    void release(write_segment* s) noexcept { release(s, bound_release()); }

    write_chunk* acquire() {
        if (free_.empty()) {
            auto* c = new write_chunk;
            ++allocated_;
            return c;
        }
        write_chunk& c = free_.front();
        free_.pop_front();
        --available_;
        c.begin = c.end = 0;
        return &c;
    }
    void release(write_chunk* c) noexcept {
        if (available_ >= keep_) {
            delete c;
            --allocated_;
            return;
        }
        free_.push_front(*c);
        ++available_;
    }
    // Chunks that exist: in queues plus free.
    std::size_t allocated() const noexcept { return allocated_; }
    // Free chunks kept for reuse.
    std::size_t available() const noexcept { return available_; }

private:
    // A held segment whose buffer reference was dropped: kept for reuse.
    void drop_ref(write_segment* s) noexcept {
        s->buffer_id = write_segment::no_buffer;
        --refs_;
        if (free_refs_count_ >= keep_) {
            delete s;
            return;
        }
        free_refs_.push_front(*s);
        ++free_refs_count_;
    }

    chunk_list free_;
    segment_list free_refs_;
    std::size_t keep_;
    std::size_t allocated_ = 0;
    std::size_t available_ = 0;
    std::size_t refs_ = 0;
    std::uint64_t held_total_ = 0;
    std::size_t free_refs_count_ = 0;
    buffer_fn hold_ = nullptr;
    low_fn low_ = nullptr;
    buffer_fn release_buffer_ = nullptr;
    void* context_ = nullptr;
};

class write_queue {
public:
    std::size_t size() const noexcept { return queued_; }
    bool empty() const noexcept { return queued_ == 0; }

    void append(std::span<const std::byte> bytes, chunk_pool& pool) {
        while (!bytes.empty()) {
            write_chunk& tail = writable_tail(1, pool);
            std::size_t n = std::min(tail.room(), bytes.size());
            std::memcpy(tail.data + tail.end, bytes.data(), n);
            tail.end += n;
            queued_ += n;
            bytes = bytes.subspan(n);
        }
    }

    // Queues `bytes`, which sit in provided buffer `id`, by reference: the
    // buffer gets one more reference until they are sent or cleared.
    void append_held(std::span<const std::byte> bytes, std::uint16_t id, chunk_pool& pool) {
        if (bytes.empty()) return;
        segments_.push_back(*pool.acquire_ref(bytes, id));
        queued_ += bytes.size();
        ++held_;
    }
    // Provided buffers this queue holds a reference on.
    std::size_t held() const noexcept { return held_; }

    // Space at the tail for writing in place: at least `min` contiguous bytes.
    std::span<std::byte> prepare(std::size_t min, chunk_pool& pool) {
        if (min > write_chunk::capacity) return {};
        write_chunk& tail = writable_tail(min, pool);
        return {tail.data + tail.end, tail.room()};
    }
    // Precondition: prepare() was the last call (the tail is its chunk).
    void commit(std::size_t n) noexcept {
        segments_.back().end += n;
        queued_ += n;
    }

    // The one segment holding every unsent byte, or null when the bytes
    // span several (or none are queued): a send of it needs no iovec.
    const write_segment* single() const noexcept {
        if (queued_ == 0) return nullptr;
        const write_segment& head = segments_.front();
        return head.size() == queued_ ? &head : nullptr;
    }

    // Fills up to `out.size()` iovecs with the unsent bytes, oldest first.
    unsigned gather(std::span<iovec> out) const noexcept {
        unsigned n = 0;
        for (auto it = segments_.begin(); it != segments_.end() && n < out.size(); ++it) {
            if (it->size() == 0) continue;
            out[n++] = {it->base + it->begin, it->size()};
        }
        return n;
    }

    // `n` bytes were sent: drop them, returning emptied chunks to the pool
    // and held buffers to their ring (through `release_held(id)`). A partly
    // filled tail chunk stays, to take the next write.
    template <class ReleaseHeld>
    void consume(std::size_t n, chunk_pool& pool, ReleaseHeld&& release_held) noexcept {
        if (n == queued_) {  // all of it went (the common case): no walk, no partial head
            clear(pool, release_held);
            return;
        }
        queued_ -= n;
        while (n > 0) {
            write_segment& head = segments_.front();
            std::size_t take = std::min(n, head.size());
            head.begin += take;
            n -= take;
            if (head.size() == 0 && (head.held() || &head != &segments_.back() ||
                                     static_cast<write_chunk&>(head).room() == 0)) {
                segments_.pop_front();
                if (head.held()) --held_;
                pool.release(&head, release_held);
            }
        }
        if (queued_ == 0) clear(pool, release_held);
    }
    void consume(std::size_t n, chunk_pool& pool) noexcept { consume(n, pool, pool.bound_release()); }

    template <class ReleaseHeld>
    void clear(chunk_pool& pool, ReleaseHeld&& release_held) noexcept {
        while (!segments_.empty()) {
            write_segment& s = segments_.front();
            segments_.pop_front();
            pool.release(&s, release_held);
        }
        queued_ = 0;
        held_ = 0;
    }
    void clear(chunk_pool& pool) noexcept { clear(pool, pool.bound_release()); }

private:
    // The tail chunk when it has `min` bytes of room, else a new one (also
    // after a held segment: copied bytes go after it, in order).
    write_chunk& writable_tail(std::size_t min, chunk_pool& pool) {
        if (segments_.empty() || segments_.back().held() || static_cast<write_chunk&>(segments_.back()).room() < min)
            segments_.push_back(*pool.acquire());
        return static_cast<write_chunk&>(segments_.back());
    }

    segment_list segments_;
    std::size_t queued_ = 0;
    std::size_t held_ = 0;
};

}  // namespace zerg::detail
