#define BOOST_TEST_MODULE example_signals
#include <boost/test/unit_test.hpp>

// The example servers' shutdown, as an operator meets it: the first SIGTERM
// stops gracefully (queued output still goes out, up to stop_deadline); a
// second one during that wait closes what is left at once and the process
// still exits 0, as nginx's fast shutdown does. The program is bin/echo,
// passed by test/Jamfile. Loopback only; every wait is bounded.

#include <support/process.hpp>
#include <support/sockets.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::string program() { return boost::unit_test::framework::master_test_suite().argv[1]; }

// A client that sends a lot and never reads: the server's replies queue
// up, so a graceful stop has to wait for it until stop_deadline.
zerg::test::fd_guard stuck_client(std::uint16_t port) {
    auto fd = zerg::test::connect_loopback(port);
    int small = 4096;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    // Send until the server stops taking bytes for 300 ms: by then the
    // socket buffers on both sides are full and the server holds its
    // replies in its own queue, with reading paused (at most 64 MiB).
    std::vector<char> junk(1 << 16, 'x');
    std::size_t sent = 0;
    auto last_progress = std::chrono::steady_clock::now();
    while (sent < (64u << 20) && std::chrono::steady_clock::now() - last_progress < 300ms) {
        ssize_t n = ::send(fd.get(), junk.data(), junk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            last_progress = std::chrono::steady_clock::now();
        } else {
            std::this_thread::sleep_for(5ms);
        }
    }
    return fd;
}

int wait_exit(pid_t pid, std::chrono::milliseconds timeout, std::chrono::milliseconds& took) {
    auto start = std::chrono::steady_clock::now();
    int status = 0;
    while (std::chrono::steady_clock::now() - start < timeout) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        std::this_thread::sleep_for(5ms);
    }
    return -1;
}

}  // namespace

BOOST_AUTO_TEST_CASE(second_signal_ends_the_graceful_wait_and_exits_zero) {
    zerg::test::server_process server(program(), {"--stop-deadline-ms", "20000", "--write-timeout-ms", "0"});
    auto client = stuck_client(server.port());
    ::kill(server.pid(), SIGTERM);
    std::this_thread::sleep_for(300ms);
    // Still waiting for the stuck client: the graceful stop has 20 s.
    int status = 0;
    BOOST_TEST(::waitpid(server.pid(), &status, WNOHANG) == 0, "the server did not wait for its queued output");
    ::kill(server.pid(), SIGTERM);
    std::chrono::milliseconds took{};
    int code = wait_exit(server.pid(), 5s, took);
    BOOST_TEST(code == 0, "exit status " << code);
    BOOST_TEST(took < 5s);
    server.forget();
}

BOOST_AUTO_TEST_CASE(one_signal_stops_gracefully_with_exit_zero) {
    zerg::test::server_process server(program(), {});
    auto fd = zerg::test::connect_loopback(server.port());
    BOOST_TEST(::send(fd.get(), "ping", 4, MSG_NOSIGNAL) == 4);
    char buf[4];
    BOOST_TEST(::recv(fd.get(), buf, 4, MSG_WAITALL) == 4);
    BOOST_TEST(server.stop(10s) == 0);
}
