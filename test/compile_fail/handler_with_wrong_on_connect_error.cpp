// Must NOT compile: on_connect_error misses its error code, so it would never
// be called; the reactor says so. With ZERG_CONTROL (the right signature) it
// must compile.
#include <zerg/reactor.hpp>

struct wrong {
    void on_data(zerg::connection<wrong>&, std::span<const std::byte>) {}
#ifdef ZERG_CONTROL
    void on_connect_error(zerg::connection<wrong>&, std::error_code) {}
#else
    void on_connect_error(zerg::connection<wrong>&) {}
#endif
};

using bad = zerg::basic_reactor<zerg::provided_buffers<>, zerg::spsc_handoff<>, zerg::plain_submission, wrong>;
static_assert(sizeof(bad) > 0);
int main() {}
