// Pic8259: priority resolution, the INTA sequence with cascade, and the ICW/OCW command decoding
// of the 8259A pair.
#include "devices/pic8259.h"

namespace m86::dev {

using namespace pic;

namespace {
constexpr uint8_t bit(unsigned pin) { return uint8_t(1u << pin); }
bool level_sensitive(const Pic8259::Chip& k, unsigned pin) { return k.ltim || (k.elcr & bit(pin)); }
}  // namespace

Pic8259::Pic8259(IrqLine intr) : intr_(intr) {
    for (unsigned c = 0; c < 2; c++) ports_[c].pic = this, ports_[c].chip = c;
    elcr_port_.pic = this;
}

void Pic8259::restore(const State& s) {
    s_ = s;
    update();
}

void Pic8259::set_irq(unsigned pin, bool level) {
    if (pin >= 16) return;
    set_input(pin / 8, pin % 8, level);
    update();
}

// The request latch of one pin. Edge mode: a rising edge sets IRR, which stays set until INTA
// even if the input falls first. (The real 8259A wants the request held until INTA and gives the
// default IR7 otherwise; latching it, as QEMU does, lets devices signal an edge with a short
// IrqLine::pulse().) Level mode: IRR follows the input, so a level request withdrawn before INTA
// gives the default IR7 ("Edge and level triggered modes").
void Pic8259::set_input(unsigned c, unsigned pin, bool level) {
    Chip& k = s_.chip[c];
    bool was = k.lines & bit(pin);
    k.lines = level ? k.lines | bit(pin) : k.lines & ~bit(pin);
    if (level_sensitive(k, pin))
        k.irr = level ? k.irr | bit(pin) : k.irr & ~bit(pin);
    else if (level && !was)
        k.irr |= bit(pin);
}

// Priority resolver ("Priority resolver" / "Fully nested mode"): scan pins from the highest
// priority (the one after `lowest`) down; an in-service pin blocks itself and everything below.
// Special mask mode lets masked in-service levels stop blocking; in special fully nested mode the
// master ignores the in-service cascade input so a slave can interrupt with a higher level.
int Pic8259::pending(unsigned c) const {
    const Chip& k = s_.chip[c];
    uint8_t req = k.irr & ~k.imr;
    if (!req) return -1;
    uint8_t in_service = k.isr;
    if (k.special_mask) in_service &= ~k.imr;
    if (c == 0 && k.sfnm) in_service &= ~bit(kCascadeIrq);
    for (unsigned rank = 0; rank < 8; rank++) {
        unsigned pin = (k.lowest + 1 + rank) & 7;
        if (in_service & bit(pin)) return -1;
        if (req & bit(pin)) return int(pin);
    }
    return -1;
}

void Pic8259::intack(unsigned c, unsigned pin) {
    Chip& k = s_.chip[c];
    if (!level_sensitive(k, pin)) k.irr &= ~bit(pin);
    if (k.auto_eoi) {
        if (k.rotate_aeoi) k.lowest = uint8_t(pin);  // rotate in AEOI mode: the served level goes last
    } else {
        k.isr |= bit(pin);
    }
}

void Pic8259::update() {
    // Cascade: the slave's INT output is the master's IR2 input.
    set_input(0, kCascadeIrq, pending(1) >= 0);
    bool out = pending(0) >= 0;
    if (out != int_out_) {
        int_out_ = out;
        intr_.set(out);
    }
}

// The INTA sequence: the master resolves; if it picks the cascade input the slave supplies the
// vector. A request that went away yields IR7 of the chip concerned without setting its ISR
// (a spurious IRQ7 / IRQ15; for IRQ15 the master's IR2 is in service, as on the real pair).
uint8_t Pic8259::acknowledge() {
    uint8_t vec;
    int irq = pending(0);
    if (irq < 0) {
        vec = uint8_t(s_.chip[0].base + kSpuriousIrq);
    } else {
        intack(0, unsigned(irq));
        if (unsigned(irq) == kCascadeIrq && !s_.chip[0].single) {
            int irq2 = pending(1);
            if (irq2 >= 0) intack(1, unsigned(irq2));
            vec = uint8_t(s_.chip[1].base + (irq2 >= 0 ? unsigned(irq2) : kSpuriousIrq));
        } else {
            vec = uint8_t(s_.chip[0].base + unsigned(irq));
        }
    }
    update();
    return vec;
}

uint8_t Pic8259::read_port(unsigned c, unsigned offset) {
    Chip& k = s_.chip[c];
    if (offset & 1) return k.imr;
    if (k.poll) {
        // Poll command (OCW3 P): this read is the INTA; 1000_0WWW or 0 when nothing is pending.
        k.poll = false;
        int p = pending(c);
        if (p < 0) return 0;
        intack(c, unsigned(p));
        update();
        return uint8_t(kPollInt | p);
    }
    return k.read_isr ? k.isr : k.irr;
}

void Pic8259::write_port(unsigned c, unsigned offset, uint8_t v) {
    Chip& k = s_.chip[c];
    if ((offset & 1) == 0) {
        if (v & kIcw1Init) {
            // ICW1 ("Initialization command words"): edge sense reset, IMR cleared, IR7 lowest,
            // special mask off, IRR selected for reading, ICW4 functions zero unless IC4.
            k.init4 = v & kIcw1Ic4;
            k.single = v & kIcw1Single;
            k.ltim = v & kIcw1Ltim;
            k.imr = 0;
            k.isr = 0;
            k.irr = 0;
            for (unsigned pin = 0; pin < 8; pin++)
                if (level_sensitive(k, pin) && (k.lines & bit(pin))) k.irr |= bit(pin);
            k.lowest = 7;
            k.special_mask = k.read_isr = k.poll = false;
            k.rotate_aeoi = false;
            if (!k.init4) k.auto_eoi = k.sfnm = false;
            k.init_step = 1;
        } else if (v & kOcw3Select) {
            if (v & kOcw3Poll) k.poll = true;
            if (v & kOcw3Rr) k.read_isr = v & kOcw3Ris;
            if (v & kOcw3Esmm) k.special_mask = v & kOcw3Smm;
        } else {
            unsigned level = v & 7;
            switch (v >> kOcw2Shift) {
                case kRotateAeoiClear: k.rotate_aeoi = false; break;
                case kRotateAeoiSet: k.rotate_aeoi = true; break;
                case kNonSpecificEoi:
                case kRotateNonSpecificEoi:
                    // Clears the highest-priority in-service bit.
                    for (unsigned rank = 0; rank < 8; rank++) {
                        unsigned pin = (k.lowest + 1 + rank) & 7;
                        if (k.isr & bit(pin)) {
                            k.isr &= ~bit(pin);
                            if ((v >> kOcw2Shift) == kRotateNonSpecificEoi) k.lowest = uint8_t(pin);
                            break;
                        }
                    }
                    break;
                case kSpecificEoi: k.isr &= ~bit(level); break;
                case kRotateSpecificEoi:
                    k.isr &= ~bit(level);
                    k.lowest = uint8_t(level);
                    break;
                case kSetPriority: k.lowest = uint8_t(level); break;
                case kNop: break;
            }
        }
    } else {
        switch (k.init_step) {
            case 0: k.imr = v; break;  // OCW1
            case 1:                    // ICW2: vector base (x86 mode: T7..T3)
                k.base = v & kIcw2BaseMask;
                k.init_step = !k.single ? 2 : k.init4 ? 3 : 0;
                break;
            case 2:  // ICW3: slave bitmap (master) or slave ID (slave)
                k.icw3 = v;
                k.init_step = k.init4 ? 3 : 0;
                break;
            default:  // ICW4
                k.auto_eoi = v & kIcw4Aeoi;
                k.sfnm = v & kIcw4Sfnm;
                k.init_step = 0;
                break;
        }
    }
    update();
}

void Pic8259::write_elcr(unsigned c, uint8_t v) {
    Chip& k = s_.chip[c];
    k.elcr = v & kElcrMask[c];
    for (unsigned pin = 0; pin < 8; pin++)
        if (level_sensitive(k, pin)) k.irr = (k.lines & bit(pin)) ? k.irr | bit(pin) : k.irr & ~bit(pin);
    update();
}

}  // namespace m86::dev
