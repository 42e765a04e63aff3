#define BOOST_TEST_MODULE api_buffer_sequence
#include <boost/test/unit_test.hpp>

// zerg::buffer_sequence on its own, with fake segments: the "ring buffers"
// are strings owned by the test, and the release function records which
// buffer ids came back, so every consume/clear/spill can be checked for
// giving back exactly the buffers it must, and no other.

#include <zerg/buffer_sequence.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

// The "ring": what the sequence gave back, in order.
struct fake_ring {
    std::vector<std::uint16_t> released;

    static void release(void* self, std::uint16_t id) noexcept { static_cast<fake_ring*>(self)->released.push_back(id); }
    std::vector<std::uint16_t> take() { return std::exchange(released, {}); }
};

// A buffer_sequence over pieces of text; piece i is buffer id 100 + i. The
// pieces are owned here and outlive the sequence (declared first).
struct fixture {
    std::vector<std::string> pieces;
    fake_ring ring;
    zerg::buffer_sequence seq;

    fixture() {
        pieces.reserve(64);
        seq.bind(&fake_ring::release, &ring);
    }
    explicit fixture(std::vector<std::string> p) : pieces(std::move(p)) {
        pieces.reserve(pieces.size() + 64);
        seq.bind(&fake_ring::release, &ring);
        for (std::size_t i = 0; i < pieces.size(); ++i) push_piece(i);
    }
    void push_piece(std::size_t i) {
        seq.push(reinterpret_cast<const std::byte*>(pieces[i].data()), static_cast<std::uint32_t>(pieces[i].size()),
                 static_cast<std::uint16_t>(100 + i));
    }
    // Adds a piece after construction. Short strings keep their bytes
    // inline, so the vector must not reallocate while the sequence points
    // into them: room is reserved up front (more by tests that add many).
    void add(std::string text) {
        pieces.push_back(std::move(text));
        push_piece(pieces.size() - 1);
    }
};

std::string contents(const zerg::buffer_sequence& s) {
    std::string out(s.size(), '\0');
    std::size_t n = s.copy_to(std::as_writable_bytes(std::span(out.data(), out.size())));
    out.resize(n);
    return out;
}

std::string segments_joined(const zerg::buffer_sequence& s) {
    std::string out;
    for (std::size_t i = 0; i < s.segment_count(); ++i) {
        auto seg = s.segment(i);
        out.append(reinterpret_cast<const char*>(seg.data()), seg.size());
    }
    return out;
}

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::optional<std::size_t> expected_find(std::string_view hay, std::string_view needle, std::size_t from) {
    if (from > hay.size()) return std::nullopt;
    auto at = hay.find(needle, from);
    return at == std::string_view::npos ? std::nullopt : std::optional<std::size_t>(at);
}

// Every way of cutting `text` into `parts` non-empty pieces (cut positions
// strictly increasing), passed to f as a vector of pieces.
template <class F>
void for_each_split(const std::string& text, std::size_t parts, F f) {
    std::vector<std::size_t> cuts(parts - 1);
    std::function<void(std::size_t, std::size_t)> rec = [&](std::size_t k, std::size_t min) {
        if (k == cuts.size()) {
            std::vector<std::string> pieces;
            std::size_t prev = 0;
            for (std::size_t c : cuts) {
                pieces.push_back(text.substr(prev, c - prev));
                prev = c;
            }
            pieces.push_back(text.substr(prev));
            f(pieces);
            return;
        }
        for (std::size_t c = min; c + (cuts.size() - k) <= text.size(); ++c) {
            cuts[k] = c;
            rec(k + 1, c + 1);
        }
    };
    rec(0, 1);
}

}  // namespace

BOOST_AUTO_TEST_CASE(empty_sequence) {
    fixture f;
    BOOST_TEST(f.seq.size() == 0u);
    BOOST_TEST(f.seq.empty());
    BOOST_TEST(f.seq.segment_count() == 0u);
    BOOST_TEST(f.seq.ring_segments() == 0u);
    BOOST_TEST(f.seq.front().empty());
    BOOST_TEST(!f.seq.full());
    BOOST_TEST(!f.seq.find(std::byte{'a'}).has_value());
    BOOST_TEST(!f.seq.find(std::string_view("ab")).has_value());
    BOOST_TEST(f.seq.find(std::string_view("")).value() == 0u);  // empty needle matches at `from`
    BOOST_TEST(f.seq.starts_with(""));
    BOOST_TEST(!f.seq.starts_with("a"));
    std::array<std::byte, 4> out{};
    BOOST_TEST(f.seq.copy_to(out) == 0u);
    f.seq.consume(10);  // no-op, no release
    f.seq.clear();
    f.seq.spill();
    BOOST_TEST(f.ring.released.empty());
    BOOST_TEST(f.seq.spilled_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(size_and_segments) {
    fixture f({"hello", " ", "world", "!!"});
    BOOST_TEST(f.seq.size() == 13u);
    BOOST_TEST(!f.seq.empty());
    BOOST_TEST(f.seq.segment_count() == 4u);
    BOOST_TEST(f.seq.ring_segments() == 4u);
    for (std::size_t i = 0; i < 4; ++i) {
        auto s = f.seq.segment(i);
        // The segments are the pieces themselves: nothing was copied.
        BOOST_TEST(static_cast<const void*>(s.data()) == static_cast<const void*>(f.pieces[i].data()));
        BOOST_TEST(s.size() == f.pieces[i].size());
    }
    BOOST_TEST(static_cast<const void*>(f.seq.front().data()) == static_cast<const void*>(f.pieces[0].data()));
    BOOST_TEST(contents(f.seq) == "hello world!!");
    std::string by_index;
    for (std::size_t i = 0; i < f.seq.size(); ++i) by_index += static_cast<char>(f.seq[i]);
    BOOST_TEST(by_index == "hello world!!");
    BOOST_TEST(f.ring.released.empty());
}

BOOST_AUTO_TEST_CASE(find_byte_across_segments) {
    fixture f({"abc", "def", "a", "xyz", "aa"});
    //          012   345   6    789   10 11
    BOOST_TEST(f.seq.find(std::byte{'a'}).value() == 0u);
    BOOST_TEST(f.seq.find(std::byte{'a'}, 1).value() == 6u);
    BOOST_TEST(f.seq.find(std::byte{'a'}, 6).value() == 6u);
    BOOST_TEST(f.seq.find(std::byte{'a'}, 7).value() == 10u);
    BOOST_TEST(f.seq.find(std::byte{'a'}, 11).value() == 11u);
    BOOST_TEST(!f.seq.find(std::byte{'a'}, 12).has_value());
    BOOST_TEST(!f.seq.find(std::byte{'a'}, 1000).has_value());
    BOOST_TEST(f.seq.find(std::byte{'f'}).value() == 5u);
    BOOST_TEST(f.seq.find(std::byte{'z'}, 4).value() == 9u);
    BOOST_TEST(!f.seq.find(std::byte{'q'}).has_value());
}

BOOST_AUTO_TEST_CASE(find_delimiter_split_over_two_and_three_segments) {
    {
        // "\r\n\r\n" split over two segments at each possible place.
        for (std::size_t cut = 1; cut < 4; ++cut) {
            std::string delim = "\r\n\r\n";
            fixture f({"GET / HTTP/1.1" + delim.substr(0, cut), delim.substr(cut) + "tail"});
            BOOST_TEST_CONTEXT("cut " << cut) {
                BOOST_TEST(f.seq.segment_count() == 2u);
                BOOST_TEST(f.seq.find(std::string_view("\r\n\r\n")).value() == 14u);
                BOOST_TEST(f.seq.find(std::string_view("\r\n")).value() == 14u);
                BOOST_TEST(f.seq.find(std::string_view("\r\n"), 15).value() == 16u);
                BOOST_TEST(f.seq.find(std::string_view("\n\r\nt")).value() == 15u);
            }
        }
    }
    {
        // Over three segments: the middle one lies wholly inside the delimiter.
        fixture f({"abc\r", "\n\r", "\nxyz"});
        BOOST_TEST(f.seq.segment_count() == 3u);
        BOOST_TEST(f.seq.find(std::string_view("\r\n\r\n")).value() == 3u);
        BOOST_TEST(f.seq.find(std::string_view("c\r\n\r\nx")).value() == 2u);
        BOOST_TEST(!f.seq.find(std::string_view("\r\n\r\n"), 4).has_value());
    }
    {
        // Over three segments with one-byte middle, and false starts before.
        fixture f({"EL-EL", "L", "O!"});
        BOOST_TEST(f.seq.find(std::string_view("ELLO")).value() == 3u);
        BOOST_TEST(f.seq.find(std::string_view("LLO!")).value() == 4u);
        BOOST_TEST(!f.seq.find(std::string_view("ELLO!!")).has_value());  // runs past the end
        BOOST_TEST(!f.seq.find(std::string_view("ELX")).has_value());
    }
}

// Exhaustive: every split of a text into 1..4 pieces, every needle drawn
// from it (and a few absent ones), every start: find agrees with
// std::string_view::find.
BOOST_AUTO_TEST_CASE(find_agrees_with_string_find_for_every_split) {
    const std::string text = "ab\r\nab\r\n\r\nabab";
    std::vector<std::string> needles = {"\r\n\r\n", "\r\n", "ab", "bab", "b\r\na", "\n\r", "abab", "x", "abx", text,
                                        text + "a", "a"};
    std::size_t checked = 0;
    for (std::size_t parts = 1; parts <= 4; ++parts) {
        for_each_split(text, parts, [&](const std::vector<std::string>& pieces) {
            fixture f(pieces);
            BOOST_REQUIRE(contents(f.seq) == text);
            for (const auto& n : needles) {
                for (std::size_t from = 0; from <= text.size() + 1; ++from) {
                    auto got = f.seq.find(std::string_view(n), from);
                    auto want = expected_find(text, n, from);
                    if (got != want) {
                        BOOST_ERROR("find(\"" << n << "\", " << from << ") over " << parts << " pieces: got "
                                              << (got ? std::to_string(*got) : "none") << ", want "
                                              << (want ? std::to_string(*want) : "none"));
                        return;
                    }
                    ++checked;
                    if (n.size() == 1) {
                        auto gb = f.seq.find(static_cast<std::byte>(n[0]), from);
                        BOOST_REQUIRE(gb == want);
                    }
                }
            }
        });
    }
    BOOST_TEST(checked > 10000u);
}

BOOST_AUTO_TEST_CASE(matches_and_starts_with) {
    fixture f({"GE", "T /", "x HTTP"});
    BOOST_TEST(f.seq.starts_with("G"));
    BOOST_TEST(f.seq.starts_with("GET"));
    BOOST_TEST(f.seq.starts_with("GET /x"));
    BOOST_TEST(f.seq.starts_with("GET /x HTTP"));
    BOOST_TEST(!f.seq.starts_with("GET /x HTTP/"));  // longer than the sequence
    BOOST_TEST(!f.seq.starts_with("GET /y"));
    BOOST_TEST(!f.seq.starts_with("POST"));
    BOOST_TEST(f.seq.matches(2, bytes("T /x")));
    BOOST_TEST(f.seq.matches(5, bytes("x HTTP")));
    BOOST_TEST(!f.seq.matches(5, bytes("x HTTPS")));
    BOOST_TEST(!f.seq.matches(6, bytes("HTTP")));
    BOOST_TEST(f.seq.matches(7, bytes("HTTP")));
    BOOST_TEST(f.seq.matches(11, bytes("")));
    BOOST_TEST(!f.seq.matches(12, bytes("")));
    BOOST_TEST(!f.seq.matches(100, bytes("H")));
}

BOOST_AUTO_TEST_CASE(copy_to_with_offsets) {
    fixture f({"0123", "4", "56789", "ab"});
    const std::string all = "0123456789ab";
    for (std::size_t offset = 0; offset <= all.size() + 2; ++offset) {
        for (std::size_t len = 0; len <= all.size() + 2; ++len) {
            std::string out(len, '#');
            std::size_t n = f.seq.copy_to(std::as_writable_bytes(std::span(out.data(), out.size())), offset);
            std::string want = offset < all.size() ? all.substr(offset, len) : "";
            BOOST_TEST_CONTEXT("offset " << offset << " length " << len) {
                BOOST_TEST(n == want.size());
                BOOST_TEST(out.substr(0, n) == want);
                BOOST_TEST(out.substr(n) == std::string(len - n, '#'));  // nothing written past what was copied
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(slice_view_operations) {
    fixture f({"Host", ": exa", "mple.com\r", "\n"});
    const std::string all = "Host: example.com\r\n";
    auto value = f.seq.slice(6, 11);  // "example.com"
    BOOST_TEST(value.size() == 11u);
    BOOST_TEST(value.equals("example.com"));
    BOOST_TEST(!value.equals("example.co"));
    BOOST_TEST(!value.equals("example.comm"));
    BOOST_TEST(!value.equals("exAmple.com"));
    BOOST_TEST(static_cast<char>(value[0]) == 'e');
    BOOST_TEST(static_cast<char>(value[10]) == 'm');
    BOOST_TEST(value.find(std::byte{'.'}).value() == 7u);
    BOOST_TEST(value.find(std::byte{'e'}).value() == 0u);
    BOOST_TEST(!value.find(std::byte{'\r'}).has_value());  // just past the slice
    BOOST_TEST(!value.find(std::byte{'H'}).has_value());   // before the slice
    std::string out(20, '#');
    BOOST_TEST(value.copy_to(std::as_writable_bytes(std::span(out.data(), out.size()))) == 11u);
    BOOST_TEST(out.substr(0, 11) == "example.com");
    BOOST_TEST(out.substr(11) == std::string(9, '#'));  // stops at the slice's end
    std::string small(3, '#');
    BOOST_TEST(value.copy_to(std::as_writable_bytes(std::span(small.data(), small.size()))) == 3u);
    BOOST_TEST(small == "exa");

    std::vector<std::string> pieces;
    value.for_each_piece([&](std::span<const std::byte> p) { pieces.emplace_back(reinterpret_cast<const char*>(p.data()), p.size()); });
    BOOST_TEST(pieces.size() == 2u);
    BOOST_TEST(pieces.at(0) == "exa");
    BOOST_TEST(pieces.at(1) == "mple.com");

    // A slice over all four segments.
    std::vector<std::string> all_pieces;
    f.seq.slice(2, 100).for_each_piece([&](std::span<const std::byte> p) { all_pieces.emplace_back(reinterpret_cast<const char*>(p.data()), p.size()); });
    BOOST_TEST(all_pieces == (std::vector<std::string>{"st", ": exa", "mple.com\r", "\n"}));

    // Clamped to the sequence.
    auto tail = f.seq.slice(15, 100);
    BOOST_TEST(tail.size() == 4u);
    BOOST_TEST(tail.equals("om\r\n"));
    auto past = f.seq.slice(500, 3);
    BOOST_TEST(past.size() == 0u);
    BOOST_TEST(past.equals(""));
    BOOST_TEST(!past.find(std::byte{'H'}).has_value());
    std::size_t calls = 0;
    past.for_each_piece([&](std::span<const std::byte>) { ++calls; });
    BOOST_TEST(calls == 0u);
    BOOST_TEST(f.ring.released.empty());
}

BOOST_AUTO_TEST_CASE(consume_releases_exactly_the_wholly_consumed_buffers) {
    fixture f({"aaaa", "bbb", "cc", "dddddd"});  // ids 100..103, sizes 4 3 2 6
    f.seq.consume(1);                            // partial: nothing back
    BOOST_TEST(f.ring.released.empty());
    BOOST_TEST(f.seq.size() == 14u);
    BOOST_TEST(f.seq.segment_count() == 4u);
    BOOST_TEST(contents(f.seq) == "aaabbbccdddddd");
    f.seq.consume(2);  // still inside the first buffer ("a" left)
    BOOST_TEST(f.ring.released.empty());
    BOOST_TEST(f.seq.segment(0).size() == 1u);
    f.seq.consume(1);  // exactly to the boundary: 100 back
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{100}));
    BOOST_TEST(f.seq.segment_count() == 3u);
    BOOST_TEST(contents(f.seq) == "bbbccdddddd");
    f.seq.consume(6);  // all of 101 and 102, one byte of 103
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{101, 102}));
    BOOST_TEST(f.seq.segment_count() == 1u);
    BOOST_TEST(contents(f.seq) == "ddddd");
    BOOST_TEST(static_cast<const void*>(f.seq.front().data()) == static_cast<const void*>(f.pieces[3].data() + 1));
    f.seq.consume(0);
    BOOST_TEST(f.ring.released.empty());
    f.seq.consume(100);  // more than there is: clamped, the last one back
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{103}));
    BOOST_TEST(f.seq.empty());
    BOOST_TEST(f.seq.segment_count() == 0u);
    // Reusable after being emptied.
    f.add("zz");
    BOOST_TEST(contents(f.seq) == "zz");
    f.seq.consume(2);
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{104}));
}

BOOST_AUTO_TEST_CASE(clear_and_destructor_release_everything) {
    {
        fixture f({"a", "bb", "ccc"});
        f.seq.consume(2);  // 100 back, "b" of 101 left
        BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{100}));
        f.seq.clear();
        BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{101, 102}));
        BOOST_TEST(f.seq.empty());
        BOOST_TEST(f.seq.segment_count() == 0u);
        f.seq.clear();  // twice: nothing more
        BOOST_TEST(f.ring.released.empty());
    }
    {
        fake_ring ring;
        std::string a = "one", b = "two";
        {
            zerg::buffer_sequence seq;
            seq.bind(&fake_ring::release, &ring);
            seq.push(reinterpret_cast<const std::byte*>(a.data()), 3, 7);
            seq.push(reinterpret_cast<const std::byte*>(b.data()), 3, 9);
        }
        BOOST_TEST(ring.released == (std::vector<std::uint16_t>{7, 9}));
    }
}

BOOST_AUTO_TEST_CASE(spill_copies_releases_and_later_consume_spans_both) {
    fixture f;
    f.pieces.reserve(64);
    f.add("first-");   // 100
    f.add("second-");  // 101
    f.add("third");    // 102
    f.seq.consume(2);  // "rst-second-third", nothing back
    BOOST_TEST(f.ring.released.empty());
    f.seq.spill();
    // Every ring buffer went back at once; the bytes live in owned memory.
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{100, 101, 102}));
    BOOST_TEST(f.seq.ring_segments() == 0u);
    BOOST_TEST(f.seq.segment_count() == 1u);
    BOOST_TEST(f.seq.spilled_bytes() == 16u);
    BOOST_TEST(f.seq.size() == 16u);
    // The kernel may now overwrite the buffers: the sequence is unaffected.
    for (std::size_t i = 0; i < 3; ++i) std::fill(f.pieces[i].begin(), f.pieces[i].end(), '#');
    BOOST_TEST(contents(f.seq) == "rst-second-third");
    BOOST_TEST(segments_joined(f.seq) == "rst-second-third");
    BOOST_TEST(f.seq.starts_with("rst-sec"));

    // New ring segments after the spilled bytes.
    f.add("-fourth");  // 103
    f.add("-fifth");   // 104
    BOOST_TEST(f.seq.segment_count() == 3u);
    BOOST_TEST(f.seq.ring_segments() == 2u);
    BOOST_TEST(contents(f.seq) == "rst-second-third-fourth-fifth");
    BOOST_TEST(f.seq.find(std::string_view("third-four")).value() == 11u);  // across spilled | ring
    BOOST_TEST(f.seq.find(std::string_view("h-fi")).value() == 22u);        // across ring | ring
    auto s = f.seq.slice(14, 6);
    BOOST_TEST(s.equals("rd-fou"));

    f.seq.consume(10);  // inside the spilled bytes: no ring buffer back
    BOOST_TEST(f.ring.released.empty());
    BOOST_TEST(f.seq.spilled_bytes() == 6u);
    BOOST_TEST(contents(f.seq) == "-third-fourth-fifth");
    f.seq.consume(8);  // the rest of the spill and 2 bytes of 103: nothing back
    BOOST_TEST(f.ring.released.empty());
    BOOST_TEST(f.seq.spilled_bytes() == 0u);
    BOOST_TEST(f.seq.segment_count() == 2u);
    BOOST_TEST(contents(f.seq) == "ourth-fifth");
    f.seq.consume(5);  // exactly the end of 103
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{103}));
    BOOST_TEST(contents(f.seq) == "-fifth");

    // A second spill, after the first one was partly consumed, keeps order.
    f.add("-sixth");  // 105
    f.seq.spill();
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{104, 105}));
    f.add("-seventh");  // 106
    BOOST_TEST(contents(f.seq) == "-fifth-sixth-seventh");
    f.seq.consume(3);
    f.seq.spill();  // spill with a consumed prefix in the owned memory
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{106}));
    BOOST_TEST(contents(f.seq) == "fth-sixth-seventh");
    BOOST_TEST(f.seq.segment_count() == 1u);
    f.seq.consume(f.seq.size());
    BOOST_TEST(f.seq.empty());
    BOOST_TEST(f.ring.released.empty());
    // Consuming a spill wholly and then one ring buffer wholly in one call.
    f.add("abc");  // 107
    f.seq.spill();
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{107}));
    f.add("def");  // 108
    f.add("ghi");  // 109
    f.seq.consume(6);
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{108}));
    BOOST_TEST(contents(f.seq) == "ghi");
    f.seq.clear();
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{109}));
    BOOST_TEST(f.seq.spilled_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(clear_drops_spilled_bytes) {
    fixture f;
    f.pieces.reserve(8);
    f.add("abc");
    f.seq.spill();
    f.add("def");
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{100}));
    f.seq.clear();
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{101}));
    BOOST_TEST(f.seq.empty());
    BOOST_TEST(f.seq.segment_count() == 0u);
    BOOST_TEST(f.seq.spilled_bytes() == 0u);
    f.add("x");
    BOOST_TEST(contents(f.seq) == "x");
}

BOOST_AUTO_TEST_CASE(full_at_max_segments_and_spill_makes_room) {
    static_assert(zerg::buffer_sequence::max_segments == 16);
    fixture f;
    f.pieces.reserve(64);
    std::string all;
    for (int i = 0; i < 16; ++i) {
        BOOST_TEST(!f.seq.full());
        std::string piece(static_cast<std::size_t>(i + 1), static_cast<char>('a' + i));
        all += piece;
        f.add(piece);
    }
    BOOST_TEST(f.seq.full());
    BOOST_TEST(f.seq.ring_segments() == 16u);
    BOOST_TEST(f.seq.segment_count() == 16u);
    BOOST_TEST(contents(f.seq) == all);
    // Consuming the first buffer makes room.
    f.seq.consume(1);
    BOOST_TEST(f.ring.take() == (std::vector<std::uint16_t>{100}));
    BOOST_TEST(!f.seq.full());
    f.add("Q");
    BOOST_TEST(f.seq.full());
    // What the reactor does when full: spill, then push.
    f.seq.spill();
    BOOST_TEST(!f.seq.full());
    BOOST_TEST(f.ring.released.size() == 16u);
    f.add("R");
    BOOST_TEST(contents(f.seq) == all.substr(1) + "QR");
    BOOST_TEST(f.seq.segment_count() == 2u);
}

// A random walk of push / consume / spill against a std::string model: the
// contents and the set of released ids always agree with the model.
BOOST_AUTO_TEST_CASE(random_operations_agree_with_a_model) {
    for (unsigned seed = 1; seed <= 40; ++seed) {
        std::mt19937 rng(seed);
        fixture f;
        f.pieces.reserve(4096);
        std::string model;
        // For each pushed buffer: [begin, end) in the model's coordinates
        // since the start; a buffer must come back when the consumed
        // prefix passes its end, or at a spill.
        std::map<std::uint16_t, std::size_t> outstanding;  // id -> absolute end
        std::size_t consumed_total = 0;
        std::size_t pushed_total = 0;
        for (int step = 0; step < 400; ++step) {
            int op = static_cast<int>(rng() % 10);
            if (op < 5 && !f.seq.full() && f.pieces.size() < 4000) {
                std::string piece(1 + rng() % 7, '\0');
                for (auto& ch : piece) ch = static_cast<char>('a' + rng() % 26);
                f.add(piece);
                model += piece;
                pushed_total += piece.size();
                outstanding[static_cast<std::uint16_t>(100 + f.pieces.size() - 1)] = pushed_total;
            } else if (op < 9) {
                std::size_t n = model.empty() ? 0 : rng() % (model.size() + 1);
                f.seq.consume(n);
                model.erase(0, n);
                consumed_total += n;
                std::vector<std::uint16_t> want;
                for (auto it = outstanding.begin(); it != outstanding.end();) {
                    if (it->second <= consumed_total) {
                        want.push_back(it->first);
                        it = outstanding.erase(it);
                    } else {
                        ++it;
                    }
                }
                auto got = f.ring.take();
                std::sort(got.begin(), got.end());
                BOOST_REQUIRE_MESSAGE(got == want, "seed " << seed << " step " << step << ": consume(" << n
                                                           << ") released the wrong buffers");
            } else {
                f.seq.spill();
                std::vector<std::uint16_t> want;
                for (auto& [id, end] : outstanding) want.push_back(id);
                outstanding.clear();
                auto got = f.ring.take();
                std::sort(got.begin(), got.end());
                BOOST_REQUIRE(got == want);
                BOOST_REQUIRE(f.seq.ring_segments() == 0u);
            }
            BOOST_REQUIRE_MESSAGE(contents(f.seq) == model, "seed " << seed << " step " << step);
            BOOST_REQUIRE(f.seq.size() == model.size());
            BOOST_REQUIRE(segments_joined(f.seq) == model);
        }
    }
}
