// Starting a worker thread that sets itself up before it runs: the one way
// server (reactors, acceptor) and udp_server (endpoints) start theirs.
//
// Controlling thread only (the one that starts the server).
#pragma once

#include <exception>
#include <future>
#include <thread>

namespace zerg::detail {

// Runs `setup` then `loop` on a new thread, and returns it once setup is
// done; rethrows here what setup threw (that thread is joined by then), so
// a start() fails with the worker's own reason. An exception from the loop
// goes to `on_failure` on the worker thread (which keeps it for the
// controlling thread to see).
template <class Setup, class Loop, class OnFailure>
std::thread start_worker(Setup setup, Loop loop, OnFailure on_failure) {
    std::promise<void> ready;
    auto done = ready.get_future();
    std::thread t([setup, loop, on_failure, &ready]() mutable {
        try {
            setup();
        } catch (...) {
            ready.set_exception(std::current_exception());
            return;
        }
        ready.set_value();  // `ready` is not touched after this: start_worker may return
        try {
            loop();
        } catch (...) {
            on_failure(std::current_exception());
        }
    });
    try {
        done.get();
    } catch (...) {
        t.join();
        throw;
    }
    return t;
}

}  // namespace zerg::detail
