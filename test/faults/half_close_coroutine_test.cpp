#define BOOST_TEST_MODULE faults_half_close_coroutine
#include <boost/test/unit_test.hpp>

// Issue 9, section 4, for coroutine handlers: a client sends N bytes, then
// shutdown(SHUT_WR), and must get all N back, then EOF. The peer's FIN ends
// the input only; what arrived before it is still delivered, and what the
// handler writes in answer is still sent.
//
// Two handlers: the loop of example/coro_echo as it is (it stops at
// `closed`, so it relies on the reactor reporting closed only once every
// byte before the FIN has been read), and one that answers whatever it was
// given before looking at `closed`. Span and sequence handlers have the
// same case in matrix_test.cpp.

#include <faults/common.hpp>
#include <support/server_checks.hpp>

#include <boost/mpl/list.hpp>

#include <iostream>

using namespace std::chrono_literals;
namespace faults = zerg::faults;

namespace {

// Answers every byte it was given, then looks at `closed`.
struct coroutine_echo_then_close {
    zerg::task serve(zerg::connection<coroutine_echo_then_close>& c) {
        for (;;) {
            auto [in, closed] = co_await c.read();
            for (std::size_t i = 0; i < in.segment_count(); ++i) c.write(in.segment(i));
            c.advance(in.size());
            bool sent = co_await c.flush();
            if (closed || !sent) co_return;
        }
    }
};

using handlers = boost::mpl::list<faults::coroutine_echo, coroutine_echo_then_close>;

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(half_close_coroutine_gets_everything_back, H, handlers) {
    zerg::server<zerg::reactor<H>> s(faults::loopback_config(1));
    s.start();
    // 1 MiB in every build: the loss needs a FIN that arrives while echoes
    // are still owed, which a smaller transfer under a sanitizer can miss.
    constexpr std::uint64_t bytes = 1u << 20;
    constexpr unsigned conns = 8;
    std::vector<faults::flow> flows;
    for (unsigned i = 0; i < conns; ++i) flows.push_back(faults::echo_flow(s.port(), 700 + i, bytes, true));
    faults::drive(flows, 30s);
    unsigned whole = 0;
    for (std::size_t i = 0; i < flows.size(); ++i) {
        auto const& f = flows[i];
        BOOST_TEST((f.end == faults::ending::eof), "flow " << i << " ended " << faults::to_string(f.end));
        BOOST_TEST(f.mismatches == 0u, "flow " << i);
        BOOST_TEST(f.received == bytes, "flow " << i << ": " << f.received << " of " << bytes << " bytes, then "
                                                << faults::to_string(f.end));
        whole += f.end == faults::ending::eof && f.received == bytes && f.mismatches == 0;
    }
    std::cout << boost::unit_test::framework::current_test_case().p_name.get() << ": " << whole << " of " << conns
              << " connections got all " << bytes << " bytes back before EOF\n";
    zerg::test::check_clean(s);
    s.stop();
}
