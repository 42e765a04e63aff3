// Shell commands from a test: run one and keep what it printed, or skip,
// saying so, when a tool it needs is not installed.
#pragma once

#include <boost/test/unit_test.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <iostream>
#include <string>

namespace zerg::test {

struct command_result {
    std::string output;  // stdout and stderr together
    int status = -1;     // the exit status, -1 when it did not exit normally
};

inline command_result run_command(const std::string& command) {
    command_result r;
    FILE* p = ::popen((command + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
    int status = ::pclose(p);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

// Prints "SKIPPED <test>: <tool> not installed (Debian package ...)" and
// returns true when `tool` is not on PATH.
inline bool skip_without(const char* tool, const char* package) {
    if (run_command(std::string("command -v ") + tool + " >/dev/null").status == 0) return false;
    std::cout << "SKIPPED " << boost::unit_test::framework::current_test_case().p_name.get() << ": " << tool
              << " not installed (Debian package " << package << ")\n";
    return true;
}

}  // namespace zerg::test
