// Must NOT compile: zerg::reactor's options name their family; a bare
// policy is refused with a static_assert saying to wrap it. With
// ZERG_CONTROL the policy is wrapped in zerg::handoff<> and it compiles.
#include <zerg/reactor.hpp>

#include <span>

struct echo {
    void on_data(zerg::connection<echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};

#ifdef ZERG_CONTROL
using r = zerg::reactor<echo, zerg::handoff<zerg::mpmc_handoff<64>>>;
#else
using r = zerg::reactor<echo, zerg::mpmc_handoff<64>>;
#endif
r::queue_type* queue = nullptr;
int main() {}
