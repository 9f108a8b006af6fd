// Lapic: register file, interrupt acceptance and priority, IPIs, LVT sources and the timer of the
// local APIC (SDM Vol. 3A chapter 10, sections cited at the rules).
#include "devices/lapic.h"

#include <algorithm>

namespace m86::dev {

using namespace lapic;

namespace {
bool vtest(const Lapic::Vec256& v, unsigned n) { return (v[n >> 5] >> (n & 31)) & 1; }
void vset(Lapic::Vec256& v, unsigned n) { v[n >> 5] |= 1u << (n & 31); }
void vclear(Lapic::Vec256& v, unsigned n) { v[n >> 5] &= ~(1u << (n & 31)); }
int vhighest(const Lapic::Vec256& v) {
    for (int i = 7; i >= 0; i--)
        if (v[unsigned(i)]) return i * 32 + 31 - __builtin_clz(v[unsigned(i)]);
    return -1;
}
uint32_t lvt_mode(uint32_t lvt) { return (lvt >> kLvtModeShift) & 7; }
}  // namespace

Lapic::Lapic(Clock& clock, const LapicConfig& cfg, CpuPins* pins, ApicSink* ipi, EoiListener* eoi,
             InterruptController* extint)
    : clock_(clock),
      cfg_(cfg),
      pins_(pins),
      ipi_(ipi),
      eoi_(eoi),
      extint_(extint),
      timer_(clock, [this](uint64_t d) { on_timer(d); }) {
    reset();
}

void Lapic::reset() {
    s_.id = cfg_.apic_id;
    s_.apic_base = kDefaultBase | kBaseEnable | (cfg_.bsp ? kBaseBsp : 0);
    init_reset();
    // Virtual wire mode on the BSP, as a BIOS leaves it (and QEMU resets it): the PIC reaches the
    // CPU through LINT0 as ExtINT.
    if (cfg_.bsp) s_.lvt[kLvtIdxLint0] = uint32_t(apic::kExtInt) << kLvtModeShift;
    update_intr();
}

// INIT and power-up state (10.4.7.1): IRR/ISR/TMR/ICR/LDR/TPR zero, DFR all ones, LVTs masked,
// SVR 0xff (software-disabled), timer stopped; the APIC ID and IA32_APIC_BASE are kept.
void Lapic::init_reset() {
    State fresh;
    fresh.id = s_.id;
    fresh.apic_base = s_.apic_base;
    fresh.lint_level[0] = s_.lint_level[0];
    fresh.lint_level[1] = s_.lint_level[1];
    fresh.lvt.fill(kLvtMasked);
    s_ = fresh;
    timer_.cancel();
    update_intr();
}

void Lapic::restore(const State& s) {
    s_ = s;
    arm_timer(clock_.now());
    intr_out_ = !has_interrupt();
    update_intr();
}

void Lapic::set_tsc_offset(uint64_t offset) {
    tsc_offset_ = offset;
    if (timer_mode() == kTscDeadline) arm_timer(clock_.now());
}

// ---- priorities (10.8.3.1, 10.6.2.4) ----

uint8_t Lapic::ppr() const {
    int isrv = std::max(vhighest(s_.isr), 0);
    return (s_.tpr >> 4) >= unsigned(isrv >> 4) ? uint8_t(s_.tpr) : uint8_t(isrv & kPriorityClass);
}

uint8_t Lapic::arbitration_priority() const {
    unsigned irrv = unsigned(std::max(vhighest(s_.irr), 0)), isrv = unsigned(std::max(vhighest(s_.isr), 0));
    if ((s_.tpr >> 4) >= (irrv >> 4) && (s_.tpr >> 4) > (isrv >> 4)) return uint8_t(s_.tpr);
    return uint8_t(std::max({s_.tpr & kPriorityClass, isrv & kPriorityClass, irrv & kPriorityClass}));
}

// The PIC's interrupt reaches the core through LINT0 in ExtINT mode, through an ExtINT message,
// or directly when the APIC is globally disabled (LINT0 is then the INTR pin, 10.4.3).
bool Lapic::extint_ready() const {
    if (!extint_ || !extint_->has_interrupt()) return false;
    if (!hw_enabled() || s_.extint_pending) return true;
    uint32_t lvt0 = s_.lvt[kLvtIdxLint0];
    return !(lvt0 & kLvtMasked) && lvt_mode(lvt0) == apic::kExtInt;
}

bool Lapic::has_interrupt() const {
    if (hw_enabled() && sw_enabled()) {
        int v = vhighest(s_.irr);
        if (v >= 0 && (unsigned(v) & kPriorityClass) > (ppr() & kPriorityClass)) return true;  // 10.8.3.1
    }
    return extint_ready();
}

int Lapic::acknowledge() {
    if (hw_enabled() && sw_enabled()) {
        int v = vhighest(s_.irr);
        if (v >= 0 && (unsigned(v) & kPriorityClass) > (ppr() & kPriorityClass)) {
            vclear(s_.irr, unsigned(v));
            vset(s_.isr, unsigned(v));
            update_intr();
            return v;
        }
    }
    if (extint_ready()) {
        s_.extint_pending = false;
        int v = extint_->acknowledge();
        update_intr();
        return v;
    }
    update_intr();
    // A request masked by a TPR raise between INTR and INTA becomes the spurious vector (10.9).
    if (hw_enabled() && sw_enabled() && vhighest(s_.irr) >= 0) return int(s_.svr & 0xff);
    return -1;
}

void Lapic::update_intr() {
    bool level = has_interrupt();
    if (level != intr_out_) {
        intr_out_ = level;
        if (pins_) pins_->set_intr(level);
    }
}

void Lapic::set_cr8(uint8_t cr8) {
    s_.tpr = uint32_t(cr8 & 0xf) << 4;  // CR8[3:0] = TPR[7:4] (10.8.6.1)
    update_intr();
}

// ---- acceptance ----

bool Lapic::matches(const ApicMessage& m) const {
    if (!hw_enabled()) return false;
    uint32_t bcast = m.x2apic_dest ? apic::kBroadcastX2apic : apic::kBroadcastXapic;
    if (m.dest == bcast) return true;
    if (x2apic()) {
        if (!m.logical) return m.dest == s_.id;
        // x2APIC logical: cluster in bits 31:16, one bit per member in 15:0 (10.12.10.2).
        return (m.dest >> 16) == (s_.id >> 4) && (m.dest & (1u << (s_.id & 15)));
    }
    uint32_t d = m.dest & 0xff;
    if (!m.logical) return d == (s_.id & 0xff);
    uint32_t logical_id = s_.ldr >> 24;
    if ((s_.dfr & kDfrModelMask) == kDfrModelMask) return (logical_id & d) != 0;  // flat model
    // Cluster model: cluster in the high nibble (15 = all clusters), members in the low nibble.
    return ((d >> 4) == 0xf || (d >> 4) == (logical_id >> 4)) && (d & logical_id & 0xf);
}

void Lapic::set_irr(uint8_t vector, bool level) {
    vset(s_.irr, vector);
    level ? vset(s_.tmr, vector) : vclear(s_.tmr, vector);
    update_intr();
}

void Lapic::accept(const ApicMessage& m) {
    switch (m.delivery_mode) {
        case apic::kFixed:
        case apic::kLowestPriority:
            if (m.vector < 16) return error(kEsrRecvIllegalVector);  // vectors 0-15 are illegal (10.5.3)
            set_irr(m.vector, m.level);
            break;
        case apic::kNmi:
            if (pins_) pins_->nmi();
            break;
        case apic::kInit:
            if (m.level && !m.assert) break;  // INIT level de-assert: no effect (10.6.1)
            if (pins_) pins_->init();
            break;
        case apic::kStartup:
            if (pins_) pins_->sipi(m.vector);
            break;
        case apic::kExtInt:
            s_.extint_pending = true;
            update_intr();
            break;
        default: break;  // SMI is not modeled; mode 3 is reserved
    }
}

// An interrupt from one of this APIC's own sources, as its LVT entry says (10.5.1).
void Lapic::local_interrupt(unsigned idx) {
    uint32_t lvt = s_.lvt[idx];
    if (lvt & kLvtMasked) return;
    // The timer and error entries have no delivery mode field: always fixed.
    uint32_t mode = (idx == kLvtIdxTimer || idx == kLvtIdxError) ? uint32_t(apic::kFixed) : lvt_mode(lvt);
    switch (mode) {
        case apic::kFixed: {
            uint8_t vector = uint8_t(lvt & kLvtVector);
            if (vector < 16) return error(kEsrRecvIllegalVector);
            bool level = (idx == kLvtIdxLint0 || idx == kLvtIdxLint1) && (lvt & kLvtLevel);
            if (level) s_.lvt[idx] |= kLvtRemoteIrr;
            set_irr(vector, level);
            break;
        }
        case apic::kNmi:
            if (pins_) pins_->nmi();
            break;
        case apic::kInit:
            if (pins_) pins_->init();
            break;
        case apic::kExtInt: update_intr(); break;
        default: break;  // SMI
    }
}

void Lapic::error(uint32_t bits) {
    uint32_t fresh = bits & ~s_.esr_pending;
    s_.esr_pending |= bits;
    if (fresh) local_interrupt(kLvtIdxError);
}

void Lapic::set_irq(unsigned pin, bool level) {
    if (pin > kLint1) return;
    bool was = s_.lint_level[pin];
    s_.lint_level[pin] = level;
    if (!hw_enabled()) {  // a globally disabled APIC passes LINT1 through as NMI, LINT0 as INTR
        if (pin == kLint1 && level && !was && pins_) pins_->nmi();
        return update_intr();
    }
    unsigned idx = pin == kLint0 ? kLvtIdxLint0 : kLvtIdxLint1;
    uint32_t lvt = s_.lvt[idx];
    if (lvt_mode(lvt) == apic::kExtInt) return update_intr();
    if (lvt_mode(lvt) == apic::kFixed && (lvt & kLvtLevel)) {
        if (level && !(lvt & kLvtRemoteIrr)) local_interrupt(idx);
    } else if (level && !was) {
        local_interrupt(idx);  // edge (NMI, INIT and edge-triggered fixed)
    }
}

void Lapic::eoi() {
    int v = vhighest(s_.isr);
    if (v < 0) return;
    vclear(s_.isr, unsigned(v));
    for (unsigned i : {unsigned(kLvtIdxLint0), unsigned(kLvtIdxLint1)}) {
        uint32_t& lvt = s_.lvt[i];
        if ((lvt & kLvtRemoteIrr) && (lvt & kLvtVector) == unsigned(v)) {
            lvt &= ~kLvtRemoteIrr;
            if (s_.lint_level[i - kLvtIdxLint0]) local_interrupt(i);
        }
    }
    // Level-triggered (TMR set): the EOI is broadcast to the I/O APICs (10.8.5).
    if (vtest(s_.tmr, unsigned(v)) && eoi_) eoi_->eoi(uint8_t(v));
    update_intr();
}

void Lapic::send_ipi() {
    uint32_t lo = s_.icr_lo;
    ApicMessage m;
    m.vector = uint8_t(lo & 0xff);
    m.delivery_mode = uint8_t((lo >> kIcrModeShift) & 7);
    m.logical = lo & kIcrLogical;
    m.level = lo & kIcrLevel;
    m.assert = lo & kIcrAssert;
    m.shorthand = uint8_t((lo >> kIcrShorthandShift) & 3);
    m.x2apic_dest = x2apic();
    m.dest = x2apic() ? s_.icr_hi : s_.icr_hi >> 24;
    m.source = this;
    if ((m.delivery_mode == apic::kFixed || m.delivery_mode == apic::kLowestPriority) && m.vector < 16)
        return error(kEsrSendIllegalVector);
    if (m.delivery_mode == apic::kInit && m.level && !m.assert) return;  // INIT level de-assert
    if (ipi_) ipi_->deliver(m);
}

}  // namespace m86::dev
