// Ioapic: the 82093AA I/O APIC (Intel 82093AA datasheet, sections cited at the rules): 24 input
// pins, a redirection table, and delivery of interrupt messages to the local APICs.
//
//     mmio.map(0xfec00000, 0x1000, &ioapic, ...)  IOREGSEL at +0x00, IOWIN at +0x10 (32-bit)
//     bus.add_eoi_listener(&ioapic)               EOIs broadcast by the LAPICs clear remote IRR
//     board IRQ routing -> ioapic.set_irq(pin, level)   (ISA IRQ n -> pin n, except IRQ0 -> pin 2)
//
// Registers: IOAPICID (0x00), IOAPICVER (0x01: version 0x11, 24 entries), IOAPICARB (0x02), and the
// redirection table (0x10 + 2n: low dword, 0x11 + 2n: high dword). Edge-triggered pins deliver on
// a rising edge (an edge while masked is lost, 3.2.4 "Interrupt Mask"); level-triggered pins
// deliver while asserted and remote IRR is clear, set remote IRR, and are re-examined when an EOI
// for their vector arrives. Lines carry the asserted state: the polarity bit is stored and read
// back but does not invert the input (as in QEMU; the board's devices drive asserted = true).
// Delivery is instantaneous, so the delivery status bit reads 0.
#pragma once

#include <array>
#include <cstdint>

#include "devices/apic_bus.h"
#include "devices/device.h"

namespace m86::dev {

namespace ioapic {
constexpr unsigned kPins = 24;
// MMIO offsets (3.1).
constexpr unsigned kRegSel = 0x00, kWindow = 0x10;
// Register indexes (3.2).
constexpr uint8_t kId = 0x00, kVersion = 0x01, kArb = 0x02, kRedirBase = 0x10;
constexpr uint32_t kIdShift = 24, kIdMask = 0x0f000000;
constexpr uint32_t kVersionValue = 0x11 | ((kPins - 1) << 16);
// Redirection entry (3.2.4).
constexpr uint64_t kVectorMask = 0xff, kDeliveryModeShift = 8, kDestLogical = 1ull << 11,
                   kDeliveryStatus = 1ull << 12, kPolarityLow = 1ull << 13, kRemoteIrr = 1ull << 14,
                   kLevel = 1ull << 15, kMasked = 1ull << 16, kDestShift = 56;
// Bits software can write: vector, delivery mode, destination mode, polarity, trigger, mask, dest.
constexpr uint64_t kWritable = 0xff000000'0001afffull;
}  // namespace ioapic

class Ioapic : public Device, public IrqSink, public EoiListener {
   public:
    struct State {
        uint8_t select = 0;
        uint32_t id = 0;  // IOAPICID register value
        std::array<uint64_t, ioapic::kPins> redir;
        uint32_t lines = 0;  // asserted inputs
        State() { redir.fill(ioapic::kMasked); }
    };

    explicit Ioapic(ApicSink* bus, uint8_t id = 0);

    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, unsigned size, uint64_t value) override;
    void set_irq(unsigned pin, bool level) override;
    void eoi(uint8_t vector) override;

    const State& state() const { return s_; }
    void restore(const State& s) { s_ = s; }

   private:
    uint32_t read_reg(uint8_t index) const;
    void write_reg(uint8_t index, uint32_t value);
    void deliver(unsigned pin);
    void service(unsigned pin);

    State s_;
    ApicSink* bus_;
};

}  // namespace m86::dev
