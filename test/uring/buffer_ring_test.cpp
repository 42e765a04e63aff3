#define BOOST_TEST_MODULE uring_buffer_ring
#include <boost/test/unit_test.hpp>

#include <zerg/uring/buffer_ring.hpp>
#include <zerg/uring/hidden_features.hpp>
#include <zerg/uring/operations.hpp>
#include <zerg/uring/probe.hpp>
#include <zerg/uring/ring.hpp>

#include "support/skip.hpp"
#include "support/sockets.hpp"

#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace uring = zerg::uring;
namespace zt = zerg::test;

namespace {

constexpr std::uint64_t recv_tag = 0x5245'4356;  // "RECV"

const uring::kernel_support& kernel() {
    static const uring::kernel_support k = uring::probe_kernel();
    return k;
}

// The byte at position `i` of a test stream: a multiplicative hash, so no
// short period lines up with a buffer size and a misplaced or reordered
// chunk cannot compare equal by accident.
std::byte stream_byte(std::size_t i) {
    return static_cast<std::byte>((static_cast<std::uint32_t>(i) * 2654435761u) >> 24);
}

std::vector<std::byte> stream_bytes(std::size_t from, std::size_t count) {
    std::vector<std::byte> out(count);
    for (std::size_t k = 0; k < count; ++k) out[k] = stream_byte(from + k);
    return out;
}

// Index of the first byte of [data, data+size) that is not stream position
// from+k, or size when all match.
std::size_t first_mismatch(const std::byte* data, std::size_t size, std::size_t from) {
    for (std::size_t k = 0; k < size; ++k)
        if (data[k] != stream_byte(from + k)) return k;
    return size;
}

void send_all(int fd, const std::vector<std::byte>& data) {
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        zt::check(n > 0, "send");
        done += static_cast<std::size_t>(n);
    }
}

void send_stream(int fd, std::size_t from, std::size_t count) { send_all(fd, stream_bytes(from, count)); }

io_uring_cqe as_cqe(const zt::completion& c) {
    io_uring_cqe cqe{};
    cqe.user_data = c.user_data;
    cqe.res = c.res;
    cqe.flags = c.flags;
    return cqe;
}

// Completions one at a time, in the order the kernel posted them.
class completions {
public:
    explicit completions(uring::ring& r) : ring_(r) {}
    zt::completion next() {
        if (queue_.empty()) {
            auto batch = zt::wait_for(ring_, 1);
            queue_.insert(queue_.end(), batch.begin(), batch.end());
        }
        auto c = queue_.front();
        queue_.pop_front();
        if (c.user_data != recv_tag) throw std::runtime_error("unexpected completion " + std::to_string(c.user_data));
        return c;
    }
    bool empty() const noexcept { return queue_.empty(); }

private:
    uring::ring& ring_;
    std::deque<zt::completion> queue_;
};

void arm_multishot(uring::ring& r, int fd, std::uint16_t group) {
    io_uring_sqe* sqe = r.get_sqe();
    uring::prep_recv_multishot(sqe, fd, group);
    uring::set_user_data(sqe, recv_tag);
    BOOST_REQUIRE_EQUAL(r.submit(), 1);
}

void arm_bundle(uring::ring& r, int fd, std::uint16_t group, bool multishot) {
    io_uring_sqe* sqe = r.get_sqe();
    uring::prep_recv_bundle(sqe, fd, group, multishot);
    uring::set_user_data(sqe, recv_tag);
    BOOST_REQUIRE_EQUAL(r.submit(), 1);
}

void no_delay(int fd) {
    int one = 1;
    zt::check(::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "TCP_NODELAY");
}

// Closes the sending side and checks that the armed multishot receive ends
// with EOF (res 0, no buffer, no MORE): nothing was left in flight.
void finish(completions& cq, zt::fd_guard& sender) {
    sender.reset();
    auto c = cq.next();
    BOOST_TEST(c.res == 0);
    BOOST_TEST(!(c.flags & IORING_CQE_F_MORE));
    BOOST_TEST(!(c.flags & IORING_CQE_F_BUFFER));
}

void check_all_back(const uring::buffer_ring& br) {
    BOOST_TEST(br.held() == 0u);
    BOOST_TEST(br.staged() == 0u);
    BOOST_TEST(br.in_kernel() == br.entries());
}

uring::buffer_ring_options options(unsigned entries, unsigned size, bool incremental, std::uint16_t group = 0) {
    uring::buffer_ring_options o;
    o.entries = entries;
    o.buffer_size = size;
    o.incremental = incremental;
    o.group_id = group;
    return o;
}

// ---- data lands in the buffer the CQE names ----------------------------------

// Sends messages one at a time and checks, for each completion, that its bytes
// sit in the buffer the CQE names, at the offset the mode implies.
void data_lands_in_named_buffer(std::pair<zt::fd_guard, zt::fd_guard> pair, bool incremental) {
    auto& [client, server] = pair;
    uring::ring r;
    uring::buffer_ring br(r, options(8, 1024, incremental, 3));
    BOOST_REQUIRE(br.incremental() == incremental);
    BOOST_TEST(br.group() == 3);
    check_all_back(br);
    completions cq(r);
    arm_multishot(r, server.get(), 3);

    const std::size_t sizes[] = {1, 17, 300, 1000, 64, 1024};
    std::size_t position = 0;
    std::map<std::uint16_t, std::uint32_t> used;  // incremental: bytes per buffer
    std::set<std::uint16_t> plain_ids;
    std::vector<std::uint16_t> to_recycle;
    for (std::size_t size : sizes) {
        send_stream(client.get(), position, size);
        std::size_t got = 0;
        while (got < size) {
            auto c = cq.next();
            BOOST_REQUIRE_GT(c.res, 0);
            BOOST_REQUIRE(uring::cqe_has_buffer(as_cqe(c)));
            BOOST_TEST(uring::cqe_has_more(as_cqe(c)));
            auto s = br.take(as_cqe(c));
            BOOST_TEST(s.id == uring::cqe_buffer_id(as_cqe(c)));
            BOOST_REQUIRE_LT(s.id, br.entries());
            BOOST_TEST(s.size == static_cast<std::uint32_t>(c.res));
            if (incremental) {
                // Where the kernel put the bytes: right behind the previous
                // slice of the same buffer.
                BOOST_TEST(s.data == br.buffer(s.id) + used[s.id]);
                used[s.id] += s.size;
                BOOST_TEST(s.last_use == !(c.flags & IORING_CQE_F_BUF_MORE));
                BOOST_TEST(s.last_use == (used[s.id] == br.buffer_size()));
            } else {
                BOOST_TEST(s.data == br.buffer(s.id));
                BOOST_TEST(s.last_use);
                BOOST_TEST(!(c.flags & IORING_CQE_F_BUF_MORE));
                BOOST_TEST(plain_ids.insert(s.id).second, "buffer " << s.id << " filled twice without recycling");
            }
            BOOST_REQUIRE_LE(got + s.size, size);
            BOOST_TEST(first_mismatch(s.data, s.size, position + got) == s.size);
            if (s.last_use) to_recycle.push_back(s.id);
            got += s.size;
        }
        position += size;
    }
    BOOST_TEST(br.held() == to_recycle.size());
    BOOST_TEST(br.in_kernel() == br.entries() - to_recycle.size());
    if (!incremental) BOOST_TEST(to_recycle.size() == std::size(sizes));
    for (auto id : to_recycle) br.recycle(id);
    BOOST_TEST(br.staged() == to_recycle.size());
    br.publish();
    check_all_back(br);
    finish(cq, client);
}

}  // namespace

BOOST_AUTO_TEST_CASE(plain_data_lands_in_named_buffer_tcp) {
    auto pair = zt::tcp_pair();
    no_delay(pair.first.get());
    data_lands_in_named_buffer(std::move(pair), false);
}

BOOST_AUTO_TEST_CASE(plain_data_lands_in_named_buffer_unix) { data_lands_in_named_buffer(zt::unix_pair(), false); }

BOOST_AUTO_TEST_CASE(incremental_data_lands_in_named_buffer_tcp) {
    if (zt::skip_unless(kernel().buf_ring_incremental, "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    auto pair = zt::tcp_pair();
    no_delay(pair.first.get());
    data_lands_in_named_buffer(std::move(pair), true);
}

BOOST_AUTO_TEST_CASE(incremental_data_lands_in_named_buffer_unix) {
    if (zt::skip_unless(kernel().buf_ring_incremental, "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    data_lands_in_named_buffer(zt::unix_pair(), true);
}

// ---- exhaustion ----------------------------------------------------------------

namespace {

// Four buffers, nothing recycled: the multishot receive runs dry and ends
// with -ENOBUFS; whatever it could not take stays in the socket and arrives,
// in order, once buffers are back and the receive is re-armed.
void exhaustion_loses_nothing(bool incremental) {
    auto [client, server] = zt::unix_pair();
    uring::ring r;
    uring::buffer_ring br(r, options(4, 256, incremental));
    BOOST_REQUIRE(br.incremental() == incremental);
    completions cq(r);

    const std::size_t total = 2 * 4 * 256 + 100;  // two ring-fulls and a bit
    send_stream(client.get(), 0, total);
    arm_multishot(r, server.get(), 0);

    std::size_t received = 0;
    unsigned enobufs = 0;
    std::vector<std::uint16_t> held;
    std::map<std::uint16_t, std::uint32_t> used;
    while (received < total) {
        auto c = cq.next();
        if (c.res == -ENOBUFS) {
            // The receive is over: no MORE, no buffer, and every buffer is
            // with the application.
            ++enobufs;
            BOOST_TEST(!(c.flags & IORING_CQE_F_MORE));
            BOOST_TEST(!(c.flags & IORING_CQE_F_BUFFER));
            BOOST_TEST(br.held() == br.entries());
            BOOST_TEST(br.in_kernel() == 0u);
            BOOST_TEST(held.size() == br.entries());
            BOOST_TEST(received < total);
            for (auto id : held) br.recycle(id);
            BOOST_TEST(br.staged() == br.entries());
            BOOST_TEST(br.in_kernel() == 0u);
            br.publish();
            check_all_back(br);
            held.clear();
            arm_multishot(r, server.get(), 0);
            continue;
        }
        BOOST_REQUIRE_GT(c.res, 0);
        BOOST_REQUIRE(c.flags & IORING_CQE_F_BUFFER);
        BOOST_TEST(uring::cqe_has_more(as_cqe(c)));
        auto s = br.take(as_cqe(c));
        BOOST_TEST(s.data == br.buffer(s.id) + used[s.id]);
        if (incremental) used[s.id] = s.last_use ? 0 : used[s.id] + s.size;
        BOOST_REQUIRE_LE(received + s.size, total);
        BOOST_TEST(first_mismatch(s.data, s.size, received) == s.size, "bytes out of order at " << received);
        received += s.size;
        if (s.last_use) held.push_back(s.id);
    }
    // 2148 bytes through 4 x 256: the ring runs dry at least twice.
    BOOST_TEST(enobufs >= 2u);
    BOOST_TEST(received == total);
    for (auto id : held) br.recycle(id);
    br.publish();
    check_all_back(br);
    finish(cq, client);
}

}  // namespace

BOOST_AUTO_TEST_CASE(plain_exhaustion_ends_with_enobufs_and_loses_nothing) { exhaustion_loses_nothing(false); }

BOOST_AUTO_TEST_CASE(incremental_exhaustion_ends_with_enobufs_and_loses_nothing) {
    if (zt::skip_unless(kernel().buf_ring_incremental, "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    exhaustion_loses_nothing(true);
}

// ---- recycling -----------------------------------------------------------------

namespace {

// Many more messages than buffers: each buffer is recycled once used, in
// batches (several recycle() then one publish()), and the counters follow a
// model of the ring kept by the test at every step.
void recycling_keeps_the_ring_going(bool incremental, unsigned entries, unsigned buffer_size, std::size_t message,
                                    unsigned batch, unsigned messages) {
    auto [client, server] = zt::unix_pair();
    uring::ring r;
    uring::buffer_ring br(r, options(entries, buffer_size, incremental, 7));
    BOOST_REQUIRE(br.incremental() == incremental);
    completions cq(r);
    arm_multishot(r, server.get(), 7);

    std::vector<std::uint16_t> held;          // model: buffers the test holds
    std::map<std::uint16_t, std::uint32_t> used;  // model: incremental fill level
    std::size_t position = 0;
    unsigned buffers_used = 0;
    unsigned mismatches = 0;
    auto check_counters = [&](unsigned staged) {
        if (br.held() != held.size() || br.staged() != staged || br.in_kernel() != entries - held.size() - staged) {
            ++mismatches;
            BOOST_ERROR("counters: held " << br.held() << " (model " << held.size() << "), staged " << br.staged()
                                          << " (model " << staged << "), in_kernel " << br.in_kernel());
        }
    };

    for (unsigned m = 0; m < messages && mismatches < 5; ++m) {
        send_stream(client.get(), position, message);
        std::size_t got = 0;
        while (got < message) {
            auto c = cq.next();
            BOOST_REQUIRE_GT(c.res, 0);
            BOOST_REQUIRE(c.flags & IORING_CQE_F_BUFFER);
            // Buffers always come back in time: the receive never runs dry.
            BOOST_REQUIRE(uring::cqe_has_more(as_cqe(c)));
            auto s = br.take(as_cqe(c));
            BOOST_REQUIRE(s.data == br.buffer(s.id) + used[s.id]);
            BOOST_REQUIRE_LE(got + s.size, message);
            BOOST_REQUIRE_MESSAGE(first_mismatch(s.data, s.size, position + got) == s.size,
                                  "message " << m << ": bytes differ");
            got += s.size;
            if (incremental && !s.last_use) {
                used[s.id] += s.size;
            } else {
                used[s.id] = 0;
                held.push_back(s.id);
                ++buffers_used;
            }
            check_counters(0);
        }
        position += message;
        if (held.size() >= batch) {
            // Stage the batch one by one: nothing reaches the kernel until publish().
            unsigned staged = 0;
            for (auto id : held) {
                br.recycle(id);
                ++staged;
                if (br.staged() != staged || br.held() != held.size() - staged ||
                    br.in_kernel() != entries - held.size()) {
                    ++mismatches;
                    BOOST_ERROR("after recycle(" << id << "): held " << br.held() << ", staged " << br.staged()
                                                 << ", in_kernel " << br.in_kernel());
                }
            }
            held.clear();
            br.publish();
            check_counters(0);
            BOOST_TEST(br.in_kernel() == entries);
        }
    }
    BOOST_TEST(mismatches == 0u);
    BOOST_TEST(position == std::size_t{messages} * message);
    // Every buffer went round many times.
    BOOST_TEST(buffers_used > 4 * entries);
    for (auto id : held) br.recycle(id);
    br.publish();
    check_all_back(br);
    finish(cq, client);
}

}  // namespace

BOOST_AUTO_TEST_CASE(plain_recycling_in_batches) {
    // One message per buffer; recycled three at a time.
    recycling_keeps_the_ring_going(false, 8, 128, 100, 3, 300);
}

BOOST_AUTO_TEST_CASE(plain_recycling_messages_spanning_buffers) {
    // Each message needs three buffers; recycled after every second message.
    recycling_keeps_the_ring_going(false, 8, 64, 150, 6, 200);
}

BOOST_AUTO_TEST_CASE(incremental_recycling_in_batches) {
    if (zt::skip_unless(kernel().buf_ring_incremental, "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    // 100-byte messages in 256-byte buffers: most buffers hold parts of
    // three messages, and one message in two straddles two buffers.
    recycling_keeps_the_ring_going(true, 4, 256, 100, 2, 300);
}

// ---- incremental consumption --------------------------------------------------

BOOST_AUTO_TEST_CASE(incremental_small_receives_share_one_buffer) {
    if (zt::skip_unless(kernel().buf_ring_incremental, "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    auto [client, server] = zt::unix_pair();
    uring::ring r;
    uring::buffer_ring br(r, options(4, 1024, true));
    BOOST_REQUIRE(br.incremental());
    BOOST_TEST(!br.fell_back());
    BOOST_TEST(br.fallback_reason().empty());
    completions cq(r);
    arm_multishot(r, server.get(), 0);

    // 100+200+300+400 = 1000 bytes, then 100 more: 24 fill the buffer and the
    // last 76 open the next one.
    const std::size_t sizes[] = {100, 200, 300, 400};
    std::size_t position = 0;
    std::uint16_t first_id = 0;
    for (std::size_t i = 0; i < std::size(sizes); ++i) {
        send_stream(client.get(), position, sizes[i]);
        auto c = cq.next();
        BOOST_REQUIRE(c.flags & IORING_CQE_F_BUFFER);
        BOOST_TEST(c.res == static_cast<int>(sizes[i]));
        BOOST_TEST((c.flags & IORING_CQE_F_BUF_MORE) != 0u);
        auto s = br.take(as_cqe(c));
        if (i == 0) first_id = s.id;
        BOOST_TEST(s.id == first_id);
        BOOST_TEST(s.data == br.buffer(first_id) + position);
        BOOST_TEST(!s.last_use);
        BOOST_TEST(first_mismatch(s.data, s.size, position) == s.size);
        // The buffer is still the kernel's to fill.
        BOOST_TEST(br.held() == 0u);
        BOOST_TEST(br.in_kernel() == br.entries());
        position += s.size;
    }

    send_stream(client.get(), position, 100);
    auto tail = cq.next();
    BOOST_REQUIRE(tail.flags & IORING_CQE_F_BUFFER);
    BOOST_TEST(tail.res == 24);
    BOOST_TEST(!(tail.flags & IORING_CQE_F_BUF_MORE));
    auto last = br.take(as_cqe(tail));
    BOOST_TEST(last.id == first_id);
    BOOST_TEST(last.data == br.buffer(first_id) + 1000);
    BOOST_TEST(last.last_use);
    BOOST_TEST(br.held() == 1u);
    BOOST_TEST(br.in_kernel() == br.entries() - 1);

    auto next = cq.next();
    BOOST_REQUIRE(next.flags & IORING_CQE_F_BUFFER);
    BOOST_TEST(next.res == 76);
    BOOST_TEST((next.flags & IORING_CQE_F_BUF_MORE) != 0u);
    auto fresh = br.take(as_cqe(next));
    BOOST_TEST(fresh.id != first_id);
    BOOST_TEST(fresh.data == br.buffer(fresh.id));
    BOOST_TEST(!fresh.last_use);
    BOOST_TEST(first_mismatch(fresh.data, fresh.size, 1024) == fresh.size);
    BOOST_TEST(br.held() == 1u);

    // The full buffer holds stream bytes 0..1023 end to end.
    BOOST_TEST(first_mismatch(br.buffer(first_id), br.buffer_size(), 0) == br.buffer_size());

    br.recycle(first_id);
    BOOST_TEST(br.staged() == 1u);
    br.publish();
    check_all_back(br);

    // The partly used buffer keeps filling where it stopped.
    send_stream(client.get(), 1100, 50);
    auto more = cq.next();
    BOOST_REQUIRE(more.flags & IORING_CQE_F_BUFFER);
    auto again = br.take(as_cqe(more));
    BOOST_TEST(again.id == fresh.id);
    BOOST_TEST(again.data == br.buffer(fresh.id) + 76);
    BOOST_TEST(again.size == 50u);
    BOOST_TEST(first_mismatch(again.data, again.size, 1100) == again.size);
    check_all_back(br);
    finish(cq, client);
}

// ---- the fallbacks ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(hidden_incremental_falls_back_to_plain) {
    uring::ring r;
    {
        uring::scoped_hide hide(uring::feature::buf_ring_incremental);
        BOOST_TEST(!uring::probe_kernel().buf_ring_incremental);
        uring::buffer_ring br(r, options(4, 1024, true));
        BOOST_TEST(!br.incremental());
        BOOST_TEST(br.fell_back());
        BOOST_TEST(!br.fallback_reason().empty());
        BOOST_TEST(br.fallback_reason().find("hidden") != std::string::npos, br.fallback_reason());
        BOOST_TEST(br.error_text().empty());
        check_all_back(br);

        // Plain mode for real: every receive gets a buffer of its own.
        auto [client, server] = zt::unix_pair();
        completions cq(r);
        arm_multishot(r, server.get(), 0);
        std::size_t position = 0;
        std::set<std::uint16_t> ids;
        for (std::size_t size : {10u, 20u, 30u}) {
            send_stream(client.get(), position, size);
            auto c = cq.next();
            BOOST_REQUIRE(c.flags & IORING_CQE_F_BUFFER);
            BOOST_TEST(!(c.flags & IORING_CQE_F_BUF_MORE));
            BOOST_TEST(c.res == static_cast<int>(size));
            auto s = br.take(as_cqe(c));
            BOOST_TEST(s.last_use);
            BOOST_TEST(s.data == br.buffer(s.id));
            BOOST_TEST(first_mismatch(s.data, s.size, position) == s.size);
            BOOST_TEST(ids.insert(s.id).second);
            position += size;
        }
        BOOST_TEST(br.held() == 3u);
        for (auto id : ids) br.recycle(id);
        br.publish();
        check_all_back(br);
        finish(cq, client);
    }
    BOOST_TEST(!uring::is_hidden(uring::feature::buf_ring_incremental));
}

BOOST_AUTO_TEST_CASE(incremental_when_available_does_not_fall_back) {
    if (zt::skip_unless(kernel().buf_ring_incremental, "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    uring::ring r;
    uring::buffer_ring br(r, options(4, 1024, true));
    BOOST_TEST(br.incremental());
    BOOST_TEST(!br.fell_back());
    // Plain was asked for: plain it is, and no fallback either.
    uring::buffer_ring plain(r, options(4, 1024, false, 1));
    BOOST_TEST(!plain.incremental());
    BOOST_TEST(!plain.fell_back());
}

BOOST_AUTO_TEST_CASE(hidden_buf_ring_is_an_error_not_a_crash) {
    uring::ring r;
    {
        uring::scoped_hide hide(uring::feature::buf_ring);
        BOOST_TEST(!uring::probe_kernel().buf_ring);

        std::error_code ec;
        uring::buffer_ring br(r, options(4, 256, false), ec);
        BOOST_TEST(static_cast<bool>(ec));
        BOOST_TEST(ec.value() == EINVAL);
        BOOST_TEST(br.error_text().find("hidden") != std::string::npos, br.error_text());
        BOOST_TEST(br.error_text().find("5.19") != std::string::npos, br.error_text());
        // A ring that failed owns nothing.
        BOOST_TEST(br.entries() == 0u);
        BOOST_TEST(br.in_kernel() == 0u);

        BOOST_CHECK_EXCEPTION(uring::buffer_ring(r, options(4, 256, true)), std::system_error,
                              [](const std::system_error& e) {
                                  return e.code().value() == EINVAL &&
                                         std::string(e.what()).find("hidden") != std::string::npos;
                              });
    }
    // Revealed again: the same group registers fine, so the failed attempts
    // left nothing registered behind.
    std::error_code ec;
    uring::buffer_ring br(r, options(4, 256, false), ec);
    BOOST_TEST(!ec, ec.message() << ": " << br.error_text());
    check_all_back(br);
}

BOOST_AUTO_TEST_CASE(invalid_options_are_refused_with_a_reason) {
    uring::ring r;
    struct bad {
        unsigned entries;
        unsigned size;
        const char* names;
    };
    const bad cases[] = {
        {3, 256, "power of two"}, {0, 256, "power of two"},      {6, 256, "power of two"},
        {65536, 256, "power of two"}, {4, 0, "buffer_size"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("entries " << c.entries << ", buffer_size " << c.size) {
            std::error_code ec;
            uring::buffer_ring br(r, options(c.entries, c.size, false), ec);
            BOOST_TEST(ec.value() == EINVAL);
            BOOST_TEST(br.error_text().find(c.names) != std::string::npos, br.error_text());
            BOOST_CHECK_EXCEPTION(uring::buffer_ring(r, options(c.entries, c.size, false)), std::system_error,
                                  [&](const std::system_error& e) {
                                      return e.code().value() == EINVAL &&
                                             std::string(e.what()).find(c.names) != std::string::npos;
                                  });
        }
    }
    // The limits themselves are fine.
    std::error_code ec;
    uring::buffer_ring one(r, options(1, 1, false, 10), ec);
    BOOST_TEST(!ec, one.error_text());
    uring::buffer_ring big(r, options(32768, 16, false, 11), ec);
    BOOST_TEST(!ec, big.error_text());
    BOOST_TEST(big.in_kernel() == 32768u);
}

BOOST_AUTO_TEST_CASE(a_group_registered_twice_is_refused) {
    uring::ring r;
    uring::buffer_ring first(r, options(4, 256, false, 5));
    std::error_code ec;
    uring::buffer_ring second(r, options(4, 256, false, 5), ec);
    BOOST_TEST(ec.value() == EEXIST);
    BOOST_TEST(second.error_text().find("group 5") != std::string::npos, second.error_text());
    // The first is untouched: it still receives.
    auto [client, server] = zt::unix_pair();
    completions cq(r);
    arm_multishot(r, server.get(), 5);
    send_stream(client.get(), 0, 40);
    auto c = cq.next();
    BOOST_REQUIRE(c.flags & IORING_CQE_F_BUFFER);
    auto s = first.take(as_cqe(c));
    BOOST_TEST(s.size == 40u);
    BOOST_TEST(first_mismatch(s.data, s.size, 0) == s.size);
    first.recycle(s.id);
    first.publish();
    check_all_back(first);
    finish(cq, client);
}

// ---- bundles ------------------------------------------------------------------------

namespace {

// Receives `total` bytes of the stream from `position` with bundle receives,
// checking that the slices come in ring order (the model `order`: ids front
// to back as the kernel will hand them out) and hold the right bytes.
// Returns the ids taken, in order, and the largest number of buffers one
// completion covered.
std::pair<std::vector<std::uint16_t>, unsigned> receive_bundles(uring::ring& r, completions& cq,
                                                                 uring::buffer_ring& br, int fd,
                                                                 std::deque<std::uint16_t>& order,
                                                                 std::size_t position, std::size_t total) {
    std::vector<std::uint16_t> taken;
    unsigned widest = 0;
    std::size_t got = 0;
    while (got < total) {
        arm_bundle(r, fd, br.group(), false);
        auto c = cq.next();
        BOOST_REQUIRE_GT(c.res, 0);
        BOOST_REQUIRE(c.flags & IORING_CQE_F_BUFFER);
        BOOST_TEST(!(c.flags & IORING_CQE_F_MORE));
        unsigned slices = 0;
        std::uint32_t bytes = 0;
        BOOST_TEST(uring::cqe_buffer_id(as_cqe(c)) == order.front());
        br.take_bundle(as_cqe(c), [&](const uring::buffer_ring::slice& s) {
            BOOST_REQUIRE(!order.empty());
            BOOST_TEST(s.id == order.front(), "slice " << slices << " of the bundle");
            order.pop_front();
            BOOST_TEST(s.data == br.buffer(s.id));
            BOOST_TEST(s.last_use);
            BOOST_TEST(first_mismatch(s.data, s.size, position + got + bytes) == s.size);
            // Every slice but the last fills its buffer.
            bytes += s.size;
            if (bytes < static_cast<std::uint32_t>(c.res)) BOOST_TEST(s.size == br.buffer_size());
            taken.push_back(s.id);
            ++slices;
        });
        BOOST_TEST(bytes == static_cast<std::uint32_t>(c.res));
        widest = std::max(widest, slices);
        got += bytes;
    }
    BOOST_TEST(got == total);
    return {taken, widest};
}

}  // namespace

BOOST_AUTO_TEST_CASE(bundle_receive_covers_consecutive_buffers) {
    if (zt::skip_unless(kernel().recv_bundle(), "IORING_RECVSEND_BUNDLE (Linux 6.10)")) return;
    // TCP, not a unix socketpair: 6.12's bundle receive on AF_UNIX stream
    // sockets never spans more than one buffer (6.18's does); the reactor
    // only ever bundles TCP, where both kernels fill several.
    auto [client, server] = zt::tcp_pair();
    uring::ring r;
    uring::buffer_ring br(r, options(8, 256, false, 2));
    completions cq(r);
    std::deque<std::uint16_t> order;
    for (std::uint16_t id = 0; id < 8; ++id) order.push_back(id);

    // 5 full buffers and 100 bytes, queued before the receive starts.
    const std::size_t first_total = 5 * 256 + 100;
    send_stream(client.get(), 0, first_total);
    auto [taken, widest] = receive_bundles(r, cq, br, server.get(), order, 0, first_total);
    BOOST_TEST(widest > 1u, "no completion covered more than one buffer");
    BOOST_TEST(taken.size() == 6u);
    BOOST_TEST(br.held() == taken.size());
    BOOST_TEST(br.in_kernel() == 8u - taken.size());

    // Back in reverse order: the next bundle wraps round the ring and must
    // follow the order of recycling, not of ids.
    for (auto it = taken.rbegin(); it != taken.rend(); ++it) {
        br.recycle(*it);
        order.push_back(*it);
    }
    br.publish();
    check_all_back(br);

    const std::size_t second_total = 4 * 256 + 10;
    send_stream(client.get(), first_total, second_total);
    auto [again, widest2] = receive_bundles(r, cq, br, server.get(), order, first_total, second_total);
    BOOST_TEST(widest2 > 1u);
    BOOST_TEST(again.size() == 5u);
    // ids 6 and 7 were never used, then the recycled ones newest first.
    const std::vector<std::uint16_t> expected{6, 7, 5, 4, 3};
    BOOST_TEST(again == expected, boost::test_tools::per_element());
    for (auto id : again) br.recycle(id);
    br.publish();
    check_all_back(br);
}

BOOST_AUTO_TEST_CASE(multishot_bundle_receive_keeps_bytes_in_order) {
    if (zt::skip_unless(kernel().recv_bundle(), "IORING_RECVSEND_BUNDLE (Linux 6.10)")) return;
    // TCP, not a unix socketpair: 6.12's bundle receive on AF_UNIX stream
    // sockets never spans more than one buffer (6.18's does); the reactor
    // only ever bundles TCP, where both kernels fill several.
    auto [client, server] = zt::tcp_pair();
    uring::ring r;
    uring::buffer_ring br(r, options(16, 128, false, 4));
    completions cq(r);
    arm_bundle(r, server.get(), 4, true);

    std::size_t position = 0;
    unsigned widest = 0;
    for (std::size_t size : {700u, 128u, 1u, 1000u, 300u}) {
        send_stream(client.get(), position, size);
        std::size_t got = 0;
        while (got < size) {
            auto c = cq.next();
            BOOST_REQUIRE_GT(c.res, 0);
            BOOST_REQUIRE(c.flags & IORING_CQE_F_BUFFER);
            BOOST_REQUIRE(uring::cqe_has_more(as_cqe(c)));
            std::vector<std::uint16_t> ids;
            std::uint32_t bytes = 0;
            br.take_bundle(as_cqe(c), [&](const uring::buffer_ring::slice& s) {
                BOOST_TEST(first_mismatch(s.data, s.size, position + got + bytes) == s.size);
                bytes += s.size;
                ids.push_back(s.id);
            });
            BOOST_TEST(bytes == static_cast<std::uint32_t>(c.res));
            widest = std::max<unsigned>(widest, static_cast<unsigned>(ids.size()));
            got += bytes;
            for (auto id : ids) br.recycle(id);
            br.publish();
            check_all_back(br);
        }
        BOOST_TEST(got == size);
        position += size;
    }
    BOOST_TEST(widest > 1u);
    finish(cq, client);
}

// Bundles into an incremental ring (Linux 6.15): a bundle starts where the
// first buffer's last receive ended, fills the following buffers, and the
// kernel keeps the last one when it has room left (BUF_MORE).
BOOST_AUTO_TEST_CASE(bundles_into_an_incremental_ring_continue_partly_used_buffers) {
    if (zt::skip_unless(kernel().recv_bundle(), "IORING_RECVSEND_BUNDLE (Linux 6.10)")) return;
    if (zt::skip_unless(kernel().buf_ring_incremental, "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    if (zt::skip_unless(uring::kernel_release::running().at_least(6, 15),
                        "bundles into incremental buffer rings (Linux 6.15)"))
        return;
    auto [client, server] = zt::tcp_pair();
    uring::ring r;
    uring::buffer_ring br(r, options(8, 256, true, 5));
    BOOST_REQUIRE(br.incremental());
    BOOST_REQUIRE(br.bundles_incremental());
    completions cq(r);
    struct seen {
        std::uint16_t id;
        std::size_t offset;
        std::uint32_t size;
        bool last_use;
    };
    auto receive = [&](std::size_t position, std::size_t total) {
        std::vector<seen> slices;
        std::size_t got = 0;
        while (got < total) {
            arm_bundle(r, server.get(), br.group(), false);
            auto c = cq.next();
            BOOST_REQUIRE_GT(c.res, 0);
            std::uint32_t bytes = 0;
            br.take_bundle(as_cqe(c), [&](const uring::buffer_ring::slice& s) {
                BOOST_TEST(first_mismatch(s.data, s.size, position + got + bytes) == s.size);
                slices.push_back({s.id, static_cast<std::size_t>(s.data - br.buffer(s.id)), s.size, s.last_use});
                bytes += s.size;
            });
            BOOST_TEST(bytes == static_cast<std::uint32_t>(c.res));
            got += bytes;
        }
        return slices;
    };
    // 100 bytes: buffer 0 from its start, kept by the kernel.
    send_stream(client.get(), 0, 100);
    auto one = receive(0, 100);
    BOOST_REQUIRE(one.size() == 1u);
    BOOST_TEST(one[0].id == 0u);
    BOOST_TEST(one[0].offset == 0u);
    BOOST_TEST(!one[0].last_use);
    BOOST_TEST(br.held() == 0u);
    // 600 more, queued before the receive: the rest of buffer 0, all of 1,
    // the start of 2 (kept).
    send_stream(client.get(), 100, 600);
    auto two = receive(100, 600);
    std::uint32_t total = 0;
    for (auto& s : two) total += s.size;
    BOOST_TEST(total == 600u);
    BOOST_REQUIRE(two.size() >= 2u);
    BOOST_TEST(two[0].id == 0u);
    BOOST_TEST(two[0].offset == 100u);
    BOOST_TEST(two[0].size == 156u);
    BOOST_TEST(two[0].last_use);
    for (std::size_t i = 1; i < two.size(); ++i) {
        BOOST_TEST(two[i].offset == 0u);
        BOOST_TEST(two[i].id == two[i - 1].id + 1);
    }
    // Every buffer filled to its end is the application's; a last one with
    // room left stays the kernel's.
    unsigned done = 0;
    for (auto& s : two) done += s.last_use ? 1 : 0;
    BOOST_TEST(br.held() == done);
    bool last_full = two.back().offset + two.back().size == br.buffer_size();
    BOOST_TEST(two.back().last_use == last_full);
    for (auto& s : two)
        if (s.last_use) br.recycle(s.id);
    br.publish();
    BOOST_TEST(br.held() == 0u);
}

BOOST_AUTO_TEST_CASE(a_registration_error_is_not_reported_as_a_fallback) {
    if (zt::skip_unless(kernel().buf_ring_incremental, "IOU_PBUF_RING_INC (Linux 6.12)")) return;
    uring::ring r;
    uring::buffer_ring first(r, options(4, 256, true, 9));
    std::error_code ec;
    uring::buffer_ring second(r, options(4, 256, true, 9), ec);
    BOOST_TEST(ec.value() == EEXIST);
    BOOST_TEST(!second.fell_back(), second.fallback_reason());
    BOOST_TEST(second.error_text().find("group 9") != std::string::npos, second.error_text());
    BOOST_TEST(first.incremental());
}
