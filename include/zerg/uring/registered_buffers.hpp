// zerg::uring::registered_buffers: memory pinned and mapped into the kernel
// once, so read_fixed / write_fixed / send_zc_fixed skip the per-request
// page pinning and lookup. Costs locked memory for as long as it is
// registered: unless the process has CAP_IPC_LOCK, the pinned pages count
// against RLIMIT_MEMLOCK on every kernel (5.12 stopped charging the rings
// themselves, not registered buffers).
// Thread-safety: owned by the thread that owns the ring.
#pragma once

#include <zerg/uring/error.hpp>
#include <zerg/uring/ring.hpp>

#include <liburing.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstddef>
#include <span>
#include <vector>

namespace zerg::uring {

class registered_buffers {
public:
    // Maps `count` page-aligned buffers of `size` bytes each and registers
    // them as indices 0..count-1. Each buffer starts on a page boundary of its
    // own (the stride is `size` rounded up to whole pages), so no two buffers
    // share a page and O_DIRECT-style alignment holds for every one.
    registered_buffers(ring& owner, unsigned count, std::size_t size) : ring_(&owner), size_(size) {
        if (count == 0 || size == 0)
            throw_result(EINVAL, "zerg::uring::registered_buffers: count and size must both be positive");
        const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        const std::size_t stride = (size + page - 1) / page * page;
        bytes_ = std::size_t{count} * stride;
        void* m = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            int err = errno;  // before the message string is built
            throw_result(err, "zerg::uring::registered_buffers: cannot map the buffers");
        }
        memory_ = static_cast<std::byte*>(m);
        iov_.resize(count);
        for (unsigned i = 0; i < count; ++i) iov_[i] = {memory_ + std::size_t{i} * stride, size};
        if (int r = ring_->register_op(IORING_REGISTER_BUFFERS, iov_.data(), count); r < 0) {
            ::munmap(memory_, bytes_);
            throw_result(r, "zerg::uring::registered_buffers: registration failed (locked memory is limited by "
                            "RLIMIT_MEMLOCK, see ulimit -l)");
        }
    }
    registered_buffers(const registered_buffers&) = delete;
    registered_buffers& operator=(const registered_buffers&) = delete;
    ~registered_buffers() {
        ring_->register_op(IORING_UNREGISTER_BUFFERS, nullptr, 0);
        ::munmap(memory_, bytes_);
    }

    unsigned count() const noexcept { return static_cast<unsigned>(iov_.size()); }
    std::size_t buffer_size() const noexcept { return size_; }
    std::span<std::byte> buffer(unsigned index) const noexcept {
        return {static_cast<std::byte*>(iov_[index].iov_base), size_};
    }

private:
    ring* ring_;
    std::byte* memory_ = nullptr;
    std::size_t bytes_ = 0;
    std::size_t size_;
    std::vector<iovec> iov_;
};

}  // namespace zerg::uring
