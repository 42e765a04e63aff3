// The example servers, run as a user runs them: each is started on
// loopback, must print "listening on ADDR:PORT", echo correctly, and exit
// cleanly (status 0) on SIGTERM. The programs' paths come from test/Jamfile.
#define BOOST_TEST_MODULE examples
#include <boost/test/unit_test.hpp>

#include <support/echo_client.hpp>
#include <support/process.hpp>

#include <string>

namespace {

std::string program(const char* name) {
    auto& args = boost::unit_test::framework::master_test_suite();
    for (int i = 1; i < args.argc; ++i) {
        std::string path = args.argv[i];
        if (path.size() >= std::string(name).size() && path.ends_with(std::string("/") + name)) return path;
    }
    throw std::runtime_error(std::string("no path to ") + name + " on the command line");
}

void check_echo_server(const char* name) {
    zerg::test::server_process server(program(name), {"--reactors", "2"});
    auto o = zerg::test::run_echo({server.port(), 16, 3000, 8});
    BOOST_TEST(o.error.empty(), o.error);
    BOOST_TEST(o.mismatches == 0u);
    BOOST_TEST(o.bytes_verified == 16ull * 3000 * 8);
    BOOST_TEST(server.stop() == 0);
}

}  // namespace

BOOST_AUTO_TEST_CASE(echo_example) { check_echo_server("echo"); }
BOOST_AUTO_TEST_CASE(custom_policy_example) { check_echo_server("custom_policy"); }
