// The hand-written liburing HTTP loop that zerg-bench compares
// bin/http_plaintext against must answer correctly, or the comparison means
// nothing: pipelined requests answered in order, heads split across
// receives, the whole answer as the benchmark's client checks it.
#define BOOST_TEST_MODULE http_baseline
#include <boost/test/unit_test.hpp>

#include "../../example/bench/baseline_liburing_http.hpp"
#include "../../example/bench/load.hpp"

#include <support/sockets.hpp>

#include <poll.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace {

void send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t w = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        BOOST_REQUIRE(w > 0);
        bytes.remove_prefix(static_cast<std::size_t>(w));
    }
}

// Reads until `responses` complete answers arrived, EOF, or 5 s; returns
// the status lines in arrival order and whether EOF was seen.
struct reply {
    std::vector<std::string> status;
    std::vector<bool> plaintext_ok;  // the full 200 answer, as bench::http_response checks it
    bool eof = false;
};

reply read_responses(int fd, std::size_t responses) {
    reply out;
    std::string in;
    char buffer[65536];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (out.status.size() < responses && std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) != 1) continue;
        ssize_t r = ::recv(fd, buffer, sizeof buffer, 0);
        if (r <= 0) {
            out.eof = true;
            break;
        }
        in.append(buffer, static_cast<std::size_t>(r));
        for (;;) {
            auto end = in.find("\r\n\r\n");
            if (end == std::string::npos) break;
            auto length_at = in.find("Content-Length: ");
            std::size_t body = length_at < end ? std::stoul(in.substr(length_at + 16)) : 0;
            if (in.size() < end + 4 + body) break;
            bool ok = false;
            bench::http_response(in, ok);
            out.status.push_back(in.substr(0, in.find("\r\n")));
            out.plaintext_ok.push_back(ok);
            in.erase(0, end + 4 + body);
        }
    }
    return out;
}

bool sees_eof(int fd) {
    char buffer[4096];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) != 1) continue;
        ssize_t r = ::recv(fd, buffer, sizeof buffer, 0);
        if (r <= 0) return true;
    }
    return false;
}

const std::string get_plaintext = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const std::string get_other = "GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

}  // namespace

BOOST_AUTO_TEST_CASE(pipelined_requests_are_answered_in_order) {
    baseline::liburing_http_server s("127.0.0.1", 0, 1);
    s.start();
    auto c = zerg::test::connect_loopback(s.port());
    // Three requests in one write, then one split in three pieces.
    send_all(c.get(), get_plaintext + get_other + get_plaintext);
    auto first = read_responses(c.get(), 3);
    BOOST_TEST_REQUIRE(first.status.size() == 3u);
    BOOST_TEST(first.status[0] == "HTTP/1.1 200 OK");
    BOOST_TEST(first.status[1] == "HTTP/1.1 404 Not Found");
    BOOST_TEST(first.status[2] == "HTTP/1.1 200 OK");
    BOOST_TEST(first.plaintext_ok[0]);
    BOOST_TEST(!first.plaintext_ok[1]);
    BOOST_TEST(first.plaintext_ok[2]);
    for (std::size_t cut : {std::size_t{5}, std::size_t{30}}) {
        send_all(c.get(), get_other.substr(0, cut));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a receive of its own
    }
    send_all(c.get(), get_other.substr(30) + get_plaintext.substr(0, 10));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    send_all(c.get(), get_plaintext.substr(10));
    auto split = read_responses(c.get(), 2);
    BOOST_TEST_REQUIRE(split.status.size() == 2u);
    BOOST_TEST(split.status[0] == "HTTP/1.1 404 Not Found");
    BOOST_TEST(split.status[1] == "HTTP/1.1 200 OK");
    BOOST_TEST(split.plaintext_ok[1]);
    s.stop();
}

BOOST_AUTO_TEST_CASE(a_deep_pipeline_gets_every_answer_then_eof) {
    baseline::liburing_http_server s("127.0.0.1", 0, 1);
    s.start();
    auto c = zerg::test::connect_loopback(s.port());
    // 2,000 requests (about 90 KiB, several receives), every tenth to another path.
    std::string all;
    for (int i = 0; i < 2000; ++i) all += i % 10 == 9 ? get_other : get_plaintext;
    send_all(c.get(), all);
    ::shutdown(c.get(), SHUT_WR);  // answered first, then closed
    auto r = read_responses(c.get(), 2000);
    BOOST_TEST_REQUIRE(r.status.size() == 2000u);
    std::size_t wrong = 0;
    for (int i = 0; i < 2000; ++i) {
        bool other = i % 10 == 9;
        wrong += r.status[static_cast<std::size_t>(i)] != (other ? "HTTP/1.1 404 Not Found" : "HTTP/1.1 200 OK");
        wrong += r.plaintext_ok[static_cast<std::size_t>(i)] == other;
    }
    BOOST_TEST(wrong == 0u);
    BOOST_TEST(sees_eof(c.get()));
    s.stop();
}

BOOST_AUTO_TEST_CASE(the_benchmark_client_verifies_it) {
    baseline::liburing_http_server s("127.0.0.1", 0, 2);
    s.start();
    bench::load_plan plan{s.port(), 8, 0, 16, std::chrono::milliseconds(0), 5000, bench::protocol::http};
    auto r = bench::run_load(plan);
    BOOST_TEST(r.failure.empty(), r.failure);
    BOOST_TEST(r.errors == 0u);
    BOOST_TEST(r.messages == 5000u);
    s.stop();
}

BOOST_AUTO_TEST_CASE(an_oversized_head_is_refused_and_closed) {
    baseline::liburing_http_server s("127.0.0.1", 0, 1);
    s.start();
    auto c = zerg::test::connect_loopback(s.port());
    send_all(c.get(), "GET /plaintext HTTP/1.1\r\nX: " + std::string(10000, 'a'));
    auto r = read_responses(c.get(), 1);
    BOOST_TEST_REQUIRE(r.status.size() == 1u);
    BOOST_TEST(r.status[0] == "HTTP/1.1 400 Bad Request");
    BOOST_TEST(sees_eof(c.get()));
    // The server goes on serving others.
    auto d = zerg::test::connect_loopback(s.port());
    send_all(d.get(), get_plaintext);
    auto ok = read_responses(d.get(), 1);
    BOOST_TEST_REQUIRE(ok.status.size() == 1u);
    BOOST_TEST(ok.plaintext_ok[0]);
    s.stop();
}
