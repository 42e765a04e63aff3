#define BOOST_TEST_MODULE consumers
#include <boost/test/unit_test.hpp>

// zerg as an installed library: test/consumers/run.sh (its path is this
// test's argument) installs it into a temporary prefix and builds and runs
// the consumer with CMake, pkg-config and b2. Its log is this test's output.

#include <sys/wait.h>

#include <cstdio>
#include <iostream>
#include <string>

BOOST_AUTO_TEST_CASE(cmake_pkg_config_and_b2_consumers_build_and_run) {
    auto& args = boost::unit_test::framework::master_test_suite();
    BOOST_REQUIRE_MESSAGE(args.argc > 1, "the path to run.sh is the argument");
    std::string script = args.argv[1];
    FILE* p = ::popen(("bash '" + script + "' 2>&1").c_str(), "r");
    BOOST_REQUIRE(p);
    std::string log;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) log.append(buf, n);
    int status = ::pclose(p);
    std::cout << log;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == 77) return;  // run.sh printed "SKIPPED consumers: ..."
    BOOST_TEST(code == 0, "run.sh exit status " << code << ":\n" << log);
    BOOST_TEST(log.find("consumers: all passed") != std::string::npos);
}
