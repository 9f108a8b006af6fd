// Ioapic against the 82093AA datasheet: registers, redirection entries, edge delivery, level
// delivery with remote IRR and EOI.
#include <doctest/doctest.h>

#include <vector>

#include "devices/ioapic.h"

using namespace m86::dev;

namespace {
struct Recorder : ApicSink {
    std::vector<ApicMessage> got;
    void deliver(const ApicMessage& m) override { got.push_back(m); }
};
struct Rig {
    Recorder bus;
    Ioapic io{&bus, 0};
    uint32_t reg(uint8_t index) {
        io.write(0x00, 4, index);
        return uint32_t(io.read(0x10, 4));
    }
    void set(uint8_t index, uint32_t v) {
        io.write(0x00, 4, index);
        io.write(0x10, 4, v);
    }
    void route(unsigned pin, uint64_t entry) {
        set(uint8_t(0x11 + 2 * pin), uint32_t(entry >> 32));
        set(uint8_t(0x10 + 2 * pin), uint32_t(entry));
    }
};
}  // namespace

TEST_CASE("Ioapic: identification registers and reset state of the redirection table") {
    Rig r;
    CHECK(r.reg(0x01) == 0x00170011);  // version 0x11, maximum redirection entry 23
    r.set(0x00, 0x0a000000);
    CHECK(r.reg(0x00) == 0x0a000000);
    CHECK(r.reg(0x02) == 0x0a000000);  // arbitration ID follows the ID
    r.set(0x01, 0);
    CHECK(r.reg(0x01) == 0x00170011);  // read-only
    for (unsigned pin = 0; pin < 24; pin++) CHECK(r.reg(uint8_t(0x10 + 2 * pin)) == 0x00010000);
    CHECK(r.reg(0x10 + 2 * 24) == 0);  // beyond the table
    // Delivery status (bit 12) and remote IRR (bit 14) are read-only.
    r.set(0x10, 0xffffffff);
    CHECK(r.reg(0x10) == (0xffffffffu & ~(1u << 12) & ~(1u << 14) & 0x1ffff));
    r.set(0x11, 0xffffffff);
    CHECK(r.reg(0x11) == 0xff000000);
}

TEST_CASE("Ioapic: edge-triggered pins deliver once per rising edge; masked edges are lost") {
    Rig r;
    r.route(4, 0x0000000000000034ull);  // vector 0x34, fixed, physical, dest 0, edge, unmasked
    r.io.set_irq(4, true);
    REQUIRE(r.bus.got.size() == 1);
    CHECK(r.bus.got[0].vector == 0x34);
    CHECK(r.bus.got[0].delivery_mode == 0);
    CHECK_FALSE(r.bus.got[0].level);
    r.io.set_irq(4, true);
    CHECK(r.bus.got.size() == 1);
    r.io.set_irq(4, false);
    r.io.set_irq(4, true);
    CHECK(r.bus.got.size() == 2);
    r.io.set_irq(4, false);
    r.route(4, 0x0000000000010034ull);  // masked
    r.io.set_irq(4, true);
    r.route(4, 0x0000000000000034ull);  // unmasking does not resurrect the edge
    CHECK(r.bus.got.size() == 2);
}

TEST_CASE("Ioapic: message fields come from the redirection entry") {
    Rig r;
    // Dest 0x03 logical, lowest priority, vector 0x51, edge.
    r.route(7, 0x0300000000000951ull | (1ull << 11));
    r.io.set_irq(7, true);
    REQUIRE(r.bus.got.size() == 1);
    const ApicMessage& m = r.bus.got[0];
    CHECK(m.vector == 0x51);
    CHECK(m.delivery_mode == 1);
    CHECK(m.logical);
    CHECK(m.dest == 0x03);
    CHECK_FALSE(m.x2apic_dest);
}

TEST_CASE("Ioapic: level-triggered pins hold remote IRR until the EOI for their vector") {
    Rig r;
    r.route(9, 0x0000000000008039ull);  // vector 0x39, level
    r.io.set_irq(9, true);
    REQUIRE(r.bus.got.size() == 1);
    CHECK(r.bus.got[0].level);
    CHECK((r.reg(0x10 + 18) & (1u << 14)) != 0);  // remote IRR
    r.io.eoi(0x40);                               // another vector: nothing
    CHECK(r.bus.got.size() == 1);
    r.io.eoi(0x39);  // still asserted: delivered again
    CHECK(r.bus.got.size() == 2);
    r.io.set_irq(9, false);
    r.io.eoi(0x39);
    CHECK(r.bus.got.size() == 2);
    CHECK((r.reg(0x10 + 18) & (1u << 14)) == 0);
    // Unmasking an asserted level pin delivers at once.
    r.route(9, 0x0000000000018039ull);
    r.io.set_irq(9, true);
    CHECK(r.bus.got.size() == 2);
    r.route(9, 0x0000000000008039ull);
    CHECK(r.bus.got.size() == 3);
}
