// Must NOT compile: the datagram handler's callback takes the wrong
// arguments, so datagram_endpoint's static_assert stops the build with a
// sentence naming on_datagram. Built again with ZERG_CONTROL, where the
// signature is right, it must compile.
#include <zerg/datagram.hpp>

struct wrong {
#ifdef ZERG_CONTROL
    void on_datagram(zerg::datagram_endpoint<wrong>&, const zerg::endpoint&, std::span<const std::byte>) {}
#else
    void on_datagram(zerg::datagram_endpoint<wrong>&, std::span<const std::byte>) {}
#endif
};

static_assert(sizeof(zerg::datagram_endpoint<wrong>) > 0);
int main() {}
