// Submission policies: how a reactor's ring is set up and how it waits.
//
//   plain_submission               SINGLE_ISSUER | DEFER_TASKRUN (6.0/6.1), one
//                                  io_uring_enter per loop iteration that both
//                                  submits and waits. Best for most servers.
//   sqpoll_submission<Cpu, IdleMs> a kernel thread (pinned to Cpu when >= 0)
//                                  polls the SQ, so submitting costs no system
//                                  call while it is awake; it sleeps after
//                                  IdleMs without work. Costs a busy core.
//                                  Unprivileged since 5.11; falls back to
//                                  plain submission when refused.
#pragma once

#include <zerg/uring/ring.hpp>

#include <concepts>

namespace zerg {

struct plain_submission {
    static constexpr const char* name = "plain";
    static void configure(uring::ring_options& options) noexcept {
        options.sqpoll = false;
        options.single_issuer = true;
        options.defer_taskrun = true;
    }
};

template <int Cpu = -1, unsigned IdleMs = 100>
struct sqpoll_submission {
    static constexpr const char* name = "sqpoll";
    static void configure(uring::ring_options& options) noexcept {
        options.sqpoll = true;
        options.sqpoll_cpu = Cpu;
        options.sqpoll_idle_ms = IdleMs;
        options.single_issuer = true;
        options.defer_taskrun = false;  // not combinable with SQPOLL
    }
};

// What basic_reactor calls on its Submission policy.
template <class S>
concept submission_policy = requires(uring::ring_options& options) {
    { S::name } -> std::convertible_to<const char*>;
    S::configure(options);  // adjust the reactor ring's options before it is made
};

}  // namespace zerg
