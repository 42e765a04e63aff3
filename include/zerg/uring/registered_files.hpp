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
        if (int r = io_uring_register_files_sparse(ring_->native(), slots); r < 0)
            throw_result(r, "zerg::uring::registered_files: cannot register a sparse table (needs Linux 5.19)");
        if (allocation_range) {
            if (int r = io_uring_register_file_alloc_range(ring_->native(), 0, allocation_range); r < 0) {
                io_uring_unregister_files(ring_->native());
                throw_result(r, "zerg::uring::registered_files: cannot set the allocation range (needs Linux 6.0)");
            }
        }
    }
    registered_files(const registered_files&) = delete;
    registered_files& operator=(const registered_files&) = delete;
    ~registered_files() { io_uring_unregister_files(ring_->native()); }

    unsigned size() const noexcept { return slots_; }

    // Puts `fd` into `slot` (the table holds its own reference; the caller may
    // close `fd`), or empties the slot when fd is -1. Returns 0 or -errno.
    int update(unsigned slot, int fd) noexcept {
        int r = io_uring_register_files_update(ring_->native(), slot, &fd, 1);
        return r < 0 ? r : 0;
    }
    int clear(unsigned slot) noexcept { return update(slot, -1); }

private:
    ring* ring_;
    unsigned slots_;
};

}  // namespace zerg::uring
