// An incremental RESP2 request parser over zerg::buffer_sequence: arrays of
// bulk strings (what redis-cli and redis-benchmark send) and inline commands
// (what a person types into telnet).
//
// One parser per connection. Each call picks up where the last one stopped
// (the array header, the arguments already framed, the line being
// searched), so the work is proportional to the new bytes: a command of a
// million arguments trickled in costs the same as one that came whole. A
// command stays in the sequence until it is complete, then its arguments
// are copied into one arena and the command is consumed.
//
// Numbers are checked as they are read: an array count above
// limits::max_args or a bulk length above limits::max_bulk (or one that
// does not fit in 64 bits, or is negative) is a protocol error before any
// of the payload is read, as Redis's proto-max-bulk-len does. Every error
// is sticky and has a reason, which the server sends back as
// "-ERR Protocol error: <reason>" before it closes the connection.
#pragma once

#include <zerg/buffer_sequence.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace resp {

enum class parse_status { incomplete, complete, malformed };

struct limits {
    std::size_t max_bulk = 512 * 1024;   // bytes of one bulk string
    std::size_t max_args = 1024 * 1024;  // elements of one array (Redis's own limit)
    std::size_t max_inline = 64 * 1024;  // bytes of an inline command line (Redis's own limit)
};

// Thread-safety: one connection's, on its reactor's thread.
class command_parser {
public:
    // Parses on from where the last call stopped. `in` must be the same
    // sequence each time, and nothing but this parser consumes from it
    // while a command is in progress. `complete`: args() are the command's
    // arguments (none for an empty line or "*0"), its bytes are consumed;
    // the next call starts the next command.
    parse_status parse(zerg::buffer_sequence& in, const limits& limits = {}) {
        if (phase_ == phase::failed) return parse_status::malformed;
        if (phase_ == phase::done) reset();
        for (;;) {
            switch (phase_) {
                case phase::start:
                    if (in.empty()) return parse_status::incomplete;
                    if (in[0] != std::byte{'*'}) {
                        phase_ = phase::inline_line;
                        break;
                    }
                    at_ = scanned_ = 1;
                    phase_ = phase::count;
                    break;
                case phase::inline_line: return parse_inline(in, limits);
                case phase::count: {
                    std::size_t n = 0;
                    if (auto s = read_number(in, limits.max_args, n, "invalid multibulk length"); s != parse_status::complete)
                        return s;
                    count_ = n;
                    phase_ = count_ == 0 ? phase::done : phase::bulk_header;
                    if (phase_ == phase::done) return finish(in);
                    break;
                }
                case phase::bulk_header: {
                    if (at_ >= in.size()) return parse_status::incomplete;
                    if (char c = static_cast<char>(in[at_]); c != '$')
                        return fail(std::string("expected '$', got '") + c + "'");
                    ++at_;
                    scanned_ = at_;
                    phase_ = phase::bulk_length;
                    break;
                }
                case phase::bulk_length: {
                    if (auto s = read_number(in, limits.max_bulk, bulk_, "invalid bulk length"); s != parse_status::complete)
                        return s;
                    phase_ = phase::bulk_data;
                    break;
                }
                case phase::bulk_data: {
                    // Waits for the payload and its CRLF without looking at them.
                    if (in.size() - at_ < bulk_ + 2) return parse_status::incomplete;
                    if (in[at_ + bulk_] != std::byte{'\r'} || in[at_ + bulk_ + 1] != std::byte{'\n'})
                        return fail("bulk string not terminated by CRLF");
                    spans_.emplace_back(at_, bulk_);
                    total_ += bulk_;
                    at_ += bulk_ + 2;
                    phase_ = spans_.size() == count_ ? phase::done : phase::bulk_header;
                    if (phase_ == phase::done) return finish(in);
                    break;
                }
                case phase::done:
                case phase::failed: return parse_status::malformed;  // not reached
            }
        }
    }

    // The arguments of the command just completed: views into the parser,
    // valid until its next parse().
    const std::vector<std::string_view>& args() const noexcept { return args_; }
    // Bytes the command just completed took (all consumed).
    std::size_t length() const noexcept { return length_; }
    // Why the input is malformed (empty otherwise).
    std::string_view error() const noexcept { return error_; }

private:
    enum class phase { start, inline_line, count, bulk_header, bulk_length, bulk_data, done, failed };

    parse_status fail(std::string why) {
        phase_ = phase::failed;
        error_ = std::move(why);
        args_.clear();
        return parse_status::malformed;
    }

    void reset() noexcept {
        phase_ = phase::start;
        at_ = scanned_ = count_ = bulk_ = total_ = length_ = 0;
        args_.clear();
        spans_.clear();
        // One large command must not pin its memory for the connection's life.
        if (arena_.capacity() > 64 * 1024) std::string().swap(arena_);
        if (spans_.capacity() > 4096) std::vector<std::pair<std::size_t, std::size_t>>().swap(spans_);
        if (args_.capacity() > 4096) std::vector<std::string_view>().swap(args_);
    }

    // A decimal line "<digits>\r\n" at at_, at most `max`. Reads each byte
    // once across calls (scanned_), and no more than a 64-bit number needs.
    parse_status read_number(zerg::buffer_sequence& in, std::size_t max, std::size_t& value, const char* invalid) {
        constexpr std::size_t longest = 20;  // digits of 2^64 - 1; one more, and it is refused
        std::size_t end = in.size() < at_ + longest + 2 ? in.size() : at_ + longest + 2;
        std::optional<std::size_t> lf;
        if (scanned_ < end) {
            if (auto at = in.slice(scanned_, end - scanned_).find(std::byte{'\n'})) lf = scanned_ + *at;
        }
        if (!lf) {
            if (end == at_ + longest + 2) return fail(invalid);
            scanned_ = end;
            return parse_status::incomplete;
        }
        std::size_t eol = *lf;
        if (eol == at_ || in[eol - 1] != std::byte{'\r'} || eol - 1 == at_) return fail(invalid);
        std::size_t n = 0;
        bool over = false;
        for (std::size_t i = at_; i < eol - 1; ++i) {
            char c = static_cast<char>(in[i]);
            if (c < '0' || c > '9') return fail(invalid);  // a '-' too: no negative length is valid here
            auto d = static_cast<std::size_t>(c - '0');
            if (d > max || n > (max - d) / 10) over = true;
            else n = n * 10 + d;
        }
        if (over) return fail(invalid);
        value = n;
        at_ = scanned_ = eol + 1;
        return parse_status::complete;
    }

    // Words separated by spaces, ended by \n (a \r before it is dropped).
    parse_status parse_inline(zerg::buffer_sequence& in, const limits& limits) {
        std::optional<std::size_t> lf;
        if (scanned_ < in.size()) lf = in.find(std::byte{'\n'}, scanned_);
        if (!lf) {
            if (in.size() > limits.max_inline) return fail("too big inline request");
            scanned_ = in.size();
            return parse_status::incomplete;
        }
        if (*lf > limits.max_inline) return fail("too big inline request");
        arena_.resize(*lf);
        in.copy_to(std::as_writable_bytes(std::span(arena_.data(), arena_.size())));
        std::string_view line(arena_);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::size_t i = 0;
        while (i < line.size()) {
            while (i < line.size() && line[i] == ' ') ++i;
            std::size_t start = i;
            while (i < line.size() && line[i] != ' ') ++i;
            if (i > start) args_.push_back(line.substr(start, i - start));
        }
        length_ = *lf + 1;
        in.consume(length_);
        phase_ = phase::done;
        return parse_status::complete;
    }

    // Copies the framed arguments out in one arena and consumes the command.
    parse_status finish(zerg::buffer_sequence& in) {
        arena_.resize(total_);
        std::size_t pos = 0;
        for (auto [offset, len] : spans_) {
            in.copy_to(std::as_writable_bytes(std::span(arena_.data() + pos, len)), offset);
            pos += len;
        }
        pos = 0;
        args_.reserve(spans_.size());
        for (auto [offset, len] : spans_) {
            args_.push_back(std::string_view(arena_).substr(pos, len));
            pos += len;
        }
        length_ = at_;
        in.consume(at_);
        phase_ = phase::done;
        return parse_status::complete;
    }

    phase phase_ = phase::start;
    std::size_t at_ = 0;       // offset of the next byte to frame
    std::size_t scanned_ = 0;  // bytes before this offset hold no line end still to be handled
    std::size_t count_ = 0;    // array elements
    std::size_t bulk_ = 0;     // length of the bulk string being framed
    std::size_t total_ = 0;    // payload bytes framed so far
    std::size_t length_ = 0;
    std::vector<std::pair<std::size_t, std::size_t>> spans_;  // (offset, length) of each argument in the input
    std::vector<std::string_view> args_;
    std::string arena_;
    std::string error_;
};

}  // namespace resp
