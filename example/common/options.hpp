// Command-line options shared by the example servers: one flag for every
// server_config field, so an operator tunes a server without recompiling.
// `--help` lists them with their defaults.
#pragma once

#include <zerg/config.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace example {

// A flag an example adds for itself: `set` gets the value (nullptr for a
// switch) and returns false when it is not acceptable.
struct extra_option {
    const char* name;
    bool takes_value;
    const char* help;
    std::function<bool(const char* value)> set;
};

// "HOST:PORT", or "[V6]:PORT" for an IPv6 literal. False when malformed.
inline bool split_host_port(const char* text, std::string& host, std::uint16_t& port) {
    std::string s = text;
    auto colon = s.rfind(':');
    if (colon == std::string::npos || colon + 1 == s.size()) return false;
    host = s.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    char* end = nullptr;
    unsigned long n = std::strtoul(s.c_str() + colon + 1, &end, 10);
    if (*end || n > 65535) return false;
    port = static_cast<std::uint16_t>(n);
    return !host.empty();
}

inline std::optional<zerg::server_config> parse_options(int argc, char** argv, std::vector<extra_option> extra = {}) {
    zerg::server_config config;
    config.port = 7000;
    using ms = std::chrono::milliseconds;
    auto number = [](const char* v, auto& out) {
        char* end = nullptr;
        unsigned long long n = std::strtoull(v, &end, 10);
        if (!*v || *end) return false;
        out = static_cast<std::remove_reference_t<decltype(out)>>(n);
        return true;
    };
    auto millis = [&](const char* v, ms& out) {
        unsigned long long n = 0;
        if (!number(v, n)) return false;
        out = ms(n);
        return true;
    };
    std::vector<extra_option> options = {
        {"--port", true, "TCP port (0: the kernel picks)", [&](const char* v) { return number(v, config.port); }},
        {"--address", true, "address to bind (:: for all)", [&](const char* v) { config.address = v; return true; }},
        {"--listen", true, "HOST:PORT to bind ([V6]:PORT), as --address and --port",
         [&](const char* v) { return split_host_port(v, config.address, config.port); }},
        {"--reactors", true, "reactor threads", [&](const char* v) { return number(v, config.reactors); }},
        {"--dual-stack", false, "one IPv6 socket that takes IPv4 too", [&](const char*) { return config.dual_stack = true; }},
        {"--no-bundles", false, "one buffer per receive completion (bounds a busy coroutine's input tighter)",
         [&](const char*) { config.receive_bundles = false; return true; }},
        {"--reuse-port", false, "a listener per reactor, no acceptor thread", [&](const char*) { return config.reuse_port = true; }},
        {"--direct-descriptors", false, "with --reuse-port: accept into the ring's registered file table (fixed files)",
         [&](const char*) { return config.direct_descriptors = true; }},
        {"--least-loaded", false, "hand connections to the least loaded reactor",
         [&](const char*) { config.placement = zerg::distribution::least_loaded; return true; }},
        {"--pin", false, "pin reactor i to CPU (first-cpu + i)", [&](const char*) { return config.pin_reactors = true; }},
        {"--first-cpu", true, "first CPU for --pin", [&](const char* v) { return number(v, config.first_cpu); }},
        {"--ring-entries", true, "SQ entries per reactor", [&](const char* v) { return number(v, config.ring_entries); }},
        {"--cq-entries", true, "CQ entries per reactor (0: automatic)", [&](const char* v) { return number(v, config.cq_entries); }},
        {"--buffer-size", true, "bytes per receive buffer (0: the policy's)", [&](const char* v) { return number(v, config.buffer_size); }},
        {"--buffer-count", true, "receive buffers per reactor, a power of two (0: the policy's)",
         [&](const char* v) { return number(v, config.buffer_count); }},
        {"--completion-batch", true, "CQEs reaped per loop iteration", [&](const char* v) { return number(v, config.completion_batch); }},
        {"--backlog", true, "listen backlog", [&](const char* v) { return number(v, config.backlog); }},
        {"--max-connections", true, "connections per reactor", [&](const char* v) { return number(v, config.max_connections); }},
        {"--max-output", true, "bytes queued per connection before reading pauses",
         [&](const char* v) { return number(v, config.max_write_queue); }},
        {"--max-input", true, "unconsumed input bytes per connection before it closes",
         [&](const char* v) { return number(v, config.max_input); }},
        {"--idle-timeout-ms", true, "close after this long without a byte in or out (0: never)",
         [&](const char* v) { return millis(v, config.idle_timeout); }},
        {"--read-timeout-ms", true, "close when a partial message waits this long (0: never)",
         [&](const char* v) { return millis(v, config.read_timeout); }},
        {"--write-timeout-ms", true, "close when queued output makes no progress this long (0: never)",
         [&](const char* v) { return millis(v, config.write_timeout); }},
        {"--connect-timeout-ms", true, "outbound connects fail after this long (0: the kernel's retries)",
         [&](const char* v) { return millis(v, config.connect_timeout); }},
        {"--stop-deadline-ms", true, "graceful stop limit", [&](const char* v) { return millis(v, config.stop_deadline); }},
        {"--max-wait-ms", true, "longest single sleep (0: until a completion)", [&](const char* v) { return millis(v, config.max_wait); }},
    };
    for (auto& e : extra) options.push_back(std::move(e));

    auto usage = [&](FILE* to) {
        std::fprintf(to, "usage: %s [options]\n", argv[0]);
        for (auto const& o : options) std::fprintf(to, "  %s%s  %s\n", o.name, o.takes_value ? " N" : "", o.help);
    };
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return std::nullopt;
        }
        const extra_option* match = nullptr;
        for (auto const& o : options)
            if (std::strcmp(argv[i], o.name) == 0) match = &o;
        const char* value = nullptr;
        if (match && match->takes_value) value = i + 1 < argc ? argv[++i] : nullptr;
        if (!match || (match->takes_value && !value) || !match->set(value)) {
            std::fprintf(stderr, "%s: bad option %s%s%s\n", argv[0], argv[i], value ? " " : "", value ? value : "");
            usage(stderr);
            return std::nullopt;
        }
    }
    return config;
}

}  // namespace example
