// Clock: virtual time (realtime or deterministic) and the timer queue. The queue is a plain vector
// of armed timers: a board has a handful (PIT channel 0, RTC, one LAPIC timer per CPU, UART), so a
// scan beats a heap and keeps cancellation trivial.
#include "devices/clock.h"

#include <algorithm>
#include <chrono>

namespace m86::dev {

namespace {
class SystemHostTime : public HostTime {
   public:
    uint64_t monotonic_ns() override {
        return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count());
    }
    uint64_t wall_ns() override {
        return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
    }
};
}  // namespace

HostTime& system_host_time() {
    static SystemHostTime t;
    return t;
}

Clock::Clock(const ClockConfig& cfg, HostTime* host) : cfg_(cfg), host_(host) {
    if (cfg_.mode == ClockMode::Realtime) {
        host_origin_ = host_->monotonic_ns();
        wall_epoch_ns_ = host_->wall_ns();
    } else {
        wall_epoch_ns_ = cfg_.deterministic_epoch_s * kNsPerSec;
    }
}

uint64_t Clock::now() const {
    if (cfg_.mode == ClockMode::Deterministic) return uint64_t(ps_ / 1000);
    uint64_t h = host_->monotonic_ns();
    uint64_t t = h > host_origin_ ? h - host_origin_ : 0;
    if (t > last_now_) last_now_ = t;
    return last_now_;
}

void Clock::advance(uint64_t instructions) {
    if (cfg_.mode == ClockMode::Deterministic)
        ps_ += (unsigned __int128)instructions * cfg_.ps_per_instruction;
}

void Clock::idle_until(uint64_t t) {
    if (cfg_.mode == ClockMode::Deterministic && t != kNever && t > now()) ps_ = (unsigned __int128)t * 1000;
}

void Clock::arm(Timer* t) {
    if (std::find(armed_.begin(), armed_.end(), t) == armed_.end()) armed_.push_back(t);
    recompute_next();
}

void Clock::disarm(Timer* t) {
    auto it = std::find(armed_.begin(), armed_.end(), t);
    if (it != armed_.end()) armed_.erase(it);
    recompute_next();
}

void Clock::recompute_next() {
    next_deadline_ = kNever;
    for (const Timer* t : armed_) next_deadline_ = std::min(next_deadline_, t->deadline_);
}

unsigned Clock::run_due() {
    unsigned ran = 0;
    uint64_t n = now();
    for (;;) {
        Timer* best = nullptr;
        for (Timer* t : armed_)
            if (t->deadline_ <= n && (!best || t->deadline_ < best->deadline_ ||
                                      (t->deadline_ == best->deadline_ && t->seq_ < best->seq_)))
                best = t;
        if (!best) break;
        uint64_t when = best->deadline_;
        best->cancel();
        best->cb_(when);
        ran++;
    }
    return ran;
}

void Timer::arm(uint64_t deadline) {
    if (deadline == kNever) return cancel();
    deadline_ = deadline;
    seq_ = clock_.arm_seq_++;
    armed_ = true;
    clock_.arm(this);
}

void Timer::cancel() {
    if (!armed_) return;
    armed_ = false;
    deadline_ = kNever;
    clock_.disarm(this);
}

}  // namespace m86::dev
