// HTTP/1.1 by the TechEmpower plaintext rules: GET /plaintext answers
// "Hello, World!" with Server, Date (refreshed once a second), Content-Type
// and Content-Length; keep-alive; pipelined requests answered one by one, in
// order; requests split across reads; 400 and close on a malformed request;
// 404 for other paths. GET /metrics answers the server's counters in the
// Prometheus text format (zerg/prometheus.hpp). A request over the limits
// gets 431 (head) or 413 (body) and close; see doc/api/parsers.md.
//   bin/http_plaintext --port 8080 --reactors 2 [--max-head 8k] [--max-headers 100] [--max-body 1m]
#include "http_request.hpp"

#include <zerg/prometheus.hpp>
#include <zerg/zerg.hpp>

#include "../common/limit_flags.hpp"
#include "../common/serve.hpp"

#include <cstdio>
#include <ctime>
#include <sstream>

class http_server;
using http_reactor = zerg::reactor<http_server>;  // every default policy

// Set by main() before the server starts, read by the reactors for /metrics.
const zerg::server<http_reactor>* metrics_source = nullptr;

class http_server {
public:
    // Each connection parses on from where its last receive stopped.
    struct connection_state {
        http::request_parser parser;
    };

    explicit http_server(http::limits limits = {}) : limits_(limits) {}

    void on_data(zerg::connection<http_server>& c, zerg::buffer_sequence& in) {
        refresh_date();
        auto out = c.writer();
        for (;;) {
            auto status = c.state().parser.parse(in, limits_);  // consumes each request it completes
            if (status == http::parse_status::incomplete) return;  // the rest comes later
            if (status != http::parse_status::complete) {
                respond(out, http::status_line(status), "", false);
                c.lingering_close();  // the client may still be sending the body: let it, so it reads the reply
                return;
            }
            const http::request& req = c.state().parser.get();
            if (req.target == "/plaintext")
                respond(out, "200 OK", "Hello, World!", req.keep_alive);
            else if (req.target == "/metrics" && metrics_source)
                respond_metrics(out, req.keep_alive);
            else
                respond(out, "404 Not Found", "", req.keep_alive);
            if (!req.keep_alive) {
                c.close();
                return;
            }
        }
    }

private:
    // A scrape is rare next to /plaintext: a fresh string per scrape is fine.
    void respond_metrics(zerg::buffer_writer<zerg::connection<http_server>>& out, bool keep_alive) {
        std::ostringstream body;
        zerg::write_prometheus(*metrics_source, body);
        respond(out, "200 OK", body.str(), keep_alive, "text/plain; version=0.0.4; charset=utf-8");
    }

    void respond(zerg::buffer_writer<zerg::connection<http_server>>& out, std::string_view status, std::string_view body,
                 bool keep_alive, std::string_view content_type = "text/plain") {
        out.write("HTTP/1.1 ");
        out.write(status);
        out.write("\r\nServer: zerg\r\nDate: ");
        out.write(std::string_view(date_, date_length_));
        if (!body.empty()) {
            out.write("\r\nContent-Type: ");
            out.write(content_type);
        }
        out.write("\r\n");
        if (!keep_alive) out.write("Connection: close\r\n");
        out.write("Content-Length: ");
        out.append(body.size());
        out.write("\r\n\r\n");
        out.write(body);
    }

    // The Date header changes once a second; formatting it per request would waste time.
    void refresh_date() {
        std::time_t now = std::time(nullptr);
        if (now == date_time_) return;
        date_time_ = now;
        std::tm tm{};
        ::gmtime_r(&now, &tm);
        date_length_ = std::strftime(date_, sizeof date_, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    }

    http::limits limits_;
    char date_[64] = {};
    std::size_t date_length_ = 0;
    std::time_t date_time_ = 0;
};

int main(int argc, char** argv) {
    http::limits limits;
    if (!example::take_size_flags(argc, argv, {{"--max-head", &limits.max_head},
                                               {"--max-headers", &limits.max_headers},
                                               {"--max-body", &limits.max_body}}))
        return 2;
    return example::serve<http_reactor>(argc, argv, http_server(limits),
                                        [](const zerg::server<http_reactor>& s) { metrics_source = &s; });
}
