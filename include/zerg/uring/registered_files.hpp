// zerg::uring::registered_files: the ring's table of direct descriptors.
//
// A registered file is named by its slot in this table instead of an fd;
// operations on it skip the per-request fget/fput of the file table (a
// measurable win at high request rates), and accept/socket can create
// sockets straight into a slot with no regular fd at all (5.19).
//
// The table starts sparse (5.19; every slot empty) and is filled by the
// kernel (accept_direct, socket_direct, msg_ring_fd) or by update().
// Thread-safety: owned by the thread that owns the ring.
#pragma once

#include <zerg/uring/error.hpp>
#include <zerg/uring/ring.hpp>

#include <liburing.h>

#include <cstdint>
#include <system_error>

namespace zerg::uring {

class registered_files {
public:
    // Registers a sparse table of `slots` entries. When `allocation_range` is
    // nonzero, only the first that many slots are handed out by
    // IORING_FILE_INDEX_ALLOC (6.0); the rest are the application's.
    registered_files(ring& owner, unsigned slots, unsigned allocation_range = 0) : ring_(&owner), slots_(slots) {
        io_uring_rsrc_register reg{};
        reg.nr = slots;
        reg.flags = IORING_RSRC_REGISTER_SPARSE;
        if (int r = ring_->register_op(IORING_REGISTER_FILES2, &reg, sizeof reg); r < 0)
            throw_result(r, "zerg::uring::registered_files: cannot register a sparse table (needs Linux 5.19)");
        if (allocation_range) {
            io_uring_file_index_range range{};
            range.off = 0;
            range.len = allocation_range;
            if (int r = ring_->register_op(IORING_REGISTER_FILE_ALLOC_RANGE, &range, 0); r < 0) {
                unregister();
                throw_result(r, "zerg::uring::registered_files: cannot set the allocation range (needs Linux 6.0)");
            }
        }
    }
    registered_files(const registered_files&) = delete;
    registered_files& operator=(const registered_files&) = delete;
    ~registered_files() {
        if (ring_) unregister();
    }

    unsigned size() const noexcept { return slots_; }

    // Puts `fd` into `slot` (the table holds its own reference; the caller may
    // close `fd`), or empties the slot when fd is -1. Returns 0 or -errno.
    int update(unsigned slot, int fd) noexcept {
        io_uring_rsrc_update2 up{};
        up.offset = slot;
        up.data = reinterpret_cast<std::uintptr_t>(&fd);
        up.nr = 1;
        int r = ring_->register_op(IORING_REGISTER_FILES_UPDATE2, &up, sizeof up);
        return r < 0 ? r : 0;
    }
    int clear(unsigned slot) noexcept { return update(slot, -1); }

    // Lets the table go without unregistering it: the ring's own teardown
    // frees it. For an owner whose ring may still run requests on the table
    // (a failed loop): on older kernels (6.1 among them) unregistering
    // quiesces the table, waiting until every request that uses it has
    // completed. No member may be called after it but the destructor.
    void leave_to_ring() noexcept { ring_ = nullptr; }

private:
    void unregister() noexcept { ring_->register_op(IORING_UNREGISTER_FILES, nullptr, 0); }

    ring* ring_;
    unsigned slots_;
};

}  // namespace zerg::uring
