#define BOOST_TEST_MODULE reactor_lifecycle
#include <boost/test/unit_test.hpp>

// The reactor's structure as a user meets it: the connection state machines,
// zerg::reactor<Handler, Options...> and its defaults, request_stop() racing
// hand-overs under a single-producer queue (run under TSan in the suite),
// fallbacks from every ring, the buffer geometry check, and the reuse_port
// port probe that never listens. All traffic is on 127.0.0.1; every wait is
// bounded.

#include <zerg/zerg.hpp>

#include <support/echo_client.hpp>
#include <support/server_checks.hpp>
#include <support/sockets.hpp>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <iostream>
#include <system_error>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct echo {
    void on_data(zerg::connection<echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};

zerg::server_config small_config(unsigned reactors = 1) {
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.reactors = reactors;
    config.ring_entries = 256;
    config.max_connections = 256;
    config.stop_deadline = 2000ms;
    return config;
}

}  // namespace

// ---- the state machines -------------------------------------------------------

BOOST_AUTO_TEST_CASE(phase_transitions_follow_the_table) {
    using zerg::detail::phase;
    using zerg::detail::phase_allows;
    // The one path every connection takes, and the shortcuts.
    BOOST_TEST(phase_allows(phase::free, phase::open));
    BOOST_TEST(phase_allows(phase::open, phase::half_closing));
    BOOST_TEST(phase_allows(phase::half_closing, phase::write_shut));
    BOOST_TEST(phase_allows(phase::write_shut, phase::draining));
    BOOST_TEST(phase_allows(phase::draining, phase::tearing_down));
    BOOST_TEST(phase_allows(phase::open, phase::tearing_down));
    BOOST_TEST(phase_allows(phase::tearing_down, phase::closing));
    BOOST_TEST(phase_allows(phase::closing, phase::free));
    // What must never happen: reuse before the close, skipping the close,
    // reopening a closing slot, going back to reading after a drain.
    BOOST_TEST(!phase_allows(phase::tearing_down, phase::free));
    BOOST_TEST(!phase_allows(phase::open, phase::closing));
    BOOST_TEST(!phase_allows(phase::closing, phase::open));
    BOOST_TEST(!phase_allows(phase::draining, phase::open));
    BOOST_TEST(!phase_allows(phase::free, phase::draining));
    BOOST_TEST(!phase_allows(phase::write_shut, phase::half_closing));
}

BOOST_AUTO_TEST_CASE(read_state_transitions_follow_the_table) {
    using zerg::detail::read_allows;
    using zerg::detail::read_state;
    BOOST_TEST(read_allows(read_state::wanted, read_state::armed));
    BOOST_TEST(read_allows(read_state::armed, read_state::cancelling));
    BOOST_TEST(read_allows(read_state::cancelling, read_state::paused));
    BOOST_TEST(read_allows(read_state::paused, read_state::wanted));
    BOOST_TEST(read_allows(read_state::wanted, read_state::starved));
    BOOST_TEST(read_allows(read_state::starved, read_state::wanted));
    BOOST_TEST(read_allows(read_state::armed, read_state::stopped));
    // Arming twice, or arming while paused, would put two receives in the kernel.
    BOOST_TEST(!read_allows(read_state::armed, read_state::armed));
    BOOST_TEST(!read_allows(read_state::paused, read_state::armed));
    BOOST_TEST(!read_allows(read_state::cancelling, read_state::wanted));
}

BOOST_AUTO_TEST_CASE(lifecycle_predicates) {
    zerg::detail::lifecycle life;
    BOOST_TEST(!life.is_open());
    BOOST_TEST(life.torn_down());  // a free slot takes nothing
    life.move_to(zerg::detail::phase::open);
    BOOST_TEST(life.is_open());
    BOOST_TEST(life.accepts_writes());
    life.move_to(zerg::detail::phase::half_closing);
    BOOST_TEST(life.accepts_writes());  // flushed before the SHUT_WR
    life.move_to(zerg::detail::phase::write_shut);
    BOOST_TEST(life.is_open());         // still reading
    BOOST_TEST(!life.accepts_writes()); // FIN is out
    life.move_to(zerg::detail::phase::draining);
    BOOST_TEST(!life.is_open());
    BOOST_TEST(life.handed_out());
    life.move_to(zerg::detail::phase::tearing_down);
    BOOST_TEST(!life.handed_out());
    BOOST_TEST(life.torn_down());
}

// ---- zerg::reactor<Handler, Options...> ----------------------------------------

BOOST_AUTO_TEST_CASE(short_form_defaults_and_named_options) {
    using defaults = zerg::reactor<echo>;
    static_assert(std::is_same_v<defaults, zerg::basic_reactor<zerg::provided_buffers<4096, 1024>, zerg::spsc_handoff<4096>,
                                                               zerg::plain_submission, echo>>);
    // Any order; only the named one changes.
    using a = zerg::reactor<echo, zerg::handoff<zerg::mpmc_handoff<64>>, zerg::buffers<zerg::incremental_buffers<>>>;
    using b = zerg::reactor<echo, zerg::buffers<zerg::incremental_buffers<>>, zerg::handoff<zerg::mpmc_handoff<64>>>;
    static_assert(std::is_same_v<a, b>);
    static_assert(std::is_same_v<a::queue_type, zerg::mpmc_handoff<64>>);
    static_assert(std::is_same_v<a::submission_type, zerg::plain_submission>);
    // The last of two same options wins, as in Boost.Intrusive.
    using twice = zerg::reactor<echo, zerg::handoff<zerg::mpmc_handoff<64>>, zerg::handoff<zerg::msg_ring_handoff>>;
    static_assert(std::is_same_v<twice::queue_type, zerg::msg_ring_handoff>);

    zerg::server<a> s(small_config(2));
    s.start();
    zerg::test::check(zerg::test::run_echo({s.port(), 8, 64, 100}), 8ull * 64 * 100);
    zerg::test::check_clean(s);
    s.stop();
}

// ---- stop ----------------------------------------------------------------------

// One producer hands over sockets through an SPSC queue while four other
// threads ask the reactor to stop, again and again. request_stop() is a flag
// and a wake-up, never a push, so the queue keeps its single producer (TSan
// reports a race otherwise), and the reactor still wakes and returns.
BOOST_AUTO_TEST_CASE(request_stop_from_many_threads_races_hand_over) {
    using R = zerg::reactor<echo, zerg::handoff<zerg::spsc_handoff<64>>>;
    for (int round = 0; round < 20; ++round) {
        R r(0, small_config(), echo{});
        std::promise<void> ready;
        auto ready_future = ready.get_future();
        std::thread reactor_thread([&] {
            r.setup();
            ready.set_value();
            r.run();
        });
        ready_future.wait();

        constexpr int offered = 32;
        std::vector<int> handed;  // in hand-over order: the reactor takes them FIFO
        std::atomic<bool> go{false};
        std::thread producer([&] {
            while (!go.load()) std::this_thread::yield();
            for (int i = 0; i < offered; ++i) {
                int sv[2];
                if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) break;
                ::close(sv[1]);  // the peer is gone at once: the connection ends by itself
                if (r.hand_over(sv[0]))
                    handed.push_back(sv[0]);
                else
                    ::close(sv[0]);
            }
        });
        std::vector<std::thread> stoppers;
        for (int t = 0; t < 4; ++t)
            stoppers.emplace_back([&] {
                while (!go.load()) std::this_thread::yield();
                for (int i = 0; i < 50; ++i) r.request_stop();
            });
        go.store(true);
        producer.join();
        for (auto& t : stoppers) t.join();

        auto finished = std::async(std::launch::async, [&] { reactor_thread.join(); });
        if (finished.wait_for(10s) != std::future_status::ready) {
            std::cerr << "request_stop_from_many_threads_races_hand_over: the reactor never woke to stop\n";
            std::_Exit(1);  // a joinable thread stuck in io_uring_enter: nothing else to do
        }
        auto taken = r.counters().handoffs.get();
        BOOST_TEST(taken <= handed.size());
        BOOST_TEST(r.counters().open_connections.get() == 0u);
        BOOST_TEST(r.counters().accepted.get() + r.counters().rejected.get() == taken);
        // The ones still in the inbox when the reactor returned are ours to close.
        for (std::size_t i = taken; i < handed.size(); ++i) ::close(handed[i]);
    }
}

// ---- reports ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(fallbacks_come_from_every_reactor_and_the_acceptor) {
    zerg::uring::scoped_hide no_defer(zerg::uring::feature::defer_taskrun);
    zerg::server<zerg::reactor<echo>> s(small_config(2));
    s.start();
    bool reactor0 = false, reactor1 = false, acceptor = false;
    for (auto const& [who, what] : s.fallbacks_by_component()) {
        std::cout << "fallback " << who << ": " << what << '\n';
        if (what.rfind("defer_taskrun: ", 0) != 0) continue;
        reactor0 |= who == "reactor 0";
        reactor1 |= who == "reactor 1";
        acceptor |= who == "acceptor";
    }
    BOOST_TEST(reactor0);
    BOOST_TEST(reactor1);
    BOOST_TEST(acceptor);
    // The flat list says each reason once.
    auto flat = s.fallbacks();
    BOOST_TEST(std::count_if(flat.begin(), flat.end(), [](auto const& f) { return f.rfind("defer_taskrun: ", 0) == 0; }) == 1);
    s.stop();
}

// The run-time geometry goes through the same check as the policy's
// static_assert, and start() says why it refuses.
BOOST_AUTO_TEST_CASE(buffer_geometry_is_checked_at_start) {
    auto config = small_config();
    config.buffer_count = 1000;
    zerg::server<zerg::reactor<echo>> s(config);
    try {
        s.start();
        BOOST_ERROR("start() accepted 1000 buffers");
    } catch (const std::system_error& e) {
        BOOST_TEST((e.code() == std::errc::invalid_argument));
        BOOST_TEST(std::string(e.what()).find("power of two") != std::string::npos, e.what());
    }
    static_assert(zerg::buffer_geometry_error(4096, 1024) == nullptr);
    static_assert(zerg::buffer_geometry_error(4096, 1000) != nullptr);
    static_assert(zerg::buffer_geometry_error(0, 1024) != nullptr);
}

// The socket that picks the reuse_port reactors' shared port holds it
// without listening, so it never joins the SO_REUSEPORT group and no
// connection can be hashed to it and reset when it closes.
BOOST_AUTO_TEST_CASE(reuse_port_probe_binds_without_listening) {
    zerg::endpoint bound;
    int probe = zerg::bind_socket(zerg::endpoint::parse("127.0.0.1", 0, false), false, true, &bound);
    int listening = -1;
    socklen_t length = sizeof listening;
    BOOST_TEST(::getsockopt(probe, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0);
    BOOST_TEST(listening == 0);
    BOOST_TEST(bound.port() != 0);
    // It holds the port against a socket that does not share it.
    {
        zerg::test::fd_guard other(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        auto where = zerg::endpoint::parse("127.0.0.1", bound.port(), false);
        BOOST_TEST(::bind(other.get(), where.get(), where.length) == -1);
        BOOST_TEST(errno == EADDRINUSE);
    }
    ::close(probe);

    auto config = small_config(2);
    config.reuse_port = true;
    zerg::server<zerg::reactor<echo>> s(config);
    s.start();
    zerg::test::check(zerg::test::run_echo({s.port(), 32, 64, 20}), 32ull * 64 * 20);
    zerg::test::check_clean(s);
    s.stop();
}
