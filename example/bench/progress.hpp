// zerg-bench's progress, on stderr: which step of how many, what it
// measures, and roughly how long the whole run has left, so that
//   bin/zerg-bench > results.txt
// shows where it is while the file receives only the tables.
#pragma once

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <string>

namespace bench {

class progress {
public:
    using clock = std::chrono::steady_clock;

    // Plans one more step expected to take about `guess`.
    void plan(std::chrono::milliseconds guess, unsigned steps = 1) {
        planned_ += guess * steps;
        total_ += steps;
    }

    // Step `guess` (as planned) begins: prints "[k/N] what, about T left".
    void begin(const std::string& what, std::chrono::milliseconds guess) {
        ++current_;
        guess_ = guess;
        started_ = clock::now();
        std::fprintf(stderr, "zerg-bench [%u/%u] %s, about %s left\n", current_, total_, what.c_str(), left().c_str());
    }

    // The step ended; its real length corrects the estimate for the rest.
    void end() {
        spent_ += std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - started_);
        done_guess_ += guess_;
    }

    // A line for the operator, not for the results.
    [[gnu::format(printf, 1, 2)]] static void note(const char* format, ...) {
        va_list args;
        va_start(args, format);
        std::vfprintf(stderr, format, args);
        va_end(args);
    }

private:
    // What was planned and not done yet, scaled by how far the finished
    // steps were off their own guesses (a loaded machine is slower throughout).
    std::string left() const {
        double scale = done_guess_.count() > 0 ? static_cast<double>(spent_.count()) / static_cast<double>(done_guess_.count()) : 1.0;
        double ms = static_cast<double>((planned_ - done_guess_).count()) * scale;
        long long s = static_cast<long long>(ms / 1000.0 + 0.5);
        char buf[32];
        if (s >= 60)
            std::snprintf(buf, sizeof buf, "%lld min %02lld s", s / 60, s % 60);
        else
            std::snprintf(buf, sizeof buf, "%lld s", s);
        return buf;
    }

    unsigned total_ = 0, current_ = 0;
    std::chrono::milliseconds planned_{0}, done_guess_{0}, spent_{0}, guess_{0};
    clock::time_point started_{};
};

}  // namespace bench
