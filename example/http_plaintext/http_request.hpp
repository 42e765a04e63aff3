// A small HTTP/1.1 request parser over zerg::buffer_sequence: enough for
// the TechEmpower plaintext rules (request line, headers, keep-alive,
// Content-Length bodies). It reads what has arrived and says whether a whole
// request is there, how long it is, or that the bytes are not HTTP.
#pragma once

#include <zerg/buffer_sequence.hpp>

#include <array>
#include <cstddef>
#include <string_view>

namespace http {

enum class parse_status { incomplete, complete, malformed };

struct request {
    std::string_view method, target;
    int minor_version = 1;
    bool keep_alive = true;
    std::size_t length = 0;  // bytes of head and body, to consume
};

// Heads larger than this are refused (431 in spirit, 400 here).
inline constexpr std::size_t max_head = 8192;

namespace detail {
inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
    return true;
}
inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}
inline bool is_token_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
}  // namespace detail

// Parses the request at the front of `in`. The views in `out` point into
// `scratch` (which holds a copy of the head) and live as long as it does.
inline parse_status parse(const zerg::buffer_sequence& in, request& out, std::array<char, max_head>& scratch) {
    auto end = in.find(std::string_view("\r\n\r\n"));
    if (!end) return in.size() >= max_head ? parse_status::malformed : parse_status::incomplete;
    std::size_t head_size = *end + 4;
    if (head_size > max_head) return parse_status::malformed;
    in.copy_to(std::as_writable_bytes(std::span(scratch.data(), head_size)));
    std::string_view head(scratch.data(), head_size - 2);  // keeps the last header's CRLF

    // Request line: METHOD SP TARGET SP HTTP/1.x CRLF
    auto line_end = head.find("\r\n");
    std::string_view line = head.substr(0, line_end);
    auto sp1 = line.find(' ');
    auto sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp1 == 0 || sp2 == sp1) return parse_status::malformed;
    out.method = line.substr(0, sp1);
    for (char c : out.method)
        if (!detail::is_token_char(c)) return parse_status::malformed;
    out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (out.target.empty() || out.target.find(' ') != std::string_view::npos) return parse_status::malformed;
    std::string_view version = line.substr(sp2 + 1);
    if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || (version[7] != '0' && version[7] != '1'))
        return parse_status::malformed;
    out.minor_version = version[7] - '0';
    out.keep_alive = out.minor_version == 1;

    // Headers: NAME ":" VALUE CRLF
    std::size_t content_length = 0;
    std::size_t at = line_end + 2;
    while (at < head.size()) {
        auto eol = head.find("\r\n", at);
        std::string_view field = head.substr(at, eol - at);
        at = eol + 2;
        auto colon = field.find(':');
        if (colon == std::string_view::npos || colon == 0) return parse_status::malformed;
        std::string_view name = field.substr(0, colon);
        for (char c : name)
            if (!detail::is_token_char(c)) return parse_status::malformed;
        std::string_view value = detail::trim(field.substr(colon + 1));
        if (detail::iequals(name, "content-length")) {
            if (value.empty() || value.size() > 9) return parse_status::malformed;
            content_length = 0;
            for (char c : value) {
                if (c < '0' || c > '9') return parse_status::malformed;
                content_length = content_length * 10 + static_cast<std::size_t>(c - '0');
            }
        } else if (detail::iequals(name, "connection")) {
            if (detail::iequals(value, "close")) out.keep_alive = false;
            if (detail::iequals(value, "keep-alive")) out.keep_alive = true;
        } else if (detail::iequals(name, "transfer-encoding")) {
            return parse_status::malformed;  // chunked bodies are not for a plaintext server
        }
    }
    out.length = head_size + content_length;
    return in.size() >= out.length ? parse_status::complete : parse_status::incomplete;
}

}  // namespace http
