// What both parser fuzz targets share: feeding one input to a fresh parser
// the way the reactor does (pieces pushed one receive at a time, the parser
// run after each, a spill when the sequence is full or at random moments),
// recording everything it produced as text so that two feeds can be
// compared, and checking the invariants that hold for any input.
#pragma once

#include <zerg/buffer_sequence.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace fuzz {

// A failed invariant: libFuzzer reports the abort as a crash and saves the input.
[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
}
inline void check(bool ok, const char* what) {
    if (!ok) fail(what);
}

// A small deterministic generator: the same input always gets the same cuts.
struct splitmix {
    std::uint64_t state;
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

enum class cutting { whole, byte_by_byte, random };

// Feeds `input` to `step`, a callable (zerg::buffer_sequence&, std::string&
// transcript) returning the message's length when it completed one (and
// appended it to the transcript), 0 when it needs more bytes, -1 when it
// refused the input (reason appended). Returns the transcript, ended by
// how it ended and how many bytes were left.
template <class Step>
std::string feed(std::string_view input, cutting how, std::uint64_t seed, Step step) {
    std::vector<std::string> pieces;
    splitmix rng{seed};
    for (std::size_t at = 0; at < input.size();) {
        std::size_t n = input.size() - at;
        if (how == cutting::byte_by_byte) n = 1;
        else if (how == cutting::random) n = std::min<std::size_t>(n, 1 + rng.next() % (rng.next() % 4 == 0 ? 300 : 8));
        pieces.emplace_back(input.substr(at, n));
        at += n;
    }
    std::string transcript;
    std::size_t pushed = 0, released = 0;
    struct counter {
        static void release(void* self, std::uint16_t) noexcept { ++*static_cast<std::size_t*>(self); }
    };
    {
        zerg::buffer_sequence seq;
        seq.bind(&counter::release, &released);
        std::size_t bytes = 0, lengths = 0;
        bool refused = false;
        for (std::size_t i = 0; i < pieces.size() && !refused; ++i) {
            if (seq.full()) seq.spill();
            seq.push(reinterpret_cast<const std::byte*>(pieces[i].data()), static_cast<std::uint32_t>(pieces[i].size()),
                     static_cast<std::uint16_t>(i));
            ++pushed;
            bytes += pieces[i].size();
            for (;;) {
                long r = step(seq, transcript);
                check(seq.size() <= bytes, "consumed more than was received");
                if (r > 0) {
                    lengths += static_cast<std::size_t>(r);
                    check(bytes - seq.size() == lengths, "consumed other than the messages completed");
                }
                if (r < 0) {
                    // Refusals are sticky: asking again gives the same answer.
                    std::string again;
                    check(step(seq, again) < 0, "a refusal was not sticky");
                    refused = true;
                    break;
                }
                if (r == 0) break;
            }
            if (how == cutting::random && !seq.empty() && rng.next() % 4 == 0) seq.spill();
        }
        transcript += refused ? "|refused" : "|incomplete, left " + std::to_string(seq.size());
    }
    check(released == pushed, "a buffer was given back twice or never");
    return transcript;
}

// Whole, byte by byte (up to 1 KiB: beyond, the random cuts cover it at a
// fraction of the cost) and randomly cut must give the same transcript.
template <class Step>
void same_every_way(std::string_view input, std::uint64_t seed, Step make_step) {
    std::string whole = feed(input, cutting::whole, seed, make_step());
    if (input.size() <= 1024) check(feed(input, cutting::byte_by_byte, seed, make_step()) == whole, "byte by byte differs from whole");
    check(feed(input, cutting::random, seed, make_step()) == whole, "random cuts differ from whole");
}

}  // namespace fuzz
