// Pit8254: the 8254 programmable interval timer (Intel 8254 datasheet, sections cited at the
// rules) at 1.193182 MHz, plus the PC's port 0x61 (speaker / NMI status and control, PIIX4
// datasheet 4.7.1 "NMI Status and Control Register"), which holds channel 2's gate and shows its
// output.
//
// The board maps two views:
//     io.map(0x40, 4, &pit, ...)           counters 0..2 (offsets 0..2), control word (offset 3)
//     io.map(0x61, 1, &pit.port61(), ...)  bit 0 gate 2, bit 1 speaker data, bits 2-3 stored
//                                          (SERR#/IOCHK# enables), bit 4 refresh toggle, bit 5 OUT2
// Channel 0's OUT drives the IRQ0 line (level = OUT, so the PIC/IOAPIC see OUT's rising edges);
// its transitions are scheduled on the clock's event queue, nothing polls. Channels 0 and 1 have
// their gates tied high; channel 1's output is not connected (DRAM refresh on the PC/AT).
//
// Counting is a function of virtual time: the counters tick at floor(t * 1193182 / 1e9), so a
// guest calibrating its TSC or delay loop against the PIT measures the clock exactly. All six
// modes, binary and BCD counting, LSB/MSB/word access with the read and write flip-flops, the
// counter latch and read-back commands and the status byte (with NULL COUNT) are modeled. As in
// QEMU, a count takes effect at the tick it is written (the real chip loads it on the next CLK).
#pragma once

#include <cstdint>

#include "devices/clock.h"
#include "devices/device.h"

namespace m86::dev {

namespace pit {
constexpr uint64_t kHz = 1'193'182;  // the PC's 14.31818 MHz / 12
constexpr unsigned kChannels = 3;
constexpr unsigned kControl = 3;  // offset of the control word register
// Control word (datasheet "Control Word Format"): SC1 SC0 RW1 RW0 M2 M1 M0 BCD.
constexpr unsigned kScShift = 6, kRwShift = 4, kModeShift = 1;
constexpr uint8_t kBcd = 0x01;
constexpr uint8_t kControlStatusMask = 0x3f;  // RW, mode, BCD: echoed in the status byte
constexpr unsigned kScReadBack = 3;
constexpr unsigned kRwLatch = 0, kRwLsb = 1, kRwMsb = 2, kRwWord = 3;
// Read-back command ("Read-Back Command"): bit 5 = !COUNT, bit 4 = !STATUS, bits 3..1 = CNT2..0.
constexpr uint8_t kRbNoCount = 0x20, kRbNoStatus = 0x10;
// Status byte ("Status Byte"): OUTPUT, NULL COUNT, then RW, mode and BCD as programmed.
constexpr uint8_t kStatusOut = 0x80, kStatusNull = 0x40;
// Port 0x61.
constexpr uint8_t kP61Gate2 = 0x01, kP61Speaker = 0x02, kP61Writable = 0x0f, kP61Refresh = 0x10,
                  kP61Out2 = 0x20;
// The refresh request toggle flips every 15.085 us: channel 1 counting 18 ticks, as BIOSes set it.
constexpr uint64_t kRefreshTicks = 18;
}  // namespace pit

class Pit8254 : public ByteDevice {
   public:
    struct Channel {
        uint8_t control = 0;  // the RW, mode and BCD bits as programmed (status byte bits 5..0)
        uint8_t mode = 0;     // 0..5 (6 and 7 alias 2 and 3)
        uint8_t rw = pit::kRwWord;
        bool bcd = false;
        bool gate = true;
        uint16_t count_reg = 0;  // the count register (CR) as written
        uint32_t n = 0;          // the count being used (0 = 65536 / 10000 decoded)
        uint32_t n_next = 0;     // modes 1/5: the count for the next trigger
        bool loaded = false;     // a count has been written since the control word
        bool triggered = false;  // modes 1/5: the gate has triggered the one-shot
        bool running = false;
        uint64_t run_start = 0;       // tick at which the current running stretch began
        uint64_t d_base = 0;          // ticks counted before that stretch
        bool reload_pending = false;  // modes 2/3: a new count waits for the end of the cycle
        uint32_t reload_n = 0;
        uint64_t reload_at_d = 0, reload_d_base = 0;
        bool null_count = false;
        uint64_t null_until = 0;  // NULL COUNT clears after this tick
        bool write_msb_next = false;
        uint8_t write_lsb = 0;
        bool read_msb_next = false;
        uint8_t latch_bytes = 0;  // bytes of a latched count still to be read (0 = not latched)
        uint16_t latched = 0;
        bool status_latched = false;
        uint8_t status = 0;
    };
    struct State {
        Channel ch[pit::kChannels];
        uint8_t port61 = 0;  // bits 0..3
    };

    Pit8254(Clock& clock, IrqLine irq0);

    uint8_t read8(unsigned offset) override;
    void write8(unsigned offset, uint8_t value) override;
    Device& port61() { return port61_; }

    // For the board and tests: a channel's OUT pin now, and its gate input.
    bool out(unsigned ch);
    void set_gate(unsigned ch, bool level);

    const State& state() const { return s_; }
    void restore(const State& s);

   private:
    class Port61 : public ByteDevice {
       public:
        Pit8254* pit = nullptr;
        uint8_t read8(unsigned) override { return pit->read61(); }
        void write8(unsigned, uint8_t v) override { pit->write61(v); }
    };

    uint64_t tick_now() const;
    uint64_t d_at(const Channel& c, uint64_t tick) const;
    void normalize(Channel& c, uint64_t tick);
    bool out_at(const Channel& c, uint64_t tick) const;
    uint64_t next_change(const Channel& c, uint64_t tick) const;
    uint16_t count_at(const Channel& c, uint64_t tick) const;
    void start(Channel& c, uint64_t tick, uint64_t d0);
    void write_count(Channel& c, uint16_t value, uint64_t tick);
    void control(uint8_t v, uint64_t tick);
    void latch_count(Channel& c, uint64_t tick);
    void latch_status(Channel& c, uint64_t tick);
    uint8_t read_channel(Channel& c, uint64_t tick);
    uint8_t read61();
    void write61(uint8_t v);
    void update_irq0(uint64_t tick);
    void on_timer(uint64_t deadline);

    State s_;
    Clock& clock_;
    IrqLine irq0_;
    bool irq0_level_ = false;
    Timer timer_;
    Port61 port61_;
};

}  // namespace m86::dev
