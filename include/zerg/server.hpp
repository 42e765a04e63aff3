// zerg::server<Reactor>: one acceptor thread and N reactor threads.
//
//   zerg::server<my_reactor> s(config);
//   s.start();          // returns once connections are accepted
//   ...
//   s.stop();           // stop accepting, close gracefully, join
//
// start() and stop() are for one controlling thread; counters() may be read
// from any thread at any time; wait_for_failure(), failure() and
// hurry_stop() may be called from any thread; post(), write() and close()
// (doc/outbound.md) from any thread between start() and stop().
#pragma once

#include <zerg/acceptor.hpp>
#include <zerg/address.hpp>
#include <zerg/config.hpp>
#include <zerg/connection_handle.hpp>
#include <zerg/counters.hpp>
#include <zerg/detail/posted_work.hpp>
#include <zerg/detail/worker_thread.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace zerg {

template <class Reactor>
class server {
public:
    using reactor_type = Reactor;
    using handler_type = typename Reactor::handler_type;

    explicit server(server_config config, handler_type prototype = handler_type{})
        : config_(std::move(config)), prototype_(std::move(prototype)) {}
    server(const server&) = delete;
    server& operator=(const server&) = delete;
    ~server() {
        try {
            stop();
        } catch (...) {
            // A reactor's failure was already reported to whoever called
            // stop(); a destructor has nobody left to tell.
        }
    }

    // Binds, starts the reactors and the acceptor, and returns when
    // connections are being accepted. Throws std::system_error (with the
    // cause: address in use, io_uring unavailable...) and leaves nothing
    // running when any part fails.
    void start() {
        if (running_) return;
        {
            std::lock_guard lock(failure_mutex_);
            stopping_ = false;
            reactors_.clear();  // a server may be started again after stop()
        }
        acceptor_.reset();
        if (config_.reactors == 0) config_.reactors = 1;
        endpoint where = endpoint::parse(config_.address, config_.port, config_.dual_stack);
        if (!config_.reuse_port) {
            listener_ = open_listener(where, config_.dual_stack, config_.backlog, false, &bound_);
        } else if (config_.port == 0) {
            // Every reactor must bind the same port: pick one first, with a
            // socket that binds but never listens, so it never joins the
            // SO_REUSEPORT group and no connection is hashed to it.
            int probe = bind_socket(where, config_.dual_stack, true, &bound_);
            config_.port = bound_.port();
            reuse_port_probe_ = probe;
        } else {
            bound_ = where;
        }
        try {
            for (unsigned i = 0; i < config_.reactors; ++i)
                reactors_.push_back(std::make_unique<Reactor>(i, config_, prototype_));
            for (auto& r : reactors_)
                threads_.push_back(start_thread([r = r.get()] { r->setup(); }, [r = r.get()] { r->run(); }));
            if (!config_.reuse_port) {
                std::vector<Reactor*> targets;
                for (auto& r : reactors_) targets.push_back(r.get());
                acceptor_ = std::make_unique<acceptor<Reactor>>(listener_, config_, std::move(targets));
                acceptor_thread_ = start_thread([a = acceptor_.get()] { a->setup(); }, [a = acceptor_.get()] { a->run(); });
            }
        } catch (...) {
            running_ = true;
            stop();
            throw;
        }
        if (reuse_port_probe_ >= 0) {
            ::close(reuse_port_probe_);
            reuse_port_probe_ = -1;
        }
        running_ = true;
    }

    // Stops accepting, lets every reactor close its connections gracefully
    // (queued output is sent) within config.stop_deadline, then aborts the
    // rest and joins every thread. Safe to call twice.
    void stop() {
        if (!running_) return;
        running_ = false;
        {
            std::lock_guard lock(failure_mutex_);
            stopping_ = true;
        }
        failed_.notify_all();
        // The acceptor first, so no connection arrives at a stopping reactor.
        if (acceptor_thread_.joinable()) {
            acceptor_->request_stop();
            acceptor_thread_.join();
            acceptor_->release();  // its ring, and with it the accept holding the listener
        }
        if (listener_ >= 0) {
            ::close(listener_);
            listener_ = -1;
        }
        for (auto& r : reactors_) r->request_stop();
        for (auto& t : threads_) t.join();
        threads_.clear();
        if (reuse_port_probe_ >= 0) {
            ::close(reuse_port_probe_);
            reuse_port_probe_ = -1;
        }
        std::exception_ptr failure;
        {
            std::lock_guard lock(failure_mutex_);
            failure = std::exchange(failure_, nullptr);
        }
        if (failure) std::rethrow_exception(failure);
    }

    // Any thread, while stop() runs (a second SIGTERM): the graceful close
    // ends now; every reactor aborts what is still open.
    void hurry_stop() noexcept {
        std::lock_guard lock(failure_mutex_);  // reactors_ is stable while stop() has not joined them
        for (auto& r : reactors_) r->hurry_stop();
    }

    // Any thread: the error a reactor or the acceptor stopped on (the
    // server stops routing to a failed reactor and it closed its sockets),
    // or nullptr. stop() rethrows it as well.
    std::exception_ptr failure() const {
        std::lock_guard lock(failure_mutex_);
        return failure_;
    }
    // Any thread: waits until a reactor or the acceptor failed (true), or
    // stop() began or `timeout` passed (false). For a main() that should
    // exit at once, non-zero, when the server can no longer serve.
    bool wait_for_failure(std::chrono::milliseconds timeout) const {
        std::unique_lock lock(failure_mutex_);
        failed_.wait_for(lock, timeout, [this] { return failure_ != nullptr || stopping_; });
        return failure_ != nullptr;
    }

    // ---- work from other threads (doc/outbound.md) ------------------------
    // Any thread, between start() and stop(): runs `f(reactor&)` on reactor
    // `reactor`'s thread (e.g. reactor.connect(...)). False when there is no
    // such reactor or it does not run.
    template <class F>
    bool post(std::size_t reactor, F&& f) {
        return reactor < reactors_.size() && reactors_[reactor]->post(std::forward<F>(f));
    }
    // Any thread, between start() and stop(): queues a copy of `bytes` on the
    // connection `h` names, on its reactor. Empty when posted; then
    // `done(std::error_code)` runs on that reactor: empty when queued,
    // ENOTCONN when that connection is gone (never another peer's). EINVAL
    // for a handle of no reactor here, ESHUTDOWN when that reactor no longer runs.
    template <class Done = detail::ignore_result>
    std::error_code write(connection_handle h, std::span<const std::byte> bytes, Done done = {}) {
        if (h.reactor >= reactors_.size()) return std::make_error_code(std::errc::invalid_argument);
        if (!reactors_[h.reactor]->write(h, bytes, std::move(done))) return {ESHUTDOWN, std::system_category()};
        return {};
    }
    // As write(), for close(): queued output is sent, then the connection closes.
    template <class Done = detail::ignore_result>
    std::error_code close(connection_handle h, Done done = {}) {
        if (h.reactor >= reactors_.size()) return std::make_error_code(std::errc::invalid_argument);
        if (!reactors_[h.reactor]->close(h, std::move(done))) return {ESHUTDOWN, std::system_category()};
        return {};
    }

    std::uint16_t port() const noexcept { return bound_.port(); }
    const endpoint& local_endpoint() const noexcept { return bound_; }
    std::size_t reactor_count() const noexcept { return reactors_.size(); }
    const Reactor& reactor(std::size_t i) const noexcept { return *reactors_[i]; }
    const reactor_counters& counters(std::size_t i) const noexcept { return reactors_[i]->counters(); }
    const acceptor_counters* acceptor_stats() const noexcept { return acceptor_ ? &acceptor_->counters() : nullptr; }

    // The sum over reactors.
    counters_snapshot totals() const noexcept {
        counters_snapshot t{};
        for (auto& r : reactors_) t += snapshot(r->counters());
        return t;
    }

    // After start(), the controlling thread: every feature that fell back,
    // over every reactor and the acceptor's ring, each reason once (they
    // share a kernel, so they usually agree). fallbacks_by_component()
    // says who reported what.
    std::vector<std::string> fallbacks() const {
        std::vector<std::string> all;
        for (auto const& [who, what] : fallbacks_by_component())
            if (std::find(all.begin(), all.end(), what) == all.end()) all.push_back(what);
        return all;
    }
    // After start(), the controlling thread: {"reactor N" or "acceptor", reason}.
    std::vector<std::pair<std::string, std::string>> fallbacks_by_component() const {
        std::vector<std::pair<std::string, std::string>> all;
        for (auto const& r : reactors_)
            for (auto const& fb : r->fallbacks()) all.emplace_back("reactor " + std::to_string(r->index()), fb);
        if (acceptor_)
            for (auto const& fb : acceptor_->fallbacks()) all.emplace_back("acceptor", fb);
        return all;
    }

private:
    // Runs `setup` then `loop` on a new thread (detail::start_worker); an
    // exception from the loop is kept and rethrown by stop().
    template <class Setup, class Loop>
    std::thread start_thread(Setup setup, Loop loop) {
        return detail::start_worker(setup, loop, [this](std::exception_ptr e) {
            // Reactors and the acceptor report their own failure to the hook.
            {
                std::lock_guard lock(failure_mutex_);
                if (!failure_) failure_ = e;
            }
            failed_.notify_all();
        });
    }

    server_config config_;
    handler_type prototype_;
    std::vector<std::unique_ptr<Reactor>> reactors_;
    std::unique_ptr<acceptor<Reactor>> acceptor_;
    std::vector<std::thread> threads_;  // the reactors'
    std::thread acceptor_thread_;
    mutable std::mutex failure_mutex_;
    mutable std::condition_variable failed_;
    std::exception_ptr failure_;
    bool stopping_ = false;  // under failure_mutex_
    endpoint bound_;
    int listener_ = -1;
    int reuse_port_probe_ = -1;
    bool running_ = false;
};

}  // namespace zerg
