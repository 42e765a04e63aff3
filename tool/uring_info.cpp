// uring-info: what this kernel's io_uring offers, and which path zerg takes
// for each feature. ZERG_URING_HIDE=feature,... shows the fallback paths.
#include <zerg/uring.hpp>

#include <cstdio>
#include <string>

namespace uring = zerg::uring;

namespace {

const char* yes(bool b) { return b ? "yes" : "no"; }

void path(const char* what, bool fast, const char* fast_path, const char* fallback_path) {
    std::printf("  %-22s %s\n", what, fast ? fast_path : fallback_path);
}

}  // namespace

int main() {
    auto k = uring::probe_kernel();
    std::printf("kernel                 %s\n", k.kernel_release.c_str());
    if (!k.available) {
        std::printf("io_uring               unavailable\n%s\n", k.unavailable_reason.c_str());
        return 1;
    }
    std::printf("io_uring               available\n");

    std::printf("\nsetup flags accepted:  %s\n", uring::setup_flag_names(k.setup_flags).c_str());

    std::printf("\nkernel features:\n");
    const std::pair<unsigned, const char*> features[] = {
        {IORING_FEAT_NODROP, "NODROP (no CQE lost on CQ overflow, 5.5)"},
        {IORING_FEAT_FAST_POLL, "FAST_POLL (5.7)"},
        {IORING_FEAT_EXT_ARG, "EXT_ARG (wait timeout in io_uring_enter, 5.11)"},
        {IORING_FEAT_NATIVE_WORKERS, "NATIVE_WORKERS (5.12)"},
        {IORING_FEAT_CQE_SKIP, "CQE_SKIP (5.17)"},
        {IORING_FEAT_LINKED_FILE, "LINKED_FILE (5.17)"},
        {IORING_FEAT_REG_REG_RING, "REG_REG_RING (6.3)"},
        {IORING_FEAT_RECVSEND_BUNDLE, "RECVSEND_BUNDLE (6.10)"},
        {IORING_FEAT_MIN_TIMEOUT, "MIN_TIMEOUT (6.12)"},
    };
    for (auto [bit, name] : features) std::printf("  %-50s %s\n", name, yes(k.has(bit)));

    std::printf("\nopcodes supported (%zu, highest %u):\n ", k.opcodes.count(), k.last_opcode);
    int col = 0;
    for (unsigned op = 0; op < 256; ++op) {
        if (!k.supports(static_cast<std::uint8_t>(op))) continue;
        std::string name = uring::opcode_name(op);
        std::printf(" %s", name.c_str());
        col += static_cast<int>(name.size()) + 1;
        if (col > 70) {
            std::printf("\n ");
            col = 0;
        }
    }
    std::printf("\n");

    std::printf("\nprovided-buffer rings:\n");
    std::printf("  plain (5.19)           %s\n", yes(k.buf_ring));
    std::printf("  incremental (6.12)     %s\n", yes(k.buf_ring_incremental));
    std::printf("  recv bundles (6.10)    %s\n", yes(k.recv_bundle()));

    // The ring a reactor makes with default options, and what it fell back from.
    uring::ring r;
    std::printf("\npaths zerg takes:\n");
    std::printf("  %-22s %s\n", "ring flags", uring::setup_flag_names(r.setup_flags()).c_str());
    path("completion work", r.has_setup_flag(IORING_SETUP_DEFER_TASKRUN), "DEFER_TASKRUN (run when the reactor waits)",
         r.has_setup_flag(IORING_SETUP_COOP_TASKRUN) ? "COOP_TASKRUN (fallback)" : "default task work (fallback)");
    path("ring fd", r.ring_fd_registered(), "registered (no fdget per enter)", "plain fd (fallback)");
    path("wait with timeout", r.has_kernel_feature(IORING_FEAT_EXT_ARG), "EXT_ARG", "timeout SQE (fallback)");
    path("receive buffers", k.buf_ring_incremental, "incremental buffer ring", "one buffer per receive (fallback)");
    path("receive", k.recv_bundle(), "multishot recv, bundles available", "multishot recv, one buffer per CQE");
    path("reactor hand-off", k.supports(IORING_OP_MSG_RING), "MSG_RING available", "eventfd wake-up only (fallback)");
    path("listen socket setup", k.supports(uring::opcode::bind) && k.supports(uring::opcode::listen),
         "BIND/LISTEN available in the ring", "bind(2)/listen(2) system calls");
    path("socket options", k.socket_commands, "URING_CMD setsockopt/getsockopt available", "setsockopt(2)");
    if (!r.fallbacks().empty()) {
        std::printf("\nfallbacks in effect:\n");
        for (auto const& fb : r.fallbacks())
            std::printf("  %-22s %s\n", std::string(uring::to_string(fb.what)).c_str(), fb.reason.c_str());
    }
    return 0;
}
