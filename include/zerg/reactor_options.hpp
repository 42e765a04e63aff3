// The named options of zerg::reactor<Handler, Options...>: each wraps one
// policy, any may be left out (the default below is used) and they may come
// in any order, as Boost.Intrusive's and Boost.Lockfree's options do:
//
//   zerg::reactor<my_handler>                                  // every default
//   zerg::reactor<my_handler, zerg::handoff<zerg::mpmc_handoff<4096>>,
//                             zerg::buffers<zerg::incremental_buffers<16384, 256>>>
//
//   option                      policy family       default
//   zerg::buffers<P>            policy/buffer.hpp   provided_buffers<4096, 1024>
//   zerg::handoff<P>            policy/handoff.hpp  spsc_handoff<4096>
//   zerg::submission<P>         policy/submission.hpp plain_submission
//
// The defaults are what the benchmark finds best on one socket per
// connection and one acceptor: a provided buffer per receive (works from
// 5.19), the cheapest queue for one producer, and plain io_uring_enter.
// Options are folded over the defaults one after another, so when the same
// option is given twice the last one wins.
#pragma once

#include <zerg/policy/buffer.hpp>
#include <zerg/policy/handoff.hpp>
#include <zerg/policy/submission.hpp>

#include <type_traits>

namespace zerg {

namespace detail {
struct reactor_option {};  // the mark of an option; anything else is refused
}  // namespace detail

// Where receives land: a Buffer policy (buffer_policy concept).
template <class Policy>
struct buffers : detail::reactor_option {
    static_assert(buffer_policy<Policy>, "zerg::buffers<P>: P must model zerg::buffer_policy, e.g. zerg::provided_buffers<4096, 1024>");
    template <class Base>
    struct apply : Base {
        using buffer_type = Policy;
    };
};

// How accepted sockets reach the reactor: a Queue policy (handoff_policy concept).
template <class Policy>
struct handoff : detail::reactor_option {
    static_assert(handoff_policy<Policy>, "zerg::handoff<P>: P must model zerg::handoff_policy, e.g. zerg::spsc_handoff<4096>");
    template <class Base>
    struct apply : Base {
        using queue_type = Policy;
    };
};

// How the ring submits: a Submission policy (submission_policy concept).
template <class Policy>
struct submission : detail::reactor_option {
    static_assert(submission_policy<Policy>, "zerg::submission<P>: P must model zerg::submission_policy, e.g. zerg::plain_submission");
    template <class Base>
    struct apply : Base {
        using submission_type = Policy;
    };
};

struct reactor_defaults {
    using buffer_type = provided_buffers<4096, 1024>;
    using queue_type = spsc_handoff<4096>;
    using submission_type = plain_submission;
};

namespace detail {

template <class Option>
inline constexpr bool is_reactor_option = std::is_base_of_v<reactor_option, Option>;

template <class Option, class Base, bool = is_reactor_option<Option>>
struct apply_option {
    using type = Base;  // not an option: the static_assert below says so
};
template <class Option, class Base>
struct apply_option<Option, Base, true> {
    using type = typename Option::template apply<Base>;
};

template <class Base, class... Options>
struct pack_reactor_options {
    using type = Base;
};
template <class Base, class Option, class... Rest>
struct pack_reactor_options<Base, Option, Rest...> {
    static_assert(is_reactor_option<Option>,
                  "zerg::reactor<Handler, Options...>: each option is zerg::buffers<P>, zerg::handoff<P> or "
                  "zerg::submission<P> (wrap the policy in the option that names its family)");
    using type = typename pack_reactor_options<typename apply_option<Option, Base>::type, Rest...>::type;
};

}  // namespace detail

// The policies chosen by Options..., over reactor_defaults.
template <class... Options>
using reactor_policies = typename detail::pack_reactor_options<reactor_defaults, Options...>::type;

}  // namespace zerg
