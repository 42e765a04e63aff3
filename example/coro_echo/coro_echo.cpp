// The echo server written as one coroutine per connection.
//   bin/coro_echo --port 7002 --reactors 2
#include <zerg/zerg.hpp>

#include "../common/serve.hpp"

struct coro_echo {
    zerg::task serve(zerg::connection<coro_echo>& c) {
        for (;;) {
            auto [in, closed] = co_await c.read();
            // Send each piece back, then drop it from the input. After the
            // peer's EOF (closed) what arrived before it is still answered.
            for (std::size_t i = 0; i < in.segment_count(); ++i) c.write(in.segment(i));
            c.advance(in.size());
            if (!co_await c.flush() || closed) co_return;
        }
    }
};

using reactor = zerg::reactor<coro_echo>;  // every default policy (reactor_options.hpp)

int main(int argc, char** argv) { return example::serve<reactor>(argc, argv); }
