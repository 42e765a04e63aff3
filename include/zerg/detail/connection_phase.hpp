// The life of a connection slot as two small state machines: its phase
// (free → open → ... → closing → free) and, while it reads, its read state.
// Every transition goes through move_to(), which asserts in debug builds
// that the table below allows it, so an illegal combination of flags cannot
// be written down. doc/architecture.md draws both machines.
//
// Reactor thread only, like the connection that holds them.
#pragma once

#include <cassert>
#include <cstdint>

namespace zerg::detail {

enum class phase : std::uint8_t {
    free,          // in the free list; no socket
    open,          // the handler has it: bytes flow both ways
    half_closing,  // shutdown() asked: flush, then SHUT_WR; reading goes on
    write_shut,    // SHUT_WR submitted: reading goes on until the peer's EOF
    read_shut,     // the peer's EOF, with a coroutine still running: it reads what
                   // is left and may still write; its return drains
    draining,      // close() asked or EOF seen: flush what is queued, read no more
    tearing_down,  // on_close called, requests cancelled: wait for their last CQEs
    closing,       // close submitted: its CQE frees the slot
};

// The legal moves of `phase`, in one place.
constexpr bool phase_allows(phase from, phase to) noexcept {
    switch (from) {
        case phase::free: return to == phase::open;
        case phase::open:
            return to == phase::half_closing || to == phase::read_shut || to == phase::draining || to == phase::tearing_down;
        case phase::half_closing: return to == phase::write_shut || to == phase::draining || to == phase::tearing_down;
        case phase::write_shut: return to == phase::draining || to == phase::tearing_down;
        case phase::read_shut: return to == phase::draining || to == phase::tearing_down;
        case phase::draining: return to == phase::tearing_down;
        case phase::tearing_down: return to == phase::closing;
        case phase::closing: return to == phase::free;
    }
    return false;
}

enum class read_state : std::uint8_t {
    wanted,      // arm a multishot receive when the work list reaches it
    armed,       // a multishot receive is in the kernel
    cancelling,  // armed, and cancelled for backpressure: its last CQE ends it
    paused,      // not armed: the send queue is over its limit
    starved,     // wanted, but every buffer is out: waits in the starved list
    stopped,     // no more receives (the phase has moved past reading)
};

// The legal moves of `read_state`, in one place.
constexpr bool read_allows(read_state from, read_state to) noexcept {
    if (to == read_state::stopped) return true;  // teardown and EOF stop reading from anywhere
    switch (from) {
        case read_state::wanted: return to == read_state::armed || to == read_state::paused || to == read_state::starved;
        case read_state::armed: return to == read_state::wanted || to == read_state::cancelling;
        case read_state::cancelling: return to == read_state::paused || to == read_state::armed;
        case read_state::paused: return to == read_state::wanted;
        case read_state::starved: return to == read_state::wanted || to == read_state::armed || to == read_state::paused;
        case read_state::stopped: return to == read_state::wanted;  // only when the slot is opened again
    }
    return false;
}

// A connection's two machines, with checked moves.
struct lifecycle {
    phase now = phase::free;
    read_state read = read_state::stopped;

    void move_to(phase next) noexcept {
        assert(phase_allows(now, next) && "zerg: illegal connection phase transition");
        now = next;
    }
    void move_to(read_state next) noexcept {
        assert(read_allows(read, next) && "zerg: illegal connection read-state transition");
        read = next;
    }

    // The handler still has the connection (on_close not yet called).
    bool handed_out() const noexcept { return now >= phase::open && now <= phase::draining; }
    // More bytes may come from the peer.
    bool is_open() const noexcept { return now >= phase::open && now <= phase::write_shut; }
    // write() is accepted: nothing has shut the sending side yet.
    bool accepts_writes() const noexcept {
        return now == phase::open || now == phase::half_closing || now == phase::read_shut;
    }
    // close() or the end of a coroutine still has something to do.
    bool closable() const noexcept { return now >= phase::open && now <= phase::read_shut; }
    // Flushing toward a teardown or a SHUT_WR.
    bool flushing() const noexcept { return now == phase::draining || now == phase::half_closing; }
    // on_close has run; the slot waits for its last CQEs.
    bool torn_down() const noexcept { return now >= phase::tearing_down || now == phase::free; }
    // A receive is in the kernel (its last CQE has not arrived).
    bool recv_in_kernel() const noexcept { return read == read_state::armed || read == read_state::cancelling; }
};

}  // namespace zerg::detail
