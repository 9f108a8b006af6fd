// Lapic: the register interfaces (xAPIC MMIO page, x2APIC MSRs, IA32_APIC_BASE, TSC_DEADLINE) and
// the APIC timer (SDM Vol. 3A 10.4, 10.5.4, 10.12).
#include "devices/lapic.h"

namespace m86::dev {

using namespace lapic;

namespace {
unsigned lvt_of(unsigned off) {
    switch (off) {
        case kLvtTimer: return kLvtIdxTimer;
        case kLvtThermal: return kLvtIdxThermal;
        case kLvtPerf: return kLvtIdxPerf;
        case kLvtLint0: return kLvtIdxLint0;
        case kLvtLint1: return kLvtIdxLint1;
        case kLvtError: return kLvtIdxError;
        default: return kLvtCount;
    }
}
constexpr uint32_t kLvtRw[kLvtCount] = {
    kLvtVector | kLvtMasked | (3u << kTimerModeShift),
    kLvtVector | (7u << kLvtModeShift) | kLvtMasked,
    kLvtVector | (7u << kLvtModeShift) | kLvtMasked,
    kLvtVector | (7u << kLvtModeShift) | kLvtPolarity | kLvtLevel | kLvtMasked,
    kLvtVector | (7u << kLvtModeShift) | kLvtPolarity | kLvtLevel | kLvtMasked,
    kLvtVector | kLvtMasked,
    kLvtVector | (7u << kLvtModeShift) | kLvtMasked,
};
constexpr uint64_t kMinPeriodNs = 1000;
constexpr uint64_t kMaxCatchUpNs = 1'000'000;
}  // namespace

// ---- xAPIC MMIO (10.4.1): 32-bit registers on 16-byte boundaries ----

uint64_t Lapic::read(uint64_t offset, unsigned size) {
    if (!mmio_enabled()) return all_ones(size);
    unsigned byte = unsigned(offset & kRegByteMask);
    uint64_t v = 0;
    if (byte >= 4 || !read_reg(unsigned(offset & kRegOffsetMask), &v)) return 0;
    v = uint32_t(v) >> (8 * byte);
    return size >= 4 ? v : v & all_ones(size);
}

void Lapic::write(uint64_t offset, unsigned size, uint64_t value) {
    if (!mmio_enabled() || (offset & kRegByteMask) || size < 4) return;
    write_reg(unsigned(offset & kRegOffsetMask), uint32_t(value), false);
}

// ---- MSRs ----

bool Lapic::msr_read(uint32_t msr, uint64_t* value) {
    if (msr == kMsrApicBase) {
        *value = s_.apic_base;
        return true;
    }
    if (msr == kMsrTscDeadline) {  // reads 0 outside TSC-deadline mode (10.5.4.1)
        *value = timer_mode() == kTscDeadline ? s_.tsc_deadline : 0;
        return true;
    }
    if (msr < kMsrX2apicFirst || msr > kMsrX2apicLast || !x2apic()) return false;
    unsigned off = (msr - kMsrX2apicFirst) << 4;
    switch (off) {
        case kIcrLo: *value = s_.icr_lo | uint64_t(s_.icr_hi) << 32; return true;
        // Not in the x2APIC MSR map, or write-only (10.12.1.2, Table 10-6).
        case kIcrHi:
        case kDfr:
        case kApr:
        case kRrd:
        case kEoi:
        case kSelfIpi: return false;
    }
    return read_reg(off, value);
}

bool Lapic::msr_write(uint32_t msr, uint64_t value) {
    if (msr == kMsrApicBase) {
        // 10.12.5, Figure 10-27: legal transitions among disabled, xAPIC and x2APIC.
        constexpr uint64_t kReserved = ~(kBaseAddrMask | kBaseBsp | kBaseExtd | kBaseEnable);
        bool en = value & kBaseEnable, extd = value & kBaseExtd;
        if ((value & kReserved) || (extd && !en)) return false;
        if (hw_enabled() && x2apic() && en && !extd) return false;  // x2APIC -> xAPIC
        if (!hw_enabled() && en && extd) return false;              // disabled -> x2APIC
        bool disabling = hw_enabled() && !en;
        s_.apic_base = (value & (kBaseAddrMask | kBaseExtd | kBaseEnable)) | (s_.apic_base & kBaseBsp);
        if (disabling) {  // 10.4.3: software-disabled state, LVTs masked
            s_.svr &= ~kSvrEnable;
            for (auto& l : s_.lvt) l |= kLvtMasked;
        }
        update_intr();
        return true;
    }
    if (msr == kMsrTscDeadline) {
        if (timer_mode() == kTscDeadline) {  // writes are ignored in the other modes (10.5.4.1)
            s_.tsc_deadline = value;
            arm_timer(clock_.now());
        }
        return true;
    }
    if (msr < kMsrX2apicFirst || msr > kMsrX2apicLast || !x2apic()) return false;
    unsigned off = (msr - kMsrX2apicFirst) << 4;
    if (off == kIcrLo) {
        s_.icr_hi = uint32_t(value >> 32);
        s_.icr_lo = uint32_t(value) & ~kIcrPending;
        send_ipi();
        return true;
    }
    if (value >> 32) return false;
    switch (off) {
        case kSelfIpi: {  // fixed, edge, to self (10.12.11)
            ApicMessage m;
            m.vector = uint8_t(value);
            accept(m);
            return true;
        }
        case kEoi:
        case kEsr:
            if (value) return false;  // only 0 may be written in x2APIC mode
            break;
        case kId:
        case kVersion:
        case kPpr:
        case kLdr:
        case kTimerCurrent:
        case kIcrHi:
        case kDfr:
        case kApr:
        case kRrd: return false;  // read-only or absent
        default:
            if (off >= kIsr && off < kIrr + kVecRegsSpan) return false;
            break;
    }
    return write_reg(off, value, true);
}

// ---- the register file ----

bool Lapic::read_reg(unsigned off, uint64_t* v) {
    if (off >= kIsr && off < kIsr + kVecRegsSpan) return *v = s_.isr[(off - kIsr) >> 4], true;
    if (off >= kTmr && off < kTmr + kVecRegsSpan) return *v = s_.tmr[(off - kTmr) >> 4], true;
    if (off >= kIrr && off < kIrr + kVecRegsSpan) return *v = s_.irr[(off - kIrr) >> 4], true;
    unsigned lvt = lvt_of(off);
    if (lvt < kLvtCount) return *v = s_.lvt[lvt], true;
    switch (off) {
        case kId: *v = x2apic() ? s_.id : s_.id << 24; return true;
        case kVersion: *v = kVersionValue; return true;
        case kTpr: *v = s_.tpr; return true;
        case kApr: *v = arbitration_priority(); return true;
        case kPpr: *v = ppr(); return true;
        case kEoi: *v = 0; return true;
        case kRrd: *v = 0; return true;  // remote read is not supported (its status reads invalid)
        case kLdr:                       // x2APIC: derived from the ID (10.12.10.2)
            *v = x2apic() ? ((s_.id >> 4) << 16) | (1u << (s_.id & 15)) : s_.ldr;
            return true;
        case kDfr: *v = s_.dfr; return true;
        case kSvr: *v = s_.svr; return true;
        case kEsr: *v = s_.esr; return true;
        case kIcrLo: *v = s_.icr_lo; return true;
        case kIcrHi: *v = s_.icr_hi; return true;
        case kTimerInitial: *v = s_.timer_initial; return true;
        case kTimerCurrent: *v = current_count(clock_.now()); return true;
        case kTimerDivide: *v = s_.timer_divide; return true;
    }
    return false;
}

bool Lapic::write_reg(unsigned off, uint64_t value, bool from_msr) {
    uint32_t v = uint32_t(value);
    unsigned lvt = lvt_of(off);
    if (lvt < kLvtCount) {
        write_lvt(lvt, v);
        return true;
    }
    switch (off) {
        case kId:
            if (!from_msr) s_.id = v >> 24;
            return true;
        case kTpr:
            s_.tpr = v & 0xff;
            update_intr();
            return true;
        case kEoi: eoi(); return true;
        case kLdr: s_.ldr = v & kXapicDestMask; return true;
        case kDfr: s_.dfr = v | ~kDfrModelMask; return true;
        case kSvr:
            s_.svr = v & kSvrWritable;
            if (!sw_enabled())  // software disable masks every LVT entry (10.4.7.2)
                for (auto& l : s_.lvt) l |= kLvtMasked;
            update_intr();
            return true;
        case kEsr:  // a write latches the errors seen since the last write (10.5.3)
            s_.esr = s_.esr_pending;
            s_.esr_pending = 0;
            return true;
        case kIcrLo:
            s_.icr_lo = v & ~kIcrPending;
            send_ipi();
            return true;
        case kIcrHi: s_.icr_hi = v & kXapicDestMask; return true;
        case kTimerInitial:
            if (timer_mode() == kTscDeadline) return true;  // ignored in TSC-deadline mode
            s_.timer_initial = v;
            start_timer(v, clock_.now());
            return true;
        case kTimerDivide: {
            uint64_t now = clock_.now();
            uint32_t cur = current_count(now);
            bool running = s_.timer_running;
            s_.timer_divide = v & kDivideMask;
            if (running) start_timer(cur, now);  // keep counting from here at the new rate
            return true;
        }
    }
    return true;  // read-only and reserved registers ignore writes
}

void Lapic::write_lvt(unsigned idx, uint32_t v) {
    if (!sw_enabled()) v |= kLvtMasked;
    uint32_t old = s_.lvt[idx];
    s_.lvt[idx] = (v & kLvtRw[idx]) | (old & kLvtRemoteIrr);
    if (idx == kLvtIdxTimer) {
        uint32_t before = (old >> kTimerModeShift) & 3, after = timer_mode();
        uint64_t now = clock_.now();
        if ((before == kTscDeadline) != (after == kTscDeadline)) {
            // Switching to or from TSC-deadline mode disarms the timer (10.5.4.1).
            s_.timer_running = false;
            s_.timer_initial = 0;
            s_.tsc_deadline = 0;
            timer_.cancel();
        } else if (before != after && s_.timer_running) {
            start_timer(current_count(now), now);  // one-shot <-> periodic: continue from here
        }
    } else if (idx == kLvtIdxLint0 || idx == kLvtIdxLint1) {
        unsigned pin = idx - kLvtIdxLint0;
        uint32_t l = s_.lvt[idx];
        if (((l >> kLvtModeShift) & 7) == apic::kFixed && (l & kLvtLevel) && s_.lint_level[pin] &&
            !(l & kLvtRemoteIrr))
            local_interrupt(idx);
    }
    update_intr();
}

// ---- timer (10.5.4) ----

// Divide configuration bits 3, 1, 0: 000 = /2 ... 110 = /128, 111 = /1 (Figure 10-10).
unsigned Lapic::divisor() const {
    unsigned v = (s_.timer_divide & 3) | ((s_.timer_divide >> 1) & 4);
    return v == 7 ? 1 : 2u << v;
}

uint64_t Lapic::timer_ticks(uint64_t vt) const {
    if (vt <= s_.timer_start) return 0;
    return muldiv(vt - s_.timer_start, cfg_.bus_hz, kNsPerSec * divisor());
}

uint64_t Lapic::timer_vt(uint64_t ticks) const {
    return s_.timer_start + muldiv_ceil(ticks, kNsPerSec * divisor(), cfg_.bus_hz);
}

// The current count: down from the start count; periodic mode reloads the initial count when it
// reaches 0; one-shot stays at 0.
uint32_t Lapic::current_count(uint64_t vt) const {
    if (!s_.timer_running || timer_mode() == kTscDeadline) return 0;
    uint64_t e = timer_ticks(vt), sc = s_.timer_start_count;
    if (e < sc) return uint32_t(sc - e);
    if (timer_mode() == kPeriodic && s_.timer_initial)
        return uint32_t(s_.timer_initial - (e - sc) % s_.timer_initial);
    return 0;
}

void Lapic::start_timer(uint32_t count, uint64_t vt) {
    s_.timer_running = count != 0;
    s_.timer_start = vt;
    s_.timer_start_count = count;
    arm_timer(vt);
}

void Lapic::arm_timer(uint64_t vt) {
    if (timer_mode() == kTscDeadline) {
        if (!s_.tsc_deadline) return timer_.cancel();
        bool past = s_.tsc_deadline <= guest_tsc(vt);
        timer_.arm(past ? vt : cfg_.tsc.ns_at(s_.tsc_deadline - tsc_offset_));
        return;
    }
    if (!s_.timer_running) return timer_.cancel();
    uint64_t e = timer_ticks(vt), sc = s_.timer_start_count, target;
    if (e < sc) {
        target = sc;
    } else if (timer_mode() == kPeriodic && s_.timer_initial) {
        target = sc + ((e - sc) / s_.timer_initial + 1) * s_.timer_initial;
    } else {
        s_.timer_running = false;
        return timer_.cancel();
    }
    timer_.arm(timer_vt(target));
}

void Lapic::on_timer(uint64_t deadline) {
    if (timer_mode() == kTscDeadline) {
        s_.tsc_deadline = 0;  // the MSR reads 0 once the deadline has passed
        local_interrupt(kLvtIdxTimer);
        return;
    }
    if (!s_.timer_running) return;
    local_interrupt(kLvtIdxTimer);  // a masked LVT drops the interrupt, the timer keeps counting
    if (timer_mode() == kPeriodic && s_.timer_initial) {
        uint64_t now = clock_.now();
        uint64_t vt = now > deadline + kMaxCatchUpNs ? now : deadline;
        arm_timer(vt);
        if (timer_.deadline() < vt + kMinPeriodNs) arm_timer(vt + kMinPeriodNs);
    } else {
        s_.timer_running = false;
    }
}

}  // namespace m86::dev
