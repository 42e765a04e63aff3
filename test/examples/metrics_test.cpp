#define BOOST_TEST_MODULE metrics
#include <boost/test/unit_test.hpp>

// bin/http_plaintext's GET /metrics (zerg/prometheus.hpp) scraped as
// Prometheus would: curl fetches it, `promtool check metrics` (Debian
// package prometheus) validates the exposition format and its naming rules,
// and the numbers follow the traffic the test sent. The program's path comes
// from test/Jamfile.

#include <support/commands.hpp>
#include <support/process.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>

namespace {

std::string program() {
    auto& args = boost::unit_test::framework::master_test_suite();
    for (int i = 1; i < args.argc; ++i) {
        std::string path = args.argv[i];
        if (path.ends_with("/http_plaintext")) return path;
    }
    throw std::runtime_error("no path to http_plaintext on the command line");
}

using zerg::test::command_result;
using zerg::test::run_command;
using zerg::test::skip_without;

std::string url(std::uint16_t port, const char* path) {
    return "http://127.0.0.1:" + std::to_string(port) + path;
}

// The sum of every sample of `name` (any labels) in an exposition.
unsigned long long sum_of(const std::string& text, const std::string& name) {
    std::regex sample("^" + name + "(\\{[^}]*\\})? ([0-9]+)$", std::regex::multiline);
    unsigned long long total = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), sample); it != std::sregex_iterator(); ++it)
        total += std::stoull((*it)[2]);
    return total;
}

// A scrape saved to a file, and promtool's verdict on it.
struct scrape {
    std::string body;
    command_result check;
};

scrape scrape_and_check(std::uint16_t port) {
    char path[] = "/tmp/zerg-metrics-XXXXXX";
    int fd = ::mkstemp(path);
    BOOST_REQUIRE(fd >= 0);
    ::close(fd);
    scrape s;
    auto fetched = run_command("curl -sS --max-time 10 --fail -o " + std::string(path) + " " + url(port, "/metrics"));
    BOOST_REQUIRE_MESSAGE(fetched.status == 0, "curl /metrics: " << fetched.output);
    std::ifstream in(path);
    s.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    s.check = run_command("promtool check metrics < " + std::string(path));
    ::unlink(path);
    return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(metrics_pass_promtool_and_follow_the_traffic) {
    if (skip_without("curl", "curl") || skip_without("promtool", "prometheus")) return;
    zerg::test::server_process server(program(), {"--reactors", "2"});

    // Five connections of two requests each, closed before the scrape.
    for (int i = 0; i < 5; ++i) {
        auto r = run_command("curl -sS --max-time 10 --fail " + url(server.port(), "/plaintext") + " " +
                             url(server.port(), "/plaintext"));
        BOOST_REQUIRE_MESSAGE(r.status == 0 && r.output == "Hello, World!Hello, World!", r.output);
    }
    auto s = scrape_and_check(server.port());
    BOOST_TEST_MESSAGE(s.body);
    BOOST_TEST(s.check.status == 0, "promtool check metrics: " << s.check.output);
    BOOST_TEST(s.check.output.empty(), "promtool has remarks: " << s.check.output);

    BOOST_TEST(sum_of(s.body, "zerg_reactors") == 2u);
    BOOST_TEST(s.body.find("zerg_connections_accepted_total{reactor=\"1\"} ") != std::string::npos);
    // The scrape's own connection is open and counted too.
    BOOST_TEST(sum_of(s.body, "zerg_connections_accepted_total") >= 6u);
    BOOST_TEST(sum_of(s.body, "zerg_acceptor_accepted_total") >= 6u);
    BOOST_TEST(sum_of(s.body, "zerg_open_connections") >= 1u);
    // Ten GETs of /plaintext at ~80 bytes each went in, ten answers came out.
    BOOST_TEST(sum_of(s.body, "zerg_received_bytes_total") >= 10u * 40u);
    BOOST_TEST(sum_of(s.body, "zerg_sent_bytes_total") >= 10u * 100u);
    for (auto family : {"zerg_loop_iterations_total", "zerg_enobufs_total", "zerg_read_pauses_total",
                        "zerg_receive_rearms_total", "zerg_acceptor_errors_total"})
        BOOST_TEST(s.body.find(std::string("# TYPE ") + family + " counter\n") != std::string::npos, family);

    // Counters only grow: a second scrape sees at least one more accept.
    auto again = scrape_and_check(server.port());
    BOOST_TEST(sum_of(again.body, "zerg_connections_accepted_total") > sum_of(s.body, "zerg_connections_accepted_total"));
    BOOST_TEST(server.stop() == 0);
}

BOOST_AUTO_TEST_CASE(fallbacks_are_a_labelled_gauge) {
    if (skip_without("curl", "curl") || skip_without("promtool", "prometheus")) return;
    // Hidden features take their fallback for real, so they must be reported.
    ::setenv("ZERG_URING_HIDE", "defer_taskrun,buf_ring_incremental", 1);
    zerg::test::server_process server(program(), {"--reactors", "1"});
    ::unsetenv("ZERG_URING_HIDE");
    auto s = scrape_and_check(server.port());
    BOOST_TEST(s.check.status == 0, "promtool check metrics: " << s.check.output);
    BOOST_TEST(s.body.find("# TYPE zerg_fallback gauge\n") != std::string::npos, s.body);
    std::regex hidden("^zerg_fallback\\{reactor=\"0\",feature=\"[^\"]*defer_taskrun[^\"]*\",reason=\"[^\"]+\"\\} 1$",
                      std::regex::multiline);
    BOOST_TEST(std::regex_search(s.body, hidden), s.body);
    BOOST_TEST(server.stop() == 0);
}
