// FwCfg against QEMU's docs/specs/fw_cfg.rst: signature and ID, the port interface, the file
// directory, and DMA select/read/skip/write with addresses inside and outside guest RAM.
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "devices/fw_cfg.h"

using namespace m86::dev;
using namespace m86::dev::fwcfg;

namespace {
struct Rig {
    std::vector<uint8_t> ram = std::vector<uint8_t>(0x10000, 0xcc);
    RamDma mem;
    FwCfg fw{&mem};
    Rig() { mem.add_region(0, ram.data(), ram.size()); }
    void select(uint16_t key) { fw.io().write(0, 2, key); }
    uint8_t data() { return uint8_t(fw.io().read(1, 1)); }
    std::string read_str(unsigned n) {
        std::string s;
        for (unsigned i = 0; i < n; i++) s += char(data());
        return s;
    }
    uint32_t be32(uint64_t a) {
        return uint32_t(ram[a]) << 24 | uint32_t(ram[a + 1]) << 16 | uint32_t(ram[a + 2]) << 8 | ram[a + 3];
    }
    void put_be(uint64_t a, uint64_t v, unsigned n) {
        for (unsigned i = 0; i < n; i++) ram[a + i] = uint8_t(v >> (8 * (n - 1 - i)));
    }
    // Writes an FWCfgDmaAccess at `at` and starts it the way qboot does: one 32-bit write of the
    // byte-swapped low half to port 0x518.
    uint32_t dma(uint64_t at, uint32_t control, uint32_t length, uint64_t address) {
        put_be(at, control, 4);
        put_be(at + 4, length, 4);
        put_be(at + 8, address, 8);
        fw.dma().write(4, 4, __builtin_bswap32(uint32_t(at)));
        return be32(at);
    }
};
}  // namespace

TEST_CASE("FwCfg: signature, ID with the DMA bit, and the DMA register's signature") {
    Rig r;
    r.select(kSignature);
    CHECK(r.read_str(4) == "QEMU");
    CHECK(r.data() == 0);  // past the end
    r.select(kId);
    CHECK(r.data() == (kVersionTraditional | kVersionDma));
    std::string sig;
    for (unsigned i = 0; i < 8; i++) sig += char(r.fw.dma().read(i, 1));
    CHECK(sig == "QEMU CFG");
    CHECK(r.fw.dma().read(0, 4) == 0x554d4551u);  // "QEMU" read as a little-endian dword
    FwCfg nodma;
    CHECK_FALSE(nodma.has_dma());
    nodma.io().write(0, 2, kId);
    CHECK(nodma.io().read(0, 1) == kVersionTraditional);  // data also reads at the selector port
}

TEST_CASE("FwCfg: numbered items are little-endian; selecting restarts at offset 0") {
    Rig r;
    r.fw.set_u16(kNbCpus, 2);
    r.fw.set_u64(kRamSize, 0x12345678abull);
    r.fw.set_u32(kIrq0Override, 1);
    r.select(kNbCpus);
    CHECK(r.data() == 2);
    CHECK(r.data() == 0);
    r.select(kRamSize);
    CHECK(r.data() == 0xab);
    CHECK(r.data() == 0x78);
    r.select(kRamSize);
    CHECK(r.data() == 0xab);
    r.select(kIrq0Override);
    CHECK(r.data() == 1);
    r.select(kBootDevice);  // never set: reads 0
    CHECK(r.data() == 0);
    r.fw.io().write(1, 1, 0x55);  // 8-bit data writes are ignored
    r.select(kNbCpus);
    CHECK(r.data() == 2);
    CHECK(r.fw.io().read(0, 2) == 0xffff);  // 16-bit reads are not accepted
}

TEST_CASE("FwCfg: the file directory is big-endian and sorted by name") {
    Rig r;
    r.fw.add_file("etc/e820", std::vector<uint8_t>(40, 1));
    r.fw.add_file("bootorder", {});
    r.fw.add_file("etc/boot-fail-wait", {0xff, 0xff, 0xff, 0xff});
    r.select(kFileDir);
    std::string dir = r.read_str(4 + 3 * 64);
    auto be = [&](size_t at, unsigned n) {
        uint32_t v = 0;
        for (unsigned i = 0; i < n; i++) v = v << 8 | uint8_t(dir[at + i]);
        return v;
    };
    CHECK(be(0, 4) == 3);
    const char* names[3] = {"bootorder", "etc/boot-fail-wait", "etc/e820"};
    const uint32_t sizes[3] = {0, 4, 40};
    for (unsigned i = 0; i < 3; i++) {
        size_t e = 4 + i * 64;
        CHECK(be(e, 4) == sizes[i]);
        CHECK(be(e + 4, 2) == 0x20 + i);
        CHECK(std::string(dir.c_str() + e + 8) == names[i]);
        CHECK(dir[e + 8 + std::string(names[i]).size()] == 0);
    }
    r.select(0x22);
    CHECK(r.data() == 1);  // etc/e820's contents
    // A new file sorting earlier renumbers those after it.
    CHECK(r.fw.add_file("etc/acpi", {7}) == 0x21);
    r.select(0x23);
    CHECK(r.data() == 1);
    CHECK_THROWS_AS(r.fw.add_file("etc/e820", {}), std::invalid_argument);
    CHECK_THROWS_AS(r.fw.add_file(std::string(56, 'x'), {}), std::invalid_argument);
    r.select(0x20 + 0x20);  // beyond the file slots: invalid
    CHECK(r.data() == 0);
}

TEST_CASE("FwCfg: DMA select + read, skip, read past the end") {
    Rig r;
    r.fw.set_string(kCmdlineData, "console=ttyS0");
    uint32_t st = r.dma(0x100, (uint32_t(kCmdlineData) << 16) | kDmaSelect | kDmaRead, 7, 0x1000);
    CHECK(st == 0);
    CHECK(std::string(r.ram.begin() + 0x1000, r.ram.begin() + 0x1007) == "console");
    CHECK(r.ram[0x1007] == 0xcc);              // exactly 7 bytes
    CHECK(r.dma(0x100, kDmaSkip, 1, 0) == 0);  // skip '='
    CHECK(r.dma(0x100, kDmaRead, 8, 0x2000) == 0);
    // "ttyS0", its NUL, then zeros past the end of the item.
    CHECK(std::string(reinterpret_cast<char*>(&r.ram[0x2000])) == "ttyS0");
    CHECK(r.ram[0x2006] == 0);
    CHECK(r.ram[0x2007] == 0);
    // The port interface shares the offset: it is now past the end.
    CHECK(r.data() == 0);
    // A 64-bit address written as two halves, high first.
    r.put_be(0x300, (uint32_t(kSignature) << 16) | kDmaSelect | kDmaRead, 4);
    r.put_be(0x304, 4, 4);
    r.put_be(0x308, 0x3000, 8);
    r.fw.dma().write(0, 4, 0);
    r.fw.dma().write(4, 4, __builtin_bswap32(0x300));
    CHECK(r.be32(0x300) == 0);
    CHECK(std::string(r.ram.begin() + 0x3000, r.ram.begin() + 0x3004) == "QEMU");
}

TEST_CASE("FwCfg: DMA to or from addresses outside guest RAM sets the error bit, never touches the host") {
    Rig r;
    r.fw.add_file("etc/e820", std::vector<uint8_t>(20, 0xab));
    // Destination beyond the end of RAM.
    uint32_t st = r.dma(0x100, (0x20u << 16) | kDmaSelect | kDmaRead, 20, 0xfff8);
    CHECK((st & kDmaError) != 0);
    CHECK(r.ram[0xfff8] == 0xcc);  // the partial range was not written either
    // Zero fill past the end into unbacked memory fails too.
    st = r.dma(0x100, kDmaRead, 0x100000, 0x8000);
    CHECK((st & kDmaError) != 0);
    // The access structure itself outside RAM: nothing happens, nothing crashes.
    r.fw.dma().write(4, 4, __builtin_bswap32(0x7fff0000u));
    r.fw.dma().write(0, 8, __builtin_bswap64(0xfffffffffffffff8ull));
    // After all that the device still works.
    CHECK(r.dma(0x100, (0x20u << 16) | kDmaSelect | kDmaRead, 4, 0x4000) == 0);
    CHECK(r.ram[0x4003] == 0xab);
}

TEST_CASE("FwCfg: DMA writes only to writable items and only within their size") {
    Rig r;
    r.fw.add_file("etc/ro", {1, 2, 3, 4});
    r.fw.add_file("etc/rw", {1, 2, 3, 4}, true);  // sorts after etc/ro: selector 0x21
    r.ram[0x5000] = 9, r.ram[0x5001] = 8;
    CHECK((r.dma(0x100, (0x20u << 16) | kDmaSelect | kDmaWrite, 2, 0x5000) & kDmaError) != 0);
    CHECK((*r.fw.item(0x20))[0] == 1);
    CHECK(r.dma(0x100, (0x21u << 16) | kDmaSelect | kDmaSkip, 1, 0) == 0);
    CHECK(r.dma(0x100, kDmaWrite, 2, 0x5000) == 0);
    CHECK(*r.fw.item(0x21) == std::vector<uint8_t>{1, 9, 8, 4});
    CHECK((r.dma(0x100, kDmaWrite, 2, 0x5000) & kDmaError) != 0);  // would run past the end
    CHECK(*r.fw.item(0x21) == std::vector<uint8_t>{1, 9, 8, 4});
    // No operation bit: nothing transferred, success.
    CHECK(r.dma(0x100, 0, 100, 0x6000) == 0);
    CHECK(r.ram[0x6000] == 0xcc);
}
