// For programs: wait until SIGINT or SIGTERM arrives.
//
//   zerg::termination_signals signals;   // before any thread starts
//   server.start();
//   signals.wait();
//   server.stop();
//
// The constructor blocks both signals in the calling thread; threads started
// afterwards inherit the mask, so the signal is taken only by wait().
#pragma once

#include <csignal>
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

private:
    sigset_t set_{};
    sigset_t previous_{};
};

}  // namespace zerg
