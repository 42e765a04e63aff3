// The soak: the fault matrix's traffic, mixed and repeated for a long time
// (10 minutes by default), printing the process's RSS every 10 s so that a
// leak or a pool that never gives back shows as a rising line. Not part of
// the suite; doc/faults.md says how to run it.
//
//   b2 -j1 test//faults-soak-bin && bin/faults-soak [--seconds 600] [--interval 10]
//   (or ZERG_SOAK_SECONDS=600 bin/faults-soak)
//
// Four servers in this process, on 127.0.0.1, two reactors each:
//   span echo       pipelined echo streams, and half-closes (N bytes, SHUT_WR, N back, EOF)
//   sequence echo   connect / echo / close churn, half of the closes resets
//   coroutine       4 MiB replies, half of the clients reset after 64 KiB
//   line echo       slow clients (one byte per 200 ms) against read_timeout 1 s
// Every byte is checked. Exit status 0 when nothing went wrong, 1 otherwise.
#include <faults/common.hpp>
#include <support/client_io.hpp>

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

using namespace std::chrono_literals;
namespace faults = zerg::faults;
using faults::ending;
using faults::flow;
using zerg::test::fd_guard;

namespace {

using clock_type = std::chrono::steady_clock;

struct tally {
    std::atomic<std::uint64_t> rounds{0};
    std::atomic<std::uint64_t> failures{0};
    std::atomic<std::uint64_t> bytes{0};
    void fail(const char* what, const flow& f) {
        if (failures.fetch_add(1) < 20)
            std::fprintf(stderr, "soak: %s: ended %s (errno %d), %llu of %llu bytes, %llu wrong\n", what,
                         faults::to_string(f.end), f.error, static_cast<unsigned long long>(f.received),
                         static_cast<unsigned long long>(f.expect), static_cast<unsigned long long>(f.mismatches));
    }
};

void echo_streams(std::uint16_t port, const std::atomic<bool>& stop, tally& t) {
    for (std::uint32_t round = 0; !stop; ++round) {
        std::vector<flow> flows;
        for (unsigned i = 0; i < 16; ++i) flows.push_back(faults::echo_flow(port, round * 64 + i, 1u << 20, i % 4 == 0));
        faults::drive(flows, 30s);
        for (auto const& f : flows) {
            bool ok = f.mismatches == 0 && f.received == f.expect &&
                      f.end == (f.wait_eof ? ending::eof : ending::complete);
            if (!ok) t.fail("echo stream", f);
            t.bytes += f.received;
        }
        ++t.rounds;
    }
}

void churn(std::uint16_t port, const std::atomic<bool>& stop, tally& t) {
    for (std::uint32_t round = 0; !stop; ++round) {
        std::vector<flow> flows;
        for (unsigned i = 0; i < 100; ++i) flows.push_back(faults::echo_flow(port, round * 128 + i, 200));
        faults::drive(flows, 20s);
        for (std::size_t i = 0; i < flows.size(); ++i) {
            auto& f = flows[i];
            if (f.end != ending::complete || f.mismatches) t.fail("churn", f);
            t.bytes += f.received;
            if (i % 2) zerg::test::close_with_reset(f.fd);
        }
        ++t.rounds;
    }
}

void big_replies(std::uint16_t port, std::size_t reply, const std::atomic<bool>& stop, tally& t) {
    for (std::uint32_t round = 0; !stop; ++round) {
        std::vector<flow> flows;
        for (unsigned i = 0; i < 4; ++i) {
            flow f;
            f.fd = faults::nonblocking_client(port);
            f.to_send = 1;
            f.expect_seed = faults::reply_seed;
            f.expect = reply;
            f.wait_eof = true;
            flows.push_back(std::move(f));
        }
        std::thread whole([&] { faults::drive(flows, 30s); });
        for (unsigned i = 0; i < 4; ++i) {
            auto c = zerg::test::connect_loopback(port);
            zerg::test::send_all(c.get(), "?");
            auto got = zerg::test::read_exact(c.get(), 64 * 1024, 10s);
            bool right = got.bytes.size() == 64 * 1024;
            for (std::size_t k = 0; right && k < got.bytes.size(); ++k)
                right = static_cast<std::uint8_t>(got.bytes[k]) == faults::pattern_byte(faults::reply_seed, k);
            if (!right) {
                flow shown;
                shown.received = got.bytes.size();
                shown.expect = 64 * 1024;
                t.fail("reset after 64 KiB", shown);
            }
            zerg::test::close_with_reset(c);
        }
        whole.join();
        for (auto const& f : flows) {
            if (f.end != ending::eof || f.mismatches || f.received != reply) t.fail("big reply", f);
            t.bytes += f.received;
        }
        ++t.rounds;
    }
}

void slow_clients(std::uint16_t port, const std::atomic<bool>& stop, tally& t) {
    while (!stop) {
        std::vector<fd_guard> slow;
        for (unsigned i = 0; i < 20; ++i) slow.push_back(faults::nonblocking_client(port));
        std::vector<bool> gone(slow.size(), false);
        unsigned closed = 0;
        auto give_up = clock_type::now() + 10s;
        while (closed < slow.size() && clock_type::now() < give_up) {
            for (std::size_t i = 0; i < slow.size(); ++i) {
                if (gone[i]) continue;
                char b[16];
                ssize_t r = ::recv(slow[i].get(), b, sizeof b, MSG_DONTWAIT);
                bool ended = r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
                if (!ended) ended = ::send(slow[i].get(), "s", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN;
                if (ended) {
                    gone[i] = true;
                    ++closed;
                }
            }
            std::this_thread::sleep_for(200ms);
        }
        if (closed < slow.size()) {
            flow shown;
            shown.end = ending::timed_out;
            t.fail("slow clients not closed by read_timeout", shown);
        }
        // A complete line still works.
        auto c = zerg::test::connect_loopback(port);
        zerg::test::send_all(c.get(), "line\n");
        if (zerg::test::read_exact(c.get(), 5, 10s).bytes != "line\n") {
            flow shown;
            t.fail("line after slow clients", shown);
        }
        ++t.rounds;
    }
}

template <class S>
std::string counts(const char* name, const S& s) {
    auto c = s.totals();
    char text[200];
    std::snprintf(text, sizeof text, "%s %llu/%llu/%llu", name, static_cast<unsigned long long>(c.accepted),
                  static_cast<unsigned long long>(c.closed), static_cast<unsigned long long>(c.open_connections));
    return text;
}

}  // namespace

int main(int argc, char** argv) {
    long seconds = 600, interval = 10;
    if (const char* env = std::getenv("ZERG_SOAK_SECONDS")) seconds = std::atol(env);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--seconds") == 0)
            seconds = std::atol(argv[i + 1]);
        else if (std::strcmp(argv[i], "--interval") == 0)
            interval = std::atol(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: %s [--seconds N] [--interval N]\n", argv[0]);
            return 2;
        }
    }
    if (seconds <= 0 || interval <= 0) {
        std::fprintf(stderr, "soak: --seconds and --interval must be positive\n");
        return 2;
    }
    faults::reply_pattern();

    auto config = faults::loopback_config(2);
    zerg::server<zerg::reactor<faults::span_echo>> echo_server(config);
    zerg::server<zerg::reactor<faults::sequence_echo>> churn_server(config);
    faults::big_sender big;
    big.reply_bytes = 4u << 20;
    big.send_buffer = 64 * 1024;
    zerg::server<zerg::reactor<faults::big_sender>> big_server(config, big);
    auto slow_config = config;
    slow_config.read_timeout = 1000ms;
    slow_config.idle_timeout = 3000ms;
    zerg::server<zerg::reactor<faults::line_echo>> slow_server(slow_config);
    echo_server.start();
    churn_server.start();
    big_server.start();
    slow_server.start();

    std::atomic<bool> stop{false};
    tally echo_tally, churn_tally, big_tally, slow_tally;
    std::vector<std::thread> clients;
    clients.emplace_back([&] { echo_streams(echo_server.port(), stop, echo_tally); });
    clients.emplace_back([&] { churn(churn_server.port(), stop, churn_tally); });
    clients.emplace_back([&] { big_replies(big_server.port(), big.reply_bytes, stop, big_tally); });
    clients.emplace_back([&] { slow_clients(slow_server.port(), stop, slow_tally); });

    std::printf("soak: %ld s, RSS every %ld s (%s); counts are accepted/closed/open\n", seconds, interval,
                faults::build_kind);
    std::printf("%8s %10s %10s  %s\n", "seconds", "RSS KiB", "MiB moved", "servers");
    std::fflush(stdout);
    auto started = clock_type::now();
    std::uint64_t first_rss = 0, low = ~0ull, high = 0;
    for (long at = interval; at <= seconds; at += interval) {
        std::this_thread::sleep_until(started + std::chrono::seconds(at));
        std::uint64_t rss = faults::rss_kib();
        if (!first_rss) first_rss = rss;
        low = std::min(low, rss);
        high = std::max(high, rss);
        std::uint64_t moved = echo_tally.bytes + churn_tally.bytes + big_tally.bytes;
        std::printf("%8ld %10llu %10llu  %s  %s  %s  %s  failures %llu\n", at, static_cast<unsigned long long>(rss),
                    static_cast<unsigned long long>(moved >> 20), counts("echo", echo_server).c_str(),
                    counts("churn", churn_server).c_str(), counts("big", big_server).c_str(),
                    counts("slow", slow_server).c_str(),
                    static_cast<unsigned long long>(echo_tally.failures + churn_tally.failures + big_tally.failures +
                                                    slow_tally.failures));
        std::fflush(stdout);
    }
    stop = true;
    for (auto& t : clients) t.join();
    std::uint64_t failures = echo_tally.failures + churn_tally.failures + big_tally.failures + slow_tally.failures;
    std::uint64_t stale = echo_server.totals().stale_completions + churn_server.totals().stale_completions +
                          big_server.totals().stale_completions + slow_server.totals().stale_completions;
    echo_server.stop();
    churn_server.stop();
    big_server.stop();
    slow_server.stop();
    std::printf("soak: rounds echo %llu, churn %llu, big %llu, slow %llu; failures %llu; stale completions %llu; "
                "RSS first %llu KiB, low %llu, high %llu\n",
                static_cast<unsigned long long>(echo_tally.rounds.load()),
                static_cast<unsigned long long>(churn_tally.rounds.load()),
                static_cast<unsigned long long>(big_tally.rounds.load()),
                static_cast<unsigned long long>(slow_tally.rounds.load()), static_cast<unsigned long long>(failures),
                static_cast<unsigned long long>(stale), static_cast<unsigned long long>(first_rss),
                static_cast<unsigned long long>(low), static_cast<unsigned long long>(high));
    return failures == 0 && stale == 0 ? 0 : 1;
}
