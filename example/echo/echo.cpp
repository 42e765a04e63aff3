// An echo server: every byte received is sent back.
//   bin/echo --port 7000 --reactors 2 [--address ::] [--dual-stack] [--reuse-port]
#include <zerg/zerg.hpp>

#include "../common/serve.hpp"

struct echo {
    void on_data(zerg::connection<echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};

// The policies are chosen here, at compile time: every default
// (zerg::reactor_defaults), or any one named, e.g.
// zerg::reactor<echo, zerg::buffers<zerg::incremental_buffers<16384, 256>>>.
using echo_reactor = zerg::reactor<echo>;

int main(int argc, char** argv) { return example::serve<echo_reactor>(argc, argv); }
