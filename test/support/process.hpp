// Starts an example server as a child process on loopback, reads its
// "listening on ADDR:PORT" line, and stops it by PID.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace zerg::test {

class server_process {
public:
    // `args` excludes the program; --address 127.0.0.1 --port 0 are added.
    server_process(const std::string& program, std::vector<std::string> args,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        int out[2];
        if (::pipe(out) != 0) throw std::runtime_error("pipe");
        args.insert(args.begin(), {program, "--address", "127.0.0.1", "--port", "0"});
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            ::close(out[0]);
            ::close(out[1]);
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(program.c_str(), argv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        stdout_ = out[0];
        std::string line = read_line(timeout);
        auto colon = line.rfind(':');
        if (line.rfind("listening on ", 0) != 0 || colon == std::string::npos)
            throw std::runtime_error(program + " did not say 'listening on ADDR:PORT', said: '" + line + "'");
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
    }
    server_process(const server_process&) = delete;
    server_process& operator=(const server_process&) = delete;
    ~server_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (stdout_ >= 0) ::close(stdout_);
    }

    std::uint16_t port() const noexcept { return port_; }
    pid_t pid() const noexcept { return pid_; }
    // The caller reaped the process itself (waitpid): nothing to kill.
    void forget() noexcept { pid_ = -1; }

    // SIGTERM, then wait up to `timeout`; returns the exit status, or -1 if
    // it had to be killed.
    int stop(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        ::kill(pid_, SIGTERM);
        auto deadline = std::chrono::steady_clock::now() + timeout;
        int status = 0;
        while (std::chrono::steady_clock::now() < deadline) {
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            ::poll(nullptr, 0, 5);
        }
        return -1;
    }

private:
    std::string read_line(std::chrono::milliseconds timeout) {
        std::string line;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        char ch;
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{stdout_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            if (::read(stdout_, &ch, 1) != 1) break;
            if (ch == '\n') return line;
            line += ch;
        }
        return line;
    }

    pid_t pid_ = -1;
    int stdout_ = -1;
    std::uint16_t port_ = 0;
};

}  // namespace zerg::test
