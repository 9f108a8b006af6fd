// Pic8259: the cascaded pair of 8259A programmable interrupt controllers of the PC (Intel 8259A
// datasheet, sections cited at the rules), plus the PIIX edge/level control registers (ELCR,
// Intel 82371AB PIIX4 datasheet 4.1.9 / ports 0x4d0-0x4d1).
//
// One object models master + slave with the slave's INT output on master IR2. The board maps
// three views of it:
//     io.map(0x20, 2, &pic.master(), ...)    command (offset 0) / data (offset 1) of the master
//     io.map(0xa0, 2, &pic.slave(), ...)     the same for the slave
//     io.map(0x4d0, 2, &pic.elcr(), ...)     ELCR1 (IRQ 0-7) and ELCR2 (IRQ 8-15)
// Inputs: set_irq(0..15, level) (IrqSink: the board's ISA IRQ lines). Output: the master's INT pin
// drives the `intr` line given at construction (level; the board wires it to LINT0 of the LAPIC,
// or straight to the CPU's INTR). The INTA cycle is acknowledge() (InterruptController).
//
// Implemented: ICW1-ICW4 (single/cascade, ICW4 AEOI and special fully nested mode, LTIM), OCW1
// mask, OCW2 non-specific/specific EOI, rotate on EOI, rotate in AEOI, set priority, OCW3 IRR/ISR
// read select, poll, special mask mode; edge sensing (the rising edge is latched until INTA, as
// in QEMU, so a short IrqLine::pulse() is an interrupt; the real chip wants the request held) or
// level sensing per pin from ELCR or LTIM (a level request withdrawn before INTA gives the
// default IR7); spurious IRQ7 / IRQ15 on INTA without a request. 8080/8085 mode and buffered mode are not
// modeled (x86 mode is assumed; buffered mode changes nothing visible).
#pragma once

#include <cstdint>

#include "devices/device.h"

namespace m86::dev {

namespace pic {
// ICW1 (A0 = 0, D4 = 1).
constexpr uint8_t kIcw1Ic4 = 0x01, kIcw1Single = 0x02, kIcw1Ltim = 0x08, kIcw1Init = 0x10;
// ICW4.
constexpr uint8_t kIcw2BaseMask = 0xf8;  // T7..T3: the low 3 bits come from the IR level
constexpr uint8_t kIcw4Aeoi = 0x02, kIcw4Sfnm = 0x10;
// OCW2 (A0 = 0, D4 = D3 = 0): R SL EOI in bits 7..5, level in bits 2..0.
constexpr uint8_t kOcw3Select = 0x08;  // D3 = 1 with D4 = 0: OCW3
constexpr unsigned kOcw2Shift = 5;
enum Ocw2 : uint8_t {
    kRotateAeoiClear = 0,
    kNonSpecificEoi = 1,
    kNop = 2,
    kSpecificEoi = 3,
    kRotateAeoiSet = 4,
    kRotateNonSpecificEoi = 5,
    kSetPriority = 6,
    kRotateSpecificEoi = 7,
};
// OCW3.
constexpr uint8_t kOcw3Ris = 0x01, kOcw3Rr = 0x02, kOcw3Poll = 0x04, kOcw3Smm = 0x20, kOcw3Esmm = 0x40;
constexpr uint8_t kPollInt = 0x80;
constexpr unsigned kCascadeIrq = 2;
constexpr unsigned kSpuriousIrq = 7;
// ELCR bits that must stay edge: IRQ 0, 1, 2 (master) and 8, 13 (slave) (PIIX4 4.1.9/4.1.10).
constexpr uint8_t kElcrMask[2] = {0xf8, 0xde};
}  // namespace pic

class Pic8259 : public IrqSink, public InterruptController {
   public:
    struct Chip {
        uint8_t irr = 0, isr = 0, imr = 0;
        uint8_t lines = 0;  // current input levels
        uint8_t elcr = 0;   // 1 = level-sensitive pin
        uint8_t base = 0;   // ICW2 vector base (T7..T3)
        uint8_t icw3 = 0;
        uint8_t init_step = 0;  // 0 = operational; 1..3 = expecting ICW2..ICW4
        uint8_t lowest = 7;     // the pin with the lowest priority (rotation, OCW2)
        bool init4 = false, single = false, ltim = false;
        bool auto_eoi = false, rotate_aeoi = false, sfnm = false;
        bool read_isr = false, poll = false, special_mask = false;
    };
    struct State {
        Chip chip[2];  // [0] master, [1] slave
    };

    explicit Pic8259(IrqLine intr = {});
    Pic8259(const Pic8259&) = delete;  // the port views point back at this object
    Pic8259& operator=(const Pic8259&) = delete;

    Device& master() { return ports_[0]; }
    Device& slave() { return ports_[1]; }
    Device& elcr() { return elcr_port_; }

    void set_irq(unsigned pin, bool level) override;
    bool has_interrupt() const override { return int_out_; }
    uint8_t acknowledge() override;

    const State& state() const { return s_; }
    void restore(const State& s);

   private:
    class Port : public ByteDevice {
       public:
        Pic8259* pic = nullptr;
        unsigned chip = 0;
        uint8_t read8(unsigned offset) override { return pic->read_port(chip, offset); }
        void write8(unsigned offset, uint8_t v) override { pic->write_port(chip, offset, v); }
    };
    class ElcrPort : public ByteDevice {
       public:
        Pic8259* pic = nullptr;
        uint8_t read8(unsigned offset) override { return pic->s_.chip[offset & 1].elcr; }
        void write8(unsigned offset, uint8_t v) override { pic->write_elcr(offset & 1, v); }
    };

    uint8_t read_port(unsigned c, unsigned offset);
    void write_port(unsigned c, unsigned offset, uint8_t v);
    void write_elcr(unsigned c, uint8_t v);
    void set_input(unsigned c, unsigned pin, bool level);
    int pending(unsigned c) const;  // the pin to signal, or -1
    void intack(unsigned c, unsigned pin);
    void update();

    State s_;
    IrqLine intr_;
    bool int_out_ = false;
    Port ports_[2];
    ElcrPort elcr_port_;
};

}  // namespace m86::dev
