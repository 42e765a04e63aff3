// uring-info: what this kernel's io_uring offers, and which path zerg takes
// for each feature. ZERG_URING_HIDE=feature,... shows the fallback paths.
// Last, it starts a default reactor (zerg::reactor<H> on 127.0.0.1, an
// ephemeral port, one reactor and the acceptor) and prints what that
// reactor does, as server::fallbacks_by_component() reports it; then once
// more with reuse_port and direct descriptors asked for, and once with the
// acceptor, msg_ring_handoff and direct descriptors.
#include <zerg/zerg.hpp>

#include <cstdio>
#include <exception>
#include <string>

namespace uring = zerg::uring;

namespace {

const char* yes(bool b) { return b ? "yes" : "no"; }

void path(const char* what, bool fast, const char* fast_path, const char* fallback_path) {
    std::printf("  %-22s %s\n", what, fast ? fast_path : fallback_path);
}

// The smallest handler: enough for a reactor to start.
struct echo {
    void on_ring_item(zerg::connection<echo>& c, zerg::ring_item item) {
        c.write_from(item);
        c.release(item);
    }
};

// Starts and stops a server of reactors R, printing the paths its reactor
// took. `direct`: direct descriptors asked for (with `reuse_port`, or through
// the acceptor's hand-off), to show whether they are in effect and why not.
template <class R = zerg::reactor<echo>>
void default_reactor_paths(bool direct = false, bool reuse_port = true) {
    if (direct && reuse_port)
        std::printf("\nthe same with --reuse-port --direct-descriptors:\n");
    else if (direct)
        std::printf("\nthe same with the acceptor, msg_ring_handoff and --direct-descriptors (%s):\n",
                    R::policy_names().c_str());
    else
        std::printf("\na default reactor here (zerg::reactor<H>: %s):\n", R::policy_names().c_str());
    try {
        zerg::server_config config;
        config.address = "127.0.0.1";
        config.port = 0;
        config.reactors = 1;
        config.reuse_port = direct && reuse_port;
        config.direct_descriptors = direct;
        zerg::server<R> server(config);
        server.start();
        auto& r = server.reactor(0);
        path("receive", r.bundles(), "multishot recv as bundles (several buffers per CQE)",
             "multishot recv, one buffer per CQE (fallback)");
        path("large sends", r.zero_copy(), "zero-copy from server_config::zero_copy_threshold",
             "copied (fallback)");
        path("connections", r.direct_descriptors(), "direct descriptors (registered file table, IOSQE_FIXED_FILE)",
             direct ? "plain fds (fallback)" : "plain fds (direct descriptors are opt-in)");
        auto by = server.fallbacks_by_component();
        if (by.empty()) std::printf("  no fallback\n");
        for (auto const& [who, what] : by) std::printf("  %-22s %s\n", who.c_str(), what.c_str());
        server.stop();
    } catch (const std::exception& e) {
        std::printf("  could not start one: %s\n", e.what());
    }
}

struct operation {
    std::uint8_t opcode;
    const char* functions;
};

const operation operation_list[] = {
    {IORING_OP_NOP, "prep_nop"},
    {IORING_OP_READV, "prep_readv"},
    {IORING_OP_WRITEV, "prep_writev"},
    {IORING_OP_FSYNC, "prep_fsync, prep_fdatasync"},
    {IORING_OP_READ_FIXED, "prep_read_fixed"},
    {IORING_OP_WRITE_FIXED, "prep_write_fixed"},
    {IORING_OP_POLL_ADD, "prep_poll_add, prep_poll_multishot"},
    {IORING_OP_POLL_REMOVE, "prep_poll_remove, prep_poll_update"},
    {IORING_OP_SYNC_FILE_RANGE, "prep_sync_file_range"},
    {IORING_OP_SENDMSG, "prep_sendmsg"},
    {IORING_OP_RECVMSG, "prep_recvmsg, prep_recvmsg_multishot"},
    {IORING_OP_TIMEOUT, "prep_timeout"},
    {IORING_OP_TIMEOUT_REMOVE, "prep_timeout_remove, prep_timeout_update, prep_link_timeout_update"},
    {IORING_OP_ACCEPT, "prep_accept, prep_accept_multishot, prep_accept_direct, prep_accept_multishot_direct"},
    {IORING_OP_ASYNC_CANCEL, "prep_cancel, prep_cancel_fd, prep_cancel_all"},
    {IORING_OP_LINK_TIMEOUT, "prep_link_timeout"},
    {IORING_OP_CONNECT, "prep_connect"},
    {IORING_OP_FALLOCATE, "prep_fallocate"},
    {IORING_OP_OPENAT, "prep_openat, prep_openat_direct"},
    {IORING_OP_CLOSE, "prep_close, prep_close_direct"},
    {IORING_OP_FILES_UPDATE, "prep_files_update"},
    {IORING_OP_STATX, "prep_statx"},
    {IORING_OP_READ, "prep_read"},
    {IORING_OP_WRITE, "prep_write"},
    {IORING_OP_FADVISE, "prep_fadvise"},
    {IORING_OP_MADVISE, "prep_madvise"},
    {IORING_OP_SEND, "prep_send"},
    {IORING_OP_RECV, "prep_recv, prep_recv_select, prep_recv_multishot, prep_recv_bundle"},
    {IORING_OP_OPENAT2, "prep_openat2, prep_openat2_direct"},
    {IORING_OP_EPOLL_CTL, "prep_epoll_ctl"},
    {IORING_OP_SPLICE, "prep_splice"},
    {IORING_OP_PROVIDE_BUFFERS, "prep_provide_buffers"},
    {IORING_OP_REMOVE_BUFFERS, "prep_remove_buffers"},
    {IORING_OP_TEE, "prep_tee"},
    {IORING_OP_SHUTDOWN, "prep_shutdown"},
    {IORING_OP_RENAMEAT, "prep_renameat"},
    {IORING_OP_UNLINKAT, "prep_unlinkat"},
    {IORING_OP_MKDIRAT, "prep_mkdirat"},
    {IORING_OP_SYMLINKAT, "prep_symlinkat"},
    {IORING_OP_LINKAT, "prep_linkat"},
    {IORING_OP_MSG_RING, "prep_msg_ring, prep_msg_ring_fd"},
    {IORING_OP_FSETXATTR, "prep_fsetxattr"},
    {IORING_OP_SETXATTR, "prep_setxattr"},
    {IORING_OP_FGETXATTR, "prep_fgetxattr"},
    {IORING_OP_GETXATTR, "prep_getxattr"},
    {IORING_OP_SOCKET, "prep_socket, prep_socket_direct"},
    {IORING_OP_URING_CMD, "prep_setsockopt, prep_getsockopt"},
    {IORING_OP_SEND_ZC, "prep_send_zc, prep_send_zc_fixed"},
    {IORING_OP_SENDMSG_ZC, "prep_sendmsg_zc"},
    {uring::opcode::read_multishot, "prep_read_multishot"},
    {uring::opcode::waitid, "prep_waitid"},
    {uring::opcode::futex_wait, "prep_futex_wait"},
    {uring::opcode::futex_wake, "prep_futex_wake"},
    {uring::opcode::futex_waitv, "prep_futex_waitv"},
    {uring::opcode::fixed_fd_install, "prep_fixed_fd_install"},
    {uring::opcode::ftruncate, "prep_ftruncate"},
    {uring::opcode::bind, "prep_bind"},
    {uring::opcode::listen, "prep_listen"},
    {uring::opcode::recv_zc, "register_zcrx_ifq (registration only; needs a NIC with header split)"},
    {uring::opcode::epoll_wait, "prep_epoll_wait"},
    {uring::opcode::readv_fixed, "prep_readv_fixed"},
    {uring::opcode::writev_fixed, "prep_writev_fixed"},
    {uring::opcode::pipe, "prep_pipe, prep_pipe_direct"},
};
static_assert(sizeof(operation_list) / sizeof(operation_list[0]) == uring::opcode::known_end,
              "one row per opcode zerg knows");

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

    // Every opcode zerg::uring can prepare: the kernel it needs, whether this
    // one has it, and the prep_* functions that issue it.
    std::printf("\noperations (opcode, kernel, here, zerg::uring functions):\n");
    for (auto const& op : operation_list) {
        std::string name = uring::opcode_name(op.opcode);
        std::printf("  %-18s %-5s %-4s %s\n", name.c_str(), uring::opcode_kernel(op.opcode),
                    yes(k.supports(op.opcode)), op.functions);
    }

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
    path("SQ index array", r.has_setup_flag(IORING_SETUP_NO_SQARRAY), "none (NO_SQARRAY, own mapping)",
         "index array, filled once (fallback)");
    path("wait with timeout", r.has_kernel_feature(IORING_FEAT_EXT_ARG), "EXT_ARG", "timeout SQE (fallback)");
    path("wait argument", r.wait_region(), "registered wait region (no copy per enter)",
         "copied in per enter (fallback)");
    path("CQ overflow", r.can_resize_cq(), "CQ grows (RESIZE_RINGS)", "drained by the next wait (fallback)");
    path("receive buffers", k.buf_ring_incremental, "incremental buffer ring", "one buffer per receive (fallback)");
    path("receive", k.recv_bundle(), "multishot recv, bundles available", "multishot recv, one buffer per CQE");
    path("reactor hand-off", k.supports(IORING_OP_MSG_RING), "MSG_RING available", "eventfd wake-up only (fallback)");
    path("listen socket setup", k.supports(uring::opcode::bind) && k.supports(uring::opcode::listen),
         "BIND/LISTEN available in the ring", "bind(2)/listen(2) system calls");
    path("socket options", k.socket_commands, "URING_CMD setsockopt/getsockopt available", "setsockopt(2)");
    std::printf("\noptions (off by default; what this kernel does when asked):\n");
    path("ring memory", k.no_mmap, "user memory (NO_MMAP)", "kernel memory, mapped (fallback)");
    path("batched wait", k.min_timeout, "wait N or T µs (MIN_TIMEOUT)", "wakes at the first CQE (fallback)");
    path("NAPI busy poll", k.napi, "registers (IORING_REGISTER_NAPI)", "not available (fallback)");
    if (!r.fallbacks().empty()) {
        std::printf("\nfallbacks in effect:\n");
        for (auto const& fb : r.fallbacks())
            std::printf("  %-22s %s\n", std::string(uring::to_string(fb.what)).c_str(), fb.reason.c_str());
    }
    default_reactor_paths();
    default_reactor_paths(true);
    default_reactor_paths<zerg::reactor<echo, zerg::handoff<zerg::msg_ring_handoff>>>(true, false);
    return 0;
}
