// Test helpers for the operation tests: a ring whose completions are claimed
// by tag in any order, the probe result, and a temporary directory.
#pragma once

#include <zerg/uring/operations.hpp>
#include <zerg/uring/probe.hpp>
#include <zerg/uring/ring.hpp>

#include "support/sockets.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace zerg::test {

inline const uring::kernel_support& kernel() {
    static const uring::kernel_support k = uring::probe_kernel();
    return k;
}

// A ring plus the completions it has posted and nobody has claimed yet.
// Every wait is bounded (wait_for throws after its timeout).
struct op_ring {
    uring::ring ring;
    std::deque<completion> pending;

    op_ring() = default;
    explicit op_ring(const uring::ring_options& options) : ring(options) {}

    // A fresh SQE tagged `tag`.
    io_uring_sqe* sqe(std::uint64_t tag) {
        io_uring_sqe* s = ring.get_sqe();
        uring::set_user_data(s, tag);
        return s;
    }

    // Submits what is queued and returns the completion tagged `tag`.
    completion next(std::uint64_t tag, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto it = std::find_if(pending.begin(), pending.end(), [tag](auto const& c) { return c.user_data == tag; });
            if (it != pending.end()) {
                completion c = *it;
                pending.erase(it);
                return c;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left <= std::chrono::milliseconds::zero())
                throw std::runtime_error("no completion tagged " + std::to_string(tag) + " in time");
            for (auto const& c : wait_for(ring, 1, left)) pending.push_back(c);
        }
    }

    // Prepares one SQE with `prep`, submits it and waits for its CQE.
    template <class Prep>
    completion run(Prep&& prep, std::uint64_t tag = 1) {
        prep(sqe(tag));
        return next(tag);
    }

    // Completions posted and not claimed, after one non-waiting enter.
    std::size_t unclaimed() {
        ring.submit();
        ring.flush_completions();
        ring.for_each_completion([this](const io_uring_cqe& c) { pending.push_back({c.user_data, c.res, c.flags}); });
        return pending.size();
    }
};

// A directory under $TMPDIR (or /tmp), removed with everything in it.
class temp_dir {
public:
    temp_dir() {
        const char* base = std::getenv("TMPDIR");
        std::string templ = std::string(base && *base ? base : "/tmp") + "/zerg-ops-XXXXXX";
        if (!::mkdtemp(templ.data())) throw std::system_error(errno, std::system_category(), "mkdtemp");
        path_ = templ;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    const std::filesystem::path& path() const noexcept { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

}  // namespace zerg::test
