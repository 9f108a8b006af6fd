// Rtc146818 against the MC146818A datasheet: reset registers, BCD/binary and 12/24-hour time,
// calendar rollover, UIP timing, update-ended / periodic / alarm interrupts, SET, divider reset,
// CMOS RAM and the memory-size bytes QEMU's microvm writes.
#include <doctest/doctest.h>

#include "devices/rtc146818.h"

using namespace m86::dev;
using namespace m86::dev::rtc;

namespace {
constexpr uint64_t kS = 1'000'000'000;
struct Irq : IrqSink {
    bool level = false;
    int rises = 0;
    void set_irq(unsigned, bool l) override {
        rises += l && !level;
        level = l;
    }
};
struct Rig {
    // Deterministic clock: starts at 2024-01-01 00:00:00 UTC (a Monday).
    Clock clock{[] {
        ClockConfig c;
        c.mode = ClockMode::Deterministic;
        return c;
    }()};
    Irq irq;
    Rtc146818 rtc{clock, IrqLine{&irq, 8}};
    uint8_t get(unsigned idx) {
        rtc.write(0, 1, idx);
        return uint8_t(rtc.read(1, 1));
    }
    void set(unsigned idx, uint8_t v) {
        rtc.write(0, 1, idx);
        rtc.write(1, 1, v);
    }
    void to(uint64_t ns) {
        while (clock.next_deadline() <= ns) {
            clock.idle_until(clock.next_deadline());
            clock.run_due();
        }
        clock.idle_until(ns);
        clock.run_due();
    }
};
}  // namespace

TEST_CASE("Rtc146818: reset values of registers A-D") {
    Rig r;
    CHECK(r.get(kRegA) == 0x26);
    CHECK(r.get(kRegB) == 0x02);
    CHECK(r.get(kRegC) == 0x00);
    CHECK(r.get(kRegD) == 0x80);  // valid RAM and time
}

TEST_CASE("Rtc146818: BCD 24-hour calendar from the clock, including a leap day") {
    Rig r;
    CHECK(r.get(kSeconds) == 0x00);
    CHECK(r.get(kHours) == 0x00);
    CHECK(r.get(kDayOfWeek) == 2);  // Monday (Sunday = 1)
    CHECK(r.get(kDayOfMonth) == 0x01);
    CHECK(r.get(kMonth) == 0x01);
    CHECK(r.get(kYear) == 0x24);
    CHECK(r.get(kCentury) == 0x20);
    // 2024-02-29 13:45:30 is 59 days, 13:45:30 later; a Thursday.
    r.to((59 * 86400ull + 13 * 3600 + 45 * 60 + 30) * kS);
    CHECK(r.get(kSeconds) == 0x30);
    CHECK(r.get(kMinutes) == 0x45);
    CHECK(r.get(kHours) == 0x13);
    CHECK(r.get(kDayOfWeek) == 5);
    CHECK(r.get(kDayOfMonth) == 0x29);
    CHECK(r.get(kMonth) == 0x02);
    CHECK(r.get(kYear) == 0x24);
}

TEST_CASE("Rtc146818: binary data mode and 12-hour format with the PM bit") {
    Rig r;
    r.set(kRegB, kBBinary);      // binary, 12-hour
    CHECK(r.get(kHours) == 12);  // midnight is 12 AM
    r.to((13 * 3600ull + 30) * kS);
    CHECK(r.get(kHours) == (0x80 | 1));  // 1 PM
    CHECK(r.get(kSeconds) == 30);
    r.set(kRegB, kB24h);  // BCD 24-hour
    CHECK(r.get(kHours) == 0x13);
    CHECK(r.get(kSeconds) == 0x30);
}

TEST_CASE("Rtc146818: UIP is set during the 244 us before each update") {
    Rig r;
    r.to(kS - 250'000);
    CHECK((r.get(kRegA) & kAUip) == 0);
    CHECK(r.get(kSeconds) == 0x00);
    r.to(kS - 240'000);
    CHECK((r.get(kRegA) & kAUip) != 0);
    CHECK(r.get(kSeconds) == 0x00);  // the registers still hold the old second
    r.to(kS);
    CHECK((r.get(kRegA) & kAUip) == 0);
    CHECK(r.get(kSeconds) == 0x01);
}

TEST_CASE("Rtc146818: update-ended interrupt each second; reading C clears it") {
    Rig r;
    r.set(kRegA, 0x20);  // no periodic rate: PF stays clear
    r.set(kRegB, kB24h | kBUie);
    r.to(kS - 1);
    CHECK_FALSE(r.irq.level);
    r.to(kS);
    CHECK(r.irq.level);
    CHECK(r.get(kRegC) == (kCIrqf | kCUf));
    CHECK_FALSE(r.irq.level);
    CHECK(r.get(kRegC) == 0);
    r.to(3 * kS);
    CHECK(r.irq.rises == 2);  // the line stayed high from 2 s until C was read
}

TEST_CASE("Rtc146818: periodic interrupt at the rate of register A") {
    Rig r;
    // RS = 6: 1024 Hz, 32 periods of 32.768 kHz = 976562.5 ns.
    r.to(2'000'000);
    CHECK(r.get(kRegC) == kCPf);  // PF is set with PIE off, without IRQF
    r.set(kRegB, kB24h | kBPie);
    r.to(2 * 976'563 - 1);
    CHECK_FALSE(r.irq.level);
    r.to(3 * 976'563);  // the third period boundary after t=0
    CHECK(r.irq.level);
    CHECK(r.get(kRegC) == (kCIrqf | kCPf));
    r.set(kRegA, 0x2f);  // RS = 15: 500 ms
    r.get(kRegC);
    r.to(499'999'999);
    CHECK(r.get(kRegC) == 0);
    r.to(500'000'000);
    CHECK(r.get(kRegC) == (kCIrqf | kCPf));
}

TEST_CASE("Rtc146818: alarm interrupt with exact and don't-care alarm bytes") {
    Rig r;
    r.set(kRegA, 0x20);
    r.set(kSecondsAlarm, 0x05);
    r.set(kMinutesAlarm, 0x00);
    r.set(kHoursAlarm, 0x00);
    r.set(kRegB, kB24h | kBAie);
    r.to(4 * kS);
    CHECK_FALSE(r.irq.level);
    CHECK((r.get(kRegC) & kCAf) == 0);
    r.to(5 * kS);
    CHECK(r.irq.level);
    CHECK(r.get(kRegC) == (kCIrqf | kCAf | kCUf));
    r.set(kSecondsAlarm, 0xc0);
    r.set(kMinutesAlarm, 0xff);
    r.set(kHoursAlarm, 0xc0);
    r.to(6 * kS);
    CHECK(r.get(kRegC) == (kCIrqf | kCAf | kCUf));  // every second
}

TEST_CASE("Rtc146818: setting the time under SET, and the century rollover") {
    Rig r;
    r.set(kRegB, kB24h | kBSet | kBUie);
    CHECK((r.get(kRegB) & kBUie) == 0);  // SET clears UIE
    r.set(kSeconds, 0x58);
    r.set(kMinutes, 0x59);
    r.set(kHours, 0x23);
    r.set(kDayOfMonth, 0x31);
    r.set(kMonth, 0x12);
    r.set(kYear, 0x99);
    r.to(5 * kS);
    CHECK(r.get(kSeconds) == 0x58);  // frozen while SET
    r.set(kRegB, kB24h);
    CHECK(r.get(kYear) == 0x99);
    CHECK(r.get(kSeconds) == 0x58);
    r.to(7 * kS);
    CHECK(r.get(kSeconds) == 0x00);
    CHECK(r.get(kHours) == 0x00);
    CHECK(r.get(kDayOfMonth) == 0x01);
    CHECK(r.get(kMonth) == 0x01);
    CHECK(r.get(kYear) == 0x00);
    CHECK(r.get(kCentury) == 0x21);
}

TEST_CASE("Rtc146818: divider reset stops the clock; the first update comes 500 ms after release") {
    Rig r;
    r.to(kS / 4);
    r.set(kRegA, 0x76);  // DV = 111: reset
    r.to(10 * kS);
    CHECK(r.get(kSeconds) == 0x00);
    CHECK((r.get(kRegA) & kAUip) == 0);
    r.set(kRegA, 0x26);
    r.to(10 * kS + kS / 2 - 1);
    CHECK(r.get(kSeconds) == 0x00);
    r.to(10 * kS + kS / 2);
    CHECK(r.get(kSeconds) == 0x01);
}

TEST_CASE("Rtc146818: CMOS RAM, read-only C/D, and the NMI disable bit of the index port") {
    Rig r;
    r.set(0x40, 0x5a);
    r.set(0x7f, 0xa5);
    CHECK(r.get(0x40) == 0x5a);
    CHECK(r.get(0x7f) == 0xa5);
    r.set(kRegD, 0);
    CHECK(r.get(kRegD) == 0x80);
    CHECK_FALSE(r.rtc.nmi_disabled());
    r.rtc.write(0, 1, 0x80 | 0x40);
    CHECK(r.rtc.nmi_disabled());
    CHECK(r.rtc.read(1, 1) == 0x5a);
    CHECK(r.rtc.read(0, 1) == 0xff);
}

TEST_CASE("Rtc146818: memory-size bytes as QEMU's microvm_set_rtc computes them") {
    Rig r;
    r.rtc.set_memory_sizes(512ull << 20, 0);
    CHECK(r.get(0x15) == 0x80);  // 640 KiB base memory
    CHECK(r.get(0x16) == 0x02);
    CHECK(r.get(0x17) == 0xff);  // (512 MiB - 1 MiB) / 1 KiB, capped at 65535
    CHECK(r.get(0x18) == 0xff);
    CHECK(r.get(0x30) == 0xff);
    CHECK(r.get(0x31) == 0xff);
    CHECK(r.get(0x34) == 0x00);  // (512 - 16) MiB / 64 KiB = 7936 = 0x1f00
    CHECK(r.get(0x35) == 0x1f);
    CHECK(r.get(0x5b) == 0);
    r.rtc.set_memory_sizes(3ull << 30, 1ull << 30);  // -m 4G: 3 GiB low, 1 GiB above 4 GiB
    CHECK(r.get(0x5b) == 0x00);                      // 1 GiB / 64 KiB = 0x4000
    CHECK(r.get(0x5c) == 0x40);
    CHECK(r.get(0x5d) == 0x00);
    r.rtc.set_memory_sizes(8ull << 20, 0);
    CHECK(r.get(0x17) == 0x00);  // 7 MiB = 7168 KiB = 0x1c00
    CHECK(r.get(0x18) == 0x1c);
    CHECK(r.get(0x34) == 0x00);
    CHECK(r.get(0x35) == 0x00);
}
