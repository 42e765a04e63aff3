// zerg::write_prometheus: a server's counters in the Prometheus text
// exposition format (version 0.0.4), for a /metrics endpoint.
//
//   std::ostringstream body;
//   zerg::write_prometheus(server, body);   // serve with
//   // Content-Type: text/plain; version=0.0.4; charset=utf-8
//
// Per-reactor counters carry the label reactor="N"; the acceptor's have no
// label (there is one, and none at all with reuse_port); each fallback in
// effect is a gauge zerg_fallback{reactor="0",feature="...",reason="..."} 1.
// Counters end in _total, as Prometheus expects. The tables below are the
// only place a metric is named: a new counter is one line.
//
// Cost: reads each counter once (relaxed loads, no lock, no write to the
// reactors' cache lines) and formats a few kilobytes; safe from any thread
// while the server runs, between start() and stop().
#pragma once

#include <zerg/acceptor.hpp>
#include <zerg/counters.hpp>
#include <zerg/server.hpp>

#include <cstddef>
#include <ostream>
#include <string_view>
#include <utility>

namespace zerg {

namespace detail {

enum class metric_kind { counter, gauge };

template <class Counters>
struct metric {
    std::string_view name;  // without the zerg_ prefix; counters end in _total
    metric_kind kind;
    std::string_view help;
    reactor_counters::counter Counters::*value;
};

inline constexpr metric<reactor_counters> reactor_metrics[] = {
    {"open_connections", metric_kind::gauge, "Connections open now.", &reactor_counters::open_connections},
    {"busy_slots", metric_kind::gauge, "Connection slots not free (open or closing).", &reactor_counters::busy_slots},
    {"buffers_in_use", metric_kind::gauge, "Provided receive buffers out of the kernel's hands.",
     &reactor_counters::buffers_in_use},
    {"connections_accepted_total", metric_kind::counter, "Connections opened by the reactor.",
     &reactor_counters::accepted},
    {"connections_closed_total", metric_kind::counter, "Connections fully closed (slot free again).",
     &reactor_counters::closed},
    {"connections_rejected_total", metric_kind::counter, "Connections handed over while the table was full.",
     &reactor_counters::rejected},
    {"handoffs_total", metric_kind::counter, "Connections received from the acceptor.", &reactor_counters::handoffs},
    {"received_bytes_total", metric_kind::counter, "Bytes received.", &reactor_counters::bytes_in},
    {"sent_bytes_total", metric_kind::counter, "Bytes sent.", &reactor_counters::bytes_out},
    {"wakeups_total", metric_kind::counter, "Times the reactor was woken from sleep by its inbox.",
     &reactor_counters::wakeups},
    {"enobufs_total", metric_kind::counter, "Receives that found the buffer ring empty (ENOBUFS).",
     &reactor_counters::enobufs},
    {"receive_rearms_total", metric_kind::counter, "Multishot receives armed again.", &reactor_counters::recv_rearms},
    {"read_pauses_total", metric_kind::counter, "Times reading was paused for backpressure.",
     &reactor_counters::read_pauses},
    {"stale_completions_total", metric_kind::counter, "Completions for a connection slot generation that is gone.",
     &reactor_counters::stale_completions},
    {"loop_iterations_total", metric_kind::counter, "Event loop iterations.", &reactor_counters::loop_iterations},
    {"handler_exceptions_total", metric_kind::counter, "Handler callbacks that threw; each closed its connection.",
     &reactor_counters::handler_exceptions},
    {"completions_total", metric_kind::counter, "Completions reaped; divided by loop iterations, CQEs per iteration.",
     &reactor_counters::completions},
    {"cq_overflows_total", metric_kind::counter, "Waits that found the kernel holding completions back (CQ overflow).",
     &reactor_counters::cq_overflows},
    {"cq_resizes_total", metric_kind::counter, "Times the CQ was grown after an overflow (Linux 6.13).",
     &reactor_counters::cq_resizes},
    {"bundle_completions_total", metric_kind::counter, "Receive completions that filled more than one buffer (bundles).",
     &reactor_counters::bundle_completions},
    {"buffer_writes_total", metric_kind::counter, "Writes sent straight from a receive buffer (write_from).",
     &reactor_counters::buffer_writes},
    {"zero_copy_sends_total", metric_kind::counter, "Zero-copy sends completed (notification received).",
     &reactor_counters::zc_sends},
    {"zero_copy_copied_total", metric_kind::counter, "Zero-copy sends the kernel copied after all.",
     &reactor_counters::zc_copied},
    {"zero_copy_unavailable_total", metric_kind::counter,
     "Sends at or above the zero-copy threshold that were copied (zero-copy off, missing or declined).",
     &reactor_counters::zc_unavailable},
};

inline constexpr metric<acceptor_counters> acceptor_metrics[] = {
    {"acceptor_accepted_total", metric_kind::counter, "Connections accepted by the acceptor thread.",
     &acceptor_counters::accepted},
    {"acceptor_rearms_total", metric_kind::counter, "Multishot accepts armed again after the kernel ended one.",
     &acceptor_counters::rearms},
    {"acceptor_errors_total", metric_kind::counter, "Accept errors (EMFILE, ENFILE, ENOMEM...); accepting backs off.",
     &acceptor_counters::errors},
    {"acceptor_pauses_total", metric_kind::counter, "Times every reactor was full.", &acceptor_counters::pauses},
    {"acceptor_rejected_total", metric_kind::counter, "Connections still waiting for room when the server stopped.",
     &acceptor_counters::rejected},
    {"acceptor_handoff_retries_total", metric_kind::counter,
     "Hand-overs whose MSG_RING failed and went through the queue.", &acceptor_counters::handoff_retries},
    {"acceptor_handoff_failures_total", metric_kind::counter,
     "Direct sockets whose MSG_RING to a reactor failed; closed.", &acceptor_counters::handoff_failures},
};

inline void write_family_head(std::ostream& out, std::string_view name, std::string_view kind, std::string_view help) {
    out << "# HELP zerg_" << name << ' ' << help << "\n# TYPE zerg_" << name << ' ' << kind << '\n';
}

inline std::string_view kind_name(metric_kind k) noexcept { return k == metric_kind::counter ? "counter" : "gauge"; }

// A label value with \, " and newline escaped, as the format requires.
inline void write_label_value(std::ostream& out, std::string_view v) {
    for (char ch : v) {
        if (ch == '\\')
            out << "\\\\";
        else if (ch == '"')
            out << "\\\"";
        else if (ch == '\n')
            out << "\\n";
        else
            out << ch;
    }
}

}  // namespace detail

// Writes every metric of `s` to `out`. Any thread, while `s` is running
// (the reactors it reads exist from start() until the server is destroyed
// or started again).
template <class Reactor>
void write_prometheus(const server<Reactor>& s, std::ostream& out) {
    const std::size_t reactors = s.reactor_count();
    detail::write_family_head(out, "reactors", "gauge", "Reactor threads.");
    out << "zerg_reactors " << reactors << '\n';

    for (auto const& m : detail::reactor_metrics) {
        detail::write_family_head(out, m.name, detail::kind_name(m.kind), m.help);
        for (std::size_t i = 0; i < reactors; ++i)
            out << "zerg_" << m.name << "{reactor=\"" << i << "\"} " << (s.counters(i).*m.value).get() << '\n';
    }

    detail::write_family_head(out, "connections_closed_by_reason_total", "counter",
                              "Connections closed, by the reason on_close saw.");
    static constexpr std::pair<std::string_view, reactor_counters::counter reactor_counters::*> reasons[] = {
        {"clean", &reactor_counters::closed_clean},          {"timeout", &reactor_counters::closed_timeout},
        {"reset", &reactor_counters::closed_reset},          {"handler", &reactor_counters::closed_handler},
        {"input_limit", &reactor_counters::closed_input_limit}, {"error", &reactor_counters::closed_other},
    };
    for (std::size_t i = 0; i < reactors; ++i)
        for (auto const& [reason, value] : reasons)
            out << "zerg_connections_closed_by_reason_total{reactor=\"" << i << "\",reason=\"" << reason << "\"} "
                << (s.counters(i).*value).get() << '\n';

    detail::write_family_head(out, "loop_iteration_seconds", "histogram",
                              "Time a reactor loop iteration spends working, from waking up to the next sleep.");
    using histogram = reactor_counters::histogram;
    for (std::size_t i = 0; i < reactors; ++i) {
        auto const& h = s.counters(i).loop_time;
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b < histogram::buckets; ++b) {
            cumulative += h.bucket[b].get();
            out << "zerg_loop_iteration_seconds_bucket{reactor=\"" << i << "\",le=\"";
            if (b + 1 < histogram::buckets)
                out << static_cast<double>(histogram::bounds_ns[b]) / 1e9;
            else
                out << "+Inf";
            out << "\"} " << cumulative << '\n';
        }
        out << "zerg_loop_iteration_seconds_sum{reactor=\"" << i << "\"} " << static_cast<double>(h.sum_ns.get()) / 1e9
            << '\n';
        out << "zerg_loop_iteration_seconds_count{reactor=\"" << i << "\"} " << cumulative << '\n';
    }

    if (const acceptor_counters* a = s.acceptor_stats()) {
        for (auto const& m : detail::acceptor_metrics) {
            detail::write_family_head(out, m.name, detail::kind_name(m.kind), m.help);
            out << "zerg_" << m.name << ' ' << (a->*m.value).get() << '\n';
        }
    }

    // Who reported what: "reactor N" or "acceptor", each "feature: reason".
    auto fallbacks = s.fallbacks_by_component();
    if (!fallbacks.empty()) {
        detail::write_family_head(out, "fallback", "gauge",
                                  "A feature this kernel or configuration lacks, and what runs instead (1 = in effect).");
        for (auto const& [who, f] : fallbacks) {
            std::string_view text = f;
            auto colon = text.find(": ");
            std::string_view feature = colon == std::string_view::npos ? text : text.substr(0, colon);
            std::string_view reason = colon == std::string_view::npos ? std::string_view{} : text.substr(colon + 2);
            std::string_view component = who;
            if (component.rfind("reactor ", 0) == 0)
                out << "zerg_fallback{reactor=\"" << component.substr(8) << "\",feature=\"";
            else
                out << "zerg_fallback{component=\"" << component << "\",feature=\"";
            detail::write_label_value(out, feature);
            out << "\",reason=\"";
            detail::write_label_value(out, reason);
            out << "\"} 1\n";
        }
    }
}

}  // namespace zerg
