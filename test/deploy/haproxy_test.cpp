#define BOOST_TEST_MODULE deploy_haproxy
#include <boost/test/unit_test.hpp>

// Scale-out the usual way: HAProxy (Debian package haproxy) runs
// example/deploy/haproxy.cfg in front of two bin/http_plaintext processes,
// all on loopback ports picked here. h2load (Debian package nghttp2-client)
// sends load through HAProxy; one zerg process is killed (SIGKILL, by PID)
// mid-run. HAProxy's health check must take it out, and every request must
// still succeed, on the other process. The same with
// example/deploy/haproxy-reuse-port.cfg and two processes sharing one port
// (--reuse-port): the kernel stops giving the dead one connections, HAProxy
// retries what was reset. Paths come from test/Jamfile.

#include <support/commands.hpp>
#include <support/process.hpp>
#include <support/sockets.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;

std::string argument_ending(const std::string& tail) {
    auto& args = boost::unit_test::framework::master_test_suite();
    for (int i = 1; i < args.argc; ++i) {
        std::string path = args.argv[i];
        if (path.ends_with(tail)) return path;
    }
    throw std::runtime_error("no path ending in " + tail + " on the command line");
}

using zerg::test::command_result;
using zerg::test::run_command;
using zerg::test::skip_without;

// A loopback port free a moment ago, for HAProxy's frontend.
std::uint16_t free_port() {
    auto listener = zerg::test::listen_loopback();
    return zerg::test::port_of(listener.get());
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// HAProxy in the foreground (-db), its output in a file; stopped by PID.
class haproxy_process {
public:
    haproxy_process(const std::string& config, const std::string& log) : log_(log) {
        pid_ = ::fork();
        if (pid_ == 0) {
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::execlp("haproxy", "haproxy", "-db", "-f", config.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }
    haproxy_process(const haproxy_process&) = delete;
    haproxy_process& operator=(const haproxy_process&) = delete;
    ~haproxy_process() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        for (int i = 0; i < 200; ++i) {  // 2 s, then no more patience
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
            std::this_thread::sleep_for(10ms);
        }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    bool running() const { return ::waitpid(pid_, nullptr, WNOHANG) == 0; }
    std::string log() const { return read_file(log_); }

private:
    pid_t pid_ = -1;
    std::string log_;
};

struct response {
    int status = 0;
    std::string served_by;
};

response get(std::uint16_t port) {
    auto r = run_command("curl -s -i --max-time 5 http://127.0.0.1:" + std::to_string(port) + "/plaintext");
    response out;
    std::smatch m;
    if (std::regex_search(r.output, m, std::regex("^HTTP/1\\.1 ([0-9]{3})"))) out.status = std::stoi(m[1]);
    if (std::regex_search(r.output, m, std::regex("x-served-by: ([a-z0-9]+)", std::regex::icase))) out.served_by = m[1];
    return out;
}

unsigned long long field(const std::string& text, const std::string& pattern) {
    std::smatch m;
    if (!std::regex_search(text, m, std::regex(pattern))) return ~0ull;
    return std::stoull(m[1]);
}

// Four seconds of h2load over four keep-alive connections; `victim` is
// killed (SIGKILL, by PID) after one. Every request must have succeeded.
void load_and_kill(std::uint16_t frontend, pid_t victim) {
    command_result load;
    std::thread client([&] {
        load = run_command("h2load --h1 -D 4 -c 4 -t 1 http://127.0.0.1:" + std::to_string(frontend) + "/plaintext");
    });
    std::this_thread::sleep_for(1s);
    ::kill(victim, SIGKILL);
    client.join();
    BOOST_TEST_MESSAGE(load.output);

    BOOST_TEST(load.status == 0, load.output);
    auto succeeded = field(load.output, "([0-9]+) succeeded");
    BOOST_TEST(succeeded > 0u, load.output);
    BOOST_TEST(succeeded != ~0ull, load.output);
    // retries, redispatch and retry-on: a request that met the dead process
    // is sent again, so none fails.
    BOOST_TEST(field(load.output, "([0-9]+) failed") == 0u, load.output);
    BOOST_TEST(field(load.output, "([0-9]+) errored") == 0u, load.output);
    BOOST_TEST(field(load.output, "([0-9]+) timeout") == 0u, load.output);
    BOOST_TEST(field(load.output, "status codes: ([0-9]+) 2xx") == succeeded, load.output);
}

std::string temp_log() {
    char log[] = "/tmp/zerg-haproxy-XXXXXX";
    int fd = ::mkstemp(log);
    if (fd >= 0) ::close(fd);
    return log;
}

}  // namespace

BOOST_AUTO_TEST_CASE(health_check_takes_a_killed_process_out_and_requests_keep_succeeding) {
    if (skip_without("haproxy", "haproxy") || skip_without("h2load", "nghttp2-client") ||
        skip_without("curl", "curl"))
        return;
    const std::string program = argument_ending("/http_plaintext");
    const std::string config = argument_ending("/deploy/haproxy.cfg");

    zerg::test::server_process zerg1(program, {"--reactors", "1"});
    zerg::test::server_process zerg2(program, {"--reactors", "1"});
    const std::uint16_t frontend = free_port();
    auto address = [](std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); };
    ::setenv("ZERG_FRONTEND", address(frontend).c_str(), 1);
    ::setenv("ZERG_SERVER1", address(zerg1.port()).c_str(), 1);
    ::setenv("ZERG_SERVER2", address(zerg2.port()).c_str(), 1);
    ::setenv("ZERG_CHECK_INTER", "200ms", 1);  // down after 2 failed checks: ~0.4 s
    const std::string log = temp_log();
    haproxy_process haproxy(config, log);

    // Both processes answer through HAProxy (round robin) before the kill.
    std::set<std::string> served;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (served.size() < 2 && std::chrono::steady_clock::now() < deadline && haproxy.running()) {
        auto r = get(frontend);
        if (r.status == 200) served.insert(r.served_by);
        else std::this_thread::sleep_for(50ms);
    }
    BOOST_REQUIRE_MESSAGE(served == (std::set<std::string>{"zerg1", "zerg2"}),
                          "HAProxy did not reach both servers; its log:\n" << haproxy.log());

    load_and_kill(frontend, zerg1.pid());

    // The health check marked it down (HAProxy says so on stderr in -db mode)...
    bool down = false;
    deadline = std::chrono::steady_clock::now() + 5s;
    while (!down && std::chrono::steady_clock::now() < deadline) {
        down = haproxy.log().find("Server zerg/zerg1 is DOWN") != std::string::npos;
        if (!down) std::this_thread::sleep_for(50ms);
    }
    BOOST_TEST(down, "HAProxy's log:\n" << haproxy.log());
    // ...and every request now goes to zerg2.
    for (int i = 0; i < 10; ++i) {
        auto r = get(frontend);
        BOOST_TEST(r.status == 200);
        BOOST_TEST(r.served_by == "zerg2");
    }
    BOOST_TEST(zerg2.stop() == 0);
    ::unlink(log.c_str());
}

BOOST_AUTO_TEST_CASE(two_processes_on_one_port_survive_losing_one) {
    if (skip_without("haproxy", "haproxy") || skip_without("h2load", "nghttp2-client") ||
        skip_without("curl", "curl"))
        return;
    const std::string program = argument_ending("/http_plaintext");
    const std::string config = argument_ending("/deploy/haproxy-reuse-port.cfg");

    // The first picks the port (--port 0 then --reuse-port); the second joins it.
    zerg::test::server_process first(program, {"--reactors", "1", "--reuse-port"});
    const std::string shared = std::to_string(first.port());
    zerg::test::server_process second(program, {"--reactors", "1", "--reuse-port", "--port", shared});
    BOOST_REQUIRE_EQUAL(second.port(), first.port());

    const std::uint16_t frontend = free_port();
    ::setenv("ZERG_FRONTEND", ("127.0.0.1:" + std::to_string(frontend)).c_str(), 1);
    ::setenv("ZERG_SERVER1", ("127.0.0.1:" + shared).c_str(), 1);
    ::setenv("ZERG_CHECK_INTER", "200ms", 1);
    const std::string log = temp_log();
    haproxy_process haproxy(config, log);
    bool up = false;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!up && std::chrono::steady_clock::now() < deadline && haproxy.running()) {
        up = get(frontend).status == 200;
        if (!up) std::this_thread::sleep_for(50ms);
    }
    BOOST_REQUIRE_MESSAGE(up, "HAProxy did not answer; its log:\n" << haproxy.log());

    load_and_kill(frontend, first.pid());
    // The port stays up (the other process holds it): no DOWN, and answers.
    for (int i = 0; i < 10; ++i) BOOST_TEST(get(frontend).status == 200);
    BOOST_TEST(haproxy.log().find("is DOWN") == std::string::npos, haproxy.log());
    BOOST_TEST(second.stop() == 0);
    ::unlink(log.c_str());
}
