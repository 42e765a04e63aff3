#define BOOST_TEST_MODULE protocol_programs
#include <boost/test/unit_test.hpp>

// The protocol examples run as a user runs them, each started on loopback
// (--address 127.0.0.1 --port 0) and stopped with SIGTERM (exit status 0):
// http_plaintext by the TechEmpower plaintext rules (pipelining, split
// requests, 400 and close, 404, HTTP/1.0, curl as a client), resp with
// redis-cli and redis-benchmark, coro_echo with the echo client. The
// programs' paths come from test/Jamfile.

#include <support/client_io.hpp>
#include <support/echo_client.hpp>
#include <support/process.hpp>
#include <support/sockets.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using zerg::test::fd_guard;

std::string program(const char* name) {
    auto& args = boost::unit_test::framework::master_test_suite();
    for (int i = 1; i < args.argc; ++i) {
        std::string path = args.argv[i];
        if (path.ends_with(std::string("/") + name)) return path;
    }
    throw std::runtime_error(std::string("no path to ") + name + " on the command line");
}

fd_guard connect_nodelay(std::uint16_t port) {
    auto fd = zerg::test::connect_loopback(port);
    zerg::test::set_nodelay(fd.get());
    return fd;
}

// ---- external commands ----------------------------------------------------

struct command_result {
    std::string output;
    int status = -1;  // exit status, -1 when it did not exit normally
};

command_result run_command(const std::string& command) {
    command_result r;
    FILE* p = ::popen((command + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
    int status = ::pclose(p);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

// Prints "SKIPPED <test>: <tool> not installed" and returns true when it is missing.
bool skip_without(const char* tool) {
    if (run_command(std::string("command -v ") + tool + " >/dev/null").status == 0) return false;
    std::cout << "SKIPPED " << boost::unit_test::framework::current_test_case().p_name.get() << ": " << tool
              << " not installed\n";
    return true;
}

// ---- HTTP responses ---------------------------------------------------------

struct http_response {
    std::string status_line;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    std::optional<std::string> header(std::string_view name) const {
        for (auto& [n, v] : headers)
            if (n == name) return v;
        return std::nullopt;
    }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (auto& h : headers) out.push_back(h.first);
        std::sort(out.begin(), out.end());
        return out;
    }
};

// Parses the response at the front of `buf`: its length, 0 when incomplete,
// npos when it is not a well-formed response with a Content-Length.
std::size_t parse_response(std::string_view buf, http_response& r) {
    auto end = buf.find("\r\n\r\n");
    if (end == std::string_view::npos) return 0;
    std::string_view head = buf.substr(0, end + 2);
    auto eol = head.find("\r\n");
    r = {};
    r.status_line = std::string(head.substr(0, eol));
    std::size_t at = eol + 2;
    std::optional<std::size_t> length;
    while (at < head.size()) {
        auto e = head.find("\r\n", at);
        std::string_view line = head.substr(at, e - at);
        at = e + 2;
        auto colon = line.find(": ");
        if (colon == std::string_view::npos) return std::string_view::npos;
        r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(line.substr(colon + 2)));
        if (line.substr(0, colon) == "Content-Length") length = std::stoul(std::string(line.substr(colon + 2)));
    }
    if (!length) return std::string_view::npos;
    std::size_t total = end + 4 + *length;
    if (buf.size() < total) return 0;
    r.body = std::string(buf.substr(end + 4, *length));
    return total;
}

struct responses {
    std::vector<http_response> list;
    bool eof = false;           // the server closed (FIN or reset) afterwards
    bool malformed = false;
    std::string rest;           // bytes after the last whole response
};

// Reads until `count` responses have arrived (and, with `to_close`, until
// the server closes), within `timeout`.
responses read_responses(int fd, std::size_t count, bool to_close = false, std::chrono::milliseconds timeout = 5s) {
    responses out;
    std::string buf;
    auto deadline = zerg::test::clock::now() + timeout;
    char chunk[16384];
    for (;;) {
        for (;;) {
            http_response r;
            std::size_t n = parse_response(buf, r);
            if (n == std::string_view::npos) {
                out.malformed = true;
                out.rest = buf;
                return out;
            }
            if (n == 0) break;
            out.list.push_back(std::move(r));
            buf.erase(0, n);
        }
        if (out.list.size() >= count && !to_close) break;
        if (!zerg::test::wait_for_events(fd, POLLIN, deadline)) break;
        ssize_t r = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (r > 0) {
            buf.append(chunk, static_cast<std::size_t>(r));
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            out.eof = true;
            break;
        }
    }
    out.rest = buf;
    return out;
}

// Date: an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") within a few
// seconds of now, with the right weekday.
void check_date(const std::string& date) {
    static const std::regex imf(
        "(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
        "[0-9]{2}:[0-9]{2}:[0-9]{2} GMT");
    BOOST_TEST(std::regex_match(date, imf), "Date is not an IMF-fixdate: '" << date << "'");
    std::tm tm{};
    const char* end = ::strptime(date.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    BOOST_REQUIRE_MESSAGE(end && *end == '\0', "Date does not parse: '" << date << "'");
    int weekday = tm.tm_wday;
    std::time_t t = ::timegm(&tm);
    BOOST_TEST(tm.tm_wday == weekday, "wrong weekday in '" << date << "'");
    std::time_t now = std::time(nullptr);
    BOOST_TEST(std::abs(static_cast<long>(now - t)) <= 5, "Date '" << date << "' is not now");
}

// Exactly the TechEmpower plaintext response.
void check_plaintext(const http_response& r, bool connection_close = false) {
    BOOST_TEST(r.status_line == "HTTP/1.1 200 OK");
    std::vector<std::string> want = {"Content-Length", "Content-Type", "Date", "Server"};
    if (connection_close) want.insert(want.begin(), "Connection");
    BOOST_TEST(r.names() == want, "headers differ");
    BOOST_TEST(r.header("Server").value_or("") == "zerg");
    BOOST_TEST(r.header("Content-Type").value_or("") == "text/plain");
    BOOST_TEST(r.header("Content-Length").value_or("") == "13");
    if (connection_close) BOOST_TEST(r.header("Connection").value_or("") == "close");
    check_date(r.header("Date").value_or(""));
    BOOST_TEST(r.body == "Hello, World!");
}

void check_status(const http_response& r, std::string_view status_line, bool connection_close) {
    BOOST_TEST(r.status_line == status_line);
    BOOST_TEST(r.header("Server").value_or("") == "zerg");
    BOOST_TEST(r.header("Content-Length").value_or("") == "0");
    BOOST_TEST(!r.header("Content-Type").has_value());
    BOOST_TEST(r.header("Connection").has_value() == connection_close);
    check_date(r.header("Date").value_or(""));
    BOOST_TEST(r.body.empty());
}

const std::string plaintext = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n";

struct http_server {
    zerg::test::server_process process{program("http_plaintext"), {"--reactors", "2"}};
    std::uint16_t port() const { return process.port(); }
};

// ---- RESP -----------------------------------------------------------------

struct resp_server {
    zerg::test::server_process process{program("resp"), {"--reactors", "2"}};
    std::uint16_t port() const { return process.port(); }
    std::string cli(const std::string& args) const {
        auto r = run_command("timeout 20 redis-cli -h 127.0.0.1 -p " + std::to_string(port()) + " " + args);
        BOOST_TEST(r.status == 0, "redis-cli " << args << " exited with " << r.status << ": " << r.output);
        return r.output;
    }
};

}  // namespace

// =============================================================================
// http_plaintext
// =============================================================================

BOOST_AUTO_TEST_CASE(http_pipelined_16_deep_on_several_connections) {
    http_server server;
    std::vector<fd_guard> conns;
    for (int i = 0; i < 8; ++i) conns.push_back(connect_nodelay(server.port()));
    std::string pipeline;
    for (int i = 0; i < 16; ++i) pipeline += plaintext;
    for (int round = 0; round < 3; ++round) {
        for (auto& c : conns) BOOST_REQUIRE(zerg::test::send_all(c.get(), pipeline));
        for (auto& c : conns) {
            auto got = read_responses(c.get(), 16);
            BOOST_TEST(!got.malformed, "not a response: " << got.rest.substr(0, 200));
            BOOST_TEST(!got.eof);
            BOOST_REQUIRE(got.list.size() == 16u);
            BOOST_TEST(got.rest.empty());
            for (auto& r : got.list) check_plaintext(r);
        }
    }
    // Answered in order: a pipeline that mixes found and not found.
    std::mt19937 rng(16);
    for (auto& c : conns) {
        std::string mixed;
        std::vector<bool> found;
        for (int i = 0; i < 16; ++i) {
            found.push_back(rng() % 2 == 0);
            mixed += found.back() ? plaintext : "GET /missing-" + std::to_string(i) + " HTTP/1.1\r\n\r\n";
        }
        BOOST_REQUIRE(zerg::test::send_all(c.get(), mixed));
        auto got = read_responses(c.get(), 16);
        BOOST_REQUIRE(got.list.size() == 16u);
        for (std::size_t i = 0; i < 16; ++i) {
            if (found[i])
                check_plaintext(got.list[i]);
            else
                check_status(got.list[i], "HTTP/1.1 404 Not Found", false);
        }
    }
    conns.clear();
    BOOST_TEST(server.process.stop() == 0);
}

BOOST_AUTO_TEST_CASE(http_requests_split_across_reads) {
    http_server server;
    auto c = connect_nodelay(server.port());
    // Byte by byte, a millisecond apart.
    for (int round = 0; round < 2; ++round) {
        for (char ch : plaintext) {
            BOOST_REQUIRE(zerg::test::send_all(c.get(), std::string_view(&ch, 1)));
            ::poll(nullptr, 0, 1);  // pacing: each byte its own receive
        }
        auto got = read_responses(c.get(), 1);
        BOOST_REQUIRE(got.list.size() == 1u);
        check_plaintext(got.list[0]);
    }
    // Split right inside the final CRLF CRLF, and with nothing answered early.
    auto cut = plaintext.size() - 2;
    BOOST_REQUIRE(zerg::test::send_all(c.get(), plaintext.substr(0, cut)));
    BOOST_TEST(!zerg::test::wait_for_events(c.get(), POLLIN, zerg::test::clock::now() + 50ms), "answered a partial request");
    BOOST_REQUIRE(zerg::test::send_all(c.get(), plaintext.substr(cut)));
    auto got = read_responses(c.get(), 1);
    BOOST_REQUIRE(got.list.size() == 1u);
    check_plaintext(got.list[0]);
    // Four pipelined requests cut at random places, pieces a millisecond apart.
    std::string four = plaintext + plaintext + plaintext + plaintext;
    for (unsigned seed = 1; seed <= 5; ++seed) {
        std::mt19937 rng(seed);
        std::size_t at = 0;
        while (at < four.size()) {
            std::size_t n = std::min<std::size_t>(1 + rng() % 40, four.size() - at);
            BOOST_REQUIRE(zerg::test::send_all(c.get(), std::string_view(four).substr(at, n)));
            at += n;
            ::poll(nullptr, 0, 1);  // pacing
        }
        auto r = read_responses(c.get(), 4);
        BOOST_REQUIRE(r.list.size() == 4u);
        for (auto& resp : r.list) check_plaintext(resp);
    }
    c.reset();
    BOOST_TEST(server.process.stop() == 0);
}

BOOST_AUTO_TEST_CASE(http_malformed_gets_400_and_close) {
    http_server server;
    const std::vector<std::string> malformed = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET /plaintext HTTP/1.1\r\nNoColonHere\r\n\r\n",
        "POST /plaintext HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "POST /plaintext HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // Two Content-Lengths: the request-smuggling pattern (RFC 9112 §6.3 requires 400).
        "POST /plaintext HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nhello",
        "GET /plaintext HTTP/1.1\nHost: bare-lf\n\n",
        "POST /plaintext HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    };
    for (auto& bad : malformed) {
        BOOST_TEST_CONTEXT("'" << bad.substr(0, 60) << "'") {
            auto c = connect_nodelay(server.port());
            // A good request, the bad one, and one more that must not be answered.
            BOOST_REQUIRE(zerg::test::send_all(c.get(), plaintext + bad + plaintext));
            auto got = read_responses(c.get(), 2, true);
            BOOST_TEST(!got.malformed);
            BOOST_REQUIRE(got.list.size() == 2u);
            check_plaintext(got.list[0]);
            check_status(got.list[1], "HTTP/1.1 400 Bad Request", true);
            BOOST_TEST(got.list[1].header("Connection").value_or("") == "close");
            BOOST_TEST(got.eof, "the connection stayed open after 400");
            BOOST_TEST(got.rest.empty());
        }
    }
    BOOST_TEST(server.process.stop() == 0);
}

// A refusal closes that one connection: another one, opened before, keeps
// being served, and new ones are too.
BOOST_AUTO_TEST_CASE(http_400_closes_only_that_connection) {
    http_server server;
    auto good = connect_nodelay(server.port());
    BOOST_REQUIRE(zerg::test::send_all(good.get(), plaintext));
    auto first = read_responses(good.get(), 1);
    BOOST_REQUIRE(first.list.size() == 1u);
    check_plaintext(first.list[0]);
    for (std::string bad : {"\x16\x03\x01\x02\x31\x01\xfc\x03\x03\r\n\r\n",  // like a TLS hello on the plain port
                            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"}) {
        auto c = connect_nodelay(server.port());
        BOOST_REQUIRE(zerg::test::send_all(c.get(), bad));
        auto got = read_responses(c.get(), 1, true);
        BOOST_REQUIRE(got.list.size() == 1u);
        check_status(got.list[0], "HTTP/1.1 400 Bad Request", true);
        BOOST_TEST(got.eof, "the connection stayed open after 400");
        // The other connection is still served, in order.
        BOOST_REQUIRE(zerg::test::send_all(good.get(), plaintext + plaintext));
        auto again = read_responses(good.get(), 2);
        BOOST_TEST(!again.eof);
        BOOST_REQUIRE(again.list.size() == 2u);
        for (auto& r : again.list) check_plaintext(r);
    }
    auto fresh = connect_nodelay(server.port());
    BOOST_REQUIRE(zerg::test::send_all(fresh.get(), plaintext));
    auto got = read_responses(fresh.get(), 1);
    BOOST_REQUIRE(got.list.size() == 1u);
    check_plaintext(got.list[0]);
    good.reset();
    fresh.reset();
    BOOST_TEST(server.process.stop() == 0);
}

// Over the limits: 413 for a body (before any of it is read), 431 for a
// head; answered, then closed; the requests before are answered. The
// limits come from the command line.
BOOST_AUTO_TEST_CASE(http_over_the_limits_gets_413_or_431) {
    zerg::test::server_process server(program("http_plaintext"),
                                      {"--reactors", "2", "--max-body", "100", "--max-headers", "8", "--max-head", "1k"});
    auto post = [](std::size_t n) {
        return "POST /plaintext HTTP/1.1\r\nContent-Length: " + std::to_string(n) + "\r\n\r\n" + std::string(n, 'b');
    };
    std::string nine_headers = "GET /plaintext HTTP/1.1\r\n";
    for (int i = 0; i < 9; ++i) nine_headers += "X-" + std::to_string(i) + ": v\r\n";
    nine_headers += "\r\n";
    struct refusal {
        std::string request;  // sent after one good request and one at the limit
        std::string status;
    };
    const std::vector<refusal> cases = {
        {"POST /plaintext HTTP/1.1\r\nContent-Length: 101\r\n\r\n", "HTTP/1.1 413 Content Too Large"},
        {"POST /plaintext HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", "HTTP/1.1 413 Content Too Large"},
        {"POST /plaintext HTTP/1.1\r\nContent-Length: 18446744073709551617\r\n\r\n", "HTTP/1.1 413 Content Too Large"},
        {nine_headers, "HTTP/1.1 431 Request Header Fields Too Large"},
        {"GET /plaintext HTTP/1.1\r\nX-Huge: " + std::string(2000, 'x'), "HTTP/1.1 431 Request Header Fields Too Large"},
    };
    std::string eight_headers = "GET /plaintext HTTP/1.1\r\n";
    for (int i = 0; i < 8; ++i) eight_headers += "X-" + std::to_string(i) + ": v\r\n";
    eight_headers += "\r\n";
    for (auto& c : cases) {
        BOOST_TEST_CONTEXT("'" << c.request.substr(0, 60) << "'") {
            auto fd = connect_nodelay(server.port());
            BOOST_REQUIRE(zerg::test::send_all(fd.get(), plaintext + post(100) + eight_headers + c.request));
            auto got = read_responses(fd.get(), 4, true);
            BOOST_TEST(!got.malformed);
            BOOST_REQUIRE(got.list.size() == 4u);
            for (int i = 0; i < 3; ++i) check_plaintext(got.list[i]);
            check_status(got.list[3], c.status, true);
            BOOST_TEST(got.eof, "the connection stayed open after " << c.status);
        }
    }
    BOOST_TEST(server.stop() == 0);
}

// A 413 while the client still sends its body: the server replies, shuts
// its sending side and reads on, dropping what comes (lingering_close), so
// the client's sends all succeed and it reads the reply. A plain close would
// meet the arriving body with RST: the client's send fails (ECONNRESET or
// EPIPE) and a client such as curl reports that instead of the 413.
BOOST_AUTO_TEST_CASE(http_413_lingers_while_the_client_still_sends) {
    zerg::test::server_process server(program("http_plaintext"),
                                      {"--reactors", "1", "--max-body", "100", "--read-timeout-ms", "3000"});
    constexpr std::size_t body = 4u << 20;
    auto fd = connect_nodelay(server.port());
    timeval bound{10, 0};  // a send that blocks this long fails the test instead of hanging it
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
    std::string head = "POST /plaintext HTTP/1.1\r\nContent-Length: " + std::to_string(body) + "\r\n\r\n";
    BOOST_REQUIRE(zerg::test::send_all(fd.get(), head));
    std::string chunk(64 * 1024, 'b');
    std::size_t sent = 0;
    int send_error = 0;
    while (sent < body) {
        ssize_t n = ::send(fd.get(), chunk.data(), std::min(chunk.size(), body - sent), MSG_NOSIGNAL);
        if (n <= 0) {
            send_error = n < 0 ? errno : 0;
            break;
        }
        sent += static_cast<std::size_t>(n);
    }
    BOOST_TEST(sent == body, "the body's send failed after " << sent << " bytes: " << std::strerror(send_error));
    ::shutdown(fd.get(), SHUT_WR);
    auto got = read_responses(fd.get(), 1, true);
    BOOST_REQUIRE(got.list.size() == 1u);
    check_status(got.list[0], "HTTP/1.1 413 Content Too Large", true);
    BOOST_TEST(got.eof);
    BOOST_TEST(server.stop() == 0);
}

// The lingering is bounded by the read timeout from the request's first
// byte, and bytes trickled after the reply do not extend it: the server
// closes, and the client's next send meets a reset.
BOOST_AUTO_TEST_CASE(http_lingering_close_ends_at_the_read_timeout) {
    zerg::test::server_process server(program("http_plaintext"),
                                      {"--reactors", "1", "--max-body", "100", "--read-timeout-ms", "800"});
    auto fd = connect_nodelay(server.port());
    auto start = std::chrono::steady_clock::now();
    BOOST_REQUIRE(zerg::test::send_all(fd.get(), "POST /plaintext HTTP/1.1\r\nContent-Length: 1000\r\n\r\n"));
    auto got = read_responses(fd.get(), 1, true);  // the reply, then the FIN of SHUT_WR
    BOOST_REQUIRE(got.list.size() == 1u);
    check_status(got.list[0], "HTTP/1.1 413 Content Too Large", true);
    BOOST_TEST(got.eof);
    bool reset = false;
    while (!reset && std::chrono::steady_clock::now() - start < 15s) {
        reset = ::send(fd.get(), "b", 1, MSG_NOSIGNAL) < 0 && (errno == ECONNRESET || errno == EPIPE);
        ::poll(nullptr, 0, 50);
    }
    BOOST_TEST(reset, "the server still lingered 15 s after a request it refused (read timeout 800 ms)");
    BOOST_TEST(server.stop() == 0);
}

// A request with a body, then another, a byte at a time.
BOOST_AUTO_TEST_CASE(http_trickled_request_with_body) {
    http_server server;
    auto c = connect_nodelay(server.port());
    std::string two = "POST /plaintext HTTP/1.1\r\nContent-Length: 12\r\n\r\nhello\r\n\r\nGET" + plaintext;
    for (char ch : two) {
        BOOST_REQUIRE(zerg::test::send_all(c.get(), std::string_view(&ch, 1)));
        ::poll(nullptr, 0, 1);  // pacing: each byte its own receive
    }
    auto got = read_responses(c.get(), 2);
    BOOST_REQUIRE(got.list.size() == 2u);
    for (auto& r : got.list) check_plaintext(r);
    BOOST_TEST(got.rest.empty());
    c.reset();
    BOOST_TEST(server.process.stop() == 0);
}

BOOST_AUTO_TEST_CASE(http_other_paths_get_404) {
    http_server server;
    auto c = connect_nodelay(server.port());
    for (std::string target : {"/", "/other", "/plaintext/x", "/PLAINTEXT"}) {
        BOOST_REQUIRE(zerg::test::send_all(c.get(), "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
        auto got = read_responses(c.get(), 1);
        BOOST_REQUIRE(got.list.size() == 1u);
        check_status(got.list[0], "HTTP/1.1 404 Not Found", false);
    }
    // Still open, still serving.
    BOOST_REQUIRE(zerg::test::send_all(c.get(), plaintext));
    auto got = read_responses(c.get(), 1);
    BOOST_REQUIRE(got.list.size() == 1u);
    check_plaintext(got.list[0]);
    c.reset();
    BOOST_TEST(server.process.stop() == 0);
}

BOOST_AUTO_TEST_CASE(http_1_0_and_connection_close) {
    http_server server;
    {
        // HTTP/1.0 without keep-alive: answered, then closed.
        auto c = connect_nodelay(server.port());
        BOOST_REQUIRE(zerg::test::send_all(c.get(), "GET /plaintext HTTP/1.0\r\n\r\n"));
        auto got = read_responses(c.get(), 1, true);
        BOOST_REQUIRE(got.list.size() == 1u);
        check_plaintext(got.list[0], true);
        BOOST_TEST(got.eof, "an HTTP/1.0 connection without keep-alive stayed open");
    }
    {
        // HTTP/1.0 with keep-alive: stays open.
        auto c = connect_nodelay(server.port());
        std::string ka = "GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        BOOST_REQUIRE(zerg::test::send_all(c.get(), ka + ka));
        auto got = read_responses(c.get(), 2);
        BOOST_REQUIRE(got.list.size() == 2u);
        for (auto& r : got.list) check_plaintext(r);
        BOOST_TEST(!zerg::test::wait_for_events(c.get(), POLLIN, zerg::test::clock::now() + 100ms),
                   "a keep-alive HTTP/1.0 connection was closed");
    }
    {
        // HTTP/1.1 with Connection: close: the requests after it are not answered.
        auto c = connect_nodelay(server.port());
        BOOST_REQUIRE(zerg::test::send_all(c.get(), plaintext + "GET /plaintext HTTP/1.1\r\nConnection: close\r\n\r\n" + plaintext));
        auto got = read_responses(c.get(), 2, true);
        BOOST_REQUIRE(got.list.size() == 2u);
        check_plaintext(got.list[0]);
        check_plaintext(got.list[1], true);
        BOOST_TEST(got.eof);
        BOOST_TEST(got.rest.empty());
    }
    BOOST_TEST(server.process.stop() == 0);
}

BOOST_AUTO_TEST_CASE(curl_as_a_client) {
    if (skip_without("curl")) return;
    http_server server;
    std::string url = "http://127.0.0.1:" + std::to_string(server.port());
    auto r = run_command("timeout 20 curl -s -i --max-time 10 " + url + "/plaintext");
    BOOST_TEST(r.status == 0, r.output);
    BOOST_TEST(r.output.starts_with("HTTP/1.1 200 OK\r\n"), r.output);
    for (const char* line : {"\r\nServer: zerg\r\n", "\r\nContent-Type: text/plain\r\n", "\r\nContent-Length: 13\r\n", "\r\nDate: "})
        BOOST_TEST(r.output.find(line) != std::string::npos, "no '" << line << "' in: " << r.output);
    BOOST_TEST(r.output.ends_with("\r\n\r\nHello, World!"), r.output);
    http_response parsed;
    BOOST_REQUIRE(parse_response(r.output, parsed) == r.output.size());
    check_plaintext(parsed);
    // Two requests on one kept-alive connection.
    auto two = run_command("timeout 20 curl -s --max-time 10 " + url + "/plaintext " + url + "/plaintext");
    BOOST_TEST(two.status == 0, two.output);
    BOOST_TEST(two.output == "Hello, World!Hello, World!");
    // And a 404.
    auto missing = run_command("timeout 20 curl -s -o /dev/null -w '%{http_code}' --max-time 10 " + url + "/missing");
    BOOST_TEST(missing.status == 0, missing.output);
    BOOST_TEST(missing.output == "404");
    BOOST_TEST(server.process.stop() == 0);
}

// =============================================================================
// resp
// =============================================================================

BOOST_AUTO_TEST_CASE(redis_cli_as_a_client) {
    if (skip_without("redis-cli")) return;
    resp_server server;
    BOOST_TEST(server.cli("PING") == "PONG\n");
    BOOST_TEST(server.cli("SET greeting 'hello world'") == "OK\n");
    BOOST_TEST(server.cli("GET greeting") == "hello world\n");
    BOOST_TEST(server.cli("EXISTS greeting") == "1\n");
    BOOST_TEST(server.cli("EXISTS greeting nope greeting") == "2\n");
    BOOST_TEST(server.cli("INCR visits") == "1\n");
    BOOST_TEST(server.cli("INCR visits") == "2\n");
    BOOST_TEST(server.cli("GET visits") == "2\n");
    BOOST_TEST(server.cli("DEL greeting visits nope") == "2\n");
    BOOST_TEST(server.cli("EXISTS greeting") == "0\n");
    BOOST_TEST(server.cli("GET greeting") == "\n");  // nil, in redis-cli's raw output
    BOOST_TEST(server.cli("ECHO 'hi there'") == "hi there\n");
    BOOST_TEST(server.cli("SET word abc") == "OK\n");
    BOOST_TEST(server.cli("INCR word").starts_with("ERR value is not an integer or out of range"));
    BOOST_TEST(server.process.stop() == 0);
}

BOOST_AUTO_TEST_CASE(redis_benchmark_without_errors) {
    if (skip_without("redis-benchmark")) return;
    resp_server server;
    auto r = run_command("timeout 120 redis-benchmark -h 127.0.0.1 -p " + std::to_string(server.port()) +
                         " -q -n 20000 -P 16 -t ping,set,get,incr");
    BOOST_TEST_MESSAGE(r.output);
    BOOST_TEST(r.status == 0, r.output);
    // -q prints one line per test (progress lines are overwritten with \r).
    std::vector<std::string> lines;
    std::string line;
    for (char ch : r.output) {
        if (ch == '\r' || ch == '\n') {
            if (!line.empty()) lines.push_back(line);
            line.clear();
        } else {
            line += ch;
        }
    }
    if (!line.empty()) lines.push_back(line);
    for (const char* test : {"PING_INLINE: ", "PING_MBULK: ", "SET: ", "GET: ", "INCR: "}) {
        bool done = std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
            return l.starts_with(test) && l.find(" requests per second") != std::string::npos;
        });
        BOOST_TEST(done, "no result for " << test << " in: " << r.output);
    }
    for (auto& l : lines) {
        bool error = l.find("rror") != std::string::npos || l.find("ERR") != std::string::npos;
        BOOST_TEST(!error, "redis-benchmark: " << l);
    }
    // Every INCR was applied exactly once (redis-benchmark uses one key without -r).
    BOOST_TEST(server.cli("GET counter:__rand_int__") == "20000\n");
    BOOST_TEST(server.process.stop() == 0);
}

BOOST_AUTO_TEST_CASE(resp_raw_pipelining_split_and_protocol_error) {
    resp_server server;
    auto c = connect_nodelay(server.port());
    std::string ping = "*1\r\n$4\r\nPING\r\n";
    std::string sixteen;
    for (int i = 0; i < 16; ++i) sixteen += ping;
    BOOST_REQUIRE(zerg::test::send_all(c.get(), sixteen));
    std::string pongs;
    for (int i = 0; i < 16; ++i) pongs += "+PONG\r\n";
    BOOST_TEST(zerg::test::read_exact(c.get(), pongs.size()).bytes == pongs);
    // A command byte by byte.
    std::string set = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$11\r\nsplit value\r\n";
    for (char ch : set) {
        BOOST_REQUIRE(zerg::test::send_all(c.get(), std::string_view(&ch, 1)));
        ::poll(nullptr, 0, 1);  // pacing
    }
    BOOST_TEST(zerg::test::read_exact(c.get(), 5).bytes == "+OK\r\n");
    BOOST_REQUIRE(zerg::test::send_all(c.get(), "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"));
    BOOST_TEST(zerg::test::read_exact(c.get(), 18).bytes == "$11\r\nsplit value\r\n");
    // A protocol error: the reply says why, then the connection closes.
    BOOST_REQUIRE(zerg::test::send_all(c.get(), ping + "*1\r\n+PING\r\n" + ping));
    auto end = zerg::test::read_to_close(c.get(), 5000ms);
    BOOST_TEST((end.eof || end.error != 0), "the connection stayed open after a protocol error");
    BOOST_TEST(end.bytes == "+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n");
    c.reset();
    BOOST_TEST(server.process.stop() == 0);
}

// Every protocol error says why, and the reason is about this connection's
// input. (One reactor: both connections share the handler; each has its
// own parser.)
BOOST_AUTO_TEST_CASE(resp_protocol_error_reasons) {
    zerg::test::server_process server(program("resp"), {"--reactors", "1"});
    auto first = connect_nodelay(server.port());
    BOOST_REQUIRE(zerg::test::send_all(first.get(), "*1\r\n+PING\r\n"));
    auto one = zerg::test::read_to_close(first.get(), 5000ms);
    BOOST_TEST(one.bytes == "-ERR Protocol error: expected '$', got '+'\r\n");
    for (std::string bad : {"*x\r\n", "*1\r\n$abc\r\n"}) {
        BOOST_TEST_CONTEXT("'" << bad << "'") {
            auto c = connect_nodelay(server.port());
            BOOST_REQUIRE(zerg::test::send_all(c.get(), bad));
            auto got = zerg::test::read_to_close(c.get(), 5000ms);
            BOOST_TEST((got.eof || got.error != 0));
            BOOST_TEST(got.bytes.starts_with("-ERR Protocol error: "), got.bytes);
            BOOST_TEST(got.bytes != "-ERR Protocol error: \r\n", "no reason given");
            BOOST_TEST(got.bytes.find("expected '$'") == std::string::npos,
                       "another connection's reason: " << got.bytes);
        }
    }
    BOOST_TEST(server.stop() == 0);
}

// Lengths that overflow, are negative or are over the limits: -ERR, then
// close, with the payload never awaited; the commands before are answered;
// another connection keeps being served.
BOOST_AUTO_TEST_CASE(resp_garbage_and_oversized_get_err_and_close) {
    zerg::test::server_process server(program("resp"), {"--reactors", "2", "--max-bulk", "16", "--max-args", "4"});
    auto good = connect_nodelay(server.port());
    std::string ping = "*1\r\n$4\r\nPING\r\n";
    struct bad {
        std::string text;
        std::string reply;
    };
    const std::vector<bad> cases = {
        {"*1\r\n$18446744073709551619\r\nabc\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
        {"*18446744073709551617\r\n$4\r\nPING\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
        {"*1\r\n$-3\r\nabc\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
        {"*2\r\n$4\r\nECHO\r\n$17\r\n", "-ERR Protocol error: invalid bulk length\r\n"},  // no payload sent
        {"*5\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
        {"*1\n$4\r\nPING\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
        {"*1\r\n$4\r\nPINGxx", "-ERR Protocol error: bulk string not terminated by CRLF\r\n"},
    };
    std::string echo16 = "*2\r\n$4\r\nECHO\r\n$16\r\n" + std::string(16, 'e') + "\r\n";
    for (auto& c : cases) {
        BOOST_TEST_CONTEXT("'" << c.text << "'") {
            auto fd = connect_nodelay(server.port());
            BOOST_REQUIRE(zerg::test::send_all(fd.get(), ping + echo16 + c.text));
            auto end = zerg::test::read_to_close(fd.get(), 5000ms);
            BOOST_TEST((end.eof || end.error != 0), "the connection stayed open after a protocol error");
            BOOST_TEST(end.bytes == "+PONG\r\n$16\r\n" + std::string(16, 'e') + "\r\n" + c.reply);
            BOOST_REQUIRE(zerg::test::send_all(good.get(), ping));
            BOOST_TEST(zerg::test::read_exact(good.get(), 7).bytes == "+PONG\r\n");
        }
    }
    good.reset();
    BOOST_TEST(server.stop() == 0);
}

// Pipelined commands, a byte at a time.
BOOST_AUTO_TEST_CASE(resp_trickled_pipeline) {
    resp_server server;
    auto c = connect_nodelay(server.port());
    std::string commands = "*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$4\r\nslow\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nt\r\n";
    for (char ch : commands) {
        BOOST_REQUIRE(zerg::test::send_all(c.get(), std::string_view(&ch, 1)));
        ::poll(nullptr, 0, 1);  // pacing: each byte its own receive
    }
    std::string want = "+OK\r\n+PONG\r\n$4\r\nslow\r\n";
    BOOST_TEST(zerg::test::read_exact(c.get(), want.size()).bytes == want);
    c.reset();
    BOOST_TEST(server.process.stop() == 0);
}

// =============================================================================
// coro_echo
// =============================================================================

BOOST_AUTO_TEST_CASE(coro_echo_echoes) {
    zerg::test::server_process server(program("coro_echo"), {"--reactors", "2"});
    auto o = zerg::test::run_echo({server.port(), 16, 3000, 8});
    BOOST_TEST(o.error.empty(), o.error);
    BOOST_TEST(!o.timed_out);
    BOOST_TEST(o.mismatches == 0u);
    BOOST_TEST(o.bytes_verified == 16ull * 3000 * 8);
    auto big = zerg::test::run_echo({server.port(), 2, std::size_t{4} << 20, 1});
    BOOST_TEST(big.error.empty(), big.error);
    BOOST_TEST(big.mismatches == 0u);
    BOOST_TEST(big.bytes_verified == 2ull * (4 << 20));
    BOOST_TEST(server.stop() == 0);
}
