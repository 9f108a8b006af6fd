// IoBus / MmioBus: routing by range, overlap rejection, unclaimed reads, straddling accesses.
#include <doctest/doctest.h>

#include <vector>

#include "devices/bus.h"

using namespace m86::dev;

namespace {
// Records accesses; reads return 0x10 * (offset + 1) per byte lane.
struct Probe : Device {
    struct Access {
        uint64_t offset;
        unsigned size;
        uint64_t value;
        bool write;
    };
    std::vector<Access> log;
    uint64_t read(uint64_t offset, unsigned size) override {
        log.push_back({offset, size, 0, false});
        uint64_t v = 0;
        for (unsigned i = 0; i < size; i++) v |= uint64_t(0x10 * (offset + i + 1)) << (8 * i);
        return v;
    }
    void write(uint64_t offset, unsigned size, uint64_t value) override {
        log.push_back({offset, size, value, true});
    }
};
}  // namespace

TEST_CASE("Bus: accesses reach the device with offsets relative to its base") {
    IoBus io;
    Probe a, b;
    io.map(0x3f8, 8, &a, "serial");
    io.map(0x40, 4, &b, "pit");
    io.out(0x3fb, 1, 0x83);
    REQUIRE(a.log.size() == 1);
    CHECK(a.log[0].offset == 3);
    CHECK(a.log[0].value == 0x83);
    CHECK(a.log[0].write);
    CHECK(io.in(0x42, 1) == 0x30);
    CHECK(b.log.back().offset == 2);
    CHECK(io.in(0x3f8, 2) == 0x2010);
}

TEST_CASE("Bus: overlapping ranges are rejected with both names") {
    IoBus io;
    Probe a, b;
    io.map(0x20, 2, &a, "pic-master");
    CHECK_THROWS_AS(io.map(0x21, 1, &b, "intruder"), BusError);
    CHECK_THROWS_AS(io.map(0x1f, 2, &b, "intruder"), BusError);
    CHECK_THROWS_AS(io.map(0x10, 0x100, &b, "intruder"), BusError);
    CHECK_THROWS_AS(io.map(0xffff, 2, &b, "past the end"), BusError);
    CHECK_THROWS_AS(io.map(0x50, 0, &b, "empty"), BusError);
    try {
        io.map(0x21, 1, &b, "intruder");
    } catch (const BusError& e) {
        std::string msg = e.what();
        CHECK(msg.find("pic-master") != std::string::npos);
        CHECK(msg.find("intruder") != std::string::npos);
    }
    io.map(0x22, 1, &b, "adjacent");  // touching is not overlapping
    io.map(0x1f, 1, &b, "adjacent-below");
    CHECK(io.mappings().size() == 3);
}

TEST_CASE("Bus: unclaimed reads are all ones and unclaimed writes vanish") {
    IoBus io;
    MmioBus mmio;
    Probe a;
    io.map(0x60, 1, &a, "kbd");
    CHECK(io.in(0xcfc, 4) == 0xffffffffu);
    CHECK(io.in(0x80, 1) == 0xff);
    CHECK(io.in(0x80, 2) == 0xffff);
    io.out(0xcf8, 4, 0x80000000);
    CHECK(a.log.empty());
    CHECK(mmio.read(0xfeb00000, 8) == ~0ull);
    CHECK(mmio.read(0xfeb00000, 4) == 0xffffffffull);
}

TEST_CASE("Bus: an access straddling a range end is split into byte lanes") {
    IoBus io;
    Probe a;
    io.map(0x510, 2, &a, "fw_cfg");
    // A 32-bit read at 0x511: byte 0x511 from the device, 0x512..0x514 unclaimed.
    CHECK(io.in(0x511, 4) == 0xffffff20u);
    REQUIRE(a.log.size() == 1);
    CHECK(a.log[0].offset == 1);
    CHECK(a.log[0].size == 1);
    io.out(0x50f, 2, 0xabcd);  // low byte unclaimed, high byte to offset 0
    REQUIRE(a.log.size() == 2);
    CHECK(a.log[1].offset == 0);
    CHECK(a.log[1].value == 0xab);
}

TEST_CASE("Bus: MMIO ranges anywhere in the 64-bit space") {
    MmioBus mmio;
    Probe ioapic, lapic;
    mmio.map(0xfec00000, 0x1000, &ioapic, "ioapic");
    mmio.map(0xfee00000, 0x1000, &lapic, "lapic");
    mmio.write(0xfec00010, 4, 0x12345678);
    CHECK(ioapic.log.back().offset == 0x10);
    CHECK(mmio.find(0xfee00fff)->name == "lapic");
    CHECK(mmio.find(0xfee01000) == nullptr);
    CHECK(mmio.find(0xfebfffff) == nullptr);
    CHECK_THROWS_AS(mmio.map(0xfffffffffffff000ull, 0x2000, &lapic, "wraps"), BusError);
}

TEST_CASE("Bus: RamDma checks whole ranges against guest RAM") {
    std::vector<uint8_t> low(0x1000), high(0x1000);
    RamDma ram;
    ram.add_region(0, low.data(), low.size());
    ram.add_region(0x100000000ull, high.data(), high.size());
    uint32_t v = 0x11223344;
    CHECK(ram.write(0xffc, &v, 4));
    CHECK(low[0xffc] == 0x44);
    CHECK_FALSE(ram.write(0xffe, &v, 4));  // runs off the end of the low region
    CHECK(low[0xffe] == 0x22);             // untouched by the failed write
    CHECK_FALSE(ram.fill(0x2000, 0, 1));
    CHECK_FALSE(ram.read(~0ull - 1, &v, 4));  // wraps
    CHECK(ram.fill(0x100000000ull, 0xaa, 0x1000));
    CHECK(high[0xfff] == 0xaa);
}
