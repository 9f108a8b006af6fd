// Ioapic: register window and redirection logic of the 82093AA.
#include "devices/ioapic.h"

namespace m86::dev {

using namespace ioapic;

Ioapic::Ioapic(ApicSink* bus, uint8_t id) : bus_(bus) { s_.id = uint32_t(id) << kIdShift; }

uint64_t Ioapic::read(uint64_t offset, unsigned size) {
    uint32_t v;
    if (offset >= kRegSel && offset < kRegSel + 4)
        v = s_.select;
    else if (offset >= kWindow && offset < kWindow + 4)
        v = read_reg(s_.select);
    else
        return 0;                               // unimplemented offsets of the 4 KiB page read as 0
    unsigned shift = 8 * unsigned(offset & 3);  // narrow reads see their byte lanes
    return size >= 4 ? v : (v >> shift) & all_ones(size);
}

void Ioapic::write(uint64_t offset, unsigned size, uint64_t value) {
    if (offset == kRegSel) {
        s_.select = uint8_t(value);
    } else if (offset == kWindow && size >= 4) {
        write_reg(s_.select, uint32_t(value));
    }
    // Other offsets and partial writes of IOWIN are ignored (the datasheet requires dword access).
}

uint32_t Ioapic::read_reg(uint8_t index) const {
    switch (index) {
        case kId: return s_.id;
        case kVersion: return kVersionValue;
        case kArb: return s_.id;  // the arbitration ID is loaded from the APIC ID (3.2.3)
    }
    if (index >= kRedirBase && index < kRedirBase + 2 * kPins) {
        uint64_t e = s_.redir[(index - kRedirBase) / 2];
        return (index & 1) ? uint32_t(e >> 32) : uint32_t(e);
    }
    return 0;
}

void Ioapic::write_reg(uint8_t index, uint32_t value) {
    if (index == kId) {
        s_.id = value & kIdMask;
        return;
    }
    if (index < kRedirBase || index >= kRedirBase + 2 * kPins) return;  // VER, ARB: read-only
    unsigned pin = (index - kRedirBase) / 2;
    uint64_t& e = s_.redir[pin];
    uint64_t v = (index & 1) ? (e & 0xffffffffull) | (uint64_t(value) << 32) : (e & ~0xffffffffull) | value;
    e = (e & ~kWritable) | (v & kWritable);
    if (!(e & kLevel)) e &= ~kRemoteIrr;  // remote IRR is only meaningful for level pins
    service(pin);
}

void Ioapic::deliver(unsigned pin) {
    uint64_t e = s_.redir[pin];
    ApicMessage m;
    m.vector = uint8_t(e & kVectorMask);
    m.delivery_mode = uint8_t((e >> kDeliveryModeShift) & 7);
    m.logical = e & kDestLogical;
    m.level = e & kLevel;
    m.dest = uint32_t(e >> kDestShift);
    if (m.level) s_.redir[pin] |= kRemoteIrr;  // set before delivery: an EOI may come back at once
    bus_->deliver(m);
}

// A level-triggered pin requests delivery while it is asserted, unmasked and not awaiting EOI.
void Ioapic::service(unsigned pin) {
    uint64_t e = s_.redir[pin];
    if ((e & kLevel) && !(e & kMasked) && !(e & kRemoteIrr) && (s_.lines & (1u << pin))) deliver(pin);
}

void Ioapic::set_irq(unsigned pin, bool level) {
    if (pin >= kPins) return;
    uint32_t bit = 1u << pin;
    bool was = s_.lines & bit;
    s_.lines = level ? s_.lines | bit : s_.lines & ~bit;
    uint64_t e = s_.redir[pin];
    if (e & kLevel)
        service(pin);
    else if (level && !was && !(e & kMasked))
        deliver(pin);
}

void Ioapic::eoi(uint8_t vector) {
    for (unsigned pin = 0; pin < kPins; pin++) {
        uint64_t& e = s_.redir[pin];
        if ((e & kLevel) && (e & kRemoteIrr) && (e & kVectorMask) == vector) {
            e &= ~kRemoteIrr;
            service(pin);
        }
    }
}

}  // namespace m86::dev
