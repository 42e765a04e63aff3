// An echo server: every byte received is sent back.
//   bin/echo --port 7000 --reactors 2 [--address ::] [--dual-stack] [--reuse-port]
#include <zerg/zerg.hpp>

#include "../common/serve.hpp"

struct echo {
    void on_data(zerg::connection<echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};

// The policies are chosen here, at compile time.
using echo_reactor = zerg::basic_reactor<zerg::provided_buffers<4096, 1024>, zerg::spsc_handoff<4096>,
                                         zerg::plain_submission, echo>;

int main(int argc, char** argv) { return example::serve<echo_reactor>(argc, argv); }
