// zerg::uring::ring_memory: the submission and completion rings a ring
// shares with the kernel, mapped by zerg from the layout io_uring_setup(2)
// reports (io_sqring_offsets / io_cqring_offsets), not by liburing.
//
// Two ways to get the memory:
//  - the kernel allocates it and we mmap(2) it at IORING_OFF_SQ_RING,
//    IORING_OFF_CQ_RING (one mapping with IORING_FEAT_SINGLE_MMAP, 5.4) and
//    IORING_OFF_SQES: the default;
//  - IORING_SETUP_NO_MMAP (6.5): we allocate it first and hand the kernel
//    its address (sq_off.user_addr, cq_off.user_addr). The first kernels
//    with it pinned each part as one folio (one page, or a huge page), so
//    they may refuse bigger rings; a refusal falls back to the kernel's
//    memory. Debian's 6.12 took an 8- to 1024-entry ring alike.
//
// The SQ index array (absent with IORING_SETUP_NO_SQARRAY, 6.6) is filled
// once with the identity: slot i of the SQE array always sits at position i,
// so submitting never writes it again.
// Thread-safety: owned by the ring's thread.
#pragma once

#include <zerg/uring/compat.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace zerg::uring {

class ring_memory {
public:
    // The submission side as the kernel lays it out.
    struct submission_queue {
        unsigned* khead = nullptr;     // advanced by the kernel as it consumes SQEs
        unsigned* ktail = nullptr;     // advanced by us (release) to publish SQEs
        unsigned* kflags = nullptr;    // IORING_SQ_NEED_WAKEUP, _CQ_OVERFLOW, _TASKRUN
        unsigned* kdropped = nullptr;  // SQEs the kernel found invalid
        unsigned* array = nullptr;     // index array; nullptr with NO_SQARRAY
        io_uring_sqe* sqes = nullptr;
        unsigned mask = 0;
        unsigned entries = 0;
    };
    // The completion side.
    struct completion_queue {
        unsigned* khead = nullptr;      // advanced by us (release) to free CQEs
        unsigned* ktail = nullptr;      // advanced by the kernel (read with acquire)
        unsigned* kflags = nullptr;     // IORING_CQ_EVENTFD_DISABLED
        unsigned* koverflow = nullptr;  // CQEs dropped for good
        io_uring_cqe* cqes = nullptr;
        unsigned mask = 0;
        unsigned entries = 0;
    };

    ring_memory() = default;
    ring_memory(ring_memory&& other) noexcept { swap(other); }
    ring_memory& operator=(ring_memory&& other) noexcept {
        if (this != &other) {
            release();
            swap(other);
        }
        return *this;
    }
    ring_memory(const ring_memory&) = delete;
    ring_memory& operator=(const ring_memory&) = delete;
    ~ring_memory() { release(); }

    // Bytes of the shared ring header and CQEs (plus the SQ index array) for
    // these sizes, as the kernel computes them: a 64-byte header (heads,
    // tails, masks, flags), the CQEs, then the index array on its own
    // cache line.
    static std::size_t rings_bytes(unsigned sq_entries, unsigned cq_entries, unsigned flags) noexcept {
        std::size_t cqe = (flags & IORING_SETUP_CQE32) ? 32 : 16;
        std::size_t bytes = 64 + std::size_t{cq_entries} * cqe;
        if (!(flags & IORING_SETUP_NO_SQARRAY)) bytes = (bytes + 63) / 64 * 64 + std::size_t{sq_entries} * 4;
        return bytes;
    }
    static std::size_t sqes_bytes(unsigned sq_entries, unsigned flags) noexcept {
        return std::size_t{sq_entries} * ((flags & IORING_SETUP_SQE128) ? 128 : 64);
    }

    // NO_MMAP: allocates page-aligned memory for rings of these (already
    // rounded) sizes and stores its addresses in `params`. 0 or -errno.
    int allocate_user(unsigned sq_entries, unsigned cq_entries, unsigned flags, io_uring_params& params) noexcept {
        release();
        std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        rings_bytes_ = round_up(rings_bytes(sq_entries, cq_entries, flags), page);
        sqes_bytes_ = round_up(sqes_bytes(sq_entries, flags), page);
        void* rings = ::mmap(nullptr, rings_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (rings == MAP_FAILED) return -errno;
        void* sqes = ::mmap(nullptr, sqes_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (sqes == MAP_FAILED) {
            int e = errno;
            ::munmap(rings, rings_bytes_);
            return -e;
        }
        rings_ = rings;
        sqes_ = sqes;
        user_memory_ = true;
        params.sq_off.resv2 = reinterpret_cast<std::uintptr_t>(sqes);   // sq_off.user_addr since 6.5
        params.cq_off.resv2 = reinterpret_cast<std::uintptr_t>(rings);  // cq_off.user_addr since 6.5
        return 0;
    }

    // Points at the rings of `fd` as `params` (filled by io_uring_setup or
    // IORING_REGISTER_RESIZE_RINGS) describes them: maps them, or with
    // user memory checks that they fit what allocate_user() made. 0 or -errno.
    int attach(int fd, const io_uring_params& p) noexcept {
        const std::size_t cqe = (p.flags & IORING_SETUP_CQE32) ? 32 : 16;
        const bool no_array = p.flags & IORING_SETUP_NO_SQARRAY;
        if (!no_array && p.sq_off.array == 0) return -EPROTO;  // the array never overlays the header
        std::size_t cq_bytes = p.cq_off.cqes + std::size_t{p.cq_entries} * cqe;
        std::size_t sq_bytes = no_array ? cq_bytes : p.sq_off.array + std::size_t{p.sq_entries} * 4;
        std::size_t sqe_bytes = sqes_bytes(p.sq_entries, p.flags);
        if (user_memory_) {
            if (std::max(sq_bytes, cq_bytes) > rings_bytes_ || sqe_bytes > sqes_bytes_) return -EOVERFLOW;
            sq_ring_ = cq_ring_ = rings_;
        } else {
            if (p.features & IORING_FEAT_SINGLE_MMAP) sq_bytes = cq_bytes = std::max(sq_bytes, cq_bytes);
            void* sq = ::mmap(nullptr, sq_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
            if (sq == MAP_FAILED) return -errno;
            void* cq = sq;
            if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
                cq = ::mmap(nullptr, cq_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
                if (cq == MAP_FAILED) {
                    int e = errno;
                    ::munmap(sq, sq_bytes);
                    return -e;
                }
            }
            void* sqes = ::mmap(nullptr, sqe_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
            if (sqes == MAP_FAILED) {
                int e = errno;
                ::munmap(sq, sq_bytes);
                if (cq != sq) ::munmap(cq, cq_bytes);
                return -e;
            }
            sq_ring_ = sq;
            cq_ring_ = cq;
            sq_ring_bytes_ = sq_bytes;
            cq_ring_bytes_ = cq_bytes;
            sqes_ = sqes;
            sqes_bytes_ = sqe_bytes;
        }
        auto* sqb = static_cast<std::byte*>(sq_ring_);
        auto* cqb = static_cast<std::byte*>(cq_ring_);
        sq_.khead = reinterpret_cast<unsigned*>(sqb + p.sq_off.head);
        sq_.ktail = reinterpret_cast<unsigned*>(sqb + p.sq_off.tail);
        sq_.kflags = reinterpret_cast<unsigned*>(sqb + p.sq_off.flags);
        sq_.kdropped = reinterpret_cast<unsigned*>(sqb + p.sq_off.dropped);
        sq_.mask = *reinterpret_cast<unsigned*>(sqb + p.sq_off.ring_mask);
        sq_.entries = *reinterpret_cast<unsigned*>(sqb + p.sq_off.ring_entries);
        sq_.sqes = static_cast<io_uring_sqe*>(sqes_);
        sq_.array = no_array ? nullptr : reinterpret_cast<unsigned*>(sqb + p.sq_off.array);
        if (sq_.array)
            for (unsigned i = 0; i < sq_.entries; ++i) sq_.array[i] = i;
        cq_.khead = reinterpret_cast<unsigned*>(cqb + p.cq_off.head);
        cq_.ktail = reinterpret_cast<unsigned*>(cqb + p.cq_off.tail);
        cq_.kflags = p.cq_off.flags ? reinterpret_cast<unsigned*>(cqb + p.cq_off.flags) : nullptr;
        cq_.koverflow = reinterpret_cast<unsigned*>(cqb + p.cq_off.overflow);
        cq_.mask = *reinterpret_cast<unsigned*>(cqb + p.cq_off.ring_mask);
        cq_.entries = *reinterpret_cast<unsigned*>(cqb + p.cq_off.ring_entries);
        cq_.cqes = reinterpret_cast<io_uring_cqe*>(cqb + p.cq_off.cqes);
        return 0;
    }

    submission_queue& sq() noexcept { return sq_; }
    const submission_queue& sq() const noexcept { return sq_; }
    completion_queue& cq() noexcept { return cq_; }
    const completion_queue& cq() const noexcept { return cq_; }
    bool user_memory() const noexcept { return user_memory_; }
    bool attached() const noexcept { return sq_.sqes != nullptr; }
    // Bytes of memory the rings take in this process.
    std::size_t bytes() const noexcept {
        return user_memory_ ? rings_bytes_ + sqes_bytes_ : sq_ring_bytes_ + (cq_ring_ != sq_ring_ ? cq_ring_bytes_ : 0) + sqes_bytes_;
    }

    // Unmaps everything. The kernel keeps its own references: call this
    // after (or before) closing the ring fd, in either order.
    void release() noexcept {
        if (user_memory_) {
            if (rings_) ::munmap(rings_, rings_bytes_);
            if (sqes_) ::munmap(sqes_, sqes_bytes_);
        } else {
            if (sq_ring_) ::munmap(sq_ring_, sq_ring_bytes_);
            if (cq_ring_ && cq_ring_ != sq_ring_) ::munmap(cq_ring_, cq_ring_bytes_);
            if (sqes_) ::munmap(sqes_, sqes_bytes_);
        }
        sq_ = {};
        cq_ = {};
        sq_ring_ = cq_ring_ = sqes_ = rings_ = nullptr;
        sq_ring_bytes_ = cq_ring_bytes_ = sqes_bytes_ = rings_bytes_ = 0;
        user_memory_ = false;
    }

private:
    static std::size_t round_up(std::size_t n, std::size_t to) noexcept { return (n + to - 1) / to * to; }
    void swap(ring_memory& o) noexcept {
        std::swap(sq_, o.sq_);
        std::swap(cq_, o.cq_);
        std::swap(sq_ring_, o.sq_ring_);
        std::swap(cq_ring_, o.cq_ring_);
        std::swap(sqes_, o.sqes_);
        std::swap(rings_, o.rings_);
        std::swap(sq_ring_bytes_, o.sq_ring_bytes_);
        std::swap(cq_ring_bytes_, o.cq_ring_bytes_);
        std::swap(sqes_bytes_, o.sqes_bytes_);
        std::swap(rings_bytes_, o.rings_bytes_);
        std::swap(user_memory_, o.user_memory_);
    }

    submission_queue sq_{};
    completion_queue cq_{};
    void* sq_ring_ = nullptr;
    void* cq_ring_ = nullptr;
    void* sqes_ = nullptr;
    void* rings_ = nullptr;  // user memory (NO_MMAP)
    std::size_t sq_ring_bytes_ = 0;
    std::size_t cq_ring_bytes_ = 0;
    std::size_t sqes_bytes_ = 0;
    std::size_t rings_bytes_ = 0;
    bool user_memory_ = false;
};

}  // namespace zerg::uring
