// The example servers, run as a user runs them: each is started on
// loopback, must print "listening on ADDR:PORT", echo correctly, and exit
// cleanly (status 0) on SIGTERM. The programs' paths come from test/Jamfile.
#define BOOST_TEST_MODULE examples
#include <boost/test/unit_test.hpp>

#include <support/echo_client.hpp>
#include <support/process.hpp>

#include <cstdio>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

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

// The benchmark's quick mode: every configuration runs, and every echoed
// byte is verified (its speed is not judged here).
BOOST_AUTO_TEST_CASE(bench_quick_mode_runs_and_verifies) {
    std::string csv = "/tmp/zerg-bench-test-" + std::to_string(::getpid()) + ".csv";
    std::string svg = "/tmp/zerg-bench-test-" + std::to_string(::getpid()) + ".svg";
    // A longer window than --quick alone: on a loaded 2-core machine a server
    // pinned to a busy CPU can go a few hundred milliseconds without running.
    std::string cmd = program("zerg-bench") + " --quick --duration 1500 --no-perf --csv " + csv + " --svg " + svg + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    BOOST_REQUIRE(p);
    std::string output;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) output.append(buf, n);
    int status = ::pclose(p);
    BOOST_TEST_MESSAGE(output);
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0, output);
    BOOST_TEST(output.find("ok: 0 verification errors") != std::string::npos);
    for (const char* name : {"zerg provided/spsc/plain", "baseline liburing", "baseline epoll"})
        BOOST_TEST(output.find(std::string(name)) != std::string::npos, "no row for " << name);
    std::size_t verified = 0;
    for (std::size_t at = 0; (at = output.find("msgs/s  verified", at)) != std::string::npos; ++at) ++verified;
    BOOST_TEST(verified >= 7u);
    // The CSV has a header and one line per configuration of the echo table
    // (seven zerg ones and the two baselines; variants only with --only).
    FILE* f = std::fopen(csv.c_str(), "r");
    BOOST_REQUIRE(f);
    std::size_t lines = 0;
    while (std::fgets(buf, sizeof buf, f)) ++lines;
    std::fclose(f);
    BOOST_TEST(lines == 9u);
    std::remove(csv.c_str());
    std::remove(svg.c_str());
}
