// A RESP2 request parser over zerg::buffer_sequence: arrays of bulk strings
// (what redis-cli and redis-benchmark send) and inline commands (what a
// person types into telnet). Arguments are copied into a small arena, so a
// command may straddle any number of receive buffers.
#pragma once

#include <zerg/buffer_sequence.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace resp {

enum class parse_status { incomplete, complete, malformed };

struct command {
    std::vector<std::string_view> args;  // views into `arena`
    std::string arena;
    std::size_t length = 0;              // bytes to consume
    std::string error;                   // why it is malformed
};

inline constexpr std::size_t max_bulk = 512 * 1024 * 1024;
inline constexpr std::size_t max_args = 1024 * 1024;
inline constexpr std::size_t max_inline = 64 * 1024;

namespace detail {
// Reads a decimal line ("<digits>\r\n", optionally negative) at `at`.
inline parse_status read_number(const zerg::buffer_sequence& in, std::size_t& at, long long& value, std::string& error) {
    auto eol = in.find(std::string_view("\r\n"), at);
    if (!eol) {
        if (in.size() - at <= 32) return parse_status::incomplete;
        error = "length line too long";
        return parse_status::malformed;
    }
    if (*eol == at || *eol - at > 20) {
        error = *eol == at ? "empty length" : "length too long";
        return parse_status::malformed;
    }
    bool negative = false;
    value = 0;
    for (std::size_t i = at; i < *eol; ++i) {
        char c = static_cast<char>(in[i]);
        if (i == at && c == '-') {
            negative = true;
            continue;
        }
        if (c < '0' || c > '9') {
            error = "invalid length";
            return parse_status::malformed;
        }
        value = value * 10 + (c - '0');
    }
    if (negative) value = -value;
    at = *eol + 2;
    return parse_status::complete;
}
}  // namespace detail

inline parse_status parse(const zerg::buffer_sequence& in, command& out) {
    out.args.clear();
    out.arena.clear();
    out.error.clear();
    if (in.empty()) return parse_status::incomplete;
    if (static_cast<char>(in[0]) != '*') {
        // Inline command: words separated by spaces, ended by \n.
        auto eol = in.find(std::byte{'\n'});
        if (!eol) return in.size() > max_inline ? parse_status::malformed : parse_status::incomplete;
        out.arena.resize(*eol);
        in.copy_to(std::as_writable_bytes(std::span(out.arena.data(), out.arena.size())));
        std::string_view line(out.arena);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::size_t i = 0;
        while (i < line.size()) {
            while (i < line.size() && line[i] == ' ') ++i;
            std::size_t start = i;
            while (i < line.size() && line[i] != ' ') ++i;
            if (i > start) out.args.push_back(line.substr(start, i - start));
        }
        out.length = *eol + 1;
        return parse_status::complete;
    }
    std::size_t at = 1;
    long long count = 0;
    if (auto s = detail::read_number(in, at, count, out.error); s != parse_status::complete) return s;
    if (count < 0 || static_cast<std::size_t>(count) > max_args) {
        out.error = "invalid multibulk length";
        return parse_status::malformed;
    }
    // First pass: find the extent; second: copy the arguments in one arena.
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    spans.reserve(static_cast<std::size_t>(count));
    std::size_t total = 0;
    for (long long k = 0; k < count; ++k) {
        if (at >= in.size()) return parse_status::incomplete;
        if (static_cast<char>(in[at]) != '$') {
            out.error = "expected '$', got '" + std::string(1, static_cast<char>(in[at])) + "'";
            return parse_status::malformed;
        }
        ++at;
        long long len = 0;
        if (auto s = detail::read_number(in, at, len, out.error); s != parse_status::complete) return s;
        if (len < 0 || static_cast<std::size_t>(len) > max_bulk) {
            out.error = "invalid bulk length";
            return parse_status::malformed;
        }
        if (at + static_cast<std::size_t>(len) + 2 > in.size()) return parse_status::incomplete;
        if (!in.matches(at + static_cast<std::size_t>(len), std::as_bytes(std::span("\r\n", 2)))) {
            out.error = "bulk string not terminated by CRLF";
            return parse_status::malformed;
        }
        spans.emplace_back(at, static_cast<std::size_t>(len));
        total += static_cast<std::size_t>(len);
        at += static_cast<std::size_t>(len) + 2;
    }
    out.arena.resize(total);
    std::size_t pos = 0;
    for (auto [offset, len] : spans) {
        in.copy_to(std::as_writable_bytes(std::span(out.arena.data() + pos, len)), offset);
        pos += len;
    }
    pos = 0;
    for (auto [offset, len] : spans) {
        out.args.push_back(std::string_view(out.arena).substr(pos, len));
        pos += len;
    }
    out.length = at;
    return parse_status::complete;
}

}  // namespace resp
