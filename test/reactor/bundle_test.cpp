// Receive bundles (IORING_RECVSEND_BUNDLE, 6.10): where the kernel has them
// the reactor arms its receives as bundles and one completion fills several
// buffers (counted in bundle_completions); hidden (ZERG_URING_HIDE), absent
// (6.1), or with incremental buffers before 6.15, it takes one buffer per
// completion and says so in fallbacks(). Echo is byte-exact either way, for every handler
// kind that sees the buffers (span, ring item, sequence).
#define BOOST_TEST_MODULE reactor_bundle
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <zerg/zerg.hpp>

#include <support/echo_client.hpp>
#include <support/server_checks.hpp>
#include <support/skip.hpp>
#include <support/sockets.hpp>

#include <iostream>
#include <string>

namespace {

namespace uring = zerg::uring;

struct span_echo {
    void on_data(zerg::connection<span_echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};
struct item_echo {
    void on_ring_item(zerg::connection<item_echo>& c, zerg::ring_item item) {
        c.write_from(item);
        c.release(item);
    }
};
// Consumes whole 100-byte records only, so input is left over across
// completions (and across the buffers of one bundle).
struct record_echo {
    void on_data(zerg::connection<record_echo>& c, zerg::buffer_sequence& in) {
        std::size_t n = in.size() / 100 * 100;
        if (n == 0) return;
        c.write_from(in.slice(0, n));
        in.consume(n);
    }
};

template <class H>
using reactor = zerg::basic_reactor<zerg::provided_buffers<1024, 256>, zerg::spsc_handoff<1024>, zerg::plain_submission, H>;
using handlers = boost::mpl::list<reactor<span_echo>, reactor<item_echo>, reactor<record_echo>>;

zerg::server_config test_config() {
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.reactors = 1;
    config.ring_entries = 256;
    config.max_connections = 64;
    config.stop_deadline = std::chrono::milliseconds(2000);
    return config;
}

bool kernel_bundles() {
    static const bool has = uring::probe_kernel().has(IORING_FEAT_RECVSEND_BUNDLE);
    return has;
}

bool listed(const std::vector<std::string>& all, const std::string& prefix) {
    for (auto const& fb : all)
        if (fb.rfind(prefix, 0) == 0) return true;
    return false;
}

template <class R>
void say(const zerg::server<R>& s) {
    std::cout << boost::unit_test::framework::current_test_case().p_name.get() << ": bundles "
              << (s.reactor(0).bundles() ? "on" : "off");
    for (auto const& fb : s.fallbacks()) std::cout << "; fallback " << fb;
    std::cout << "; bundle completions " << s.totals().bundle_completions << '\n';
}

// Echo traffic that queues many KiB in the socket between receives, so a
// bundle has several buffers to fill: large messages, pipelined.
template <class R>
void echo_exact(zerg::server<R>& s) {
    using zerg::test::check;
    check(zerg::test::run_echo({s.port(), 1, 1'000'000, 1}), 1'000'000u);  // whole 100-byte records
    check(zerg::test::run_echo({s.port(), 8, 300 * 100, 8}), 8ull * 300 * 100 * 8);
    zerg::test::check_clean(s);
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(bundles_in_effect_where_the_kernel_has_them, R, handlers) {
    if (zerg::test::skip_unless(kernel_bundles(), "IORING_RECVSEND_BUNDLE (Linux 6.10)")) return;
    if (uring::is_hidden(uring::feature::recv_bundle)) {
        std::cout << "SKIPPED " << boost::unit_test::framework::current_test_case().p_name.get()
                  << ": recv_bundle hidden by ZERG_URING_HIDE\n";
        return;
    }
    zerg::server<R> s(test_config());
    s.start();
    BOOST_TEST(s.reactor(0).bundles());
    BOOST_TEST(!listed(s.fallbacks(), "recv_bundle: "));
    echo_exact(s);
    say(s);
    // A 1 MiB message through 1 KiB buffers: the kernel had several queued
    // buffers' worth to put in one completion, many times over.
    BOOST_TEST(s.totals().bundle_completions > 0u);
    s.stop();
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hidden_bundles_fall_back_to_one_buffer_per_completion, R, handlers) {
    uring::scoped_hide hide(uring::feature::recv_bundle);
    zerg::server<R> s(test_config());
    s.start();
    BOOST_TEST(!s.reactor(0).bundles());
    BOOST_TEST(listed(s.fallbacks(), "recv_bundle: "));
    echo_exact(s);
    say(s);
    BOOST_TEST(s.totals().bundle_completions == 0u);
    s.stop();
}

// Incremental buffers take bundles from Linux 6.15 (the release decides: no
// feature bit says so): then one completion may start in the middle of a
// buffer another receive used, fill the following ones, and leave the last
// one to the kernel (BUF_MORE). Before 6.15 (6.12) the path is one slice per
// completion, reported; 6.1 has neither, and incremental mode itself falls
// back. Echo is byte-exact on every path.
template <class H>
using incremental_reactor =
    zerg::basic_reactor<zerg::incremental_buffers<1024, 256>, zerg::spsc_handoff<1024>, zerg::plain_submission, H>;
using incremental_handlers =
    boost::mpl::list<incremental_reactor<span_echo>, incremental_reactor<item_echo>, incremental_reactor<record_echo>>;

bool kernel_incremental() {
    static const bool has = uring::probe_kernel().buf_ring_incremental;
    return has;
}

BOOST_AUTO_TEST_CASE_TEMPLATE(incremental_buffers_take_bundles_from_6_15, R, incremental_handlers) {
    if (zerg::test::skip_unless(kernel_incremental(), "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    bool expected = kernel_bundles() && !uring::is_hidden(uring::feature::recv_bundle) &&
                    !uring::is_hidden(uring::feature::incremental_bundle) &&
                    uring::kernel_release::running().at_least(6, 15);
    zerg::server<R> s(test_config());
    s.start();
    BOOST_TEST(s.reactor(0).bundles() == expected);
    BOOST_TEST(listed(s.fallbacks(), "recv_bundle: ") == !expected);
    if (!expected && kernel_bundles() && !uring::is_hidden(uring::feature::recv_bundle))
        BOOST_TEST(listed(s.fallbacks(), "recv_bundle: incremental buffers are in effect and the kernel bundles them only "
                                         "from Linux 6.15"));
    echo_exact(s);
    say(s);
    if (expected)
        BOOST_TEST(s.totals().bundle_completions > 0u);
    else
        BOOST_TEST(s.totals().bundle_completions == 0u);
    s.stop();
}

BOOST_AUTO_TEST_CASE(hidden_incremental_bundles_fall_back_to_one_slice_per_completion) {
    if (zerg::test::skip_unless(kernel_incremental(), "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    uring::scoped_hide hide(uring::feature::incremental_bundle);
    zerg::server<incremental_reactor<record_echo>> s(test_config());
    s.start();
    BOOST_TEST(!s.reactor(0).bundles());
    if (kernel_bundles() && !uring::is_hidden(uring::feature::recv_bundle))
        BOOST_TEST(listed(s.fallbacks(), "recv_bundle: bundles into incremental buffers hidden"));
    echo_exact(s);
    say(s);
    BOOST_TEST(s.totals().bundle_completions == 0u);
    s.stop();
}
