// Must NOT compile: a provided-buffer ring holds a power-of-two count.
// With ZERG_CONTROL (1024) it must compile.
#include <zerg/policy/buffer.hpp>

#ifdef ZERG_CONTROL
zerg::provided_buffers<4096, 1024> fine;
#else
zerg::provided_buffers<4096, 1000> bad;
#endif
int main() {}
