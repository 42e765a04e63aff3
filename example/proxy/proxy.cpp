// A TCP proxy: every client accepted gets its own connection to the
// upstream, opened by the client's reactor, and bytes are relayed both
// ways until both sides are done.
//
//   bin/proxy --listen 127.0.0.1:7100 --upstream 127.0.0.1:8080 [--reactors 2]
//             [--connect-timeout-ms 5000] [--idle-timeout-ms 60000] [--max-output 1048576]
//             [--max-connections 4096]   (every flag: bin/proxy --help)
//
// - Backpressure both ways: each side throttles the other (connection::
//   throttle), so when one side's queue passes --max-output the reactor
//   stops reading the side that fills it, and reads again at half.
// - Half-close passes through: a FIN from one side becomes a shutdown of
//   the other (on_peer_shutdown); the pair closes once both have ended.
// - A reset, a timeout or a failed connect on either side closes both.
// - Every connection counts against --max-connections (per reactor), the
//   upstream ones too.
//
// doc/proxy.md says more, and what a relay costs.
#include <zerg/zerg.hpp>

#include "../common/serve.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>

struct proxy {
    using connection = zerg::connection<proxy>;

    // Each side knows its peer by handle: a reference would dangle once the
    // peer closes, a handle just stops resolving.
    struct connection_state {
        zerg::connection_handle peer;
    };

    // Filled by --upstream before the server starts; shared by the reactors' copies.
    std::shared_ptr<zerg::endpoint> upstream = std::make_shared<zerg::endpoint>();

    void on_open(connection& c) {
        if (c.outbound()) return;  // the upstream connected; its client was paired in connect()
        std::error_code ec;
        connection* up = c.connect(*upstream, ec);
        if (!up) {  // no slot left on this reactor
            c.close();
            return;
        }
        c.state().peer = up->handle();
        up->state().peer = c.handle();
        c.throttle(up->handle());  // c's output comes from up
        up->throttle(c.handle());
    }

    // The one place bytes cross from one side to the other: the received
    // buffer itself is queued on the peer (connection::write_from, no copy)
    // and goes back to the ring when that send completes. A side whose peer
    // does not read gets copies once it holds its share of the ring.
    void on_ring_item(connection& from, zerg::ring_item item) {
        if (connection* to = from.find(from.state().peer))
            to->write_from(item);
        else
            from.close();
        from.release(item);
    }

    // `c`'s peer will send no more: pass the FIN on, and keep relaying the
    // other way. shutdown() flushes what is queued first; on a side that
    // has already seen its own peer's FIN it closes instead.
    void on_peer_shutdown(connection& c) {
        if (connection* other = c.find(c.state().peer))
            other->shutdown();
        else
            c.close();
    }

    void on_connect_error(connection& up, std::error_code) { close_peer(up); }
    void on_close(connection& c, zerg::close_reason) { close_peer(c); }

    static void close_peer(connection& c) {
        if (connection* other = c.find(c.state().peer)) other->close();  // sends what it has queued, then closes
    }
};

int main(int argc, char** argv) {
    proxy handler;
    bool have_upstream = false;
    std::vector<example::extra_option> flags = {
        {"--upstream", true, "HOST:PORT to relay to ([V6]:PORT)", [&](const char* v) {
             std::string host;
             std::uint16_t port = 0;
             if (!example::split_host_port(v, host, port)) return false;
             try {
                 *handler.upstream = zerg::endpoint::parse(host, port, false);
             } catch (const std::exception&) {
                 return false;
             }
             return have_upstream = true;
         }},
    };
    // serve() parses the flags (ours among them), then runs this before the server starts.
    auto require_upstream = [&](const auto&) {
        if (have_upstream) return;
        std::fprintf(stderr, "%s: --upstream HOST:PORT is required\n", argv[0]);
        std::exit(2);
    };
    return example::serve<zerg::reactor<proxy>>(argc, argv, handler, require_upstream, std::move(flags));
}
