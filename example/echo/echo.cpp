// An echo server: every byte received is sent back.
//   bin/echo --port 7000 --reactors 2 [--address ::] [--dual-stack] [--reuse-port]
#include <zerg/zerg.hpp>

#include "../common/serve.hpp"

// Each received buffer is sent back as it is (connection::write_from): no
// copy into the outbound queue; the buffer returns to the kernel's ring
// when the send completes. The handler lets go of the item at once: the
// send holds its own reference.
struct echo {
    void on_ring_item(zerg::connection<echo>& c, zerg::ring_item item) {
        c.write_from(item);
        c.release(item);
    }
};

// The policies are chosen here, at compile time: every default
// (zerg::reactor_defaults), or any one named, e.g.
// zerg::reactor<echo, zerg::buffers<zerg::incremental_buffers<16384, 256>>>.
using echo_reactor = zerg::reactor<echo>;

int main(int argc, char** argv) { return example::serve<echo_reactor>(argc, argv); }
