// An echo server whose reactors receive connections through a Queue policy
// written outside zerg (locked_handoff.hpp).
//   bin/custom_policy --port 7001 --reactors 2
#include "locked_handoff.hpp"

#include <zerg/zerg.hpp>

#include "../common/options.hpp"

#include <cstdio>

struct echo {
    void on_data(zerg::connection<echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};

using reactor = zerg::basic_reactor<zerg::provided_buffers<>, locked_handoff<1024>, zerg::plain_submission, echo>;

int main(int argc, char** argv) {
    auto config = example::parse_options(argc, argv);
    if (!config) return 2;
    zerg::termination_signals signals;
    zerg::server<reactor> server(*config);
    server.start();
    std::printf("listening on %s\n", server.local_endpoint().to_string().c_str());
    std::fflush(stdout);
    signals.wait();
    server.stop();
}
