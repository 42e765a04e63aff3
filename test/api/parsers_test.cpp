#define BOOST_TEST_MODULE api_parsers
#include <boost/test/unit_test.hpp>

// The example protocols' parsers (HTTP/1.1 and RESP) over zerg::buffer_sequence,
// fed the way the reactor feeds them: pieces pushed one receive at a time,
// the parser run after each, whole messages consumed, the rest left for
// later, a spill when the sequence is full (and, in the random runs, at
// random moments too, as the reactor does when the ring runs low). Each
// stream is fed (a) whole, (b) byte by byte, (c) in random splits; the
// parsed messages must be identical.

#include "../../example/http_plaintext/http_request.hpp"
#include "../../example/resp/resp_command.hpp"

#include <zerg/buffer_sequence.hpp>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

// ---- feeding ------------------------------------------------------------

struct release_counter {
    std::size_t released = 0;
    static void release(void* self, std::uint16_t) noexcept { ++static_cast<release_counter*>(self)->released; }
};

enum class end_state { incomplete, malformed };
std::ostream& operator<<(std::ostream& os, end_state e) { return os << (e == end_state::malformed ? "malformed" : "incomplete"); }

template <class Message>
struct feed_result {
    std::vector<Message> messages;  // parsed, in order
    end_state end = end_state::incomplete;
    std::size_t left = 0;  // bytes unconsumed at the end (incomplete)
    std::string error;     // the parser's reason, when malformed (RESP)
    bool operator==(const feed_result&) const = default;
};

template <class Message>
std::ostream& operator<<(std::ostream& os, const feed_result<Message>& r) {
    os << r.messages.size() << " messages [";
    for (auto& m : r.messages) os << m << "; ";
    return os << "] end " << r.end << " left " << r.left
              << " error '" << r.error << "'";
}

// Feeds `stream` cut at `cuts` (increasing offsets, the piece boundaries).
// `parse(seq, message, error)` returns a status and fills `message` (with
// `length` to consume) when complete. `spill_rng`, when given, spills at
// random moments.
template <class Message, class Parse>
feed_result<Message> feed(const std::string& stream, const std::vector<std::size_t>& cuts, Parse parse,
                          std::mt19937* spill_rng = nullptr) {
    // The pieces outlive the sequence (declared first, destroyed last).
    std::vector<std::string> pieces;
    std::size_t prev = 0;
    for (std::size_t c : cuts) {
        if (c > prev && c < stream.size()) {
            pieces.push_back(stream.substr(prev, c - prev));
            prev = c;
        }
    }
    if (prev < stream.size()) pieces.push_back(stream.substr(prev));
    release_counter counter;
    std::size_t pushed = 0;
    feed_result<Message> result;
    {
        zerg::buffer_sequence seq;
        seq.bind(&release_counter::release, &counter);
        bool stop = false;
        for (std::size_t i = 0; i < pieces.size() && !stop; ++i) {
            ++pushed;
            if (seq.full()) seq.spill();
            seq.push(reinterpret_cast<const std::byte*>(pieces[i].data()), static_cast<std::uint32_t>(pieces[i].size()),
                     static_cast<std::uint16_t>(i));
            while (!seq.empty()) {
                Message m;
                std::string error;
                auto status = parse(seq, m, error);
                if (status == 0) break;  // incomplete
                if (status < 0) {
                    result.end = end_state::malformed;
                    result.error = error;
                    stop = true;
                    break;
                }
                BOOST_REQUIRE(m.length > 0);
                BOOST_REQUIRE(m.length <= seq.size());
                seq.consume(m.length);
                result.messages.push_back(std::move(m));
            }
            if (spill_rng && !seq.empty() && (*spill_rng)() % 4 == 0) seq.spill();
        }
        result.left = result.end == end_state::malformed ? 0 : seq.size();
    }
    // Every piece pushed went back exactly once (consume, spill or the destructor).
    BOOST_TEST(counter.released == pushed);
    return result;
}

std::vector<std::size_t> whole(const std::string&) { return {}; }
std::vector<std::size_t> byte_by_byte(const std::string& s) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < s.size(); ++i) cuts.push_back(i);
    return cuts;
}
std::vector<std::size_t> random_cuts(const std::string& s, std::mt19937& rng) {
    std::vector<std::size_t> cuts;
    if (s.size() < 2) return cuts;
    // Mostly small pieces, sometimes large ones.
    std::size_t at = 0;
    while (true) {
        std::size_t step = rng() % 3 == 0 ? 1 + rng() % 200 : 1 + rng() % 12;
        at += step;
        if (at >= s.size()) break;
        cuts.push_back(at);
    }
    return cuts;
}

// Whole, byte by byte and `random_runs` random splits (fixed seeds) give the
// same result. `parse` is copied into each feed: every feed starts with a
// fresh parser, as a new connection would.
template <class Message, class Parse>
feed_result<Message> feed_every_way(const std::string& stream, Parse parse, unsigned random_runs = 300) {
    auto reference = feed<Message>(stream, whole(stream), parse);
    auto bytewise = feed<Message>(stream, byte_by_byte(stream), parse);
    BOOST_TEST(bytewise == reference, "byte by byte: " << bytewise << "\nwhole: " << reference);
    for (unsigned seed = 1; seed <= random_runs; ++seed) {
        std::mt19937 rng(seed);
        auto cuts = random_cuts(stream, rng);
        auto random = feed<Message>(stream, cuts, parse, seed % 2 ? &rng : nullptr);
        if (!(random == reference)) {
            BOOST_ERROR("random split, seed " << seed << ": " << random << "\nwhole: " << reference);
            break;
        }
    }
    return reference;
}

// ---- HTTP -----------------------------------------------------------------

struct http_message {
    std::string method, target;
    int minor_version = 0;
    bool keep_alive = false;
    std::size_t length = 0;
    bool operator==(const http_message&) const = default;
};
std::ostream& operator<<(std::ostream& os, const http_message& m) {
    return os << m.method << ' ' << m.target << " 1." << m.minor_version << (m.keep_alive ? " keep-alive" : " close")
              << " length " << m.length;
}

struct http_parser {
    std::array<char, http::max_head> scratch{};
    int operator()(const zerg::buffer_sequence& in, http_message& m, std::string&) {
        http::request req;
        auto status = http::parse(in, req, scratch);
        if (status == http::parse_status::incomplete) return 0;
        if (status == http::parse_status::malformed) return -1;
        m = {std::string(req.method), std::string(req.target), req.minor_version, req.keep_alive, req.length};
        return 1;
    }
};

feed_result<http_message> http_every_way(const std::string& stream) {
    return feed_every_way<http_message>(stream, http_parser{});
}

// A single message on its own, in one piece.
http::parse_status http_status(const std::string& text, http::request* out = nullptr) {
    std::string copy = text;
    zerg::buffer_sequence seq;
    seq.push(reinterpret_cast<const std::byte*>(copy.data()), static_cast<std::uint32_t>(copy.size()), 0);
    static std::array<char, http::max_head> scratch;
    http::request req;
    auto s = http::parse(seq, req, scratch);
    if (out) *out = req;
    return s;
}

const std::string plaintext = "GET /plaintext HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n";

// ---- RESP -----------------------------------------------------------------

struct resp_message {
    std::vector<std::string> args;
    std::size_t length = 0;
    bool operator==(const resp_message&) const = default;
};
std::ostream& operator<<(std::ostream& os, const resp_message& m) {
    os << '[';
    for (auto& a : m.args) os << '"' << a << "\" ";
    return os << "] length " << m.length;
}

struct resp_parser {
    resp::command command;  // reused across calls, as the server does
    int operator()(const zerg::buffer_sequence& in, resp_message& m, std::string& error) {
        auto status = resp::parse(in, command);
        if (status == resp::parse_status::incomplete) return 0;
        if (status == resp::parse_status::malformed) {
            error = command.error;
            return -1;
        }
        m.args.assign(command.args.begin(), command.args.end());
        m.length = command.length;
        return 1;
    }
};

feed_result<resp_message> resp_every_way(const std::string& stream, unsigned random_runs = 300) {
    return feed_every_way<resp_message>(stream, resp_parser{}, random_runs);
}

std::string bulk_array(std::vector<std::string> args) {
    std::string s = "*" + std::to_string(args.size()) + "\r\n";
    for (auto& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    return s;
}

}  // namespace

// ===== HTTP ===================================================================

BOOST_AUTO_TEST_CASE(http_one_request) {
    auto r = http_every_way(plaintext);
    BOOST_TEST(r.end == end_state::incomplete);
    BOOST_TEST(r.left == 0u);
    BOOST_REQUIRE(r.messages.size() == 1u);
    BOOST_TEST(r.messages[0] == (http_message{"GET", "/plaintext", 1, true, plaintext.size()}));
}

BOOST_AUTO_TEST_CASE(http_pipelined_requests_parsed_in_order) {
    // The expected length of each is its whole text (head and body).
    std::vector<std::pair<std::string, http_message>> parts = {
        {plaintext, {"GET", "/plaintext", 1, true, 0}},
        {"GET /a HTTP/1.1\r\n\r\n", {"GET", "/a", 1, true, 0}},
        // The body holds "\r\n\r\n", which must not be taken for a head end.
        {"POST /submit HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nxx", {"POST", "/submit", 1, true, 0}},
        {"GET /old HTTP/1.0\r\n\r\n", {"GET", "/old", 0, false, 0}},
        {"GET /old-ka HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", {"GET", "/old-ka", 0, true, 0}},
        {"GET /bye HTTP/1.1\r\nconnection:   close  \r\nX-Empty:\r\n\r\n", {"GET", "/bye", 1, false, 0}},
        {"PUT /zero HTTP/1.1\r\ncontent-length: 0\r\n\r\n", {"PUT", "/zero", 1, true, 0}},
        {"DELETE /q?x=1&y=%20 HTTP/1.1\r\nContent-Length:\t3\t\r\n\r\nabc", {"DELETE", "/q?x=1&y=%20", 1, true, 0}},
    };
    std::string stream;
    std::vector<http_message> want;
    for (int round = 0; round < 3; ++round) {
        for (auto& [text, msg] : parts) {
            stream += text;
            want.push_back(msg);
            want.back().length = text.size();
        }
    }
    // And a partial request at the end: left unconsumed.
    stream += "GET /partial HTTP/1.1\r\nHo";
    auto r = http_every_way(stream);
    BOOST_TEST(r.end == end_state::incomplete);
    BOOST_TEST(r.left == 25u);
    BOOST_TEST(r.messages == want, r);
}

BOOST_AUTO_TEST_CASE(http_sixteen_deep_pipeline) {
    std::string stream;
    for (int i = 0; i < 16; ++i) stream += plaintext;
    auto r = http_every_way(stream);
    BOOST_TEST(r.messages.size() == 16u);
    for (auto& m : r.messages) BOOST_TEST(m == (http_message{"GET", "/plaintext", 1, true, plaintext.size()}));
    BOOST_TEST(r.left == 0u);
}

BOOST_AUTO_TEST_CASE(http_malformed_inputs) {
    const std::vector<std::string> malformed = {
        // request line
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / \r\n\r\n",
        "\r\n\r\n",
        // version
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/1.10\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTP/1.\r\n\r\n",
        "GET / HTTX/1.1\r\n\r\n",
        // headers
        "GET / HTTP/1.1\r\nHost localhost\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n: value\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nno-colon-at-all\r\n\r\n",
        // Content-Length
        "POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1234567890\r\n\r\n",
        // Transfer-Encoding
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n",
    };
    for (auto& text : malformed) {
        BOOST_TEST_CONTEXT("'" << text << "'") {
            BOOST_TEST((http_status(text) == http::parse_status::malformed));
            // After two good requests, fed every way: the good ones parse, then malformed.
            auto r = http_every_way(plaintext + plaintext + text);
            BOOST_TEST(r.messages.size() == 2u);
            BOOST_TEST(r.end == end_state::malformed);
        }
    }
}

BOOST_AUTO_TEST_CASE(http_oversized_head) {
    // No head end within max_head bytes: malformed as soon as that many arrived.
    std::string endless = "GET / HTTP/1.1\r\nX-Long: " + std::string(http::max_head, 'a');
    BOOST_TEST((http_status(endless.substr(0, http::max_head - 1)) == http::parse_status::incomplete));
    BOOST_TEST((http_status(endless.substr(0, http::max_head)) == http::parse_status::malformed));
    auto r = http_every_way(endless);
    BOOST_TEST(r.messages.empty());
    BOOST_TEST(r.end == end_state::malformed);
    // A complete head one byte over the limit is refused; one at the limit is not.
    std::string prefix = "GET / HTTP/1.1\r\nX-Long: ";
    std::string at_limit = prefix + std::string(http::max_head - prefix.size() - 4, 'b') + "\r\n\r\n";
    BOOST_REQUIRE(at_limit.size() == http::max_head);
    BOOST_TEST((http_status(at_limit) == http::parse_status::complete));
    std::string over = prefix + std::string(http::max_head - prefix.size() - 3, 'b') + "\r\n\r\n";
    BOOST_TEST((http_status(over) == http::parse_status::malformed));
    auto r2 = http_every_way(plaintext + at_limit + over);
    BOOST_TEST(r2.messages.size() == 2u);
    BOOST_TEST(r2.end == end_state::malformed);
}

BOOST_AUTO_TEST_CASE(http_incomplete_at_every_prefix) {
    const std::vector<std::string> messages = {
        plaintext,
        "GET / HTTP/1.1\r\n\r\n",
        "POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789",
        "GET /old HTTP/1.0\r\nConnection: close\r\n\r\n",
    };
    for (auto& m : messages) {
        for (std::size_t n = 0; n < m.size(); ++n) {
            auto s = http_status(m.substr(0, n));
            if (s != http::parse_status::incomplete) {
                BOOST_ERROR("prefix of " << n << " of '" << m << "' is not incomplete");
                break;
            }
        }
        http::request req;
        BOOST_TEST((http_status(m, &req) == http::parse_status::complete));
        BOOST_TEST(req.length == m.size());
        // The same prefixes split in two pieces anywhere.
        std::array<char, http::max_head> scratch{};
        std::size_t wrong = 0;
        for (std::size_t n = 1; n < m.size(); ++n) {
            for (std::size_t cut = 1; cut < n; ++cut) {
                std::string a = m.substr(0, cut), b = m.substr(cut, n - cut);
                zerg::buffer_sequence seq;
                seq.push(reinterpret_cast<const std::byte*>(a.data()), static_cast<std::uint32_t>(a.size()), 0);
                seq.push(reinterpret_cast<const std::byte*>(b.data()), static_cast<std::uint32_t>(b.size()), 1);
                http::request r;
                if (http::parse(seq, r, scratch) != http::parse_status::incomplete) ++wrong;
            }
        }
        BOOST_TEST(wrong == 0u, "'" << m << "'");
    }
}

// ===== RESP ===================================================================

BOOST_AUTO_TEST_CASE(resp_pipelined_commands) {
    std::vector<std::pair<std::string, std::vector<std::string>>> parts = {
        {bulk_array({"PING"}), {"PING"}},
        {bulk_array({"SET", "key", "value"}), {"SET", "key", "value"}},
        {bulk_array({"GET", "key"}), {"GET", "key"}},
        {bulk_array({"ECHO", "a\r\nb\r\n"}), {"ECHO", "a\r\nb\r\n"}},  // CRLF inside a bulk string
        {bulk_array({"SET", "empty", ""}), {"SET", "empty", ""}},
        {bulk_array({"SET", "big", std::string(5000, 'x')}), {"SET", "big", std::string(5000, 'x')}},
        {"*0\r\n", {}},
        {"PING\r\n", {"PING"}},                        // inline
        {"SET  a   b\n", {"SET", "a", "b"}},           // inline, extra spaces, bare \n
        {"\r\n", {}},                                  // an empty inline line
        {bulk_array({"INCR", "counter"}), {"INCR", "counter"}},
    };
    std::string stream;
    std::vector<resp_message> want;
    for (int round = 0; round < 2; ++round) {
        for (auto& [text, args] : parts) {
            stream += text;
            want.push_back({args, text.size()});
        }
    }
    stream += "*2\r\n$3\r\nGET\r\n$3\r\nke";  // partial
    auto r = resp_every_way(stream);
    BOOST_TEST(r.end == end_state::incomplete);
    BOOST_TEST(r.left == 19u);
    BOOST_TEST(r.messages == want, r);
}

BOOST_AUTO_TEST_CASE(resp_redis_benchmark_style_pipeline) {
    std::string stream;
    for (int i = 0; i < 16; ++i) stream += bulk_array({"SET", "key:__rand_int__", "xxx"});
    auto r = resp_every_way(stream);
    BOOST_TEST(r.messages.size() == 16u);
    BOOST_TEST(r.left == 0u);
    for (auto& m : r.messages) BOOST_TEST((m.args == std::vector<std::string>{"SET", "key:__rand_int__", "xxx"}));
}

BOOST_AUTO_TEST_CASE(resp_malformed_inputs) {
    struct bad {
        std::string text;
        std::string error;  // the reason the parser gives, when it gives one
    };
    const std::vector<bad> cases = {
        {"*1\r\n$-5\r\nPING\r\n", "invalid bulk length"},
        {"*1\r\n$-1\r\n", "invalid bulk length"},
        {"*1\r\n+PING\r\n", "expected '$', got '+'"},
        {"*2\r\n$4\r\nPING\r\n:1\r\n", "expected '$', got ':'"},
        {"*1\r\n$4\r\nPINGxx", "bulk string not terminated by CRLF"},
        {"*1\r\n$4\r\nPING\n\r", "bulk string not terminated by CRLF"},
        {"*1\r\n$3\r\nPING\r\n", "bulk string not terminated by CRLF"},
        {"*-1\r\n", "invalid multibulk length"},
    };
    for (auto& c : cases) {
        BOOST_TEST_CONTEXT("'" << c.text << "'") {
            auto r = resp_every_way(bulk_array({"PING"}) + c.text);
            BOOST_TEST(r.messages.size() == 1u);
            BOOST_TEST(r.end == end_state::malformed);
            BOOST_TEST(r.error == c.error);
        }
    }
    // Non-numeric lengths and over-long number lines: malformed (the reason
    // is checked in resp_malformed_inputs_say_why).
    for (std::string text : std::vector<std::string>{"*1\r\n$abc\r\nxyz\r\n", "*x\r\n", "*\r\n", "*1\r\n$\r\n\r\n",
                                                     "*1\r\n$4a\r\nPING\r\n", "*123456789012345678901\r\n",
                                                     "*1\r\n$" + std::string(40, '1'), "*" + std::string(40, '1')}) {
        BOOST_TEST_CONTEXT("'" << text << "'") {
            auto r = resp_every_way(bulk_array({"PING"}) + text);
            BOOST_TEST(r.messages.size() == 1u);
            BOOST_TEST(r.end == end_state::malformed);
        }
    }
    // An inline command without its newline past max_inline bytes.
    // (Each parse searches all it has, so byte by byte is quadratic: few random runs.)
    auto r = resp_every_way(std::string(resp::max_inline + 1, 'a'), 5);
    BOOST_TEST(r.end == end_state::malformed);
}

// command::error is documented as "why it is malformed"; the server sends
// it back as "-ERR Protocol error: <why>".
BOOST_AUTO_TEST_CASE(resp_malformed_inputs_say_why) {
    for (std::string text : {"*1\r\n$abc\r\nxyz\r\n", "*x\r\n", "*1\r\n$\r\n\r\n"}) {
        BOOST_TEST_CONTEXT("'" << text << "'") {
            auto r = resp_every_way(text);
            BOOST_TEST(r.end == end_state::malformed);
            BOOST_TEST(!r.error.empty(), "malformed with no reason in command::error");
        }
    }
    // A command object is reused (the server keeps one per reactor, for
    // every connection): a reason must not outlive the input it was about.
    resp::command cmd;
    std::string first = "*1\r\n+PING\r\n", second = "*x\r\n";
    zerg::buffer_sequence a, b;
    a.push(reinterpret_cast<const std::byte*>(first.data()), static_cast<std::uint32_t>(first.size()), 0);
    BOOST_REQUIRE((resp::parse(a, cmd) == resp::parse_status::malformed));
    BOOST_TEST(cmd.error == "expected '$', got '+'");
    b.push(reinterpret_cast<const std::byte*>(second.data()), static_cast<std::uint32_t>(second.size()), 0);
    BOOST_REQUIRE((resp::parse(b, cmd) == resp::parse_status::malformed));
    BOOST_TEST(cmd.error != "expected '$', got '+'", "the reason of an earlier input was reported for '*x'");
}

BOOST_AUTO_TEST_CASE(resp_incomplete_at_every_prefix) {
    const std::vector<std::string> messages = {
        bulk_array({"PING"}),
        bulk_array({"SET", "key", "value"}),
        bulk_array({"ECHO", "a\r\nb\r\n"}),
        bulk_array({"SET", "e", ""}),
        "PING\r\n",
        "*0\r\n",
    };
    for (auto& m : messages) {
        resp::command cmd;
        std::size_t wrong = 0;
        for (std::size_t n = 0; n < m.size(); ++n) {
            std::string prefix = m.substr(0, n);
            // Whole, and cut in two anywhere.
            for (std::size_t cut = 0; cut < std::max<std::size_t>(n, 1); ++cut) {
                std::string a = prefix.substr(0, cut), b = prefix.substr(cut);
                zerg::buffer_sequence seq;
                if (!a.empty()) seq.push(reinterpret_cast<const std::byte*>(a.data()), static_cast<std::uint32_t>(a.size()), 0);
                if (!b.empty()) seq.push(reinterpret_cast<const std::byte*>(b.data()), static_cast<std::uint32_t>(b.size()), 1);
                if (resp::parse(seq, cmd) != resp::parse_status::incomplete) ++wrong;
            }
        }
        BOOST_TEST(wrong == 0u, "'" << m << "'");
        std::string copy = m;
        zerg::buffer_sequence seq;
        seq.push(reinterpret_cast<const std::byte*>(copy.data()), static_cast<std::uint32_t>(copy.size()), 0);
        BOOST_TEST((resp::parse(seq, cmd) == resp::parse_status::complete));
        BOOST_TEST(cmd.length == m.size());
    }
}
