// Zero-copy sends (send_zc / sendmsg_zc with IORING_SEND_ZC_REPORT_USAGE,
// 6.2): a send of at least server_config::zero_copy_threshold queued bytes
// goes out zero-copy where the kernel can (counted in zc_sends, and in
// zc_copied when the kernel copied after all, as it does on loopback), a
// smaller one is copied, and with send_zc hidden (or on 6.1) every send is
// copied (zc_unavailable counts the large ones) and the fallback is
// reported. Echo is byte-exact every way. The queued memory stays until the
// notification: checked on send_path itself, CQE by CQE.
#define BOOST_TEST_MODULE reactor_zero_copy
#include <boost/test/unit_test.hpp>

#include <zerg/zerg.hpp>

#include <support/echo_client.hpp>
#include <support/server_checks.hpp>
#include <support/skip.hpp>
#include <support/sockets.hpp>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

namespace uring = zerg::uring;

// Copies every receive into the outbound queue: large replies are queued
// chunks, the memory zero-copy must keep until the notification.
struct copy_echo {
    void on_data(zerg::connection<copy_echo>& c, std::span<const std::byte> bytes) { c.write(bytes); }
};
// Replies by reference to the receive buffers: zero-copy from the ring.
struct item_echo {
    void on_ring_item(zerg::connection<item_echo>& c, zerg::ring_item item) {
        c.write_from(item);
        c.release(item);
    }
};

template <class H>
using reactor = zerg::basic_reactor<zerg::provided_buffers<4096, 256>, zerg::spsc_handoff<1024>, zerg::plain_submission, H>;

zerg::server_config test_config(std::size_t threshold) {
    zerg::server_config config;
    config.address = "127.0.0.1";
    config.reactors = 1;
    config.ring_entries = 256;
    config.max_connections = 64;
    config.zero_copy_threshold = threshold;
    config.stop_deadline = std::chrono::milliseconds(2000);
    return config;
}

bool listed(const std::vector<std::string>& all, const std::string& prefix) {
    for (auto const& fb : all)
        if (fb.rfind(prefix, 0) == 0) return true;
    return false;
}

template <class R>
void say(const zerg::server<R>& s) {
    auto t = s.totals();
    std::cout << boost::unit_test::framework::current_test_case().p_name.get() << ": zero-copy "
              << (s.reactor(0).zero_copy() ? "on" : "off") << ", zc sends " << t.zc_sends << " (copied " << t.zc_copied
              << "), large sends copied " << t.zc_unavailable;
    for (auto const& fb : s.fallbacks())
        if (fb.rfind("send_zc: ", 0) == 0) std::cout << "; fallback " << fb;
    std::cout << '\n';
}

// Large echoes: each 1 MiB message queues far more than the threshold,
// under backpressure; then many pipelined ones.
template <class R>
void echo_large(zerg::server<R>& s) {
    using zerg::test::check;
    check(zerg::test::run_echo({s.port(), 1, std::size_t{1} << 20, 2}), std::uint64_t{2} << 20);
    check(zerg::test::run_echo({s.port(), 4, 200 * 1024, 4}), 4ull * 200 * 1024 * 4);
    zerg::test::check_clean(s);
}

bool zc_available() { return zerg::detail::kernel_reports_zc_usage() && !uring::is_hidden(uring::feature::send_zc); }

}  // namespace

BOOST_AUTO_TEST_CASE(large_sends_go_zero_copy) {
    if (zerg::test::skip_unless(zc_available(), "send_zc with IORING_SEND_ZC_REPORT_USAGE (Linux 6.2), or it is hidden"))
        return;
    zerg::server<reactor<copy_echo>> s(test_config(16 * 1024));
    s.start();
    BOOST_TEST(s.reactor(0).zero_copy());
    BOOST_TEST(!listed(s.fallbacks(), "send_zc: "));
    echo_large(s);
    say(s);
    auto t = s.totals();
    BOOST_TEST(t.zc_sends > 0u);
    BOOST_TEST(t.zc_copied <= t.zc_sends);
    // Where the kernel copied (loopback does), each connection tried once
    // and copied from then on: 5 connections, more large sends than that.
    if (t.zc_copied > 0) {
        BOOST_TEST(t.zc_sends <= 5u);
        BOOST_TEST(t.zc_unavailable > 0u);
    }
    s.stop();
}

BOOST_AUTO_TEST_CASE(zero_copy_from_receive_buffers) {
    if (zerg::test::skip_unless(zc_available(), "send_zc with IORING_SEND_ZC_REPORT_USAGE (Linux 6.2), or it is hidden"))
        return;
    zerg::server<reactor<item_echo>> s(test_config(16 * 1024));
    s.start();
    echo_large(s);
    say(s);
    BOOST_TEST(s.totals().zc_sends > 0u);
    BOOST_TEST(s.totals().buffer_writes > 0u);
    s.stop();
}

BOOST_AUTO_TEST_CASE(small_sends_are_copied) {
    zerg::server<reactor<copy_echo>> s(test_config(1u << 30));  // nothing reaches it
    s.start();
    using zerg::test::check;
    check(zerg::test::run_echo({s.port(), 8, 700, 16}), 8ull * 700 * 16);
    check(zerg::test::run_echo({s.port(), 1, std::size_t{1} << 20, 1}), std::uint64_t{1} << 20);
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(s.totals().zc_sends == 0u);
    BOOST_TEST(s.totals().zc_unavailable == 0u);
    s.stop();
}

BOOST_AUTO_TEST_CASE(hidden_zero_copy_falls_back_to_copied_sends) {
    uring::scoped_hide hide(uring::feature::send_zc);
    zerg::server<reactor<copy_echo>> s(test_config(16 * 1024));
    s.start();
    BOOST_TEST(!s.reactor(0).zero_copy());
    BOOST_TEST(listed(s.fallbacks(), "send_zc: "));
    echo_large(s);
    say(s);
    BOOST_TEST(s.totals().zc_sends == 0u);
    BOOST_TEST(s.totals().zc_unavailable > 0u);
    s.stop();
}

BOOST_AUTO_TEST_CASE(threshold_zero_turns_it_off) {
    zerg::server<reactor<copy_echo>> s(test_config(0));
    s.start();
    BOOST_TEST(!s.reactor(0).zero_copy());
    BOOST_TEST(listed(s.fallbacks(), "send_zc: "));
    zerg::test::check(zerg::test::run_echo({s.port(), 1, 300 * 1024, 1}), 300u * 1024);
    BOOST_TEST(s.totals().zc_sends == 0u);
    s.stop();
}

// The memory a zero-copy send covers stays queued, untouched, from the
// send's result (IORING_CQE_F_MORE) until its notification: no chunk goes
// back to the pool, no held buffer to the ring, and no next send starts.
BOOST_AUTO_TEST_CASE(queued_memory_kept_until_the_notification) {
    zerg::detail::chunk_pool pool;
    unsigned released = 0, held = 0;
    struct counts {
        unsigned* held;
        unsigned* released;
    } ctx{&held, &released};
    pool.bind_buffers([](void* c, std::uint16_t) noexcept { ++*static_cast<counts*>(c)->held; },
                      [](void* c, std::uint16_t) noexcept { ++*static_cast<counts*>(c)->released; }, nullptr, &ctx);
    zerg::detail::send_path sp;
    std::vector<std::byte> big(100 * 1024, std::byte{0x42});
    std::vector<std::byte> ring_bytes(4096, std::byte{0x17});
    sp.append(big, pool);
    sp.append_held(ring_bytes, 3, pool);
    BOOST_TEST(held == 1u);
    std::size_t chunks = pool.allocated();
    io_uring_sqe sqe{};
    auto kind = sp.prepare_send(&sqe, 5, true, 16 * 1024);
    BOOST_TEST((kind == zerg::detail::send_path::send_kind::zero_copy));
    BOOST_TEST(sqe.opcode == IORING_OP_SENDMSG_ZC);
    BOOST_TEST((sqe.ioprio & IORING_SEND_ZC_REPORT_USAGE) != 0);
    // The result CQE: everything sent, the notification still due.
    sp.keep_zc_result(static_cast<int>(big.size() + ring_bytes.size()));
    BOOST_TEST(sp.in_flight());
    BOOST_TEST(!sp.ready());
    BOOST_TEST(sp.size() == big.size() + ring_bytes.size());
    BOOST_TEST(pool.available() == 0u);  // no chunk back in the pool to be written again
    BOOST_TEST(released == 0u);          // the ring buffer still held
    sp.discard(pool);                    // a teardown meanwhile: still nothing let go
    BOOST_TEST(pool.available() == 0u);
    BOOST_TEST(released == 0u);
    // The notification.
    auto out = sp.complete(sp.zc_result(), pool, false, 1 << 20);
    BOOST_TEST(out.drained);
    BOOST_TEST(!sp.in_flight());
    BOOST_TEST(released == 1u);
    BOOST_TEST(pool.available() == chunks);
    // Below the threshold, and with zero-copy off, it is a plain send.
    sp.append(std::span(big).first(1000), pool);
    BOOST_TEST((sp.prepare_send(&sqe, 5, true, 16 * 1024) == zerg::detail::send_path::send_kind::copied));
    BOOST_TEST(sqe.opcode == IORING_OP_SEND);
    sp.complete(1000, pool, false, 1 << 20);
    sp.append(big, pool);
    BOOST_TEST((sp.prepare_send(&sqe, 5, false, 16 * 1024) == zerg::detail::send_path::send_kind::copied_above_threshold));
    BOOST_TEST(sqe.opcode == IORING_OP_SENDMSG);
    sp.complete(static_cast<int>(big.size()), pool, false, 1 << 20);
    // A connection whose zero-copy send the kernel copied copies from then on.
    sp.decline_zc();
    sp.append(big, pool);
    BOOST_TEST((sp.prepare_send(&sqe, 5, true, 16 * 1024) == zerg::detail::send_path::send_kind::copied_above_threshold));
    sp.reset(pool);
    sp.append(big, pool);
    BOOST_TEST((sp.prepare_send(&sqe, 5, true, 16 * 1024) == zerg::detail::send_path::send_kind::zero_copy));
    sp.reset(pool);
}

// Answers its first byte with 8 MiB, at once: the first send is a large
// zero-copy one, made while the peer's window is already small.
struct big_reply {
    void on_data(zerg::connection<big_reply>& c, std::span<const std::byte>) {
        if (c.queued_bytes() > 0) return;
        std::vector<std::byte> eight(std::size_t{8} << 20, std::byte{0x33});
        c.write(eight);
    }
};

// A peer that stops reading while a zero-copy send's notification is due:
// the notification comes only once the socket drops the pages, so the
// write timeout's teardown must close (with a reset) without waiting for
// it; then it comes, and the slot is freed.
BOOST_AUTO_TEST_CASE(stalled_reader_with_a_notification_due_is_closed) {
    if (zerg::test::skip_unless(zc_available(), "send_zc with IORING_SEND_ZC_REPORT_USAGE (Linux 6.2), or it is hidden"))
        return;
    auto config = test_config(16 * 1024);
    config.write_timeout = std::chrono::milliseconds(300);
    zerg::server<reactor<big_reply>> s(config);
    s.start();
    zerg::test::fd_guard c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int small = 4096;
    ::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(s.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    BOOST_REQUIRE(::send(c.get(), "x", 1, MSG_NOSIGNAL) == 1);
    // Never read: the write timeout closes it; the notification then comes.
    BOOST_TEST(zerg::test::eventually([&] { return s.totals().closed_timeout == 1u; }));
    zerg::test::check_clean(s);
    say(s);
    BOOST_TEST(s.totals().zc_sends == 1u);
    s.stop();
}
