// Rtc146818: the calendar as a function of virtual time (RTC ns = base_rtc_ns + (vt - base_vt)
// while the divider runs), the time registers regenerated from it on every read unless SET holds
// them, and the three interrupt flags.
#include "devices/rtc146818.h"

#include <algorithm>

namespace m86::dev {

using namespace rtc;

namespace {
constexpr int64_t kSec = int64_t(kNsPerSec);
constexpr int64_t kDay = 86400;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

// Days since 1970-01-01 of a proleptic Gregorian date, and back (the usual era-of-400-years
// arithmetic: an era has 146097 days, March-based years put the leap day last).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}
void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    d = unsigned(doy - (153 * mp + 2) / 5 + 1);
    m = unsigned(mp < 10 ? mp + 3 : mp - 9);
    y = yoe + era * 400 + (m <= 2);
}
// 1970-01-01 was a Thursday; the day-of-week register counts Sunday = 1.
int64_t weekday0(int64_t days) { return floor_mod(days + 4, 7); }

uint64_t tick32(int64_t rtc_ns) { return rtc_ns <= 0 ? 0 : muldiv(uint64_t(rtc_ns), kTimeBaseHz, kNsPerSec); }
bool is_time_reg(unsigned idx) {
    return idx == kSeconds || idx == kMinutes || idx == kHours || (idx >= kDayOfWeek && idx <= kYear) ||
           idx == kCentury;
}
// Past this lateness, timers re-arm from the present instead of replaying every missed period.
constexpr uint64_t kMaxCatchUpNs = 10'000'000;
}  // namespace

Rtc146818::Rtc146818(Clock& clock, IrqLine irq8)
    : clock_(clock),
      irq_(irq8),
      update_timer_(clock, [this](uint64_t d) { on_update(d); }),
      periodic_timer_(clock, [this](uint64_t d) { on_periodic(d); }) {
    s_.cmos[kRegA] = kResetA;
    s_.cmos[kRegB] = kResetB;
    s_.cmos[kRegD] = kDVrt;
    s_.running = true;
    set_time(int64_t(clock.wall_epoch_ns()), 0);
    materialize(rtc_at(clock.now()));
}

void Rtc146818::restore(const State& s) {
    s_ = s;
    irq_level_ = !(s_.cmos[kRegC] & kCIrqf);
    rearm(clock_.now());
    update_irq();
}

int64_t Rtc146818::rtc_at(uint64_t vt) const {
    if (!s_.running) return s_.base_rtc_ns;
    return s_.base_rtc_ns + (vt >= s_.base_vt ? int64_t(vt - s_.base_vt) : -int64_t(s_.base_vt - vt));
}

uint64_t Rtc146818::vt_at(int64_t rtc_ns) const {
    return rtc_ns <= s_.base_rtc_ns ? s_.base_vt : s_.base_vt + uint64_t(rtc_ns - s_.base_rtc_ns);
}

uint8_t Rtc146818::to_reg(unsigned v) const {
    return binary() ? uint8_t(v) : uint8_t((v / 10) << 4 | v % 10);
}
unsigned Rtc146818::from_reg(uint8_t v) const { return binary() ? v : (v >> 4) * 10 + (v & 0xf); }

// Writes the time and calendar bytes for RTC time `rtc_ns` in the current data mode
// (register B: DM binary/BCD, 24/12 with the PM flag in bit 7 of the hours byte).
void Rtc146818::materialize(int64_t rtc_ns) {
    int64_t sec = floor_div(rtc_ns, kSec);
    int64_t days = floor_div(sec, kDay), sod = sec - days * kDay;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, y, m, d);
    unsigned h = unsigned(sod / 3600);
    s_.cmos[kSeconds] = to_reg(unsigned(sod % 60));
    s_.cmos[kMinutes] = to_reg(unsigned(sod / 60 % 60));
    if (s_.cmos[kRegB] & kB24h)
        s_.cmos[kHours] = to_reg(h);
    else
        s_.cmos[kHours] = uint8_t(to_reg(h % 12 == 0 ? 12 : h % 12) | (h >= 12 ? kHourPm : 0));
    s_.cmos[kDayOfWeek] = to_reg(unsigned(floor_mod(weekday0(days) + s_.dow_adjust, 7)) + 1);
    s_.cmos[kDayOfMonth] = to_reg(d);
    s_.cmos[kMonth] = to_reg(m);
    s_.cmos[kYear] = to_reg(unsigned(floor_mod(y, 100)));
    s_.cmos[kCentury] = to_reg(unsigned(floor_div(y, 100)));
}

// The time the registers hold, in Unix seconds. Out-of-range fields are clamped; years outside
// 1970..2261 (what 64-bit ns can hold) are clamped too.
int64_t Rtc146818::registers_seconds() {
    unsigned h;
    if (s_.cmos[kRegB] & kB24h) {
        h = from_reg(s_.cmos[kHours]);
    } else {
        unsigned h12 = from_reg(s_.cmos[kHours] & ~kHourPm);
        h = h12 % 12 + ((s_.cmos[kHours] & kHourPm) ? 12 : 0);
    }
    h = std::min(h, 23u);
    unsigned mi = std::min(from_reg(s_.cmos[kMinutes]), 59u);
    unsigned sec = std::min(from_reg(s_.cmos[kSeconds]), 59u);
    unsigned d = std::clamp(from_reg(s_.cmos[kDayOfMonth]), 1u, 31u);
    unsigned m = std::clamp(from_reg(s_.cmos[kMonth]), 1u, 12u);
    int64_t y = std::clamp<int64_t>(int64_t(from_reg(s_.cmos[kCentury])) * 100 + from_reg(s_.cmos[kYear]),
                                    1970, 2261);
    int64_t days = days_from_civil(y, m, d);
    // The day-of-week byte is an independent counter: keep whatever the guest wrote.
    s_.dow_adjust = int(floor_mod(int64_t(from_reg(s_.cmos[kDayOfWeek])) - 1 - weekday0(days), 7));
    return days * kDay + h * 3600 + mi * 60 + sec;
}

void Rtc146818::set_time(int64_t rtc_ns, uint64_t vt) {
    s_.base_rtc_ns = rtc_ns;
    s_.base_vt = vt;
    s_.pf_checked = tick32(rtc_ns);
    rearm(vt);
}

// Registers -> time, keeping the divider chain's phase within the second (held at 0 in reset).
void Rtc146818::commit(uint64_t vt) {
    int64_t frac = (s_.cmos[kRegA] & kADvResetMask) == kADvResetMask ? 0 : floor_mod(rtc_at(vt), kSec);
    set_time(registers_seconds() * kSec + frac, vt);
}

// Periodic interrupt rate ("Table 5"): RS 1 and 2 repeat the rates of RS 8 and 9; RS >= 3 gives
// 2^(RS-1) periods of the 32.768 kHz time base. 0 = off.
uint64_t Rtc146818::period_ticks() const {
    unsigned rs = s_.cmos[kRegA] & kARsMask;
    if (rs == 0) return 0;
    return 1ull << (rs <= 2 ? rs + 6 : rs - 1);
}

void Rtc146818::sync_pf(uint64_t vt) {
    uint64_t now32 = tick32(rtc_at(vt)), p = period_ticks();
    if (s_.running && p && now32 > s_.pf_checked && now32 / p > s_.pf_checked / p) s_.cmos[kRegC] |= kCPf;
    s_.pf_checked = now32;
}

// IRQF = PF.PIE + AF.AIE + UF.UIE ("Register C"); the IRQ pin follows it.
void Rtc146818::update_irq() {
    uint8_t c = s_.cmos[kRegC], b = s_.cmos[kRegB];
    bool irqf = ((c & kCPf) && (b & kBPie)) || ((c & kCAf) && (b & kBAie)) || ((c & kCUf) && (b & kBUie));
    s_.cmos[kRegC] = irqf ? c | kCIrqf : c & ~kCIrqf;
    if (irqf != irq_level_) {
        irq_level_ = irqf;
        irq_.set(irqf);
    }
}

void Rtc146818::rearm(uint64_t vt) {
    int64_t now = rtc_at(vt);
    if (s_.running && !(s_.cmos[kRegB] & kBSet))
        update_timer_.arm(vt_at((floor_div(now, kSec) + 1) * kSec));
    else
        update_timer_.cancel();
    uint64_t p = period_ticks();
    if (s_.running && p && (s_.cmos[kRegB] & kBPie)) {
        uint64_t next32 = (tick32(now) / p + 1) * p;
        periodic_timer_.arm(vt_at(int64_t(muldiv_ceil(next32, kNsPerSec, kTimeBaseHz))));
    } else {
        periodic_timer_.cancel();
    }
}

// The update cycle at a second boundary: registers advance, UF is set, the alarm is compared.
void Rtc146818::on_update(uint64_t deadline) {
    uint64_t vt = clock_.now() > deadline + kMaxCatchUpNs ? clock_.now() : deadline;
    sync_pf(vt);
    materialize(rtc_at(vt));
    s_.cmos[kRegC] |= kCUf;
    auto match = [&](unsigned alarm, unsigned reg) {
        return (s_.cmos[alarm] & kAlarmDontCare) == kAlarmDontCare || s_.cmos[alarm] == s_.cmos[reg];
    };
    if (match(kSecondsAlarm, kSeconds) && match(kMinutesAlarm, kMinutes) && match(kHoursAlarm, kHours))
        s_.cmos[kRegC] |= kCAf;
    update_irq();
    rearm(vt);
}

void Rtc146818::on_periodic(uint64_t deadline) {
    uint64_t vt = clock_.now() > deadline + kMaxCatchUpNs ? clock_.now() : deadline;
    sync_pf(vt);
    update_irq();
    rearm(vt);
}

uint8_t Rtc146818::read_reg(unsigned idx) {
    uint64_t vt = clock_.now();
    if (is_time_reg(idx)) {
        if (!(s_.cmos[kRegB] & kBSet)) materialize(rtc_at(vt));
        return s_.cmos[idx];
    }
    switch (idx) {
        case kRegA: {
            uint8_t v = s_.cmos[kRegA] & ~kAUip;
            bool updating = s_.running && !(s_.cmos[kRegB] & kBSet) &&
                            floor_mod(rtc_at(vt), kSec) >= int64_t(kNsPerSec - kUipNs);
            return updating ? v | kAUip : v;
        }
        case kRegC: {
            sync_pf(vt);
            uint8_t v = s_.cmos[kRegC];
            s_.cmos[kRegC] = 0;
            update_irq();
            return v;
        }
        case kRegD: return kDVrt;
        default: return s_.cmos[idx];
    }
}

void Rtc146818::write_reg(unsigned idx, uint8_t v) {
    uint64_t vt = clock_.now();
    if (is_time_reg(idx)) {
        if (s_.cmos[kRegB] & kBSet) {
            s_.cmos[idx] = v;
        } else {
            materialize(rtc_at(vt));
            s_.cmos[idx] = v;
            commit(vt);
        }
        return;
    }
    switch (idx) {
        case kRegA: {
            sync_pf(vt);
            int64_t now = rtc_at(vt);
            bool was_running = s_.running, was_reset = (s_.cmos[kRegA] & kADvResetMask) == kADvResetMask;
            s_.cmos[kRegA] = v & ~kAUip;
            bool run = (v & kADvMask) == kADvNormal;
            if (was_running && !run) s_.running = false, s_.base_rtc_ns = now;
            if ((v & kADvResetMask) == kADvResetMask) s_.base_rtc_ns = floor_div(s_.base_rtc_ns, kSec) * kSec;
            if (!was_running && run) {
                // Leaving divider reset, the first update comes half a second later ("Divider Chain
                // Control" in "Register A").
                int64_t start = s_.base_rtc_ns;
                if (was_reset) start = floor_div(start, kSec) * kSec + kSec / 2;
                s_.running = true;
                set_time(start, vt);
            }
            rearm(vt);
            update_irq();
            break;
        }
        case kRegB: {
            sync_pf(vt);
            uint8_t old = s_.cmos[kRegB];
            if ((v & kBSet) && !(old & kBSet)) {
                materialize(rtc_at(vt));  // SET freezes the registers for the guest to overwrite
                v &= ~kBUie;              // and clears UIE ("Register B", UIE)
            }
            s_.cmos[kRegB] = v;
            if (!(v & kBSet) && (old & kBSet)) commit(vt);
            rearm(vt);
            update_irq();
            break;
        }
        case kRegC:
        case kRegD: break;  // read-only
        default: s_.cmos[idx] = v; break;
    }
}

uint8_t Rtc146818::read8(unsigned offset) { return offset == 0 ? 0xff : read_reg(s_.index); }

void Rtc146818::write8(unsigned offset, uint8_t value) {
    if (offset == 0) {
        s_.index = value & kIndexMask;
        s_.nmi_disabled = value & kNmiDisable;
    } else {
        write_reg(s_.index, value);
    }
}

void Rtc146818::set_memory_sizes(uint64_t below_4g, uint64_t above_4g) {
    constexpr uint64_t KiB = 1024, MiB = 1024 * KiB;
    auto put16 = [&](unsigned lo, uint64_t v) {
        s_.cmos[lo] = uint8_t(v);
        s_.cmos[lo + 1] = uint8_t(v >> 8);
    };
    put16(kBaseMemLo, std::min<uint64_t>(below_4g / KiB, 640));
    uint64_t ext = below_4g > MiB ? std::min<uint64_t>((below_4g - MiB) / KiB, 65535) : 0;
    put16(kExtMemLo, ext);
    put16(kExtMem2Lo, ext);
    put16(kHighMemLo,
          below_4g > 16 * MiB ? std::min<uint64_t>((below_4g - 16 * MiB) / (64 * KiB), 65535) : 0);
    uint64_t above = above_4g / (64 * KiB);
    s_.cmos[kAbove4gLo] = uint8_t(above);
    s_.cmos[kAbove4gMid] = uint8_t(above >> 8);
    s_.cmos[kAbove4gHi] = uint8_t(above >> 16);
}

}  // namespace m86::dev
