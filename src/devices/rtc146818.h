// Rtc146818: the MC146818A real-time clock with its 128 bytes of CMOS RAM (Motorola MC146818A
// datasheet, sections cited at the rules), as the PC wires it: index port 0x70 (bit 7 = NMI
// disable), data port 0x71, IRQ 8.
//
//     io.map(0x70, 2, &rtc, ...)     offset 0 = index (write-only; reads 0xff), offset 1 = data
//     rtc.set_memory_sizes(below_4g, above_4g)   the CMOS memory-size bytes, as QEMU's microvm
//
// Time comes from the Clock: the RTC starts at clock.wall_epoch_ns() (the host's wall clock in
// realtime mode, a fixed epoch in deterministic mode), in UTC, and advances with virtual time.
// Modeled: seconds..year registers in BCD or binary and 12/24-hour format, the century byte at
// 0x32 (the PC convention QEMU follows), registers A-D, the divider chain (DV bits: only 010 runs;
// leaving reset starts the first update half a second later), SET (freezes the registers for
// writing; setting it clears UIE), the update-in-progress bit for the last 244 us before each
// update, and the periodic (rate from RS), alarm (with "don't care" 0xc0-0xff codes) and
// update-ended interrupts with IRQF driving the IRQ line (level; reading register C clears it).
// Events: one per second for the update cycle while the clock runs, and one per period only while
// PIE is set (PF is otherwise computed when register C is read).
#pragma once

#include <array>
#include <cstdint>

#include "devices/clock.h"
#include "devices/device.h"

namespace m86::dev {

namespace rtc {
// Register indexes ("Address Map").
constexpr unsigned kSeconds = 0x00, kSecondsAlarm = 0x01, kMinutes = 0x02, kMinutesAlarm = 0x03,
                   kHours = 0x04, kHoursAlarm = 0x05, kDayOfWeek = 0x06, kDayOfMonth = 0x07, kMonth = 0x08,
                   kYear = 0x09, kRegA = 0x0a, kRegB = 0x0b, kRegC = 0x0c, kRegD = 0x0d;
constexpr unsigned kCentury = 0x32;  // IBM PC CMOS convention (QEMU's RTC_CENTURY)
constexpr unsigned kCmosSize = 128;
// Register A: UIP, divider select DV2..0, rate select RS3..0.
constexpr uint8_t kAUip = 0x80, kADvMask = 0x70, kADvNormal = 0x20, kADvResetMask = 0x60, kARsMask = 0x0f;
// Register B.
constexpr uint8_t kBSet = 0x80, kBPie = 0x40, kBAie = 0x20, kBUie = 0x10, kBSqwe = 0x08, kBBinary = 0x04,
                  kB24h = 0x02, kBDse = 0x01;
// Register C (read-only, cleared by reading).
constexpr uint8_t kCIrqf = 0x80, kCPf = 0x40, kCAf = 0x20, kCUf = 0x10;
// Register D: valid RAM and time.
constexpr uint8_t kDVrt = 0x80;
constexpr uint8_t kHourPm = 0x80;         // 12-hour mode: PM flag in the hours byte
constexpr uint8_t kAlarmDontCare = 0xc0;  // alarm byte with bits 7:6 set matches any value
// Port bits.
constexpr uint8_t kIndexMask = 0x7f, kNmiDisable = 0x80;
// The UIP bit rises this long before each update (tBUC = 244 us: 8 periods of 32.768 kHz).
constexpr uint64_t kUipNs = 8 * kNsPerSec / 32768;
constexpr uint64_t kTimeBaseHz = 32768;
// Reset values (QEMU's, a PC BIOS's): 32.768 kHz time base, 1024 Hz periodic rate, 24-hour BCD.
constexpr uint8_t kResetA = 0x26, kResetB = kB24h;
// CMOS memory-size bytes (IBM PC/AT CMOS map, as QEMU's microvm_set_rtc fills them).
constexpr unsigned kBaseMemLo = 0x15, kBaseMemHi = 0x16, kExtMemLo = 0x17, kExtMemHi = 0x18,
                   kExtMem2Lo = 0x30, kExtMem2Hi = 0x31, kHighMemLo = 0x34, kHighMemHi = 0x35,
                   kAbove4gLo = 0x5b, kAbove4gMid = 0x5c, kAbove4gHi = 0x5d;
}  // namespace rtc

class Rtc146818 : public ByteDevice {
   public:
    struct State {
        std::array<uint8_t, rtc::kCmosSize> cmos{};
        uint8_t index = 0;
        bool nmi_disabled = false;
        bool running = true;      // the divider chain runs (DV = 010)
        int64_t base_rtc_ns = 0;  // RTC time (Unix ns) at virtual time base_vt; frozen if !running
        uint64_t base_vt = 0;
        int dow_adjust = 0;       // the day-of-week counter's offset from the calendar
        uint64_t pf_checked = 0;  // 32 kHz tick (of RTC time) up to which PF has been evaluated
    };

    Rtc146818(Clock& clock, IrqLine irq8);

    uint8_t read8(unsigned offset) override;
    void write8(unsigned offset, uint8_t value) override;

    // The memory-size bytes exactly as QEMU's microvm_set_rtc computes them.
    void set_memory_sizes(uint64_t below_4g, uint64_t above_4g);
    bool nmi_disabled() const { return s_.nmi_disabled; }
    // The RTC's current time in Unix nanoseconds (what the registers show, at ns resolution).
    int64_t time_ns() const { return rtc_at(clock_.now()); }

    const State& state() const { return s_; }
    void restore(const State& s);

   private:
    int64_t rtc_at(uint64_t vt) const;
    uint64_t vt_at(int64_t rtc_ns) const;
    bool binary() const { return s_.cmos[rtc::kRegB] & rtc::kBBinary; }
    uint8_t to_reg(unsigned v) const;
    unsigned from_reg(uint8_t v) const;
    void materialize(int64_t rtc_ns);
    int64_t registers_seconds();
    void set_time(int64_t rtc_ns, uint64_t vt);
    void commit(uint64_t vt);
    uint64_t period_ticks() const;
    void sync_pf(uint64_t vt);
    void update_irq();
    void rearm(uint64_t vt);
    void on_update(uint64_t deadline);
    void on_periodic(uint64_t deadline);
    uint8_t read_reg(unsigned idx);
    void write_reg(unsigned idx, uint8_t v);

    State s_;
    Clock& clock_;
    IrqLine irq_;
    bool irq_level_ = false;
    Timer update_timer_, periodic_timer_;
};

}  // namespace m86::dev
