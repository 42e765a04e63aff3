// Must NOT compile: on_data takes a std::string, not the bytes span.
// With ZERG_CONTROL (the right parameter type) it must compile.
#include <zerg/reactor.hpp>

#include <string>

struct wrong {
#ifdef ZERG_CONTROL
    void on_data(zerg::connection<wrong>&, std::span<const std::byte>) {}
#else
    void on_data(zerg::connection<wrong>&, std::string) {}
#endif
};

using bad = zerg::basic_reactor<zerg::provided_buffers<>, zerg::spsc_handoff<>, zerg::plain_submission, wrong>;
static_assert(sizeof(bad) > 0);
int main() {}
