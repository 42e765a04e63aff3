#define BOOST_TEST_MODULE hidden_features
#include <boost/test/unit_test.hpp>

#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/probe.hpp>

namespace uring = zerg::uring;

BOOST_AUTO_TEST_CASE(environment_list_is_parsed) {
    auto mask = uring::detail::parse_hidden_features("defer_taskrun,buf_ring_incremental,nonsense");
    BOOST_TEST(mask == (static_cast<unsigned>(uring::feature::defer_taskrun) |
                        static_cast<unsigned>(uring::feature::buf_ring_incremental)));
    BOOST_TEST(uring::detail::parse_hidden_features("") == 0u);
}

BOOST_AUTO_TEST_CASE(scoped_hide_restores) {
    BOOST_TEST(!uring::is_hidden(uring::feature::msg_ring));
    {
        uring::scoped_hide hide(uring::feature::msg_ring);
        BOOST_TEST(uring::is_hidden(uring::feature::msg_ring));
    }
    BOOST_TEST(!uring::is_hidden(uring::feature::msg_ring));
}

BOOST_AUTO_TEST_CASE(probe_reports_hidden_features_as_missing) {
    auto real = uring::probe_kernel();
    BOOST_REQUIRE(real.available);
    BOOST_TEST(real.supports(IORING_OP_NOP));
    uring::scoped_hide a(uring::feature::msg_ring);
    uring::scoped_hide b(uring::feature::buf_ring_incremental);
    uring::scoped_hide c(uring::feature::defer_taskrun);
    uring::scoped_hide d(uring::feature::ring_socket_ops);
    auto masked = uring::probe_kernel();
    BOOST_TEST(!masked.supports(IORING_OP_MSG_RING));
    BOOST_TEST(!masked.buf_ring_incremental);
    BOOST_TEST(!masked.accepts(IORING_SETUP_DEFER_TASKRUN));
    BOOST_TEST(!masked.supports(uring::opcode::bind));
    BOOST_TEST(masked.supports(IORING_OP_NOP));
    BOOST_TEST(masked.buf_ring == real.buf_ring);
}

BOOST_AUTO_TEST_CASE(opcode_names) {
    BOOST_TEST(uring::opcode_name(IORING_OP_NOP) == "NOP");
    BOOST_TEST(uring::opcode_name(uring::opcode::bind) == "BIND");
    BOOST_TEST(uring::opcode_name(200) == "op 200");
}
