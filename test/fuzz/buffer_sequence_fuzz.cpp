// libFuzzer target for zerg::buffer_sequence: the input is a program of
// operations (push a received piece, consume, spill, find a byte or a
// string, copy, compare, index, slice) run against the sequence and, side
// by side, against a std::string holding the same bytes. Every answer must
// agree with the string's, and every pushed buffer must be given back
// exactly once (by consume, spill or the destructor). Build and run:
// test/fuzz/run.sh.
#include <zerg/buffer_sequence.hpp>

#include "feed.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <set>
#include <string>
#include <string_view>

namespace {

struct reader {
    const std::uint8_t* data;
    std::size_t size;
    std::size_t at = 0;
    bool done() const { return at >= size; }
    std::uint8_t byte() { return at < size ? data[at++] : 0; }
    std::string bytes(std::size_t n) {
        std::string s;
        while (n-- > 0) s += static_cast<char>(byte());
        return s;
    }
};

struct outstanding {
    std::set<std::uint16_t> ids;
    static void release(void* self, std::uint16_t id) noexcept {
        auto& ids = static_cast<outstanding*>(self)->ids;
        fuzz::check(ids.erase(id) == 1, "a buffer given back twice, or one never pushed");
    }
};

std::string_view view(std::span<const std::byte> s) { return {reinterpret_cast<const char*>(s.data()), s.size()}; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    reader in{data, size};
    std::deque<std::string> pieces;  // outlive the sequence; a deque never moves its elements
    outstanding held;
    std::uint16_t next_id = 0;
    {
        zerg::buffer_sequence seq;
        seq.bind(&outstanding::release, &held);
        std::string model;
        while (!in.done()) {
            std::uint8_t op = in.byte();
            std::size_t from = in.byte() % (model.size() + 2);
            switch (op % 9) {
                case 0:
                case 1: {  // a receive (as the reactor: spill first when the sequence is full)
                    pieces.push_back(in.bytes(1 + in.byte() % 48));
                    if (seq.full()) seq.spill();
                    held.ids.insert(next_id);
                    seq.push(reinterpret_cast<const std::byte*>(pieces.back().data()),
                             static_cast<std::uint32_t>(pieces.back().size()), next_id++);
                    model += pieces.back();
                    break;
                }
                case 2: {
                    std::size_t n = from;
                    seq.consume(n);
                    model.erase(0, std::min(n, model.size()));
                    break;
                }
                case 3: seq.spill(); break;
                case 4: {
                    char b = static_cast<char>(in.byte() % 4 == 0 ? '\n' : in.byte());
                    auto got = seq.find(static_cast<std::byte>(b), from);
                    auto want = from <= model.size() ? model.find(b, from) : std::string::npos;
                    fuzz::check(got ? *got == want : want == std::string::npos, "find(byte) differs");
                    break;
                }
                case 5: {
                    std::string needle = in.bytes(in.byte() % 5);
                    auto got = seq.find(std::string_view(needle), from);
                    auto want = from <= model.size() ? model.find(needle, from) : std::string::npos;
                    fuzz::check(got ? *got == want : want == std::string::npos, "find(string) differs");
                    break;
                }
                case 6: {
                    std::string out(in.byte() % 64, '\0');
                    std::size_t n = seq.copy_to(std::as_writable_bytes(std::span(out.data(), out.size())), from);
                    std::string want = from < model.size() ? model.substr(from, out.size()) : std::string();
                    fuzz::check(n == want.size() && out.compare(0, n, want) == 0, "copy_to differs");
                    std::string what = in.bytes(in.byte() % 6);
                    bool same = from + what.size() <= model.size() && model.compare(from, what.size(), what) == 0;
                    fuzz::check(seq.matches(from, std::as_bytes(std::span(what.data(), what.size()))) == same, "matches differs");
                    break;
                }
                case 7: {
                    std::size_t length = in.byte();
                    auto slice = seq.slice(from, length);
                    std::string want = from < model.size() ? model.substr(from, length) : std::string();
                    fuzz::check(slice.size() == want.size(), "slice size differs");
                    std::string pieces_seen;
                    slice.for_each_piece([&](std::span<const std::byte> p) { pieces_seen += view(p); });
                    fuzz::check(pieces_seen == want, "slice pieces differ");
                    fuzz::check(slice.equals(want), "slice equals differs");
                    auto nl = slice.find(std::byte{'\n'});
                    auto want_nl = want.find('\n');
                    fuzz::check(nl ? *nl == want_nl : want_nl == std::string::npos, "slice find differs");
                    break;
                }
                case 8: {
                    if (!model.empty()) {
                        std::size_t i = from % model.size();
                        fuzz::check(static_cast<char>(seq[i]) == model[i], "operator[] differs");
                    }
                    break;
                }
            }
            fuzz::check(seq.size() == model.size() && seq.empty() == model.empty(), "size differs");
            std::string all;
            for (std::size_t i = 0; i < seq.segment_count(); ++i) all += view(seq.segment(i));
            fuzz::check(all == model, "segments differ from the bytes");
            fuzz::check(view(seq.front()) == std::string_view(model).substr(0, seq.front().size()), "front differs");
            fuzz::check(seq.ring_segments() <= zerg::buffer_sequence::max_segments, "more ring segments than the maximum");
            fuzz::check(seq.spilled_bytes() <= model.size(), "more spilled than held");
        }
    }
    fuzz::check(held.ids.empty(), "a buffer never given back");
    return 0;
}
