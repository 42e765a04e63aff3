// A switch for tests and for users on new kernels who want to see the paths
// older kernels take: a hidden feature is treated exactly as if the running
// kernel had refused it, so zerg's fallback runs for real.
//
// Set from code (hide / scoped_hide) or, before the first ring is made, from
// the environment: ZERG_URING_HIDE="defer_taskrun,buf_ring_incremental".
// Thread-safe: the mask is one atomic word.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace zerg::uring {

enum class feature : std::uint32_t {
    single_issuer = 1u << 0,         // IORING_SETUP_SINGLE_ISSUER, 6.0
    defer_taskrun = 1u << 1,         // IORING_SETUP_DEFER_TASKRUN, 6.1
    coop_taskrun = 1u << 2,          // IORING_SETUP_COOP_TASKRUN, 5.19
    sqpoll = 1u << 3,                // IORING_SETUP_SQPOLL (unprivileged since 5.11)
    submit_all = 1u << 4,            // IORING_SETUP_SUBMIT_ALL, 5.18
    no_sqarray = 1u << 5,            // IORING_SETUP_NO_SQARRAY, 6.6
    registered_ring_fd = 1u << 6,    // IORING_REGISTER_RING_FDS, 5.18
    ext_arg = 1u << 7,               // IORING_FEAT_EXT_ARG (timeout in io_uring_enter), 5.11
    buf_ring = 1u << 8,              // IORING_REGISTER_PBUF_RING, 5.19
    buf_ring_incremental = 1u << 9,  // IOU_PBUF_RING_INC, 6.12
    recv_bundle = 1u << 10,          // IORING_RECVSEND_BUNDLE, 6.10
    msg_ring = 1u << 11,             // IORING_OP_MSG_RING, 5.18
    ring_socket_ops = 1u << 12,      // IORING_OP_BIND / LISTEN, 6.11
    no_mmap = 1u << 13,              // IORING_SETUP_NO_MMAP (rings in user memory), 6.5
    min_timeout = 1u << 14,          // IORING_FEAT_MIN_TIMEOUT (min_wait_usec), 6.12
    wait_region = 1u << 15,          // IORING_REGISTER_MEM_REGION + IORING_ENTER_EXT_ARG_REG, 6.13
    resize_rings = 1u << 16,         // IORING_REGISTER_RESIZE_RINGS, 6.13
    napi = 1u << 17,                 // IORING_REGISTER_NAPI, 6.9
    ring_socket = 1u << 18,          // IORING_OP_SOCKET, 5.19 (outbound connections)
    send_zc = 1u << 19,              // IORING_OP_SEND_ZC with IORING_SEND_ZC_REPORT_USAGE, 6.2
    direct_descriptors = 1u << 20,   // the reactor's registered file table (accept direct), 5.19
    incremental_bundle = 1u << 21,   // bundle receives into an incremental buffer ring, 6.15 (by release)
};

struct feature_name {
    feature value;
    std::string_view name;
};

inline constexpr feature_name feature_names[] = {
    {feature::single_issuer, "single_issuer"},
    {feature::defer_taskrun, "defer_taskrun"},
    {feature::coop_taskrun, "coop_taskrun"},
    {feature::sqpoll, "sqpoll"},
    {feature::submit_all, "submit_all"},
    {feature::no_sqarray, "no_sqarray"},
    {feature::registered_ring_fd, "registered_ring_fd"},
    {feature::ext_arg, "ext_arg"},
    {feature::buf_ring, "buf_ring"},
    {feature::buf_ring_incremental, "buf_ring_incremental"},
    {feature::recv_bundle, "recv_bundle"},
    {feature::msg_ring, "msg_ring"},
    {feature::ring_socket_ops, "ring_socket_ops"},
    {feature::no_mmap, "no_mmap"},
    {feature::min_timeout, "min_timeout"},
    {feature::wait_region, "wait_region"},
    {feature::resize_rings, "resize_rings"},
    {feature::napi, "napi"},
    {feature::ring_socket, "ring_socket"},
    {feature::send_zc, "send_zc"},
    {feature::direct_descriptors, "direct_descriptors"},
    {feature::incremental_bundle, "incremental_bundle"},
};

inline constexpr std::string_view to_string(feature f) noexcept {
    for (auto const& entry : feature_names)
        if (entry.value == f) return entry.name;
    return "unknown";
}

namespace detail {

inline std::uint32_t parse_hidden_features(std::string_view list) noexcept {
    std::uint32_t mask = 0;
    while (!list.empty()) {
        auto comma = list.find(',');
        auto item = list.substr(0, comma);
        for (auto const& entry : feature_names)
            if (entry.name == item) mask |= static_cast<std::uint32_t>(entry.value);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return mask;
}

inline std::atomic<std::uint32_t>& hidden_mask() noexcept {
    // Function-local static: initialised from the environment on first use,
    // whichever translation unit gets there first.
    static std::atomic<std::uint32_t> mask{[] {
        const char* env = std::getenv("ZERG_URING_HIDE");
        return env ? parse_hidden_features(env) : 0u;
    }()};
    return mask;
}

}  // namespace detail

inline bool is_hidden(feature f) noexcept {
    return detail::hidden_mask().load(std::memory_order_relaxed) & static_cast<std::uint32_t>(f);
}
inline void hide(feature f) noexcept {
    detail::hidden_mask().fetch_or(static_cast<std::uint32_t>(f), std::memory_order_relaxed);
}
inline void reveal(feature f) noexcept {
    detail::hidden_mask().fetch_and(~static_cast<std::uint32_t>(f), std::memory_order_relaxed);
}

// Hides a feature for one scope; restores the previous state on exit.
class scoped_hide {
public:
    explicit scoped_hide(feature f) noexcept : feature_(f), was_hidden_(is_hidden(f)) { hide(f); }
    ~scoped_hide() {
        if (!was_hidden_) reveal(feature_);
    }
    scoped_hide(const scoped_hide&) = delete;
    scoped_hide& operator=(const scoped_hide&) = delete;

private:
    feature feature_;
    bool was_hidden_;
};

}  // namespace zerg::uring
