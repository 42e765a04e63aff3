// Runs a test body in a forked child, for what must not touch the test
// process itself (a lowered RLIMIT_NOFILE, a descriptor table filled up).
#pragma once

#include <boost/test/unit_test.hpp>

#include <support/echo_client.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>

namespace zerg::test {

// Forks, runs child() there and returns its exit code (child() returns
// it; an exception becomes 250), or -1 when the child did not exit
// normally, which is a test error here. An alarm kills a child still
// running after `limit`.
template <class Child>
int run_in_child(Child child, std::chrono::seconds limit) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
        ::alarm(static_cast<unsigned>(limit.count()));  // a hung child dies rather than hanging the suite
        int bad = 0;
        try {
            bad = child();
        } catch (const std::exception& e) {
            std::printf("child: exception: %s\n", e.what());
            bad = 250;
        }
        std::fflush(nullptr);
        ::_exit(bad);
    }
    int status = 0;
    bool exited = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, limit + std::chrono::seconds(10));
    if (!exited) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
    }
    BOOST_TEST(exited, "the child did not finish");
    BOOST_TEST(WIFEXITED(status), "the child died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
    return exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace zerg::test
