// Lapic: one processor's local APIC (Intel SDM Vol. 3A, chapter 10 "Advanced Programmable
// Interrupt Controller (APIC)"; sections cited at the rules), in xAPIC mode through its 4 KiB MMIO
// page and in x2APIC mode through MSRs 0x800-0x8ff.
//
// Wiring (one per vCPU):
//     Lapic lapic(clock, cfg, &pins, /*ipi=*/&apic_bus, /*eoi=*/&apic_bus, /*extint=*/&pic);
//     apic_bus.add_lapic(&lapic);
//     MMIO: the board sends accesses to the page at lapic.base_address() (0xfee00000) from THIS
//           CPU to this Lapic's read()/write() (the page is per-CPU, so it is not on the shared
//           MmioBus) when lapic.mmio_enabled().
//     MSRs: cpu::Platform::msr_read/msr_write -> lapic.msr_read/msr_write (IA32_APIC_BASE 0x1b,
//           IA32_TSC_DEADLINE 0x6e0, x2APIC 0x800-0x8ff); false means #GP.
//     CR8:  Platform::tpr_written(cr8) -> lapic.set_cr8(cr8); reads of CR8 use lapic.cr8().
//     INTA: Platform::intr_acknowledge() -> lapic.acknowledge() (-1 if the request went away).
//     Pins: CpuPins (below) is how the LAPIC drives its core: set_intr(level) mirrors
//           has_interrupt() (-> cpu.set_intr), nmi()/init()/sipi(v) -> cpu.raise_nmi/init/sipi.
//     LINT0/LINT1: IrqSink pins 0 and 1; the PIC's INTR output goes to LINT0 of every LAPIC.
//     Reset: reset() at power-on / machine reset; the board calls init_reset() when it handles
//           an INIT for this CPU (INIT keeps the APIC ID and IA32_APIC_BASE).
//
// Modeled: ID, version 0x14 with 6 LVT entries (0x00050014), TPR/PPR/APR, EOI with the broadcast
// to I/O APICs for level-triggered vectors, LDR/DFR (flat and cluster), SVR (software enable,
// spurious vector), ISR/TMR/IRR, ESR (write-before-read latch), ICR with fixed, lowest-priority,
// SMI (ignored), NMI, INIT (and INIT level de-assert, ignored), start-up and shorthands; LVT timer
// in one-shot, periodic and TSC-deadline modes with the divide configuration, LINT0/LINT1 (fixed,
// NMI, INIT, ExtINT), error LVT; x2APIC mode (32-bit ID, derived LDR, 64-bit ICR, SELF IPI).
// As in QEMU, the BSP's LINT0 comes out of reset as ExtINT unmasked (virtual wire mode, what a
// BIOS sets), and the PIC's interrupts pass through LINT0 while the APIC is software-disabled.
// The thermal and performance-counter LVTs are stored but never fire; there is no CMCI LVT
// (max LVT entry 5), so offset 0x2f0 is reserved.
#pragma once

#include <array>
#include <cstdint>

#include "devices/apic_bus.h"
#include "devices/clock.h"
#include "devices/device.h"

namespace m86::dev {

// The LAPIC's outputs to its processor core.
class CpuPins {
   public:
    virtual ~CpuPins() = default;
    virtual void set_intr(bool level) = 0;  // a maskable interrupt is (no longer) pending
    virtual void nmi() = 0;
    virtual void init() = 0;
    virtual void sipi(uint8_t vector) = 0;
};

namespace lapic {
// Register offsets in the xAPIC page (10.4.1, Table 10-1); x2APIC MSR = 0x800 + offset / 16.
constexpr unsigned kId = 0x20, kVersion = 0x30, kTpr = 0x80, kApr = 0x90, kPpr = 0xa0, kEoi = 0xb0,
                   kRrd = 0xc0, kLdr = 0xd0, kDfr = 0xe0, kSvr = 0xf0, kIsr = 0x100, kTmr = 0x180,
                   kIrr = 0x200, kEsr = 0x280, kLvtCmci = 0x2f0, kIcrLo = 0x300, kIcrHi = 0x310,
                   kLvtTimer = 0x320, kLvtThermal = 0x330, kLvtPerf = 0x340, kLvtLint0 = 0x350,
                   kLvtLint1 = 0x360, kLvtError = 0x370, kTimerInitial = 0x380, kTimerCurrent = 0x390,
                   kTimerDivide = 0x3e0, kSelfIpi = 0x3f0;
constexpr unsigned kPageSize = 0x1000;
constexpr unsigned kRegOffsetMask = 0xff0, kRegByteMask = 0xf;  // 32-bit registers on 16-byte slots
constexpr unsigned kVecRegsSpan = 0x80;                         // ISR/TMR/IRR: eight 32-bit registers each
constexpr uint32_t kPriorityClass = 0xf0;                       // vector / priority bits 7:4 (10.8.3.1)
constexpr uint32_t kXapicDestMask = 0xff000000;  // ID, LDR logical ID, ICR destination: bits 31:24
constexpr uint32_t kDivideMask = 0xb;            // divide configuration bits 3, 1, 0 (10.5.4)
// MSRs (10.4.4, 10.5.4.1, 10.12.1.2).
constexpr uint32_t kMsrApicBase = 0x1b, kMsrTscDeadline = 0x6e0, kMsrX2apicFirst = 0x800,
                   kMsrX2apicLast = 0x8ff;
// IA32_APIC_BASE (10.4.4, 10.12.1).
constexpr uint64_t kBaseBsp = 1ull << 8, kBaseExtd = 1ull << 10, kBaseEnable = 1ull << 11,
                   kBaseAddrMask = 0x000ffffffffff000ull, kDefaultBase = 0xfee00000;
// Version register (10.4.8): version 0x14, max LVT entry 5.
constexpr uint32_t kVersionValue = 0x00050014;
// SVR (10.9).
constexpr uint32_t kSvrEnable = 1u << 8, kSvrFocus = 1u << 9, kSvrWritable = 0x3ff;
// LVT bits (10.5.1, Figure 10-8).
constexpr uint32_t kLvtVector = 0xff, kLvtModeShift = 8, kLvtPending = 1u << 12, kLvtPolarity = 1u << 13,
                   kLvtRemoteIrr = 1u << 14, kLvtLevel = 1u << 15, kLvtMasked = 1u << 16,
                   kTimerModeShift = 17;
enum TimerMode : uint32_t { kOneShot = 0, kPeriodic = 1, kTscDeadline = 2 };
// ICR (10.6.1, Figure 10-12).
constexpr uint32_t kIcrModeShift = 8, kIcrLogical = 1u << 11, kIcrPending = 1u << 12, kIcrAssert = 1u << 14,
                   kIcrLevel = 1u << 15, kIcrShorthandShift = 18;
// ESR (10.5.3, Figure 10-9).
constexpr uint32_t kEsrSendIllegalVector = 1u << 5, kEsrRecvIllegalVector = 1u << 6;
// DFR models (10.6.2.2).
constexpr uint32_t kDfrFlat = 0xffffffff, kDfrModelMask = 0xf0000000;
// Which LVT entry (index into State::lvt) sits at each LVT offset.
enum Lvt : unsigned {
    kLvtIdxTimer,
    kLvtIdxThermal,
    kLvtIdxPerf,
    kLvtIdxLint0,
    kLvtIdxLint1,
    kLvtIdxError,
    kLvtIdxCmci,
    kLvtCount
};
constexpr unsigned kLint0 = 0, kLint1 = 1;  // IrqSink pin numbers
// The timer's input clock (QEMU's APIC bus frequency); the board advertises what it configures.
constexpr uint64_t kDefaultBusHz = 1'000'000'000;
}  // namespace lapic

struct LapicConfig {
    uint32_t apic_id = 0;
    bool bsp = false;
    uint64_t bus_hz = lapic::kDefaultBusHz;  // timer input clock (before the divider)
    TscScale tsc;                            // for TSC-deadline mode
};

class Lapic : public Device, public IrqSink {
   public:
    using Vec256 = std::array<uint32_t, 8>;
    struct State {
        uint32_t id = 0;
        uint64_t apic_base = 0;
        uint32_t tpr = 0, ldr = 0, dfr = lapic::kDfrFlat, svr = 0xff;
        uint32_t esr = 0, esr_pending = 0;
        uint32_t icr_lo = 0, icr_hi = 0;
        std::array<uint32_t, lapic::kLvtCount> lvt{};
        Vec256 irr{}, isr{}, tmr{};
        uint32_t timer_initial = 0, timer_divide = 0;
        bool timer_running = false;
        uint64_t timer_start = 0;        // virtual time counting started (from timer_start_count)
        uint32_t timer_start_count = 0;  // the count at timer_start
        uint64_t tsc_deadline = 0;
        bool lint_level[2] = {false, false};
        bool extint_pending = false;  // an ExtINT message awaits the PIC's vector
    };

    Lapic(Clock& clock, const LapicConfig& cfg, CpuPins* pins, ApicSink* ipi, EoiListener* eoi,
          InterruptController* extint = nullptr);

    // xAPIC MMIO page (offsets 0..0xfff; 32-bit accesses at 16-byte aligned registers).
    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, unsigned size, uint64_t value) override;
    // MSRs; false = the access faults (#GP).
    bool msr_read(uint32_t msr, uint64_t* value);
    bool msr_write(uint32_t msr, uint64_t value);
    // LINT0 / LINT1 inputs.
    void set_irq(unsigned pin, bool level) override;

    // The CPU side.
    bool has_interrupt() const;
    int acknowledge();
    void set_cr8(uint8_t cr8);
    uint8_t cr8() const { return uint8_t(s_.tpr >> 4); }

    // The APIC bus side.
    bool matches(const ApicMessage& m) const;
    void accept(const ApicMessage& m);
    uint8_t arbitration_priority() const;

    void reset();                          // power-on / machine reset
    void init_reset();                     // INIT: everything but the APIC ID and IA32_APIC_BASE
    void set_tsc_offset(uint64_t offset);  // the guest's TSC = tsc.ticks(now) + offset

    uint32_t id() const { return s_.id; }
    uint64_t base_address() const { return s_.apic_base & lapic::kBaseAddrMask; }
    bool hw_enabled() const { return s_.apic_base & lapic::kBaseEnable; }
    bool x2apic() const { return s_.apic_base & lapic::kBaseExtd; }
    bool sw_enabled() const { return s_.svr & lapic::kSvrEnable; }
    bool mmio_enabled() const { return hw_enabled() && !x2apic(); }
    uint8_t ppr() const;
    const State& state() const { return s_; }
    void restore(const State& s);

   private:
    bool read_reg(unsigned off, uint64_t* v);
    bool write_reg(unsigned off, uint64_t v, bool from_msr);
    void write_lvt(unsigned idx, uint32_t v);
    void send_ipi();
    void set_irr(uint8_t vector, bool level);
    void local_interrupt(unsigned lvt_idx);
    void error(uint32_t bits);
    void eoi();
    void update_intr();
    bool extint_ready() const;
    // Timer.
    unsigned divisor() const;
    uint32_t timer_mode() const { return (s_.lvt[lapic::kLvtIdxTimer] >> lapic::kTimerModeShift) & 3; }
    uint64_t timer_ticks(uint64_t vt) const;
    uint64_t timer_vt(uint64_t ticks) const;
    uint32_t current_count(uint64_t vt) const;
    void start_timer(uint32_t count, uint64_t vt);
    void arm_timer(uint64_t vt);
    void on_timer(uint64_t deadline);
    uint64_t guest_tsc(uint64_t vt) const { return cfg_.tsc.ticks(vt) + tsc_offset_; }

    State s_;
    Clock& clock_;
    LapicConfig cfg_;
    CpuPins* pins_;
    ApicSink* ipi_;
    EoiListener* eoi_;
    InterruptController* extint_;
    Timer timer_;
    uint64_t tsc_offset_ = 0;
    bool intr_out_ = false;
};

}  // namespace m86::dev
