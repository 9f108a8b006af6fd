// Unit tests for the direct-boot configurators: zero page, e820, initrd placement, MP table.
// Expected values come from the boot protocol (Documentation/arch/x86/boot.rst) and the MP spec 1.4.
#include <doctest/doctest.h>

#include <cstring>

#include "machine/boot/linux.h"
#include "machine/layout.h"

using namespace m86;
using namespace m86::machine;

namespace {

// A minimal synthetic bzImage: boot sector + 4 setup sectors with a protocol 2.15 header, then a
// "protected-mode kernel" of recognisable bytes.
std::vector<uint8_t> fake_bzimage(size_t kernel_bytes) {
    std::vector<uint8_t> f(5 * 512 + kernel_bytes, 0);
    auto put16 = [&](size_t o, uint16_t v) { std::memcpy(&f[o], &v, 2); };
    auto put32 = [&](size_t o, uint32_t v) { std::memcpy(&f[o], &v, 4); };
    f[0x1f1] = 4;  // setup_sects
    put16(0x1fe, 0xaa55);
    f[0x201] = 0x6a;  // header length: up to 0x26c
    put32(0x202, 0x53726448);
    put16(0x206, 0x020f);
    f[0x211] = 0x01;  // LOADED_HIGH
    put32(0x22c, 0x7fffffff);  // initrd_addr_max
    put32(0x230, 0x200000);
    f[0x234] = 1;
    put16(0x236, 0x0003);  // XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
    put32(0x238, 2048);    // cmdline_size
    put32(0x260, 0x800000);  // init_size: 8 MiB
    for (size_t i = 0; i < kernel_bytes; i++) f[5 * 512 + i] = uint8_t(i * 7 + 1);
    return f;
}

template <class T> T at(const GuestRam& ram, uint64_t a) {
    T v{};
    REQUIRE(ram.read(a, &v, sizeof v));
    return v;
}

}  // namespace

TEST_CASE("boot: bzImage is loaded at 1 MiB with a zero page the boot protocol describes") {
    GuestRam ram(64ull << 20);
    boot::KernelImage k;
    std::string err;
    REQUIRE(boot::parse_kernel(fake_bzimage(4096), k, err));
    boot::BootConfig cfg;
    cfg.cmdline = "console=ttyS0 quiet";
    cfg.initrd.assign(10000, 0x5a);
    cpu::CpuState s;
    REQUIRE(boot::load_linux(k, cfg, ram, s, err));

    // Kernel bytes at 1 MiB, entry at load + 0x200 in 64-bit mode, RSI = zero page.
    CHECK(at<uint8_t>(ram, 0x100000) == 1);
    CHECK(at<uint8_t>(ram, 0x100001) == 8);
    CHECK(s.rip == 0x100200);
    CHECK(s.gpr[cpu::RSI] == layout::kZeroPage);
    CHECK((s.efer & cpu::efer::LMA));
    CHECK(s.seg[cpu::CS].sel == 0x10);
    CHECK(s.seg[cpu::DS].sel == 0x18);

    const uint64_t zp = layout::kZeroPage;
    CHECK(at<uint32_t>(ram, zp + 0x202) == 0x53726448);     // header copied
    CHECK(at<uint8_t>(ram, zp + 0x210) == 0xff);           // type_of_loader
    CHECK((at<uint8_t>(ram, zp + 0x211) & 0x80) != 0);     // CAN_USE_HEAP
    uint32_t cmd = at<uint32_t>(ram, zp + 0x228);
    char buf[32] = {};
    REQUIRE(ram.read(cmd, buf, cfg.cmdline.size() + 1));
    CHECK(std::string(buf) == cfg.cmdline);

    // initrd: page aligned, below initrd_addr_max and the top of RAM, above the decompressed kernel.
    uint32_t rd = at<uint32_t>(ram, zp + 0x218), rdsize = at<uint32_t>(ram, zp + 0x21c);
    CHECK(rdsize == 10000);
    CHECK(rd % 4096 == 0);
    CHECK(rd + rdsize <= (64u << 20));
    CHECK(rd >= 0x100000 + 0x800000);
    CHECK(at<uint8_t>(ram, rd + 9999) == 0x5a);

    // e820: RAM [0, 0x9fc00), reserved MP-table area and BIOS area, RAM [1 MiB, 64 MiB).
    unsigned n = at<uint8_t>(ram, zp + 0x1e8);
    REQUIRE(n == 4);
    CHECK(at<uint64_t>(ram, zp + 0x2d0) == 0);
    CHECK(at<uint64_t>(ram, zp + 0x2d0 + 8) == 0x9fc00);
    CHECK(at<uint32_t>(ram, zp + 0x2d0 + 16) == 1);
    CHECK(at<uint64_t>(ram, zp + 0x2d0 + 3 * 20) == 0x100000);
    CHECK(at<uint64_t>(ram, zp + 0x2d0 + 3 * 20 + 8) == (64u << 20) - 0x100000);
}

TEST_CASE("boot: bad kernel images give clear errors") {
    boot::KernelImage k;
    std::string err;
    CHECK_FALSE(boot::parse_kernel(std::vector<uint8_t>(100, 0), k, err));
    CHECK(err.find("not a kernel") != std::string::npos);
    auto f = fake_bzimage(16);
    f.resize(5 * 512);  // no protected-mode part
    CHECK_FALSE(boot::parse_kernel(f, k, err));
    CHECK(err.find("truncated") != std::string::npos);
    f = fake_bzimage(16);
    f[0x236] = 0;  // no 64-bit entry
    CHECK_FALSE(boot::parse_kernel(f, k, err));
    std::vector<uint8_t> elf(128, 0);
    std::memcpy(elf.data(), "\x7f" "ELF", 4);
    elf[4] = 2, elf[5] = 1, elf[18] = 62, elf[54] = 56;  // ELF64 x86-64, no program headers
    CHECK_FALSE(boot::parse_kernel(elf, k, err));  // no PVH note
    CHECK(err.find("PVH") != std::string::npos);
}

TEST_CASE("boot: a kernel that does not fit in RAM is refused, not loaded past the end") {
    GuestRam ram(4ull << 20);  // 4 MiB: too small for init_size = 8 MiB
    boot::KernelImage k;
    std::string err;
    REQUIRE(boot::parse_kernel(fake_bzimage(4096), k, err));
    cpu::CpuState s;
    CHECK_FALSE(boot::load_linux(k, {}, ram, s, err));
    CHECK(err.find("RAM") != std::string::npos);
}

TEST_CASE("boot: MP table follows the MP 1.4 spec and qboot's routing") {
    GuestRam ram(16ull << 20);
    boot::write_mptable(ram, 2);
    const uint64_t fp = layout::kMpTable;
    char sig[5] = {};
    ram.read(fp, sig, 4);
    CHECK(std::string(sig) == "_MP_");
    uint8_t sum = 0;
    for (int i = 0; i < 16; i++) sum = uint8_t(sum + at<uint8_t>(ram, fp + i));
    CHECK(sum == 0);
    uint32_t table = at<uint32_t>(ram, fp + 4);
    ram.read(table, sig, 4);
    CHECK(std::string(sig) == "PCMP");
    uint16_t len = at<uint16_t>(ram, table + 4), count = at<uint16_t>(ram, table + 34);
    sum = 0;
    for (int i = 0; i < len; i++) sum = uint8_t(sum + at<uint8_t>(ram, table + i));
    CHECK(sum == 0);
    CHECK(at<uint32_t>(ram, table + 36) == 0xfee00000);
    // Walk the entries: 2 processors (BSP first), ISA bus, IOAPIC id 3, IRQ0 -> pin 2, no IRQ2.
    uint64_t p = table + 44;
    int cpus = 0, ioapics = 0, irq0_pin = -1, irq2_entries = 0, entries = 0;
    while (p < table + len) {
        uint8_t type = at<uint8_t>(ram, p);
        entries++;
        if (type == 0) {
            if (cpus == 0) CHECK((at<uint8_t>(ram, p + 3) & 2) != 0);
            cpus++;
            p += 20;
            continue;
        }
        if (type == 2) {
            ioapics++;
            CHECK(at<uint8_t>(ram, p + 1) == 3);
            CHECK(at<uint32_t>(ram, p + 4) == 0xfec00000);
        }
        if (type == 3 && at<uint8_t>(ram, p + 5) == 0) irq0_pin = at<uint8_t>(ram, p + 7);
        if (type == 3 && at<uint8_t>(ram, p + 5) == 2) irq2_entries++;
        p += 8;
    }
    CHECK(cpus == 2);
    CHECK(ioapics == 1);
    CHECK(irq0_pin == 2);
    CHECK(irq2_entries == 0);
    CHECK(entries == count);
    CHECK(p == table + len);
}
