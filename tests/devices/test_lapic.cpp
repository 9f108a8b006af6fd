// Lapic against the SDM (Vol. 3A chapter 10): reset state, acceptance and priority (TPR/PPR/APR),
// EOI, the timer in one-shot / periodic / TSC-deadline modes, IPIs through the APIC bus, ESR,
// x2APIC MSRs, LINT0 ExtINT from the PIC, and the level-triggered EOI broadcast to the IOAPIC.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "devices/ioapic.h"
#include "devices/lapic.h"
#include "devices/pic8259.h"

using namespace m86::dev;
using namespace m86::dev::lapic;

namespace {
struct Pins : CpuPins {
    bool intr = false;
    int nmis = 0, inits = 0;
    std::vector<uint8_t> sipis;
    void set_intr(bool l) override { intr = l; }
    void nmi() override { nmis++; }
    void init() override { inits++; }
    void sipi(uint8_t v) override { sipis.push_back(v); }
};
ClockConfig det() {
    ClockConfig c;
    c.mode = ClockMode::Deterministic;  // 1 instruction = 1 ns
    return c;
}
struct Cpu {
    Pins pins;
    std::unique_ptr<Lapic> apic;
    Cpu(Clock& clock, ApicBus& bus, uint32_t id, bool bsp, InterruptController* pic = nullptr) {
        LapicConfig cfg;
        cfg.apic_id = id;
        cfg.bsp = bsp;
        cfg.tsc.hz = 2'000'000'000;  // 2 GHz TSC
        apic = std::make_unique<Lapic>(clock, cfg, &pins, &bus, &bus, pic);
        bus.add_lapic(apic.get());
    }
    uint32_t rd(unsigned off) { return uint32_t(apic->read(off, 4)); }
    void wr(unsigned off, uint32_t v) { apic->write(off, 4, v); }
    void enable() { wr(kSvr, 0x1ff); }
};
struct Rig {
    Clock clock{det()};
    ApicBus bus;
    void to(uint64_t ns) {
        while (clock.next_deadline() <= ns) {
            clock.idle_until(clock.next_deadline());
            clock.run_due();
        }
        clock.idle_until(ns);
        clock.run_due();
    }
};
ApicMessage fixed(uint8_t vector, uint32_t dest = 0, bool level = false) {
    ApicMessage m;
    m.vector = vector;
    m.dest = dest;
    m.level = level;
    return m;
}
}  // namespace

TEST_CASE("Lapic: power-up state (SDM 10.4.7.1) and the version register") {
    Rig r;
    Cpu bsp(r.clock, r.bus, 0, true), ap(r.clock, r.bus, 3, false);
    CHECK(bsp.rd(kVersion) == 0x00050014);
    CHECK(ap.rd(kId) == 0x03000000);
    CHECK(ap.rd(kSvr) == 0xff);
    CHECK(ap.rd(kDfr) == 0xffffffff);
    CHECK(ap.rd(kLdr) == 0);
    for (unsigned off : {kLvtTimer, kLvtThermal, kLvtPerf, kLvtLint0, kLvtLint1, kLvtError})
        CHECK(ap.rd(off) == 0x00010000);
    CHECK(bsp.rd(kLvtLint0) == 0x700);  // virtual wire: ExtINT, unmasked
    uint64_t base = 0;
    CHECK(bsp.apic->msr_read(kMsrApicBase, &base));
    CHECK(base == (0xfee00000 | kBaseEnable | kBaseBsp));
    CHECK(ap.apic->msr_read(kMsrApicBase, &base));
    CHECK(base == (0xfee00000 | kBaseEnable));
}

TEST_CASE("Lapic: the highest-priority vector is taken first; ISR blocks its class and below") {
    Rig r;
    Cpu c(r.clock, r.bus, 0, false);
    c.enable();
    c.apic->accept(fixed(0x41));
    c.apic->accept(fixed(0x82));
    CHECK(c.pins.intr);
    CHECK(c.apic->acknowledge() == 0x82);
    CHECK(c.rd(kIsr + 0x40) == (1u << 2));  // vector 0x82 = bit 2 of ISR[4]
    CHECK(c.rd(kPpr) == 0x80);
    CHECK_FALSE(c.pins.intr);  // 0x41 is a lower class than the one in service
    c.apic->accept(fixed(0x85));
    CHECK_FALSE(c.pins.intr);  // same class as in service: blocked too
    c.apic->accept(fixed(0x91));
    CHECK(c.pins.intr);  // higher class: nests
    CHECK(c.apic->acknowledge() == 0x91);
    c.wr(kEoi, 0);  // clears 0x91
    CHECK(c.rd(kPpr) == 0x80);
    c.wr(kEoi, 0);  // clears 0x82
    CHECK(c.rd(kPpr) == 0x00);
    CHECK(c.apic->acknowledge() == 0x85);
    c.wr(kEoi, 0);
    CHECK(c.apic->acknowledge() == 0x41);
    c.wr(kEoi, 0);
    CHECK(c.apic->acknowledge() == -1);
}

TEST_CASE("Lapic: TPR, PPR and APR, and CR8") {
    Rig r;
    Cpu c(r.clock, r.bus, 0, false);
    c.enable();
    c.wr(kTpr, 0x55);
    c.apic->accept(fixed(0x51));
    CHECK_FALSE(c.pins.intr);  // class 5 is not above TPR class 5
    CHECK(c.rd(kPpr) == 0x55);
    // APR: TPR >= IRR class and TPR > ISR class -> APR = TPR.
    CHECK(c.rd(kApr) == 0x55);
    c.apic->accept(fixed(0x71));
    CHECK(c.pins.intr);
    CHECK(c.rd(kApr) == 0x70);  // max(TPR, ISRV, IRRV) classes
    c.apic->set_cr8(0x8);
    CHECK(c.rd(kTpr) == 0x80);
    CHECK(c.apic->cr8() == 0x8);
    CHECK_FALSE(c.pins.intr);
    // A request masked by TPR between INTR and INTA is delivered as the spurious vector.
    c.apic->set_cr8(0);
    CHECK(c.pins.intr);
    c.wr(kSvr, 0x1ef);
    c.wr(kTpr, 0xf0);
    CHECK(c.apic->acknowledge() == 0xef);
    CHECK(c.rd(kIsr + 0x70) == 0);
}

TEST_CASE("Lapic: software disable holds interrupts and forces LVT masks") {
    Rig r;
    Cpu c(r.clock, r.bus, 0, false);
    c.apic->accept(fixed(0x40));
    CHECK_FALSE(c.pins.intr);  // SVR bit 8 clear after reset
    c.wr(kLvtError, 0x33);
    CHECK(c.rd(kLvtError) == 0x10033);  // the mask cannot be cleared
    c.enable();
    CHECK(c.pins.intr);  // the held request is delivered once enabled
    c.wr(kLvtError, 0x33);
    CHECK(c.rd(kLvtError) == 0x33);
    c.wr(kSvr, 0xff);
    CHECK(c.rd(kLvtError) == 0x10033);
}

TEST_CASE("Lapic: timer one-shot counts down at bus clock / divisor and fires once") {
    Rig r;
    Cpu c(r.clock, r.bus, 0, false);
    c.enable();
    c.wr(kTimerDivide, 0xb);  // divide by 1: 1 GHz = 1 count per ns
    c.wr(kLvtTimer, 0x30);    // one-shot, vector 0x30
    c.wr(kTimerInitial, 1000);
    r.to(400);
    CHECK(c.rd(kTimerCurrent) == 600);
    CHECK_FALSE(c.pins.intr);
    r.to(1000);
    CHECK(c.rd(kTimerCurrent) == 0);
    CHECK(c.pins.intr);
    CHECK(c.apic->acknowledge() == 0x30);
    c.wr(kEoi, 0);
    CHECK(r.clock.next_deadline() == kNever);
    c.wr(kTimerDivide, 0x3);   // divide by 16
    c.wr(kTimerInitial, 100);  // at t = 1000: expires 1600 ns later
    r.to(1000 + 1599);
    CHECK(c.rd(kTimerCurrent) == 1);
    CHECK_FALSE(c.pins.intr);
    r.to(2600);
    CHECK(c.pins.intr);
    c.wr(kTimerInitial, 0);  // writing 0 stops the timer
    CHECK(c.rd(kTimerCurrent) == 0);
}

TEST_CASE("Lapic: periodic timer reloads the initial count; a masked LVT drops the interrupt") {
    Rig r;
    Cpu c(r.clock, r.bus, 0, false);
    c.enable();
    c.wr(kTimerDivide, 0x0);   // divide by 2
    c.wr(kLvtTimer, 0x20040);  // periodic, vector 0x40
    c.wr(kTimerInitial, 500);  // period 1000 ns
    int taken = 0;
    for (uint64_t t = 100; t <= 5000; t += 100) {
        r.to(t);
        if (c.pins.intr) {
            CHECK(t % 1000 == 0);
            CHECK(c.apic->acknowledge() == 0x40);
            c.wr(kEoi, 0);
            taken++;
        }
    }
    CHECK(taken == 5);
    r.to(5250);
    CHECK(c.rd(kTimerCurrent) == 375);
    c.wr(kLvtTimer, 0x30040);  // masked
    r.to(8000);
    CHECK_FALSE(c.pins.intr);
    CHECK(c.rd(kTimerCurrent) == 500);  // still counting
}

TEST_CASE("Lapic: TSC-deadline mode fires when the TSC reaches IA32_TSC_DEADLINE") {
    Rig r;
    Cpu c(r.clock, r.bus, 0, false);
    c.enable();
    uint64_t v = 0;
    CHECK(c.apic->msr_write(kMsrTscDeadline, 1234));  // ignored outside deadline mode
    CHECK(c.apic->msr_read(kMsrTscDeadline, &v));
    CHECK(v == 0);
    c.wr(kLvtTimer, 0x40050);  // TSC-deadline, vector 0x50
    c.wr(kTimerInitial, 10);   // ignored in this mode
    CHECK(r.clock.next_deadline() == kNever);
    CHECK(c.apic->msr_write(kMsrTscDeadline, 4000));  // 2 GHz: 2000 ns
    CHECK(c.apic->msr_read(kMsrTscDeadline, &v));
    CHECK(v == 4000);
    r.to(1999);
    CHECK_FALSE(c.pins.intr);
    r.to(2000);
    CHECK(c.pins.intr);
    CHECK(c.apic->msr_read(kMsrTscDeadline, &v));
    CHECK(v == 0);  // disarmed after firing
    CHECK(c.apic->acknowledge() == 0x50);
    c.wr(kEoi, 0);
    c.apic->msr_write(kMsrTscDeadline, 100);  // already past: fires at once
    r.to(2001);
    CHECK(c.pins.intr);
}

TEST_CASE("Lapic: IPIs through the APIC bus: physical, logical, shorthands, INIT/SIPI/NMI") {
    Rig r;
    Cpu a(r.clock, r.bus, 0, true), b(r.clock, r.bus, 1, false), c(r.clock, r.bus, 2, false);
    for (Cpu* x : {&a, &b, &c}) x->enable();
    b.wr(kLdr, 0x02000000);
    c.wr(kLdr, 0x04000000);
    a.wr(kIcrHi, 0x02000000);
    a.wr(kIcrLo, 0x000000a1);  // fixed, physical, to APIC 2
    CHECK(c.pins.intr);
    CHECK_FALSE(b.pins.intr);
    CHECK(c.apic->acknowledge() == 0xa1);
    a.wr(kIcrHi, 0x06000000);
    a.wr(kIcrLo, 0x000008b1);  // fixed, logical (flat): LDR bits 1 and 2
    CHECK(b.apic->acknowledge() == 0xb1);
    CHECK(c.apic->acknowledge() == 0xb1);
    a.wr(kIcrLo, 0x000c00c1);  // all excluding self
    CHECK_FALSE(a.pins.intr);
    CHECK(b.apic->acknowledge() == 0xc1);
    a.wr(kIcrLo, 0x000400d1);  // self
    CHECK(a.apic->acknowledge() == 0xd1);
    a.wr(kIcrHi, 0x01000000);
    a.wr(kIcrLo, 0x00004500);  // INIT assert to APIC 1
    a.wr(kIcrLo, 0x00008500);  // INIT level de-assert: no effect
    a.wr(kIcrLo, 0x00004608);  // start-up, vector 0x08
    CHECK(b.pins.inits == 1);
    CHECK(b.pins.sipis == std::vector<uint8_t>{0x08});
    a.wr(kIcrLo, 0x00000400);  // NMI
    CHECK(b.pins.nmis == 1);
    CHECK(a.rd(kIcrLo) == 0x00000400);  // delivery status idle
    // Lowest priority among APICs 1 and 2: the one with the lower TPR wins.
    CHECK(c.apic->acknowledge() == 0xc1);
    for (int i = 0; i < 3; i++) c.wr(kEoi, 0);
    for (int i = 0; i < 2; i++) b.wr(kEoi, 0);
    b.wr(kTpr, 0x40);
    a.wr(kIcrHi, 0x06000000);
    a.wr(kIcrLo, 0x000009e1);
    CHECK(c.pins.intr);
    CHECK_FALSE(b.pins.intr);
}

TEST_CASE("Lapic: illegal vectors are logged in ESR, visible after a write to ESR") {
    Rig r;
    Cpu a(r.clock, r.bus, 0, false), b(r.clock, r.bus, 1, false);
    a.enable(), b.enable();
    a.wr(kLvtError, 0xee);
    a.wr(kIcrHi, 0x01000000);
    a.wr(kIcrLo, 0x00000005);  // fixed vector 5: send illegal vector
    CHECK_FALSE(b.pins.intr);
    CHECK(a.rd(kEsr) == 0);                // not latched yet
    CHECK(a.apic->acknowledge() == 0xee);  // the error LVT fired
    a.wr(kEoi, 0);
    a.wr(kEsr, 0);
    CHECK(a.rd(kEsr) == kEsrSendIllegalVector);
    a.wr(kEsr, 0);
    CHECK(a.rd(kEsr) == 0);
    b.apic->accept(fixed(0x0f));  // receive illegal vector
    b.wr(kEsr, 0);
    CHECK(b.rd(kEsr) == kEsrRecvIllegalVector);
}

TEST_CASE("Lapic: x2APIC mode through MSRs and the IA32_APIC_BASE transitions") {
    Rig r;
    Cpu a(r.clock, r.bus, 0, true), b(r.clock, r.bus, 0x21, false);
    uint64_t v = 0;
    CHECK_FALSE(a.apic->msr_read(0x802, &v));                              // x2APIC MSRs #GP in xAPIC mode
    CHECK_FALSE(a.apic->msr_write(kMsrApicBase, 0xfee00000 | kBaseExtd));  // EXTD without EN
    for (Cpu* x : {&a, &b}) CHECK(x->apic->msr_write(kMsrApicBase, 0xfee00000 | kBaseEnable | kBaseExtd));
    CHECK(a.apic->msr_read(kMsrApicBase, &v));
    CHECK(v == (0xfee00000 | kBaseEnable | kBaseExtd | kBaseBsp));
    CHECK(a.rd(kVersion) == 0xffffffff);  // the MMIO page is gone
    CHECK(b.apic->msr_read(0x802, &v));
    CHECK(v == 0x21);  // 32-bit ID
    CHECK(b.apic->msr_read(0x80d, &v));
    CHECK(v == ((2u << 16) | (1u << 1)));      // LDR: cluster 2, bit 1
    CHECK_FALSE(b.apic->msr_write(0x802, 5));  // ID is read-only
    CHECK_FALSE(b.apic->msr_read(0x80e, &v));  // no DFR
    CHECK(b.apic->msr_write(0x80f, 0x1ff));
    CHECK(a.apic->msr_write(0x80f, 0x1ff));
    CHECK(a.apic->msr_write(0x830, (uint64_t(0x21) << 32) | 0x61));  // ICR: fixed to ID 0x21
    CHECK(b.apic->acknowledge() == 0x61);
    CHECK_FALSE(b.apic->msr_write(0x80b, 1));  // EOI must write 0
    CHECK(b.apic->msr_write(0x80b, 0));
    CHECK(a.apic->msr_write(0x83f, 0x71));  // SELF IPI
    CHECK(a.apic->acknowledge() == 0x71);
    CHECK_FALSE(a.apic->msr_read(0x83f, &v));                                // write-only
    CHECK_FALSE(a.apic->msr_write(kMsrApicBase, 0xfee00000 | kBaseEnable));  // x2APIC -> xAPIC
    CHECK(a.apic->msr_write(kMsrApicBase, 0xfee00000));                      // -> disabled
    CHECK_FALSE(a.apic->msr_write(kMsrApicBase, 0xfee00000 | kBaseEnable | kBaseExtd));
    CHECK(a.apic->msr_write(kMsrApicBase, 0xfee00000 | kBaseEnable));
}

TEST_CASE("Lapic: LINT0 in ExtINT mode passes the PIC through; LINT1 NMI") {
    Rig r;
    IrqFanout intr;  // the PIC's INTR output, wired to LINT0 of every LAPIC
    Pic8259 pic{IrqLine{&intr, 0}};
    Cpu a(r.clock, r.bus, 0, true, &pic);
    intr.connect(0, IrqLine{a.apic.get(), kLint0});
    // Linux's 8259 initialization: vectors 0x30..0x3f.
    for (auto [port, v] : {std::pair{0, 0x11}, {1, 0x30}, {1, 0x04}, {1, 0x01}})
        pic.master().write(unsigned(port), 1, uint8_t(v));
    pic.set_irq(1, true);
    CHECK(a.pins.intr);  // through LINT0 although SVR is still software-disabled
    CHECK(a.apic->acknowledge() == 0x31);
    CHECK_FALSE(a.pins.intr);
    a.wr(kLvtLint1, 0x400);  // NMI... masked while software-disabled
    a.enable();
    a.wr(kLvtLint1, 0x400);
    a.apic->set_irq(kLint1, true);
    CHECK(a.pins.nmis == 1);
    a.wr(kLvtLint0, 0x10700);  // masked: the PIC no longer reaches the CPU
    pic.master().write(0, 1, 0x20);
    pic.set_irq(3, true);
    CHECK_FALSE(a.pins.intr);
}

TEST_CASE("Lapic: a level-triggered IOAPIC interrupt, its EOI broadcast and remote IRR") {
    Rig r;
    Cpu a(r.clock, r.bus, 0, true);
    Ioapic io(&r.bus);
    r.bus.add_eoi_listener(&io);
    a.enable();
    io.write(0x00, 4, 0x10 + 2 * 10);
    io.write(0x10, 4, 0x8000 | 0x5a);  // pin 10: level, vector 0x5a, dest 0
    io.set_irq(10, true);
    CHECK(a.rd(kTmr + 0x20) == (1u << 26));  // TMR marks it level-triggered
    CHECK(a.apic->acknowledge() == 0x5a);
    io.set_irq(10, false);
    a.wr(kEoi, 0);  // broadcast: remote IRR clears
    io.write(0x00, 4, 0x10 + 2 * 10);
    CHECK((io.read(0x10, 4) & (1u << 14)) == 0);
    io.set_irq(10, true);
    CHECK(a.apic->acknowledge() == 0x5a);
    a.wr(kEoi, 0);  // still asserted: delivered again right away
    CHECK(a.pins.intr);
}
