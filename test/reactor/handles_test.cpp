// Cross-thread handles and post() (doc/outbound.md), meant for TSan: many
// threads write through connection_handles to many connections while the
// clients close and reconnect (so slots are reused with new generations)
// and some handles close their connection. Every record names its target;
// every record a client receives must be its own, in each writer's order,
// and every write that was not delivered was refused (ENOTCONN) or went
// down with its connection.
#define BOOST_TEST_MODULE reactor_handles
#include <boost/test/unit_test.hpp>

#include <zerg/zerg.hpp>

#include <support/sockets.hpp>

#include <fcntl.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

// The connections the server has, by the id each client sent first.
struct registry {
    std::mutex m;
    struct entry {
        std::uint32_t id;
        zerg::connection_handle h;
    };
    std::vector<entry> all;  // closed ones stay: their handles must be refused
};
registry* known = nullptr;

struct sink {
    struct connection_state {
        std::uint32_t id = 0;
        unsigned have = 0;
    };
    // The first 4 bytes are the client's id; nothing else is sent.
    void on_data(zerg::connection<sink>& c, std::span<const std::byte> bytes) {
        auto& st = c.state();
        for (std::byte b : bytes) {
            if (st.have == 4) break;
            st.id |= std::uint32_t(std::to_integer<std::uint8_t>(b)) << (8 * st.have++);
            if (st.have == 4) {
                std::lock_guard lock(known->m);
                known->all.push_back({st.id, c.handle()});
            }
        }
    }
};
using sink_reactor = zerg::reactor<sink, zerg::handoff<zerg::mpmc_handoff<1024>>>;

// One record: target id, writer, sequence per writer, then filler.
constexpr std::size_t record_size = 16;
struct record {
    std::uint32_t id;
    std::uint32_t writer;
    std::uint32_t seq;
    std::uint32_t check;  // id ^ seq ^ 0x5a5a5a5a: a torn record shows
};

struct client {
    zerg::test::fd_guard fd;
    std::uint32_t id;
    std::string pending;
    std::map<std::uint32_t, std::uint32_t> last_seq;  // per writer
};

client connect_client(std::uint16_t port, std::uint32_t id) {
    client c{zerg::test::connect_loopback(port), id, {}, {}};
    unsigned char hello[4];
    std::memcpy(hello, &id, 4);  // little endian on every target zerg runs on
    BOOST_REQUIRE(::write(c.fd.get(), hello, 4) == 4);
    ::fcntl(c.fd.get(), F_SETFL, ::fcntl(c.fd.get(), F_GETFL) | O_NONBLOCK);
    return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE(writes_through_handles_reach_their_peer_or_are_refused) {
    registry reg;
    known = &reg;
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.reactors = 2;
    config.ring_entries = 256;
    config.max_connections = 8;  // per reactor: churn reuses slots
    config.stop_deadline = 2s;
    zerg::server<sink_reactor> s(config);
    s.start();

    // Fewer under the real-kernel job's software CPU (test/kernels/init sets it).
    const unsigned writers = 4, writes_each = std::getenv("ZERG_TEST_UNDER_QEMU") ? 1500 : 6000, clients_at_once = 12;
    // Writers go on past writes_each until the clients reconnected this
    // often, so slots are reused (16 slots in all) however slow the machine.
    constexpr unsigned min_reconnects = 48;
    std::atomic<std::uint64_t> attempts{0};
    std::atomic<std::uint64_t> queued{0}, refused{0}, posted_closes{0}, close_refused{0};
    std::atomic<unsigned> wrong{0};  // Boost.Test is for the main thread only: other threads count here
    std::atomic<unsigned> writers_left{writers};
    std::atomic<std::uint64_t> delivered{0}, foreign{0}, torn{0}, out_of_order{0}, reconnects{0};

    // Clients: one thread owns every socket; reads, verifies, and churns.
    std::thread clients([&] {
        std::mt19937 rng(7);
        std::uint32_t next_id = 1;
        std::vector<client> open;
        for (unsigned i = 0; i < clients_at_once; ++i) open.push_back(connect_client(s.port(), next_id++));
        auto read_one = [&](client& c) {  // false on EOF or error
            char buf[4096];
            for (;;) {
                ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
                if (n == 0) return false;
                if (n < 0) return errno == EAGAIN;
                c.pending.append(buf, static_cast<std::size_t>(n));
                std::size_t at = 0;
                for (; at + record_size <= c.pending.size(); at += record_size) {
                    record r;
                    std::memcpy(&r, c.pending.data() + at, sizeof r);
                    delivered.fetch_add(1, std::memory_order_relaxed);
                    if (r.check != (r.id ^ r.seq ^ 0x5a5a5a5au)) torn.fetch_add(1);
                    if (r.id != c.id) foreign.fetch_add(1);
                    auto [it, first] = c.last_seq.try_emplace(r.writer, r.seq);
                    if (!first) {
                        if (r.seq <= it->second) out_of_order.fetch_add(1);
                        it->second = r.seq;
                    }
                }
                c.pending.erase(0, at);
            }
        };
        auto deadline = std::chrono::steady_clock::now() + 120s;
        unsigned rounds = 0;
        while (std::chrono::steady_clock::now() < deadline) {
            bool writing = writers_left.load() != 0;
            std::vector<pollfd> fds;
            for (auto& c : open) fds.push_back({c.fd.get(), POLLIN, 0});
            ::poll(fds.data(), fds.size(), 5);
            for (std::size_t i = 0; i < open.size(); ++i) {
                if (read_one(open[i])) continue;
                open[i] = connect_client(s.port(), next_id++);  // closed by a handle: a new one
                reconnects.fetch_add(1);
            }
            // Churn: a random client leaves, a new one comes (its slot is reused).
            if (writing && ++rounds % 2 == 0) {
                std::size_t i = rng() % open.size();
                open[i] = connect_client(s.port(), next_id++);
                reconnects.fetch_add(1);
            }
            if (!writing && ++rounds > 200) break;  // drained what is left
        }
    });

    std::vector<std::thread> ws;
    for (unsigned w = 0; w < writers; ++w)
        ws.emplace_back([&, w] {
            std::mt19937 rng(100 + w);
            auto give_up = std::chrono::steady_clock::now() + 90s;  // the check on reconnects below then fails
            auto more = [&](std::uint32_t seq) {
                return seq <= writes_each ||
                       (reconnects.load() < min_reconnects && std::chrono::steady_clock::now() < give_up);
            };
            for (std::uint32_t seq = 1; more(seq); ++seq) {
                registry::entry target{};
                {
                    std::lock_guard lock(reg.m);
                    if (reg.all.empty()) {
                        --seq;
                        continue;
                    }
                    target = reg.all[rng() % reg.all.size()];
                }
                attempts.fetch_add(1);
                if (rng() % 400 == 0) {
                    if (s.close(target.h, [&](std::error_code e) {
                            if (e) close_refused.fetch_add(1);
                        }))
                        wrong.fetch_add(1);
                    posted_closes.fetch_add(1);
                    continue;
                }
                record r{target.id, w, seq, target.id ^ seq ^ 0x5a5a5a5au};
                auto ec = s.write(target.h, std::as_bytes(std::span(&r, 1)), [&](std::error_code e) {
                    (e ? refused : queued).fetch_add(1, std::memory_order_relaxed);
                    if (e && e != std::errc::not_connected) wrong.fetch_add(1);
                });
                if (ec) wrong.fetch_add(1);
                if (seq % 64 == 0) std::this_thread::sleep_for(100us);  // let the churn interleave
            }
            writers_left.fetch_sub(1);
        });
    for (auto& t : ws) t.join();

    // post(): a counter only the reactor thread touches, from many threads.
    std::vector<unsigned> on_reactor(config.reactors, 0);
    std::vector<std::thread> posters;
    std::atomic<unsigned> ran{0};
    for (unsigned p = 0; p < 4; ++p)
        posters.emplace_back([&, p] {
            for (unsigned i = 0; i < 500; ++i) {
                std::size_t r = (p + i) % config.reactors;
                bool posted = s.post(r, [&, r](sink_reactor& reactor) {
                    if (reactor.index() != r) wrong.fetch_add(1);
                    ++on_reactor[r];  // unsynchronised: TSan shows it if two threads ran it
                    ran.fetch_add(1);
                });
                if (!posted) wrong.fetch_add(1);
            }
        });
    for (auto& t : posters) t.join();
    clients.join();
    auto until = std::chrono::steady_clock::now() + 10s;
    while (ran.load() < 2000 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    BOOST_CHECK_EQUAL(ran.load(), 2000u);

    // Handles that name a reactor the server does not have are refused at once.
    BOOST_CHECK(s.write({7, 0, 0}, std::as_bytes(std::span("x", 1))) == std::errc::invalid_argument);
    std::uint64_t refusals = s.reactor(0).handle_refusals() + s.reactor(1).handle_refusals();
    s.stop();
    BOOST_CHECK_EQUAL(on_reactor[0] + on_reactor[1], 2000u);

    // Slots were reused: two handles with one slot and different generations.
    bool reused = false;
    for (std::size_t i = 0; i < reg.all.size() && !reused; ++i)
        for (std::size_t j = i + 1; j < reg.all.size() && !reused; ++j)
            reused = reg.all[i].h.reactor == reg.all[j].h.reactor && reg.all[i].h.slot == reg.all[j].h.slot &&
                     reg.all[i].h.generation != reg.all[j].h.generation;

    BOOST_TEST_MESSAGE("queued " << queued << ", refused " << refused << ", delivered " << delivered << ", reconnects "
                                 << reconnects << ", closes through handles " << posted_closes);
    BOOST_CHECK(reused);
    BOOST_CHECK_EQUAL(foreign.load(), 0u);       // never to the wrong peer
    BOOST_CHECK_EQUAL(torn.load(), 0u);          // never a partial record
    BOOST_CHECK_EQUAL(out_of_order.load(), 0u);  // one writer's records in its order
    BOOST_CHECK(refused.load() > 0);             // closed connections' handles were used, and refused
    BOOST_CHECK(delivered.load() > 0);
    BOOST_CHECK(delivered.load() <= queued.load());
    BOOST_CHECK_EQUAL(queued.load() + refused.load() + posted_closes.load(), attempts.load());
    BOOST_CHECK(attempts.load() >= std::uint64_t{writers} * writes_each);
    BOOST_CHECK(reconnects.load() >= min_reconnects);
    BOOST_CHECK_EQUAL(refusals, refused.load() + close_refused.load());
    BOOST_CHECK_EQUAL(wrong.load(), 0u);
}
