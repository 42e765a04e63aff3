// zerg::task: the coroutine type of connection handlers written as
// coroutines (`zerg::task serve(zerg::connection<H>&)`).
//
// A task starts running at once, on the reactor thread, and is owned by its
// connection: the reactor resumes it when what it awaits is ready and
// destroys it when it finishes or when its connection's slot is reused.
// Frames come from a per-reactor pool (frame_pool), so a connection's
// coroutine costs no heap allocation once the pool has a frame of its size.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <new>
#include <utility>
#include <vector>

namespace zerg {

// Recycles coroutine frames by size class (multiples of 64 bytes).
class frame_pool {
public:
    frame_pool() = default;
    frame_pool(const frame_pool&) = delete;
    frame_pool& operator=(const frame_pool&) = delete;
    ~frame_pool() {
        for (auto& list : free_)
            for (void* p : list) ::operator delete(p);
    }

    void* allocate(std::size_t size) {
        std::size_t cls = size_class(size);
        if (cls < free_.size() && !free_[cls].empty()) {
            void* p = free_[cls].back();
            free_[cls].pop_back();
            return p;
        }
        ++allocations_;
        return ::operator new((cls + 1) * granule);
    }
    void deallocate(void* p, std::size_t size) {
        std::size_t cls = size_class(size);
        if (cls >= free_.size()) free_.resize(cls + 1);
        free_[cls].push_back(p);
    }
    // Frames taken from the heap so far (not from the pool).
    std::size_t heap_allocations() const noexcept { return allocations_; }

    // The pool of the reactor running on this thread, if any.
    static frame_pool*& current() noexcept {
        static thread_local frame_pool* pool = nullptr;
        return pool;
    }

private:
    static constexpr std::size_t granule = 64;
    static std::size_t size_class(std::size_t size) noexcept { return (size + granule - 1) / granule - 1; }

    std::vector<std::vector<void*>> free_;
    std::size_t allocations_ = 0;
};

class task {
public:
    struct promise_type {
        std::exception_ptr failure;

        task get_return_object() noexcept { return task(std::coroutine_handle<promise_type>::from_promise(*this)); }
        std::suspend_never initial_suspend() noexcept { return {}; }
        // Suspends at the end so the owner sees done() and destroys the frame.
        std::suspend_always final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { failure = std::current_exception(); }

        // Frames from the reactor's pool; the size travels with the frame so
        // the pool can be chosen again at delete time.
        static void* operator new(std::size_t size) {
            frame_pool* pool = frame_pool::current();
            auto* p = static_cast<unsigned char*>(pool ? pool->allocate(size + header) : ::operator new(size + header));
            *reinterpret_cast<frame_pool**>(p) = pool;
            return p + header;
        }
        static void operator delete(void* frame, std::size_t size) noexcept {
            auto* p = static_cast<unsigned char*>(frame) - header;
            if (frame_pool* pool = *reinterpret_cast<frame_pool**>(p))
                pool->deallocate(p, size + header);
            else
                ::operator delete(p);
        }
        static constexpr std::size_t header = alignof(std::max_align_t);
    };

    task() noexcept = default;
    task(task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    task& operator=(task&& other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { reset(); }

    explicit operator bool() const noexcept { return static_cast<bool>(handle_); }
    bool done() const noexcept { return !handle_ || handle_.done(); }
    // The exception that ended the coroutine, if one did.
    std::exception_ptr failure() const noexcept { return handle_ ? handle_.promise().failure : nullptr; }
    void reset() noexcept {
        if (handle_) handle_.destroy();
        handle_ = {};
    }

private:
    explicit task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    std::coroutine_handle<promise_type> handle_;
};

}  // namespace zerg
