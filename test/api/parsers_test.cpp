#define BOOST_TEST_MODULE api_parsers
#include <boost/test/unit_test.hpp>

// The example protocols' parsers (HTTP/1.1 and RESP) over zerg::buffer_sequence,
// fed the way the reactor feeds them: pieces pushed one receive at a time,
// one parser per connection run after each receive (it consumes what it has
// finished with and resumes where it stopped), a spill when the sequence is
// full (and, in the random runs, at random moments too, as the reactor does
// when the ring runs low). Each stream is fed (a) whole, (b) byte by byte,
// (c) cut once at every offset, (d) in random splits; the parsed messages,
// the way it ended and the bytes left must be identical.

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

template <class Message>
struct feed_result {
    std::vector<Message> messages;  // parsed, in order
    std::string end = "incomplete"; // or the refusal ("400", "431", "413", "malformed")
    std::size_t left = 0;           // bytes unconsumed at the end (incomplete)
    std::string error;              // the parser's reason, when refused
    bool operator==(const feed_result&) const = default;
};

template <class Message>
std::ostream& operator<<(std::ostream& os, const feed_result<Message>& r) {
    os << r.messages.size() << " messages [";
    for (auto& m : r.messages) os << m << "; ";
    return os << "] end " << r.end << " left " << r.left << " error '" << r.error << "'";
}

// Feeds `stream` cut at `cuts` (increasing offsets, the piece boundaries)
// to a copy of `parser`, whose `step(seq, message, end, error)` returns
// true when it completed a message (filled, with `length` consumed), false
// when it needs more or refused (then `end` is set). `spill_rng`, when
// given, spills at random moments.
template <class Message, class Parser>
feed_result<Message> feed(const std::string& stream, const std::vector<std::size_t>& cuts, Parser parser,
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
    std::size_t pushed = 0, pushed_bytes = 0, lengths = 0;
    feed_result<Message> result;
    {
        zerg::buffer_sequence seq;
        seq.bind(&release_counter::release, &counter);
        for (std::size_t i = 0; i < pieces.size() && result.end == "incomplete"; ++i) {
            ++pushed;
            pushed_bytes += pieces[i].size();
            if (seq.full()) seq.spill();
            seq.push(reinterpret_cast<const std::byte*>(pieces[i].data()), static_cast<std::uint32_t>(pieces[i].size()),
                     static_cast<std::uint16_t>(i));
            for (;;) {
                Message m;
                if (!parser.step(seq, m, result.end, result.error)) break;
                BOOST_REQUIRE(m.length > 0);
                lengths += m.length;
                // Consumed exactly the messages so far: never more than was pushed, nothing of the next one.
                BOOST_REQUIRE(pushed_bytes - seq.size() == lengths);
                result.messages.push_back(std::move(m));
            }
            BOOST_REQUIRE(seq.size() <= pushed_bytes);
            if (spill_rng && !seq.empty() && (*spill_rng)() % 4 == 0) seq.spill();
        }
        result.left = result.end == "incomplete" ? seq.size() : 0;
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

// Whole, byte by byte, cut once at every offset (streams up to `max_single`
// bytes) and `random_runs` random splits (fixed seeds) give the same result.
// `parser` is copied into each feed: every feed starts with a fresh parser,
// as a new connection would.
template <class Message, class Parser>
feed_result<Message> feed_every_way(const std::string& stream, const Parser& parser, unsigned random_runs = 300,
                                    std::size_t max_single = 4096) {
    auto reference = feed<Message>(stream, whole(stream), parser);
    auto bytewise = feed<Message>(stream, byte_by_byte(stream), parser);
    BOOST_TEST(bytewise == reference, "byte by byte: " << bytewise << "\nwhole: " << reference);
    if (stream.size() <= max_single) {
        for (std::size_t cut = 1; cut < stream.size(); ++cut) {
            auto once = feed<Message>(stream, {cut}, parser);
            if (!(once == reference)) {
                BOOST_ERROR("cut at " << cut << ": " << once << "\nwhole: " << reference);
                break;
            }
        }
    }
    for (unsigned seed = 1; seed <= random_runs; ++seed) {
        std::mt19937 rng(seed);
        auto cuts = random_cuts(stream, rng);
        auto random = feed<Message>(stream, cuts, parser, seed % 2 ? &rng : nullptr);
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
    std::size_t content_length = 0;
    bool operator==(const http_message&) const = default;
};
std::ostream& operator<<(std::ostream& os, const http_message& m) {
    return os << m.method << ' ' << m.target << " 1." << m.minor_version << (m.keep_alive ? " keep-alive" : " close")
              << " length " << m.length << " body " << m.content_length;
}

const char* http_code(http::parse_status s) {
    switch (s) {
        case http::parse_status::bad_request: return "400";
        case http::parse_status::head_too_large: return "431";
        case http::parse_status::body_too_large: return "413";
        default: return "?";
    }
}

struct http_parser {
    http::limits limits{};
    http::request_parser parser{};
    bool step(zerg::buffer_sequence& in, http_message& m, std::string& end, std::string& error) {
        auto status = parser.parse(in, limits);
        if (status == http::parse_status::incomplete) return false;
        if (status != http::parse_status::complete) {
            end = http_code(status);
            error = std::string(parser.error());
            return false;
        }
        const auto& req = parser.get();
        m = {std::string(req.method), std::string(req.target), req.minor_version, req.keep_alive, req.length,
             req.content_length};
        return true;
    }
};

feed_result<http_message> http_every_way(const std::string& stream, http::limits limits = {}, unsigned random_runs = 300) {
    return feed_every_way<http_message>(stream, http_parser{limits}, random_runs);
}

// A single message on its own, in one piece, to a fresh parser.
http::parse_status http_status(const std::string& text, http::request* out = nullptr, http::limits limits = {}) {
    std::string copy = text;
    zerg::buffer_sequence seq;
    if (!copy.empty()) seq.push(reinterpret_cast<const std::byte*>(copy.data()), static_cast<std::uint32_t>(copy.size()), 0);
    http::request_parser parser;
    auto s = parser.parse(seq, limits);
    if (out) *out = parser.get();
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
    resp::limits limits{};
    resp::command_parser parser{};
    bool step(zerg::buffer_sequence& in, resp_message& m, std::string& end, std::string& error) {
        auto status = parser.parse(in, limits);
        if (status == resp::parse_status::incomplete) return false;
        if (status == resp::parse_status::malformed) {
            end = "malformed";
            error = std::string(parser.error());
            return false;
        }
        m.args.assign(parser.args().begin(), parser.args().end());
        m.length = parser.length();
        return true;
    }
};

feed_result<resp_message> resp_every_way(const std::string& stream, unsigned random_runs = 300, resp::limits limits = {}) {
    return feed_every_way<resp_message>(stream, resp_parser{limits}, random_runs);
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
    BOOST_TEST(r.end == "incomplete");
    BOOST_TEST(r.left == 0u);
    BOOST_REQUIRE(r.messages.size() == 1u);
    BOOST_TEST(r.messages[0] == (http_message{"GET", "/plaintext", 1, true, plaintext.size(), 0}));
}

BOOST_AUTO_TEST_CASE(http_pipelined_requests_parsed_in_order) {
    // The expected length of each is its whole text (head and body).
    std::vector<std::pair<std::string, http_message>> parts = {
        {plaintext, {"GET", "/plaintext", 1, true, 0, 0}},
        {"GET /a HTTP/1.1\r\n\r\n", {"GET", "/a", 1, true, 0, 0}},
        // The body holds "\r\n\r\n", which must not be taken for a head end.
        {"POST /submit HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nxx", {"POST", "/submit", 1, true, 0, 11}},
        {"GET /old HTTP/1.0\r\n\r\n", {"GET", "/old", 0, false, 0, 0}},
        {"GET /old-ka HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", {"GET", "/old-ka", 0, true, 0, 0}},
        {"GET /bye HTTP/1.1\r\nconnection:   close  \r\nX-Empty:\r\n\r\n", {"GET", "/bye", 1, false, 0, 0}},
        {"GET /list HTTP/1.1\r\nConnection: upgrade, Close\r\n\r\n", {"GET", "/list", 1, false, 0, 0}},
        {"PUT /zero HTTP/1.1\r\ncontent-length: 0\r\n\r\n", {"PUT", "/zero", 1, true, 0, 0}},
        {"DELETE /q?x=1&y=%20 HTTP/1.1\r\nContent-Length:\t3\t\r\n\r\nabc", {"DELETE", "/q?x=1&y=%20", 1, true, 0, 3}},
        {"GET /utf8-\xc3\xa9 HTTP/1.1\r\nX-Obs: caf\xc3\xa9\r\n\r\n", {"GET", "/utf8-\xc3\xa9", 1, true, 0, 0}},
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
    BOOST_TEST(r.end == "incomplete");
    BOOST_TEST(r.left == 25u);
    BOOST_TEST(r.messages == want, r);
}

BOOST_AUTO_TEST_CASE(http_sixteen_deep_pipeline) {
    std::string stream;
    for (int i = 0; i < 16; ++i) stream += plaintext;
    auto r = http_every_way(stream);
    BOOST_TEST(r.messages.size() == 16u);
    for (auto& m : r.messages) BOOST_TEST(m == (http_message{"GET", "/plaintext", 1, true, plaintext.size(), 0}));
    BOOST_TEST(r.left == 0u);
}

BOOST_AUTO_TEST_CASE(http_malformed_inputs) {
    const std::vector<std::string> malformed = {
        // request line
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET\t/ HTTP/1.1\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\n\r\n",
        "GET / \r\n\r\n",
        "\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\n\r\n",
        // version
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/1.10\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTP/1.\r\n\r\n",
        "GET / HTTX/1.1\r\n\r\n",
        // line ends: CRLF only
        "GET / HTTP/1.1\n\n",
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\r\n\r\n",
        // headers
        "GET / HTTP/1.1\r\nHost localhost\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n: value\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nno-colon-at-all\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n",
        std::string("GET / HTTP/1.1\r\nX: a") + '\0' + "b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x1b[0m\r\n\r\n",
        // Content-Length
        "POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
        // Two Content-Lengths: the request-smuggling pattern (RFC 9112 §6.3), even when equal.
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nhello",
        "POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
        // Transfer-Encoding: not implemented, so framing cannot be trusted.
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    };
    for (auto& text : malformed) {
        BOOST_TEST_CONTEXT("'" << text << "'") {
            BOOST_TEST((http_status(text) == http::parse_status::bad_request));
            // After two good requests, fed every way: the good ones parse, then 400.
            auto r = http_every_way(plaintext + plaintext + text, {}, 40);
            BOOST_TEST(r.messages.size() == 2u);
            BOOST_TEST(r.end == "400");
            BOOST_TEST(!r.error.empty(), "refused with no reason");
        }
    }
}

BOOST_AUTO_TEST_CASE(http_refusal_is_sticky) {
    std::string text = "GARBAGE\r\n\r\n" + plaintext;
    zerg::buffer_sequence seq;
    seq.push(reinterpret_cast<const std::byte*>(text.data()), static_cast<std::uint32_t>(text.size()), 0);
    http::request_parser parser;
    BOOST_TEST((parser.parse(seq) == http::parse_status::bad_request));
    BOOST_TEST((parser.parse(seq) == http::parse_status::bad_request));
    BOOST_TEST(parser.error() == "malformed request line");
}

BOOST_AUTO_TEST_CASE(http_oversized_head) {
    const std::size_t max_head = http::limits{}.max_head;
    // No head end within max_head bytes: refused as soon as that many arrived.
    std::string endless = "GET / HTTP/1.1\r\nX-Long: " + std::string(max_head, 'a');
    BOOST_TEST((http_status(endless.substr(0, max_head - 1)) == http::parse_status::incomplete));
    BOOST_TEST((http_status(endless.substr(0, max_head)) == http::parse_status::head_too_large));
    auto r = http_every_way(endless, {}, 20);
    BOOST_TEST(r.messages.empty());
    BOOST_TEST(r.end == "431");
    // A complete head one byte over the limit is refused; one at the limit is not.
    std::string prefix = "GET / HTTP/1.1\r\nX-Long: ";
    std::string at_limit = prefix + std::string(max_head - prefix.size() - 4, 'b') + "\r\n\r\n";
    BOOST_REQUIRE(at_limit.size() == max_head);
    BOOST_TEST((http_status(at_limit) == http::parse_status::complete));
    std::string over = prefix + std::string(max_head - prefix.size() - 3, 'b') + "\r\n\r\n";
    BOOST_TEST((http_status(over) == http::parse_status::head_too_large));
    auto r2 = http_every_way(plaintext + at_limit + over, {}, 20);
    BOOST_TEST(r2.messages.size() == 2u);
    BOOST_TEST(r2.end == "431");
    // A request line alone longer than the limit.
    BOOST_TEST((http_status("GET /" + std::string(max_head, 'x') + " HTTP/1.1\r\n\r\n") == http::parse_status::head_too_large));
}

BOOST_AUTO_TEST_CASE(http_limits_at_and_one_past) {
    http::limits small{64, 3, 10};
    // Head bytes: 64 exactly, then 65.
    std::string head64 = "GET / HTTP/1.1\r\nX: " + std::string(64 - 23, 'h') + "\r\n\r\n";
    BOOST_REQUIRE(head64.size() == 64u);
    std::string head65 = "GET / HTTP/1.1\r\nX: " + std::string(64 - 22, 'h') + "\r\n\r\n";
    auto r = http_every_way(head64 + head64, small);
    BOOST_TEST(r.messages.size() == 2u);
    BOOST_TEST(r.end == "incomplete");
    r = http_every_way(head64 + head65, small);
    BOOST_TEST(r.messages.size() == 1u);
    BOOST_TEST(r.end == "431");
    BOOST_TEST(r.error == "request head too large");
    // Header count: 3, then 4.
    std::string three = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    std::string four = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    r = http_every_way(three + four, small);
    BOOST_TEST(r.messages.size() == 1u);
    BOOST_TEST(r.end == "431");
    BOOST_TEST(r.error == "too many header fields");
    // Body: 10, then 11, refused with none of it sent.
    std::string body10 = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
    std::string head11 = "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
    r = http_every_way(body10 + head11, small);
    BOOST_TEST(r.messages.size() == 1u);
    BOOST_TEST(r.messages.at(0).content_length == 10u);
    BOOST_TEST(r.end == "413");
    // The default body limit, at and one past.
    const std::size_t max_body = http::limits{}.max_body;
    http::request req;
    BOOST_TEST((http_status("POST / HTTP/1.1\r\nContent-Length: " + std::to_string(max_body) + "\r\n\r\n", &req) ==
                http::parse_status::incomplete));
    BOOST_TEST((http_status("POST / HTTP/1.1\r\nContent-Length: " + std::to_string(max_body + 1) + "\r\n\r\n") ==
                http::parse_status::body_too_large));
}

BOOST_AUTO_TEST_CASE(http_content_length_overflow_is_refused_not_wrapped) {
    for (std::string value : std::vector<std::string>{"99999999999999999999999", "18446744073709551615", "18446744073709551616",
                              "18446744073709551617", "36893488147419103232", "9223372036854775808",
                              "000000000000000000000000000000000001048577", std::string(200, '9')}) {
        BOOST_TEST_CONTEXT(value) {
            auto r = http_every_way(plaintext + "POST / HTTP/1.1\r\nContent-Length: " + value + "\r\n\r\n" + plaintext, {}, 20);
            BOOST_TEST(r.messages.size() == 1u);
            BOOST_TEST(r.end == "413");
        }
    }
    // Leading zeros are still a number, and a small one.
    auto r = http_every_way("POST / HTTP/1.1\r\nContent-Length: 00000000000000000000000003\r\n\r\nabc" + plaintext);
    BOOST_TEST(r.messages.size() == 2u);
    BOOST_TEST(r.messages.at(0).content_length == 3u);
}

BOOST_AUTO_TEST_CASE(http_body_is_consumed_as_it_arrives) {
    // A body is skipped piece by piece: the sequence never holds it.
    std::string head = "POST /up HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
    std::string chunk(1000, 'z');
    zerg::buffer_sequence seq;
    http::request_parser parser;
    seq.push(reinterpret_cast<const std::byte*>(head.data()), static_cast<std::uint32_t>(head.size()), 0);
    BOOST_REQUIRE((parser.parse(seq) == http::parse_status::incomplete));
    BOOST_TEST(seq.size() == 0u, "the head was not consumed");
    for (int i = 0; i < 99; ++i) {
        seq.push(reinterpret_cast<const std::byte*>(chunk.data()), static_cast<std::uint32_t>(chunk.size()), 1);
        BOOST_REQUIRE((parser.parse(seq) == http::parse_status::incomplete));
        BOOST_TEST(seq.size() == 0u);
    }
    std::string last = chunk + plaintext;
    seq.push(reinterpret_cast<const std::byte*>(last.data()), static_cast<std::uint32_t>(last.size()), 2);
    BOOST_REQUIRE((parser.parse(seq) == http::parse_status::complete));
    BOOST_TEST(parser.get().target == "/up");
    BOOST_TEST(parser.get().length == head.size() + 100000);
    BOOST_TEST(seq.size() == plaintext.size());
    BOOST_REQUIRE((parser.parse(seq) == http::parse_status::complete));
    BOOST_TEST(parser.get().target == "/plaintext");
    BOOST_TEST(seq.size() == 0u);
}

BOOST_AUTO_TEST_CASE(http_incomplete_at_every_prefix) {
    const std::vector<std::string> messages = {
        plaintext,
        "GET / HTTP/1.1\r\n\r\n",
        "POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789",
        "GET /old HTTP/1.0\r\nConnection: close\r\n\r\n",
    };
    for (auto& m : messages) {
        // Every prefix to a fresh parser: incomplete.
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
        // Every prefix split in two anywhere, the parser run after each piece.
        std::size_t wrong = 0;
        for (std::size_t n = 1; n < m.size(); ++n) {
            for (std::size_t cut = 1; cut < n; ++cut) {
                std::string a = m.substr(0, cut), b = m.substr(cut, n - cut);
                zerg::buffer_sequence seq;
                http::request_parser parser;
                seq.push(reinterpret_cast<const std::byte*>(a.data()), static_cast<std::uint32_t>(a.size()), 0);
                if (parser.parse(seq) != http::parse_status::incomplete) ++wrong;
                seq.push(reinterpret_cast<const std::byte*>(b.data()), static_cast<std::uint32_t>(b.size()), 1);
                if (parser.parse(seq) != http::parse_status::incomplete) ++wrong;
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
        {bulk_array({"ECHO", "$3\r\n*1\r\n"}), {"ECHO", "$3\r\n*1\r\n"}},  // framing inside a bulk string
        {bulk_array({"SET", "empty", ""}), {"SET", "empty", ""}},
        {bulk_array({"SET", "big", std::string(5000, 'x')}), {"SET", "big", std::string(5000, 'x')}},
        {"*0\r\n", {}},
        {"*2\r\n$3\r\nGET\r\n$0003\r\nkey\r\n", {"GET", "key"}},  // leading zeros
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
    auto r = resp_every_way(stream, 300);
    BOOST_TEST(r.end == "incomplete");
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
        std::string error;  // the reason the parser gives
    };
    const std::vector<bad> cases = {
        {"*1\r\n$-5\r\nPING\r\n", "invalid bulk length"},
        {"*1\r\n$-1\r\n", "invalid bulk length"},
        {"*1\r\n$+4\r\nPING\r\n", "invalid bulk length"},
        {"*1\r\n$ 4\r\nPING\r\n", "invalid bulk length"},
        {"*1\r\n+PING\r\n", "expected '$', got '+'"},
        {"*2\r\n$4\r\nPING\r\n:1\r\n", "expected '$', got ':'"},
        {"*1\r\n$4\r\nPINGxx", "bulk string not terminated by CRLF"},
        {"*1\r\n$4\r\nPING\n\r", "bulk string not terminated by CRLF"},
        {"*1\r\n$3\r\nPING\r\n", "bulk string not terminated by CRLF"},
        {"*1\r\n$4\r\nPING\rx", "bulk string not terminated by CRLF"},
        {"*-1\r\n", "invalid multibulk length"},
        {"*-0\r\n", "invalid multibulk length"},
        // Missing CR before LF in a length line.
        {"*1\n$4\r\nPING\r\n", "invalid multibulk length"},
        {"*1\r\n$4\nPING\r\n", "invalid bulk length"},
        {"*1\r\r\n$4\r\nPING\r\n", "invalid multibulk length"},
        {"*x\r\n", "invalid multibulk length"},
        {"*\r\n", "invalid multibulk length"},
        {"*1\r\n$\r\n\r\n", "invalid bulk length"},
        {"*1\r\n$abc\r\nxyz\r\n", "invalid bulk length"},
        {"*1\r\n$4a\r\nPING\r\n", "invalid bulk length"},
        {"*123456789012345678901\r\n", "invalid multibulk length"},
        {"*1\r\n$" + std::string(40, '1'), "invalid bulk length"},
        {"*" + std::string(40, '1'), "invalid multibulk length"},
    };
    for (auto& c : cases) {
        BOOST_TEST_CONTEXT("'" << c.text << "'") {
            auto r = resp_every_way(bulk_array({"PING"}) + c.text, 40);
            BOOST_TEST(r.messages.size() == 1u);
            BOOST_TEST(r.end == "malformed");
            BOOST_TEST(r.error == c.error);
        }
    }
    // An inline command without its newline past max_inline bytes.
    auto r = resp_every_way(std::string(resp::limits{}.max_inline + 1, 'a'), 5);
    BOOST_TEST(r.end == "malformed");
    BOOST_TEST(r.error == "too big inline request");
}

// Lengths and counts that do not fit are refused, not wrapped: before, a
// $18446744073709551619 was read as 3 and *18446744073709551617 as 1.
BOOST_AUTO_TEST_CASE(resp_overflowing_numbers_are_refused) {
    for (std::string n : {"18446744073709551619", "18446744073709551617", "18446744073709551615",
                          "9223372036854775808", "9223372036854775807", "99999999999999999999"}) {
        BOOST_TEST_CONTEXT(n) {
            auto r = resp_every_way("*1\r\n$" + n + "\r\nabc\r\n", 20);
            BOOST_TEST(r.messages.empty());
            BOOST_TEST(r.end == "malformed");
            BOOST_TEST(r.error == "invalid bulk length");
            r = resp_every_way("*" + n + "\r\n$4\r\nPING\r\n", 20);
            BOOST_TEST(r.end == "malformed");
            BOOST_TEST(r.error == "invalid multibulk length");
        }
    }
}

BOOST_AUTO_TEST_CASE(resp_limits_at_and_one_past) {
    resp::limits small{16, 3, 10};
    // Bulk: 16 bytes, then 17, refused on the length line, before the payload.
    auto r = resp_every_way(bulk_array({"SET", "k", std::string(16, 'v')}) + "*1\r\n$17\r\n", 300, small);
    BOOST_TEST(r.messages.size() == 1u);
    BOOST_TEST(r.end == "malformed");
    BOOST_TEST(r.error == "invalid bulk length");
    // Elements: 3, then 4, refused on the array header.
    r = resp_every_way(bulk_array({"a", "b", "c"}) + "*4\r\n", 300, small);
    BOOST_TEST(r.messages.size() == 1u);
    BOOST_TEST(r.error == "invalid multibulk length");
    // Inline: 10 bytes before the \n, then 11.
    r = resp_every_way("0123456789\n" + std::string("0123456789\r\n"), 300, small);
    BOOST_TEST(r.messages.size() == 1u);
    BOOST_TEST(r.error == "too big inline request");
    r = resp_every_way("0123456789\n", 300, small);
    BOOST_TEST(r.messages.size() == 1u);
    BOOST_TEST(r.end == "incomplete");
    r = resp_every_way("01234567890", 300, small);
    BOOST_TEST(r.error == "too big inline request");
}

// One command of many arguments, trickled a byte at a time: the parser
// resumes where it stopped, so this takes a moment (re-parsing from the
// start on every receive, as the parser once did, would take hours).
BOOST_AUTO_TEST_CASE(resp_huge_command_trickled) {
    const std::size_t n = 100000;
    std::string stream = "*" + std::to_string(n) + "\r\n";
    for (std::size_t i = 0; i < n; ++i) stream += "$1\r\n" + std::string(1, static_cast<char>('a' + i % 26)) + "\r\n";
    stream += bulk_array({"PING"});
    auto r = feed<resp_message>(stream, byte_by_byte(stream), resp_parser{});
    BOOST_TEST(r.end == "incomplete");
    BOOST_REQUIRE(r.messages.size() == 2u);
    BOOST_REQUIRE(r.messages[0].args.size() == n);
    BOOST_TEST(r.messages[0].args[n - 1] == std::string(1, static_cast<char>('a' + (n - 1) % 26)));
    BOOST_TEST((r.messages[1].args == std::vector<std::string>{"PING"}));
}

BOOST_AUTO_TEST_CASE(http_huge_head_trickled) {
    // 100 header lines near the default limit, a byte at a time.
    std::string head = "GET /many HTTP/1.1\r\n";
    for (int i = 0; i < 99; ++i) head += "X-" + std::to_string(i) + ": " + std::string(50, 'v') + "\r\n";
    head += "\r\n";
    BOOST_REQUIRE(head.size() <= http::limits{}.max_head);
    auto r = feed<http_message>(head + head, byte_by_byte(head + head), http_parser{});
    BOOST_TEST(r.messages.size() == 2u);
    BOOST_TEST(r.end == "incomplete");
}

// The reason is about this connection's input: each has its own parser.
BOOST_AUTO_TEST_CASE(resp_malformed_inputs_say_why) {
    for (std::string text : {"*1\r\n$abc\r\nxyz\r\n", "*x\r\n", "*1\r\n$\r\n\r\n"}) {
        BOOST_TEST_CONTEXT("'" << text << "'") {
            auto r = resp_every_way(text);
            BOOST_TEST(r.end == "malformed");
            BOOST_TEST(!r.error.empty(), "malformed with no reason");
        }
    }
    std::string first = "*1\r\n+PING\r\n";
    zerg::buffer_sequence a;
    resp::command_parser parser;
    a.push(reinterpret_cast<const std::byte*>(first.data()), static_cast<std::uint32_t>(first.size()), 0);
    BOOST_REQUIRE((parser.parse(a) == resp::parse_status::malformed));
    BOOST_TEST(parser.error() == "expected '$', got '+'");
    // Sticky: more input does not clear it.
    BOOST_TEST((parser.parse(a) == resp::parse_status::malformed));
    BOOST_TEST(parser.args().empty());
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
        std::size_t wrong = 0;
        for (std::size_t n = 0; n < m.size(); ++n) {
            std::string prefix = m.substr(0, n);
            // Cut in two anywhere, the parser run after each piece.
            for (std::size_t cut = 0; cut < std::max<std::size_t>(n, 1); ++cut) {
                std::string a = prefix.substr(0, cut), b = prefix.substr(cut);
                zerg::buffer_sequence seq;
                resp::command_parser parser;
                if (!a.empty()) seq.push(reinterpret_cast<const std::byte*>(a.data()), static_cast<std::uint32_t>(a.size()), 0);
                if (parser.parse(seq) != resp::parse_status::incomplete) ++wrong;
                if (!b.empty()) seq.push(reinterpret_cast<const std::byte*>(b.data()), static_cast<std::uint32_t>(b.size()), 1);
                if (parser.parse(seq) != resp::parse_status::incomplete) ++wrong;
            }
        }
        BOOST_TEST(wrong == 0u, "'" << m << "'");
        std::string copy = m;
        zerg::buffer_sequence seq;
        resp::command_parser parser;
        seq.push(reinterpret_cast<const std::byte*>(copy.data()), static_cast<std::uint32_t>(copy.size()), 0);
        BOOST_TEST((parser.parse(seq) == resp::parse_status::complete));
        BOOST_TEST(parser.length() == m.size());
        BOOST_TEST(seq.empty());
    }
}
