// Pic8259 against the 8259A datasheet: initialization, fully nested priority, EOI forms, rotation,
// AEOI, poll, special mask, cascade, edge/level (ELCR), spurious IR7.
#include <doctest/doctest.h>

#include "devices/pic8259.h"

using namespace m86::dev;

namespace {
struct Intr : IrqSink {
    bool level = false;
    void set_irq(unsigned, bool l) override { level = l; }
};
struct Rig {
    Intr intr;
    Pic8259 pic{IrqLine{&intr, 0}};
    void out(uint16_t port, uint8_t v) {
        if (port >= 0x4d0)
            pic.elcr().write(port - 0x4d0, 1, v);
        else
            (port < 0xa0 ? pic.master() : pic.slave()).write(port & 1, 1, v);
    }
    uint8_t in(uint16_t port) {
        if (port >= 0x4d0) return uint8_t(pic.elcr().read(port - 0x4d0, 1));
        return uint8_t((port < 0xa0 ? pic.master() : pic.slave()).read(port & 1, 1));
    }
    // What Linux's init_8259A does: vectors 0x30 / 0x38, cascade on IR2, 8086 mode.
    void init(uint8_t icw4 = 0x01) {
        out(0x20, 0x11), out(0x21, 0x30), out(0x21, 0x04), out(0x21, icw4);
        out(0xa0, 0x11), out(0xa1, 0x38), out(0xa1, 0x02), out(0xa1, icw4);
        out(0x21, 0x00), out(0xa1, 0x00);
    }
    void pulse(unsigned irq) {
        pic.set_irq(irq, true);
        pic.set_irq(irq, false);
        pic.set_irq(irq, true);  // stays high until INTA, as the datasheet requires
    }
    uint8_t isr(uint16_t cmd) {
        out(cmd, 0x0b);
        return in(cmd);
    }
    uint8_t irr(uint16_t cmd) {
        out(cmd, 0x0a);
        return in(cmd);
    }
};
}  // namespace

TEST_CASE("Pic8259: initialization and the mask register (Linux's probe)") {
    Rig r;
    r.init();
    r.out(0xa1, 0xff);
    r.out(0x21, 0xfb);
    CHECK(r.in(0x21) == 0xfb);
    CHECK(r.in(0xa1) == 0xff);
    // ICW1 clears the mask.
    r.out(0x20, 0x11);
    CHECK(r.in(0x21) == 0x00);
}

TEST_CASE("Pic8259: fully nested priority, non-specific EOI, and the INTR output") {
    Rig r;
    r.init();
    r.pic.set_irq(3, true);
    r.pic.set_irq(1, true);
    CHECK(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x31);
    CHECK(r.isr(0x20) == 0x02);
    CHECK(r.irr(0x20) == 0x08);
    CHECK_FALSE(r.intr.level);  // IRQ3 is blocked by IRQ1 in service
    r.pic.set_irq(0, true);     // IRQ0 has a higher priority: it nests
    CHECK(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x30);
    CHECK(r.isr(0x20) == 0x03);
    r.out(0x20, 0x20);  // non-specific EOI: clears the highest (IRQ0)
    CHECK(r.isr(0x20) == 0x02);
    CHECK_FALSE(r.intr.level);
    r.out(0x20, 0x20);
    CHECK(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x33);
}

TEST_CASE("Pic8259: specific EOI and masked requests") {
    Rig r;
    r.init();
    r.out(0x21, 0x10);  // mask IRQ4
    r.pulse(4);
    CHECK_FALSE(r.intr.level);
    CHECK(r.irr(0x20) == 0x10);  // IRR still records it
    r.pulse(6);
    CHECK(r.pic.acknowledge() == 0x36);
    r.out(0x21, 0x00);  // unmask: IRQ4 (higher than 6) nests
    CHECK(r.pic.acknowledge() == 0x34);
    r.out(0x20, 0x66);  // specific EOI for IRQ6: IRQ4 stays in service
    CHECK(r.isr(0x20) == 0x10);
}

TEST_CASE("Pic8259: edge-triggered requests latch once; ELCR level requests repeat") {
    Rig r;
    r.init();
    r.pulse(5);
    CHECK(r.pic.acknowledge() == 0x35);
    r.out(0x20, 0x20);
    CHECK_FALSE(r.intr.level);  // the line is still high, but edge mode needs a new edge
    r.pic.set_irq(5, false);
    r.out(0x4d1, 0x04);  // IRQ10 level-sensitive
    r.pic.set_irq(10, true);
    CHECK(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x3a);
    r.out(0xa0, 0x20), r.out(0x20, 0x20);
    CHECK(r.intr.level);  // still asserted: requests again
    CHECK(r.pic.acknowledge() == 0x3a);
    r.pic.set_irq(10, false);
    r.out(0xa0, 0x20), r.out(0x20, 0x20);
    CHECK_FALSE(r.intr.level);
    // IRQ 0, 1, 2, 8 and 13 cannot be level-sensitive on the PIIX.
    r.out(0x4d0, 0xff);
    r.out(0x4d1, 0xff);
    CHECK(r.in(0x4d0) == 0xf8);
    CHECK(r.in(0x4d1) == 0xde);
}

TEST_CASE("Pic8259: a level request withdrawn before INTA gives spurious IRQ7 without ISR") {
    Rig r;
    r.init();
    r.out(0x4d0, 0x08);  // IRQ3 level-sensitive
    r.pic.set_irq(3, true);
    CHECK(r.intr.level);
    r.pic.set_irq(3, false);
    CHECK_FALSE(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x37);  // the CPU had already started INTA
    CHECK(r.isr(0x20) == 0x00);
    // The same on the slave: IR2 is taken on the master, the slave answers IR7 (IRQ15).
    r.out(0x4d1, 0x08);  // IRQ11 level-sensitive
    r.out(0x20, 0x0a);
    r.pic.set_irq(11, true);
    CHECK(r.in(0x20) == 0x04);
    r.out(0xa1, 0x08);  // masked on the slave after the master latched the cascade request
    CHECK(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x3f);  // spurious IRQ15: the slave answers with IR7
    CHECK(r.isr(0x20) == 0x04);          // the master's cascade input is in service
    CHECK(r.isr(0xa0) == 0x00);
}

TEST_CASE("Pic8259: an edge pulse is latched until INTA") {
    Rig r;
    r.init();
    r.pic.set_irq(3, true);
    r.pic.set_irq(3, false);
    CHECK(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x33);
    CHECK(r.isr(0x20) == 0x08);
}

TEST_CASE("Pic8259: cascade through IR2 with the slave supplying the vector") {
    Rig r;
    r.init();
    r.pulse(12);
    CHECK(r.intr.level);
    CHECK(r.irr(0x20) == 0x04);
    CHECK(r.pic.acknowledge() == 0x3c);
    CHECK(r.isr(0x20) == 0x04);
    CHECK(r.isr(0xa0) == 0x10);
    r.pulse(8);  // IRQ8 outranks IRQ12 on the slave, but IR2 is in service on the master
    CHECK_FALSE(r.intr.level);
    r.out(0xa0, 0x20);  // EOI the slave, then the master, as Linux does
    r.out(0x20, 0x20);
    CHECK(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x38);
}

TEST_CASE("Pic8259: special fully nested mode lets a higher slave level through") {
    Rig r;
    r.init(0x11);  // ICW4: SFNM | 8086
    r.pulse(12);
    CHECK(r.pic.acknowledge() == 0x3c);
    r.pulse(8);
    CHECK(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x38);
}

TEST_CASE("Pic8259: automatic EOI leaves ISR clear") {
    Rig r;
    r.init(0x03);  // AEOI
    r.pulse(1);
    r.pulse(4);
    CHECK(r.pic.acknowledge() == 0x31);
    CHECK(r.isr(0x20) == 0);
    CHECK(r.intr.level);  // nothing in service blocks IRQ4
    CHECK(r.pic.acknowledge() == 0x34);
}

TEST_CASE("Pic8259: rotation on EOI and set-priority") {
    Rig r;
    r.init();
    r.pulse(0);
    r.pulse(5);
    CHECK(r.pic.acknowledge() == 0x30);
    r.out(0x20, 0xa0);  // rotate on non-specific EOI: IRQ0 becomes the lowest
    r.pic.set_irq(0, false);
    r.pulse(0);
    CHECK(r.pic.acknowledge() == 0x35);  // IRQ5 now outranks IRQ0
    r.out(0x20, 0x20);
    CHECK(r.pic.acknowledge() == 0x30);
    r.out(0x20, 0x20);
    r.out(0x20, 0xc0 | 6);  // set priority: IRQ6 lowest, so IRQ7 is the highest
    r.pulse(7);
    r.pulse(1);
    CHECK(r.pic.acknowledge() == 0x37);
}

TEST_CASE("Pic8259: poll command reads the highest request and acknowledges it") {
    Rig r;
    r.init();
    r.out(0x20, 0x0c);  // OCW3: poll
    CHECK(r.in(0x20) == 0x00);
    r.pulse(6);
    r.out(0x20, 0x0c);
    CHECK(r.in(0x20) == 0x86);
    CHECK(r.isr(0x20) == 0x40);
    CHECK(r.irr(0x20) == 0x00);
}

TEST_CASE("Pic8259: special mask mode enables lower levels while one is masked in service") {
    Rig r;
    r.init();
    r.pulse(1);
    CHECK(r.pic.acknowledge() == 0x31);
    r.pulse(5);
    CHECK_FALSE(r.intr.level);
    r.out(0x21, 0x02);  // mask IRQ1 (in service)
    CHECK_FALSE(r.intr.level);
    r.out(0x20, 0x68);  // OCW3: set special mask mode
    CHECK(r.intr.level);
    CHECK(r.pic.acknowledge() == 0x35);
    r.out(0x20, 0x48);  // reset special mask mode
    r.out(0x20, 0x65);  // specific EOI IRQ5
    r.pulse(6);
    CHECK_FALSE(r.intr.level);  // IRQ1 in service blocks again
}
