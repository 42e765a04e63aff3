// What every example server's main() does: read --port/--address/--reactors,
// start, say "listening on ADDR:PORT", run until SIGINT or SIGTERM, stop
// gracefully.
#pragma once

#include "options.hpp"

#include <zerg/server.hpp>
#include <zerg/signals.hpp>

#include <cstdio>
#include <exception>
#include <utility>

namespace example {

struct no_prepare {
    template <class Server>
    void operator()(const Server&) const noexcept {}
};

// `prepare(server)` runs once the server exists and before it starts (so
// before any reactor thread): where an example keeps a pointer to it.
template <class Reactor, class Prepare = no_prepare>
int serve(int argc, char** argv, typename Reactor::handler_type handler = {}, Prepare prepare = {}) {
    auto config = parse_options(argc, argv);
    if (!config) return 2;
    try {
        zerg::termination_signals signals;  // before any thread starts
        zerg::server<Reactor> server(*config, std::move(handler));
        prepare(std::as_const(server));
        server.start();
        std::printf("listening on %s\n", server.local_endpoint().to_string().c_str());
        std::fflush(stdout);
        signals.wait();
        server.stop();
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
        return 1;
    }
}

}  // namespace example
