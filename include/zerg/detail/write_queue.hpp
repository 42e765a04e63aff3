// Outbound bytes of one connection: a chain of fixed-size chunks taken from
// a per-reactor pool. It grows with what the handler writes (no fixed slab
// that fails under load) and, once the pool is warm, allocates nothing.
#pragma once

#include <boost/intrusive/slist.hpp>

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>

namespace zerg::detail {

struct write_chunk : boost::intrusive::slist_base_hook<boost::intrusive::link_mode<boost::intrusive::normal_link>> {
    static constexpr std::size_t capacity = 16 * 1024 - 64;
    std::size_t begin = 0;  // first unsent byte
    std::size_t end = 0;    // one past the last written byte
    std::byte data[capacity];

    std::size_t room() const noexcept { return capacity - end; }
    std::size_t size() const noexcept { return end - begin; }
};

using chunk_list = boost::intrusive::slist<write_chunk, boost::intrusive::cache_last<true>,
                                           boost::intrusive::constant_time_size<false>>;

// Per-reactor: chunks come from here and go back here. Grows on demand;
// past `keep` free chunks (1 MiB by default) a returned chunk goes back to
// the allocator, so a burst of output does not hold its high-water mark of
// memory forever. Every chunk must be released before the pool dies (the
// reactor resets its connections' queues first).
class chunk_pool {
public:
    static constexpr std::size_t default_keep = 64;

    explicit chunk_pool(std::size_t keep = default_keep) noexcept : keep_(keep) {}
    chunk_pool(const chunk_pool&) = delete;
    chunk_pool& operator=(const chunk_pool&) = delete;
    ~chunk_pool() {
        while (!free_.empty()) {
            write_chunk& c = free_.front();
            free_.pop_front();
            delete &c;
        }
    }

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
    chunk_list free_;
    std::size_t keep_;
    std::size_t allocated_ = 0;
    std::size_t available_ = 0;
};

class write_queue {
public:
    std::size_t size() const noexcept { return queued_; }
    bool empty() const noexcept { return queued_ == 0; }

    void append(std::span<const std::byte> bytes, chunk_pool& pool) {
        while (!bytes.empty()) {
            if (chunks_.empty() || chunks_.back().room() == 0) chunks_.push_back(*pool.acquire());
            write_chunk& tail = chunks_.back();
            std::size_t n = std::min(tail.room(), bytes.size());
            std::memcpy(tail.data + tail.end, bytes.data(), n);
            tail.end += n;
            queued_ += n;
            bytes = bytes.subspan(n);
        }
    }

    // Space at the tail for writing in place: at least `min` contiguous bytes.
    std::span<std::byte> prepare(std::size_t min, chunk_pool& pool) {
        if (min > write_chunk::capacity) return {};
        if (chunks_.empty() || chunks_.back().room() < min) chunks_.push_back(*pool.acquire());
        write_chunk& tail = chunks_.back();
        return {tail.data + tail.end, tail.room()};
    }
    void commit(std::size_t n) noexcept {
        chunks_.back().end += n;
        queued_ += n;
    }

    // Fills up to `out.size()` iovecs with the unsent bytes, oldest first.
    unsigned gather(std::span<iovec> out) const noexcept {
        unsigned n = 0;
        for (auto it = chunks_.begin(); it != chunks_.end() && n < out.size(); ++it) {
            if (it->size() == 0) continue;
            out[n++] = {const_cast<std::byte*>(it->data + it->begin), it->size()};
        }
        return n;
    }

    // `n` bytes were sent: drop them, returning emptied chunks to the pool.
    void consume(std::size_t n, chunk_pool& pool) noexcept {
        queued_ -= n;
        while (n > 0) {
            write_chunk& head = chunks_.front();
            std::size_t take = std::min(n, head.size());
            head.begin += take;
            n -= take;
            if (head.size() == 0 && (head.end == write_chunk::capacity || &head != &chunks_.back())) {
                chunks_.pop_front();
                pool.release(&head);
            }
        }
        if (queued_ == 0) clear(pool);
    }

    void clear(chunk_pool& pool) noexcept {
        while (!chunks_.empty()) {
            write_chunk& c = chunks_.front();
            chunks_.pop_front();
            pool.release(&c);
        }
        queued_ = 0;
    }

private:
    chunk_list chunks_;
    std::size_t queued_ = 0;
};

}  // namespace zerg::detail
