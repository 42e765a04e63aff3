// An incremental HTTP/1.1 request parser over zerg::buffer_sequence: enough
// for the TechEmpower plaintext rules (request line, headers, keep-alive,
// Content-Length bodies), hardened for a public server.
//
// One parser per connection. Each call picks up where the last one stopped:
// the head is searched line by line and every byte is looked at once, so a
// request trickled in a byte at a time costs the same as one that came
// whole. The head stays in the sequence until it is complete (so the
// reactor's read deadline keeps running for a slow head), then it is
// consumed; the body is consumed, unread, as it arrives (this server answers
// without it), so a body never sits in memory.
//
// Refusals, each sticky (the connection is to be answered and closed):
//   bad_request     malformed framing: request line, header syntax, bare LF
//                   or CR, control bytes, an invalid or duplicate
//                   Content-Length, any Transfer-Encoding (RFC 9112 §6.3)
//   head_too_large  more than limits::max_head bytes or limits::max_headers
//                   header lines before the blank line
//   body_too_large  Content-Length above limits::max_body (or one that does
//                   not fit in size_t), refused before any body byte is read
#pragma once

#include <zerg/buffer_sequence.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace http {

enum class parse_status { incomplete, complete, bad_request, head_too_large, body_too_large };

struct limits {
    std::size_t max_head = 8192;        // request line, headers and the blank line, in bytes
    std::size_t max_headers = 100;      // header lines
    std::size_t max_body = 1024 * 1024; // Content-Length
};

struct request {
    std::string_view method, target;  // views into the parser, valid until its next parse()
    int minor_version = 1;
    bool keep_alive = true;
    std::size_t content_length = 0;
    std::size_t length = 0;  // bytes of head and body (all consumed by the parser)
};

// The status line that answers a refusal (and "200 OK" for the rest).
inline std::string_view status_line(parse_status s) noexcept {
    switch (s) {
        case parse_status::bad_request: return "400 Bad Request";
        case parse_status::head_too_large: return "431 Request Header Fields Too Large";
        case parse_status::body_too_large: return "413 Content Too Large";
        default: return "200 OK";
    }
}

namespace detail {
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}
inline std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}
inline bool is_token_char(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos);
}
// Field values: visible bytes, space, tab and obs-text; no other control byte (CR, NUL, DEL).
inline bool is_value_char(char c) noexcept {
    auto u = static_cast<unsigned char>(c);
    return u == '\t' || (u >= 0x20 && u != 0x7f);
}
// Request targets: visible bytes and obs-text; no space or control byte.
inline bool is_target_char(char c) noexcept {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u != 0x7f;
}
}  // namespace detail

// Thread-safety: one connection's, on its reactor's thread.
class request_parser {
public:
    // Parses on from where the last call stopped. `in` must be the same
    // sequence each time, and nothing but this parser consumes from it
    // while a request is in progress. `complete`: request() is the request,
    // its head and body are consumed; the next call starts the next one.
    parse_status parse(zerg::buffer_sequence& in, const limits& limits = {}) {
        if (phase_ == phase::failed) return failed_;
        if (phase_ == phase::done) reset();
        if (phase_ == phase::head) {
            if (auto s = parse_head(in, limits); s != parse_status::complete) return s;
        }
        std::size_t n = body_left_ < in.size() ? body_left_ : in.size();
        in.consume(n);
        body_left_ -= n;
        if (body_left_ > 0) return parse_status::incomplete;
        phase_ = phase::done;
        return parse_status::complete;
    }

    const request& get() const noexcept { return req_; }
    // Why the request was refused (empty otherwise).
    std::string_view error() const noexcept { return error_; }

private:
    enum class phase { head, body, done, failed };

    parse_status fail(parse_status s, const char* why) noexcept {
        phase_ = phase::failed;
        failed_ = s;
        error_ = why;
        return s;
    }

    void reset() noexcept {
        phase_ = phase::head;
        scanned_ = line_start_ = headers_ = body_left_ = 0;
        have_length_ = false;
        req_ = {};
        // A head is at most max_head bytes: keeping that capacity is cheap.
        start_line_.clear();
    }

    parse_status parse_head(zerg::buffer_sequence& in, const limits& limits) {
        for (;;) {
            // Only bytes not searched before are searched: scanned_ only grows.
            std::optional<std::size_t> lf;
            if (scanned_ < in.size()) lf = in.find(std::byte{'\n'}, scanned_);
            if (!lf) {
                // The head needs at least one more byte, so this many already is too many.
                if (in.size() >= limits.max_head) return fail(parse_status::head_too_large, "request head too large");
                scanned_ = in.size();
                return parse_status::incomplete;
            }
            if (*lf + 1 > limits.max_head) return fail(parse_status::head_too_large, "request head too large");
            if (*lf == line_start_ || in[*lf - 1] != std::byte{'\r'}) return fail(parse_status::bad_request, "line not ended by CRLF");
            std::size_t length = *lf - 1 - line_start_;
            line_.resize(length);
            in.copy_to(std::as_writable_bytes(std::span(line_.data(), length)), line_start_);
            line_start_ = scanned_ = *lf + 1;
            if (length == 0) {
                if (start_line_.empty()) return fail(parse_status::bad_request, "empty request line");
                break;  // the blank line: the head is complete
            }
            parse_status s = start_line_.empty() ? request_line(line_) : header(line_, limits);
            if (s != parse_status::complete) return s;
        }
        std::size_t head = line_start_;
        in.consume(head);
        std::string_view line(start_line_);
        req_.method = line.substr(0, method_size_);
        req_.target = line.substr(method_size_ + 1, target_size_);
        req_.length = head + req_.content_length;
        body_left_ = req_.content_length;
        phase_ = phase::body;
        return parse_status::complete;
    }

    // METHOD SP TARGET SP HTTP/1.x
    parse_status request_line(std::string_view line) {
        auto sp1 = line.find(' ');
        if (sp1 == std::string_view::npos || sp1 == 0) return fail(parse_status::bad_request, "malformed request line");
        auto sp2 = line.find(' ', sp1 + 1);
        if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return fail(parse_status::bad_request, "malformed request line");
        for (char c : line.substr(0, sp1))
            if (!detail::is_token_char(c)) return fail(parse_status::bad_request, "invalid method");
        for (char c : line.substr(sp1 + 1, sp2 - sp1 - 1))
            if (!detail::is_target_char(c)) return fail(parse_status::bad_request, "invalid request target");
        std::string_view version = line.substr(sp2 + 1);
        if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || (version[7] != '0' && version[7] != '1'))
            return fail(parse_status::bad_request, "unsupported HTTP version");
        req_.minor_version = version[7] - '0';
        req_.keep_alive = req_.minor_version == 1;
        start_line_.assign(line);
        method_size_ = sp1;
        target_size_ = sp2 - sp1 - 1;
        return parse_status::complete;
    }

    // NAME ":" OWS VALUE OWS
    parse_status header(std::string_view field, const limits& limits) {
        if (++headers_ > limits.max_headers) return fail(parse_status::head_too_large, "too many header fields");
        auto colon = field.find(':');
        // No space before the colon, no obs-fold (a line starting with white space): RFC 9112 §5.
        if (colon == std::string_view::npos || colon == 0) return fail(parse_status::bad_request, "malformed header field");
        std::string_view name = field.substr(0, colon);
        for (char c : name)
            if (!detail::is_token_char(c)) return fail(parse_status::bad_request, "malformed header field");
        std::string_view value = field.substr(colon + 1);
        for (char c : value)
            if (!detail::is_value_char(c)) return fail(parse_status::bad_request, "control character in a header field");
        value = detail::trim(value);
        if (detail::iequals(name, "content-length")) {
            // Two of them, even equal, are refused: the framing must be unambiguous.
            if (have_length_) return fail(parse_status::bad_request, "more than one Content-Length");
            have_length_ = true;
            if (value.empty()) return fail(parse_status::bad_request, "invalid Content-Length");
            std::size_t n = 0;
            bool over = false;
            for (char c : value) {
                if (c < '0' || c > '9') return fail(parse_status::bad_request, "invalid Content-Length");
                auto d = static_cast<std::size_t>(c - '0');
                if (n > (std::numeric_limits<std::size_t>::max() - d) / 10) over = true;
                else n = n * 10 + d;
            }
            if (over || n > limits.max_body) return fail(parse_status::body_too_large, "body larger than the limit");
            req_.content_length = n;
        } else if (detail::iequals(name, "transfer-encoding")) {
            return fail(parse_status::bad_request, "Transfer-Encoding not supported");
        } else if (detail::iequals(name, "connection")) {
            // A comma-separated list of options.
            while (!value.empty()) {
                auto comma = value.find(',');
                std::string_view option = detail::trim(value.substr(0, comma));
                if (detail::iequals(option, "close")) req_.keep_alive = false;
                else if (detail::iequals(option, "keep-alive")) req_.keep_alive = true;
                value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
            }
        }
        return parse_status::complete;
    }

    phase phase_ = phase::head;
    parse_status failed_ = parse_status::bad_request;
    const char* error_ = "";
    std::size_t scanned_ = 0;     // bytes before this offset hold no line end yet to be handled
    std::size_t line_start_ = 0;  // offset of the first line not yet parsed
    std::size_t headers_ = 0;
    std::size_t body_left_ = 0;
    bool have_length_ = false;
    std::size_t method_size_ = 0, target_size_ = 0;
    std::string start_line_;  // the request line: req_'s views point here
    std::string line_;        // the line being parsed
    request req_;
};

}  // namespace http
