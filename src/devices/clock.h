// Virtual time and the event queue: the one clock behind every guest-visible timer (PIT, RTC,
// LAPIC timer, UART timeouts, and the TSC through TscScale).
//
// Virtual time is nanoseconds since the machine started, never decreasing. Two modes:
//   - Realtime: it follows the host's monotonic clock (HostTime, injected so tests can fake it).
//     The RTC starts from the host's wall clock.
//   - Deterministic: it is a pure function of the instructions the board reports through
//     advance(n) (each instruction counts ps_per_instruction picoseconds) plus the idle jumps the
//     board makes with idle_until(); the RTC starts from a fixed epoch. Same inputs, same outputs,
//     byte for byte, on any host at any speed.
//
// Events: a device owns Timer objects; timer.arm(t) schedules its callback at virtual time t (one
// pending expiry per timer, re-arming replaces it), cancel() removes it. The board drives the queue:
//
//   clock.advance(n)                 after running n instructions (deterministic mode; for exact
//                                    device timing, also before dispatching port I/O / MMIO)
//   if (clock.due()) clock.run_due() at instruction boundaries (block ends): runs every callback
//                                    whose time has come, in time order (ties: arming order)
//   HLT with nothing pending:        t = clock.next_deadline(); deterministic: clock.idle_until(t);
//                                    realtime: sleep the host for clock.ns_until(t), then run_due()
//
// Callbacks receive their scheduled time (which may be slightly earlier than now()) so periodic
// devices re-arm from it without drift. The Clock must outlive every Timer armed on it.
// Single-threaded: the board calls it from the thread that runs the devices.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace m86::dev {

constexpr uint64_t kNever = ~0ull;
constexpr uint64_t kNsPerSec = 1'000'000'000ull;

// floor(a * b / c) and ceil(a * b / c) without overflow (a * b up to 128 bits).
inline uint64_t muldiv(uint64_t a, uint64_t b, uint64_t c) { return uint64_t((unsigned __int128)a * b / c); }
inline uint64_t muldiv_ceil(uint64_t a, uint64_t b, uint64_t c) {
    return uint64_t(((unsigned __int128)a * b + c - 1) / c);
}

// The host services the clock needs (the board passes the host layer's implementation).
class HostTime {
   public:
    virtual ~HostTime() = default;
    virtual uint64_t monotonic_ns() = 0;  // any origin, never decreasing
    virtual uint64_t wall_ns() = 0;       // Unix time (UTC) in nanoseconds
};

// HostTime on std::chrono's steady and system clocks (portable C++).
HostTime& system_host_time();

enum class ClockMode { Realtime, Deterministic };

struct ClockConfig {
    ClockMode mode = ClockMode::Realtime;
    // Deterministic mode: virtual time per retired instruction. 1000 ps = 1 ns = a 1 GHz guest
    // that retires one instruction per cycle.
    uint64_t ps_per_instruction = 1000;
    // Deterministic mode: the wall-clock time at virtual time 0 (Unix seconds, UTC);
    // 1704067200 = 2024-01-01 00:00:00 UTC.
    uint64_t deterministic_epoch_s = 1704067200;
};

class Timer;

class Clock {
   public:
    explicit Clock(const ClockConfig& cfg = {}, HostTime* host = &system_host_time());
    Clock(const Clock&) = delete;
    Clock& operator=(const Clock&) = delete;

    ClockMode mode() const { return cfg_.mode; }
    uint64_t now() const;
    // Unix time in ns at virtual time 0: the RTC's starting point.
    uint64_t wall_epoch_ns() const { return wall_epoch_ns_; }

    // Deterministic mode: n more instructions have retired. Ignored in realtime mode.
    void advance(uint64_t instructions);
    // Deterministic mode: jump forward to time t (an idle CPU skipping to the next event). Ignored
    // in realtime mode and for t <= now().
    void idle_until(uint64_t t);

    uint64_t next_deadline() const { return next_deadline_; }
    bool due() const { return next_deadline_ != kNever && now() >= next_deadline_; }
    uint64_t ns_until(uint64_t t) const {
        uint64_t n = now();
        return t > n ? t - n : 0;
    }
    // Runs the callbacks of every timer due at now(), earliest first. Callbacks may arm or cancel
    // any timer (including their own); a timer re-armed at a time <= now() runs again in this call.
    // Returns the number of callbacks run.
    unsigned run_due();

   private:
    friend class Timer;
    void arm(Timer* t);
    void disarm(Timer* t);
    void recompute_next();

    ClockConfig cfg_;
    HostTime* host_;
    uint64_t host_origin_ = 0;  // realtime: host monotonic time at virtual 0
    unsigned __int128 ps_ = 0;  // deterministic: virtual time in picoseconds
    uint64_t wall_epoch_ns_ = 0;
    mutable uint64_t last_now_ = 0;  // realtime: keeps now() monotonic even if the host hiccups
    uint64_t next_deadline_ = kNever;
    uint64_t arm_seq_ = 0;
    std::vector<Timer*> armed_;
};

class Timer {
   public:
    using Callback = std::function<void(uint64_t deadline)>;
    Timer(Clock& clock, Callback cb) : clock_(clock), cb_(std::move(cb)) {}
    ~Timer() { cancel(); }
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

    void arm(uint64_t deadline);
    void cancel();
    bool armed() const { return armed_; }
    uint64_t deadline() const { return armed_ ? deadline_ : kNever; }
    Clock& clock() const { return clock_; }

   private:
    friend class Clock;
    Clock& clock_;
    Callback cb_;
    uint64_t deadline_ = kNever;
    uint64_t seq_ = 0;  // arming order, the tie-break between equal deadlines
    bool armed_ = false;
};

// The time-stamp counter as a function of virtual time: a constant rate of `hz` ticks per second
// from 0 at virtual time 0 (the board adds per-CPU TSC offsets). Used by the board for RDTSC and
// by the LAPIC for TSC-deadline mode.
struct TscScale {
    uint64_t hz = 1'000'000'000;
    uint64_t ticks(uint64_t ns) const { return muldiv(ns, hz, kNsPerSec); }
    // The first virtual time at which the TSC reads at least `tsc`.
    uint64_t ns_at(uint64_t tsc) const {
        unsigned __int128 ns = ((unsigned __int128)tsc * kNsPerSec + hz - 1) / hz;
        return ns > kNever ? kNever : uint64_t(ns);
    }
};

}  // namespace m86::dev
