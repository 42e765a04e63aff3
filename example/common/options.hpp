// Command-line options shared by the example servers:
//   --port N  --address ADDR  --reactors N  [--dual-stack] [--reuse-port]
#pragma once

#include <zerg/config.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

namespace example {

inline std::optional<zerg::server_config> parse_options(int argc, char** argv) {
    zerg::server_config config;
    config.port = 7000;
    for (int i = 1; i < argc; ++i) {
        auto is = [&](const char* name) { return std::strcmp(argv[i], name) == 0; };
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* v = nullptr;
        if (is("--port") && (v = value()))
            config.port = static_cast<std::uint16_t>(std::atoi(v));
        else if (is("--address") && (v = value()))
            config.address = v;
        else if (is("--reactors") && (v = value()))
            config.reactors = static_cast<unsigned>(std::atoi(v));
        else if (is("--dual-stack"))
            config.dual_stack = true;
        else if (is("--reuse-port"))
            config.reuse_port = true;
        else {
            std::fprintf(stderr, "usage: %s [--port N] [--address ADDR] [--reactors N] [--dual-stack] [--reuse-port]\n",
                         argv[0]);
            return std::nullopt;
        }
    }
    return config;
}

}  // namespace example
