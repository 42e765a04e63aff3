// A Redis-protocol subset: PING, ECHO, SET, GET, DEL, EXISTS, INCR, with
// pipelining. redis-cli and redis-benchmark (Debian: redis-tools) drive it.
// A protocol error (or a bulk or array over the limits, see
// doc/api/parsers.md) gets "-ERR Protocol error: ..." and close, as Redis does.
//   bin/resp --port 6380 --reactors 2 [--max-bulk 512k] [--max-args 1048576] [--max-inline 64k]
#include "resp_command.hpp"

#include <zerg/zerg.hpp>

#include "../common/limit_flags.hpp"
#include "../common/serve.hpp"

#include <charconv>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

// One store for all reactors: a connection may land on any of them.
struct store {
    std::mutex mutex;
    std::unordered_map<std::string, std::string> values;
};

class resp_server {
public:
    using connection = zerg::connection<resp_server>;

    // Each connection parses on from where its last receive stopped.
    struct connection_state {
        resp::command_parser parser;
    };

    explicit resp_server(resp::limits limits = {}) : store_(std::make_shared<store>()), limits_(limits) {}

    void on_data(connection& c, zerg::buffer_sequence& in) {
        auto out = c.writer();
        auto& parser = c.state().parser;
        for (;;) {
            auto status = parser.parse(in, limits_);  // consumes each command it completes
            if (status == resp::parse_status::incomplete) return;
            if (status == resp::parse_status::malformed) {
                error(out, "ERR Protocol error: " + std::string(parser.error()));
                c.lingering_close();  // the rest of its pipeline still arriving would make close() reset the reply
                return;
            }
            if (!parser.args().empty()) execute(out, parser.args());
        }
    }

private:
    using writer = zerg::buffer_writer<connection>;

    static bool is(std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
        return true;
    }
    static void simple(writer& out, std::string_view s) {
        out.write("+");
        out.write(s);
        out.write("\r\n");
    }
    static void error(writer& out, std::string_view s) {
        out.write("-");
        out.write(s);
        out.write("\r\n");
    }
    static void integer(writer& out, long long v) {
        out.write(":");
        out.append(v);
        out.write("\r\n");
    }
    static void bulk(writer& out, std::string_view s) {
        out.write("$");
        out.append(s.size());
        out.write("\r\n");
        out.write(s);
        out.write("\r\n");
    }
    static void arity(writer& out, std::string_view name) {
        error(out, "ERR wrong number of arguments for '" + std::string(name) + "' command");
    }

    void execute(writer& out, const std::vector<std::string_view>& a) {
        std::string_view cmd = a[0];
        std::size_t n = a.size();
        if (is(cmd, "PING")) {
            if (n == 1) simple(out, "PONG");
            else if (n == 2) bulk(out, a[1]);
            else arity(out, "ping");
        } else if (is(cmd, "ECHO")) {
            if (n == 2) bulk(out, a[1]);
            else arity(out, "echo");
        } else if (is(cmd, "SET")) {
            if (n != 3) return arity(out, "set");
            std::lock_guard lock(store_->mutex);
            store_->values.insert_or_assign(std::string(a[1]), std::string(a[2]));
            simple(out, "OK");
        } else if (is(cmd, "GET")) {
            if (n != 2) return arity(out, "get");
            std::lock_guard lock(store_->mutex);
            auto it = store_->values.find(std::string(a[1]));
            if (it == store_->values.end()) out.write("$-1\r\n");
            else bulk(out, it->second);
        } else if (is(cmd, "DEL") || is(cmd, "EXISTS")) {
            if (n < 2) return arity(out, is(cmd, "DEL") ? "del" : "exists");
            long long count = 0;
            std::lock_guard lock(store_->mutex);
            for (std::size_t i = 1; i < n; ++i) {
                std::string key(a[i]);
                count += is(cmd, "DEL") ? static_cast<long long>(store_->values.erase(key)) : store_->values.count(key) ? 1 : 0;
            }
            integer(out, count);
        } else if (is(cmd, "INCR")) {
            if (n != 2) return arity(out, "incr");
            std::lock_guard lock(store_->mutex);
            std::string& v = store_->values[std::string(a[1])];
            long long value = 0;
            if (!v.empty()) {
                auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
                if (ec != std::errc() || end != v.data() + v.size())
                    return error(out, "ERR value is not an integer or out of range");
            }
            v = std::to_string(++value);
            integer(out, value);
        } else if (is(cmd, "CONFIG") || is(cmd, "COMMAND")) {
            out.write("*0\r\n");  // redis-benchmark and redis-cli ask at start; nothing to report
        } else {
            error(out, "ERR unknown command '" + std::string(cmd) + "'");
        }
    }

    std::shared_ptr<store> store_;
    resp::limits limits_;
};

using resp_reactor = zerg::reactor<resp_server>;

int main(int argc, char** argv) {
    resp::limits limits;
    if (!example::take_size_flags(argc, argv, {{"--max-bulk", &limits.max_bulk},
                                               {"--max-args", &limits.max_args},
                                               {"--max-inline", &limits.max_inline}}))
        return 2;
    return example::serve<resp_reactor>(argc, argv, resp_server(limits));
}
