// A Redis-protocol subset: PING, ECHO, SET, GET, DEL, EXISTS, INCR, with
// pipelining. redis-cli and redis-benchmark (Debian: redis-tools) drive it.
//   bin/resp --port 6380 --reactors 2
#include "resp_command.hpp"

#include <zerg/zerg.hpp>

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

    resp_server() : store_(std::make_shared<store>()) {}

    void on_data(connection& c, zerg::buffer_sequence& in) {
        auto out = c.writer();
        while (!in.empty()) {
            auto status = resp::parse(in, command_);
            if (status == resp::parse_status::incomplete) return;
            if (status == resp::parse_status::malformed) {
                error(out, "ERR Protocol error: " + command_.error);
                c.close();
                return;
            }
            in.consume(command_.length);
            if (!command_.args.empty()) execute(out, command_.args);
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
    resp::command command_;
};

using resp_reactor = zerg::reactor<resp_server>;

int main(int argc, char** argv) { return example::serve<resp_reactor>(argc, argv); }
