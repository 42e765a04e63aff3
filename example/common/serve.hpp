// What every example server's main() does: read the options, start, say
// "listening on ADDR:PORT", run until SIGINT or SIGTERM, stop gracefully.
// A second signal during the graceful stop closes what is left at once
// (exit 0, like nginx's fast shutdown); a reactor that fails ends the
// program at once with exit 1 and the reason on stderr.
#pragma once

#include "options.hpp"

#include <zerg/server.hpp>
#include <zerg/signals.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

namespace example {

struct no_prepare {
    template <class Server>
    void operator()(const Server&) const noexcept {}
};

// `prepare(server)` runs once the server exists and before it starts (so
// before any reactor thread): where an example keeps a pointer to it.
// `extra` are the example's own flags (options.hpp).
template <class Reactor, class Prepare = no_prepare>
int serve(int argc, char** argv, typename Reactor::handler_type handler = {}, Prepare prepare = {},
          std::vector<extra_option> extra = {}) {
    auto config = parse_options(argc, argv, std::move(extra));
    if (!config) return 2;
    // The library prints nothing itself: its reports come here.
    config->on_error = [program = argv[0]](const zerg::error_report& r) {
        const char* kind = r.what == zerg::error_report::kind::fallback ? "note" : "error";
        std::fprintf(stderr, "%s: %s: %s%s%s%s%s\n", program, kind, r.message.c_str(), r.peer.empty() ? "" : " (peer ",
                     r.peer.c_str(), r.peer.empty() ? "" : ")", r.code ? (": " + r.code.message()).c_str() : "");
    };
    try {
        zerg::termination_signals signals;  // before any thread starts
        zerg::server<Reactor> server(*config, std::move(handler));
        prepare(std::as_const(server));
        server.start();
        std::printf("listening on %s\n", server.local_endpoint().to_string().c_str());
        std::fflush(stdout);
        while (!signals.wait_for(std::chrono::milliseconds(200))) {
            if (server.wait_for_failure(std::chrono::milliseconds(0))) {
                server.stop();  // rethrows the failure: reported below
                return 1;
            }
        }
        std::atomic<bool> stopped{false};
        std::thread second_signal([&] {
            while (!stopped.load())
                if (signals.wait_for(std::chrono::milliseconds(100))) {
                    server.hurry_stop();
                    return;
                }
        });
        try {
            server.stop();
        } catch (...) {
            stopped = true;
            second_signal.join();
            throw;
        }
        stopped = true;
        second_signal.join();
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
        return 1;
    }
}

}  // namespace example
