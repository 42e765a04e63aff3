// Registration for zero-copy receive (IORING_REGISTER_ZCRX_IFQ, 6.15).
//
// Zero-copy receive lets a NIC write payloads straight into memory the
// application registered (the "area"); IORING_OP_RECV_ZC then hands out
// offsets into it instead of copying. It needs hardware and a driver that
// split headers from payload and let io_uring provide a receive queue's
// memory (bnxt, mlx5, gve and a few others), the queue configured for it
// (ethtool: header split on, flow steering to that queue), CAP_NET_ADMIN,
// and a ring made with DEFER_TASKRUN and 32-byte CQEs. Loopback and virtual
// devices can never do it: registering them fails, and explain_zcrx_failure()
// says why in words. zerg registers; it has no receive path on top (yet).
//
// Thread: call on the ring's own thread, like any registration.
#pragma once

#include <zerg/uring/compat.hpp>
#include <zerg/uring/error.hpp>
#include <zerg/uring/ring.hpp>

#include <liburing.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <utility>

namespace zerg::uring {

struct zcrx_request {
    unsigned interface_index = 0;  // if_nametoindex()
    unsigned rx_queue = 0;         // the hardware queue to take over
    unsigned refill_entries = 0;   // refill ring size, a power of two
    // Page-aligned memory the NIC writes payloads into; it stays the
    // kernel's for the life of the ring.
    std::span<std::byte> area;
    // Page-aligned memory for the refill ring (head, tail and
    // refill_entries * 16-byte entries, at the offsets returned).
    std::span<std::byte> refill_region;
};

struct zcrx_registration {
    std::error_code error;            // empty on success
    std::string reason;               // what the error means and what would fix it
    std::uint32_t id = 0;             // the zcrx instance, for IORING_OP_RECV_ZC
    std::uint64_t area_token = 0;     // refill entries carry offsets relative to it
    abi::zcrx_offsets offsets{};      // refill ring layout inside refill_region
    explicit operator bool() const noexcept { return !error; }
};

// What a failed IORING_REGISTER_ZCRX_IFQ means; `errno_value` is positive.
inline std::string explain_zcrx_failure(int errno_value) {
    std::string why = "zero-copy receive registration failed with " +
                      std::error_code(errno_value, std::system_category()).message() + ". ";
    switch (errno_value) {
        case EPERM:
            return why + "It needs CAP_NET_ADMIN.";
        case EOPNOTSUPP:
            return why +
                   "The interface's driver cannot provide receive-queue memory to io_uring (no queue "
                   "management ops or no header split): loopback, veth and most emulated NICs never can. "
                   "Use a NIC whose driver supports io_uring zero-copy receive.";
        case ENODEV:
            return why + "No network interface has that index.";
        case EINVAL:
            return why +
                   "The kernel refused the parameters: the ring must use DEFER_TASKRUN and 32-byte CQEs, the "
                   "queue index must exist, the refill ring size be a power of two, the memory page aligned, "
                   "and the NIC queue configured for header split (ethtool -G <dev> tcp-data-split on). Kernels "
                   "before 6.15 refuse the registration opcode itself with this error.";
        case EEXIST:
        case EBUSY:
            return why + "That receive queue already has a memory provider (another ring or an XDP socket).";
        case ENOMEM:
            return why + "Out of memory or locked-memory limit (ulimit -l) for pinning the area.";
        case EFAULT:
            return why + "The area or refill region is not valid user memory.";
        default:
            return why;
    }
}

namespace detail {
inline zcrx_registration register_zcrx_ifq(int ring_fd, unsigned ring_flags, const zcrx_request& req) {
    zcrx_registration out;
    auto fail = [&out](int errno_value, std::string reason) {
        out.error = std::error_code(errno_value, std::system_category());
        out.reason = std::move(reason);
        return out;
    };
    // The kernel checks these too (-EINVAL); checked here first so the
    // message can say exactly which one is missing.
    if (!(ring_flags & IORING_SETUP_DEFER_TASKRUN) || !(ring_flags & IORING_SETUP_CQE32))
        return fail(EINVAL, "zero-copy receive needs a ring made with IORING_SETUP_DEFER_TASKRUN and "
                            "IORING_SETUP_CQE32 (its CQEs carry a second 16-byte half).");

    abi::region_desc region{};
    region.user_addr = reinterpret_cast<std::uintptr_t>(req.refill_region.data());
    region.size = req.refill_region.size();
    region.flags = abi::mem_region_type_user;

    abi::zcrx_area_reg area{};
    area.addr = reinterpret_cast<std::uintptr_t>(req.area.data());
    area.len = req.area.size();

    abi::zcrx_ifq_reg reg{};
    reg.if_idx = req.interface_index;
    reg.if_rxq = req.rx_queue;
    reg.rq_entries = req.refill_entries;
    reg.area_ptr = reinterpret_cast<std::uintptr_t>(&area);
    reg.region_ptr = reinterpret_cast<std::uintptr_t>(&region);

    long res = ::syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_ZCRX_IFQ, &reg, 1);
    if (res < 0) {
        int e = errno;
        return fail(e, explain_zcrx_failure(e));
    }
    out.id = reg.zcrx_id;
    out.offsets = reg.offsets;
    out.area_token = area.rq_area_token;
    return out;
}

}  // namespace detail

// Attaches hardware receive queue `req.rx_queue` of `req.interface_index` to
// `r` (6.15). Nothing is thrown: the result carries the error and its
// explanation. On a ring zerg made:
inline zcrx_registration register_zcrx_ifq(ring& r, const zcrx_request& req) {
    return detail::register_zcrx_ifq(r.fd(), r.setup_flags(), req);
}
// and on a ring liburing made (io_uring_queue_init_params).
inline zcrx_registration register_zcrx_ifq(io_uring* r, const zcrx_request& req) {
    return detail::register_zcrx_ifq(r->ring_fd, r->flags, req);
}

}  // namespace zerg::uring
