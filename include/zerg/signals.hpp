// For programs: wait until SIGINT or SIGTERM arrives.
//
//   zerg::termination_signals signals;   // before any thread starts
//   server.start();
//   signals.wait();
//   server.stop();
//
// The constructor blocks both signals in the calling thread; threads started
// afterwards inherit the mask, so the signal is taken only by wait() or
// wait_for(). A second signal during stop() is the operator asking for a
// fast shutdown, as nginx takes it: see example/common/serve.hpp, which
// waits for it beside stop() and calls server::hurry_stop().
#pragma once

#include <chrono>
#include <csignal>
#include <ctime>
#include <pthread.h>

namespace zerg {

class termination_signals {
public:
    termination_signals() noexcept {
        sigemptyset(&set_);
        sigaddset(&set_, SIGINT);
        sigaddset(&set_, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set_, &previous_);
    }
    termination_signals(const termination_signals&) = delete;
    termination_signals& operator=(const termination_signals&) = delete;
    ~termination_signals() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }

    // Returns the signal that arrived.
    int wait() noexcept {
        int signal = 0;
        sigwait(&set_, &signal);
        return signal;
    }
    // The signal that arrived within `timeout`, or 0. Any thread (the
    // signals are blocked in every thread started after the constructor).
    int wait_for(std::chrono::milliseconds timeout) noexcept {
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
        timespec ts{static_cast<time_t>(secs.count()), static_cast<long>((timeout - secs).count() * 1'000'000)};
        int signal = sigtimedwait(&set_, nullptr, &ts);
        return signal > 0 ? signal : 0;
    }

private:
    sigset_t set_{};
    sigset_t previous_{};
};

}  // namespace zerg
