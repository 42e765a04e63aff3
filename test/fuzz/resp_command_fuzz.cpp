// libFuzzer target for the RESP command parser (example/resp). The first
// input byte picks the limits (the defaults, or small ones that the fuzzer
// can reach) and seeds the random cuts; the rest is the stream a client
// sends. Checks, for every input: whole, byte by byte and randomly cut give
// the same commands and the same end; nothing is consumed that did not
// arrive; every command completed keeps within the limits; a refusal is
// sticky and says why. Build and run: test/fuzz/run.sh.
#include "../../example/resp/resp_command.hpp"
#include "feed.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

struct step {
    resp::limits limits;
    resp::command_parser parser{};
    long operator()(zerg::buffer_sequence& in, std::string& transcript) {
        auto s = parser.parse(in, limits);
        if (s == resp::parse_status::incomplete) return 0;
        if (s == resp::parse_status::malformed) {
            fuzz::check(!parser.error().empty(), "refused without a reason");
            fuzz::check(parser.args().empty(), "arguments left after a refusal");
            transcript += "|ERR " + std::string(parser.error());
            return -1;
        }
        fuzz::check(parser.length() > 0, "a command of no bytes");
        fuzz::check(parser.args().size() <= limits.max_args || parser.length() <= limits.max_inline + 1,
                    "more arguments than the limit");
        transcript += "|" + std::to_string(parser.args().size()) + " " + std::to_string(parser.length());
        for (auto a : parser.args()) {
            fuzz::check(a.size() <= limits.max_bulk || parser.length() <= limits.max_inline + 1, "bulk over the limit");
            transcript += " " + std::to_string(a.size()) + ":" + std::string(a);
        }
        return static_cast<long>(parser.length());
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::uint8_t control = data[0];
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    resp::limits limits;
    if (control & 1) limits = {static_cast<std::size_t>((control >> 1) % 32), (control >> 3) % 6u, static_cast<std::size_t>(4 + (control >> 4) % 32)};
    fuzz::same_every_way(input, control, [&] { return step{limits}; });
    return 0;
}
