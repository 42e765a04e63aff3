#define BOOST_TEST_MODULE zcrx
#include <boost/test/unit_test.hpp>

// Zero-copy receive registration (zerg/uring/zcrx.hpp). Real zero-copy
// receive needs a NIC with header split and queue memory providers; this
// machine's loopback has neither, so the test checks that the attempt is
// refused and that the refusal is explained, never that it works.

#include <zerg/uring/compat.hpp>
#include <zerg/uring/ring.hpp>
#include <zerg/uring/zcrx.hpp>

#include "support/op_ring.hpp"
#include "support/skip.hpp"

#include <liburing.h>
#include <net/if.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <span>
#include <string>

namespace {

namespace zu = zerg::uring;
using zerg::test::kernel;
using zerg::test::skip_unless;

// Page-aligned anonymous memory, unmapped on destruction.
struct mapping {
    explicit mapping(std::size_t n) : size(n) {
        addr = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (addr == MAP_FAILED) throw std::runtime_error("mmap failed");
    }
    ~mapping() { ::munmap(addr, size); }
    mapping(const mapping&) = delete;
    mapping& operator=(const mapping&) = delete;
    std::span<std::byte> bytes() const { return {static_cast<std::byte*>(addr), size}; }
    void* addr;
    std::size_t size;
};

bool skip_without_zcrx() {
    return skip_unless(kernel().supports(zu::opcode::recv_zc), "IORING_OP_RECV_ZC / IORING_REGISTER_ZCRX_IFQ (Linux 6.15)");
}

}  // namespace

BOOST_AUTO_TEST_CASE(explanations_name_cause_and_fix) {
    BOOST_TEST(zu::explain_zcrx_failure(EPERM).find("CAP_NET_ADMIN") != std::string::npos);
    BOOST_TEST(zu::explain_zcrx_failure(EOPNOTSUPP).find("loopback") != std::string::npos);
    BOOST_TEST(zu::explain_zcrx_failure(EINVAL).find("DEFER_TASKRUN") != std::string::npos);
    BOOST_TEST(zu::explain_zcrx_failure(EINVAL).find("header split") != std::string::npos);
    BOOST_TEST(zu::explain_zcrx_failure(ENODEV).find("interface") != std::string::npos);
    // Every message starts with the errno text.
    BOOST_TEST(zu::explain_zcrx_failure(EBUSY).find(std::strerror(EBUSY)) != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_ring_without_cqe32_is_refused_before_the_kernel_is_asked) {
    zu::ring r;  // zerg's default ring: DEFER_TASKRUN maybe, never CQE32
    mapping area(16 * 4096), region(2 * 4096);
    zu::zcrx_request req;
    req.interface_index = ::if_nametoindex("lo");
    req.refill_entries = 64;
    req.area = area.bytes();
    req.refill_region = region.bytes();
    auto reg = zu::register_zcrx_ifq(r, req);
    BOOST_TEST(!reg);
    BOOST_TEST(reg.error.value() == EINVAL);
    BOOST_TEST(reg.reason.find("CQE32") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(loopback_is_refused_with_a_clear_error) {
    if (skip_without_zcrx()) return;
    unsigned lo = ::if_nametoindex("lo");
    if (skip_unless(lo != 0, "a loopback interface named lo")) return;

    io_uring ring{};
    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQE32;
    int res = io_uring_queue_init_params(8, &ring, &params);
    if (skip_unless(res == 0, "rings with DEFER_TASKRUN and CQE32 (Linux 6.1)")) return;

    mapping area(16 * 4096), region(2 * 4096);
    zu::zcrx_request req;
    req.interface_index = lo;
    req.rx_queue = 0;
    req.refill_entries = 64;
    req.area = area.bytes();
    req.refill_region = region.bytes();
    auto reg = zu::register_zcrx_ifq(&ring, req);
    BOOST_TEST_MESSAGE("loopback registration: " << reg.reason);
    BOOST_TEST(!reg);
    BOOST_TEST(reg.error.value() != 0);
    BOOST_TEST(reg.reason == zu::explain_zcrx_failure(reg.error.value()));
    BOOST_TEST(reg.reason.find(reg.error.message()) != std::string::npos);
    // As root the capability check passes and the device is what says no.
    if (::geteuid() == 0) BOOST_TEST(reg.error.value() != EPERM);

    // A bogus interface index: no such device.
    req.interface_index = 0x7fffffff;
    auto none = zu::register_zcrx_ifq(&ring, req);
    BOOST_TEST(!none);
    BOOST_TEST_MESSAGE("bogus interface: " << none.reason);
    if (::geteuid() == 0) BOOST_TEST(none.error.value() == ENODEV);
    io_uring_queue_exit(&ring);
}
