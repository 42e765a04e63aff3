// Must NOT compile: the handler's data callback is misspelled, so the
// reactor's static_assert stops the build with a sentence naming on_data.
// Built again with ZERG_CONTROL, where the name is right, it must compile:
// the failure is the one intended and nothing else.
#include <zerg/reactor.hpp>

struct wrong {
#ifdef ZERG_CONTROL
    void on_data(zerg::connection<wrong>&, std::span<const std::byte>) {}
#else
    void on_recv(zerg::connection<wrong>&, std::span<const std::byte>) {}
#endif
};

using bad = zerg::basic_reactor<zerg::provided_buffers<>, zerg::spsc_handoff<>, zerg::plain_submission, wrong>;
static_assert(sizeof(bad) > 0);
int main() {}
