// A UDP echo server: every datagram goes back to whoever sent it.
//   bin/udp_echo --port 7000 --reactors 2 [--address ::] [--buffer-size 65507]
//                [--join 239.255.0.1 --multicast-if lo]
// The flags are the other examples' (example/common/options.hpp) where they
// mean something for UDP, plus the datagram ones below.
#include <zerg/datagram.hpp>
#include <zerg/signals.hpp>

#include "../common/options.hpp"

#include <cstdio>
#include <cstdlib>

struct echo {
    void on_datagram(zerg::datagram_endpoint<echo>& e, const zerg::endpoint& peer, std::span<const std::byte> bytes) {
        e.send_to(peer, bytes);
    }
};

int main(int argc, char** argv) {
    zerg::udp_config udp;
    auto number = [](const char* v, auto& out) {
        char* end = nullptr;
        long long n = std::strtoll(v, &end, 10);
        out = static_cast<std::remove_reference_t<decltype(out)>>(n);
        return *v && !*end;
    };
    auto config = example::parse_options(argc, argv, {
        {"--max-outbound", true, "UDP: datagrams in flight per reactor before sends are dropped",
         [&](const char* v) { return number(v, udp.max_outbound); }},
        {"--max-outbound-bytes", true, "UDP: bytes in flight per reactor before sends are dropped",
         [&](const char* v) { return number(v, udp.max_outbound_bytes); }},
        {"--zero-copy-threshold", true, "UDP: sendmsg_zc from this many bytes (0: never)",
         [&](const char* v) { return number(v, udp.zero_copy_threshold); }},
        {"--receive-buffer", true, "UDP: SO_RCVBUF bytes (0: the kernel's)", [&](const char* v) { return number(v, udp.receive_buffer); }},
        {"--join", true, "UDP: join this multicast group (repeatable)",
         [&](const char* v) { udp.multicast.groups.emplace_back(v); return true; }},
        {"--multicast-if", true, "UDP: interface name or IPv4 address for groups", [&](const char* v) { udp.multicast.interface = v; return true; }},
        {"--multicast-ttl", true, "UDP: hops for datagrams sent to a group", [&](const char* v) { return number(v, udp.multicast.ttl); }},
        {"--multicast-loop", true, "UDP: 1 or 0, this host's members get what it sends", [&](const char* v) { return number(v, udp.multicast.loop); }},
    });
    if (!config) return 2;
    // The shared flags that mean the same for datagrams.
    udp.address = config->address;
    udp.port = config->port;
    udp.dual_stack = config->dual_stack;
    udp.reactors = config->reactors;
    udp.ring_entries = config->ring_entries;
    if (config->buffer_size) udp.buffer_size = config->buffer_size;
    if (config->buffer_count) udp.buffer_count = config->buffer_count;
    udp.stop_deadline = config->stop_deadline;
    udp.max_wait = config->max_wait;
    udp.on_error = [program = argv[0]](const zerg::error_report& r) {
        std::fprintf(stderr, "%s: %s: %s\n", program, r.what == zerg::error_report::kind::fallback ? "note" : "error",
                     r.message.c_str());
    };
    try {
        zerg::termination_signals signals;  // before any thread starts
        zerg::udp_server<echo> server(udp);
        server.start();
        std::printf("listening on %s\n", server.local_endpoint().to_string().c_str());
        std::fflush(stdout);
        while (!signals.wait_for(std::chrono::milliseconds(200)))
            if (server.wait_for_failure(std::chrono::milliseconds(0))) break;
        server.stop();  // rethrows a failure: reported below
        auto t = server.totals();
        std::fprintf(stderr, "udp_echo: %llu datagrams in, %llu out, %llu ENOBUFS, %llu truncated, %llu dropped\n",
                     static_cast<unsigned long long>(t.datagrams_in), static_cast<unsigned long long>(t.datagrams_out),
                     static_cast<unsigned long long>(t.enobufs), static_cast<unsigned long long>(t.truncated),
                     static_cast<unsigned long long>(t.send_dropped));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
        return 1;
    }
}
