// An echo server whose reactors receive connections through a Queue policy
// written outside zerg (locked_handoff.hpp).
//   bin/custom_policy --port 7001 --reactors 2
#include "locked_handoff.hpp"

#include <zerg/zerg.hpp>

#include "../common/serve.hpp"

struct echo {
    void on_data(zerg::connection<echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};

// One policy named, the others left at their defaults.
using reactor = zerg::reactor<echo, zerg::handoff<locked_handoff<1024>>>;

int main(int argc, char** argv) { return example::serve<reactor>(argc, argv); }
