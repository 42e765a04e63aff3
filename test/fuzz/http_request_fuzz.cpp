// libFuzzer target for the HTTP/1.1 request parser (example/http_plaintext).
// The first input byte picks the limits (the defaults, or small ones that
// the fuzzer can reach) and seeds the random cuts; the rest is the stream a
// client sends. Checks, for every input: whole, byte by byte and randomly
// cut give the same requests and the same end; nothing is consumed that did
// not arrive; every request completed keeps within the limits and is well
// formed; a refusal is sticky. Build and run: test/fuzz/run.sh.
#include "../../example/http_plaintext/http_request.hpp"
#include "feed.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

struct step {
    http::limits limits;
    http::request_parser parser{};
    long operator()(zerg::buffer_sequence& in, std::string& transcript) {
        auto s = parser.parse(in, limits);
        if (s == http::parse_status::incomplete) return 0;
        if (s != http::parse_status::complete) {
            fuzz::check(!parser.error().empty(), "refused without a reason");
            transcript += "|" + std::string(http::status_line(s)) + ": " + std::string(parser.error());
            return -1;
        }
        const http::request& r = parser.get();
        fuzz::check(!r.method.empty() && !r.target.empty(), "empty method or target");
        for (char c : r.method) fuzz::check(http::detail::is_token_char(c), "method is not a token");
        for (char c : r.target) fuzz::check(http::detail::is_target_char(c), "bad byte in the target");
        fuzz::check(r.minor_version == 0 || r.minor_version == 1, "version");
        fuzz::check(r.content_length <= limits.max_body, "body over the limit");
        fuzz::check(r.length > r.content_length && r.length - r.content_length <= limits.max_head, "head over the limit");
        transcript += "|" + std::string(r.method) + " " + std::string(r.target) + " 1." + std::to_string(r.minor_version) +
                      (r.keep_alive ? " ka " : " close ") + std::to_string(r.content_length) + " " + std::to_string(r.length);
        return static_cast<long>(r.length);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::uint8_t control = data[0];
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    http::limits limits;
    if (control & 1) limits = {static_cast<std::size_t>(16 + (control >> 1) % 64), (control >> 3) % 5u, (control >> 5) % 8u};
    fuzz::same_every_way(input, control, [&] { return step{limits}; });
    return 0;
}
