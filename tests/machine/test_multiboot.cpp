// Unit tests for the multiboot (v1) loader and its direct-boot configurator. Expected values come
// from the Multiboot Specification 0.6.96 (header and info layouts, machine state at entry) and
// from the layout QEMU documents in hw/i386/multiboot.c (info at 0x9500, memory map at 0x9000,
// module list and strings after the page-aligned kernel, "qemu" as the loader name).
#include <doctest/doctest.h>

#include <cstring>
#include <map>

#include "devices/fw_cfg.h"
#include "machine/boot/multiboot.h"

using namespace m86;
using namespace m86::machine;
using namespace m86::machine::boot;

namespace {

template <class T> void put(std::vector<uint8_t>& b, size_t o, T v) {
    if (b.size() < o + sizeof v) b.resize(o + sizeof v, 0);
    std::memcpy(b.data() + o, &v, sizeof v);
}
template <class T> T get(const std::vector<uint8_t>& b, size_t o) {
    T v{};
    REQUIRE(o + sizeof v <= b.size());
    std::memcpy(&v, b.data() + o, sizeof v);
    return v;
}
std::string cstr(const std::vector<uint8_t>& b, size_t o) {
    REQUIRE(o < b.size());
    return std::string(reinterpret_cast<const char*>(b.data() + o));
}

// A flat kernel using the header's address fields: header at file offset 0x40, linked at 1 MiB.
std::vector<uint8_t> aout_kernel(uint32_t bss_bytes) {
    std::vector<uint8_t> f(0x300, 0);
    for (size_t i = 0; i < f.size(); i++) f[i] = uint8_t(0x90 ^ i);
    const uint32_t flags = mb::kPageAlign | mb::kMemoryInfo | mb::kAoutKludge;
    put<uint32_t>(f, 0x40, mb::kHeaderMagic);
    put<uint32_t>(f, 0x44, flags);
    put<uint32_t>(f, 0x48, uint32_t(-(mb::kHeaderMagic + flags)));
    put<uint32_t>(f, 0x4c, 0x100040);                            // header_addr
    put<uint32_t>(f, 0x50, 0x100000);                            // load_addr
    put<uint32_t>(f, 0x54, 0);                                   // load_end_addr: whole file
    put<uint32_t>(f, 0x58, bss_bytes ? 0x100300 + bss_bytes : 0);  // bss_end_addr
    put<uint32_t>(f, 0x5c, 0x100080);                            // entry
    return f;
}

// A 32-bit ELF with a multiboot header (no address fields) and two PT_LOAD segments; the
// executable one is linked at a higher-half virtual address (paddr != vaddr).
std::vector<uint8_t> elf_kernel(uint16_t machine = 3, uint8_t elf_class = 1) {
    std::vector<uint8_t> f(0x3000, 0);
    std::memcpy(f.data(), "\x7f" "ELF", 4);
    f[4] = elf_class, f[5] = 1, f[6] = 1;
    put<uint16_t>(f, 16, 2);         // ET_EXEC
    put<uint16_t>(f, 18, machine);
    put<uint32_t>(f, 24, 0xc0200010);  // e_entry (virtual)
    put<uint32_t>(f, 28, 52);          // phoff
    put<uint16_t>(f, 42, 32), put<uint16_t>(f, 44, 2);
    // text: file 0x1000..0x1100 -> paddr 0x200000, vaddr 0xc0200000, R+X
    put<uint32_t>(f, 52 + 0, 1), put<uint32_t>(f, 52 + 4, 0x1000), put<uint32_t>(f, 52 + 8, 0xc0200000);
    put<uint32_t>(f, 52 + 12, 0x200000), put<uint32_t>(f, 52 + 16, 0x100), put<uint32_t>(f, 52 + 20, 0x100);
    put<uint32_t>(f, 52 + 24, 5);
    // data + bss: file 0x2000..0x2010 -> paddr 0x202000, 0x30 bytes in memory
    put<uint32_t>(f, 84 + 0, 1), put<uint32_t>(f, 84 + 4, 0x2000), put<uint32_t>(f, 84 + 8, 0xc0202000);
    put<uint32_t>(f, 84 + 12, 0x202000), put<uint32_t>(f, 84 + 16, 0x10), put<uint32_t>(f, 84 + 20, 0x30);
    put<uint32_t>(f, 84 + 24, 6);
    const uint32_t flags = mb::kPageAlign | mb::kMemoryInfo;
    put<uint32_t>(f, 0x1000, mb::kHeaderMagic), put<uint32_t>(f, 0x1004, flags);
    put<uint32_t>(f, 0x1008, uint32_t(-(mb::kHeaderMagic + flags)));
    for (int i = 0; i < 0x10; i++) f[0x2000 + i] = uint8_t(0xd0 + i);
    return f;
}

FileReader files(std::map<std::string, std::vector<uint8_t>> fs) {
    return [fs](const std::string& p, std::vector<uint8_t>& out, std::string& err) {
        auto it = fs.find(p);
        if (it == fs.end()) return err = "not found", false;
        out = it->second;
        return true;
    };
}

}  // namespace

TEST_CASE("multiboot: the header is found only with a valid checksum, 4-byte aligned, within 8 KiB") {
    MultibootHeader h;
    auto f = aout_kernel(0);
    REQUIRE(find_multiboot_header(f, h));
    CHECK(h.offset == 0x40);
    CHECK(h.flags == (mb::kPageAlign | mb::kMemoryInfo | mb::kAoutKludge));
    CHECK(h.load_addr == 0x100000);
    CHECK(h.entry_addr == 0x100080);
    auto bad = f;
    bad[0x48] ^= 1;  // checksum
    CHECK_FALSE(find_multiboot_header(bad, h));
    std::vector<uint8_t> late(12000, 0);
    put<uint32_t>(late, 8192, mb::kHeaderMagic), put<uint32_t>(late, 8196, 0);
    put<uint32_t>(late, 8200, uint32_t(-mb::kHeaderMagic));
    CHECK_FALSE(find_multiboot_header(late, h));  // past the first 8 KiB
    std::vector<uint8_t> unaligned(256, 0);
    put<uint32_t>(unaligned, 2, mb::kHeaderMagic), put<uint32_t>(unaligned, 6, 0);
    put<uint32_t>(unaligned, 10, uint32_t(-mb::kHeaderMagic));
    CHECK_FALSE(find_multiboot_header(unaligned, h));
}

TEST_CASE("multiboot: module lists split at commas, with ,, for a literal comma") {
    CHECK(split_module_list("a") == std::vector<std::string>{"a"});
    CHECK(split_module_list("a x,b") == std::vector<std::string>{"a x", "b"});
    CHECK(split_module_list("m a,,b,n") == std::vector<std::string>{"m a,b", "n"});
}

TEST_CASE("multiboot: a.out-kludge kernel, modules and info structure") {
    auto f = aout_kernel(0x1800);
    MultibootImage m;
    std::string err;
    std::vector<uint8_t> mod1(5000, 0x11), mod2 = {'x', 'y', 'z'};
    REQUIRE_MESSAGE(build_multiboot(f, "kern.bin", "console=ttyS0 a=b", "mod1 arg1 arg2,mod2 a,,b",
                                    files({{"mod1", mod1}, {"mod2", mod2}}), m, err),
                    err);
    CHECK(m.load_addr == 0x100000);
    CHECK(m.entry == 0x100080);
    // The image: from the file offset where load_addr lies (header offset - (header_addr -
    // load_addr) = 0), the whole file, then zeroed bss up to bss_end_addr.
    REQUIRE(m.buf.size() % 4096 == 0);
    CHECK(std::memcmp(m.buf.data(), f.data(), f.size()) == 0);
    for (size_t i = f.size(); i < 0x300 + 0x1800; i++) REQUIRE(m.buf[i] == 0);

    // Info structure (spec 3.3).
    REQUIRE(m.info.size() == 88);
    uint32_t flags = get<uint32_t>(m.info, 0);
    CHECK(flags == (mb::kInfoMemory | mb::kInfoBootDevice | mb::kInfoCmdline | mb::kInfoMods | mb::kInfoMmap |
                    mb::kInfoLoaderName));
    CHECK(get<uint32_t>(m.info, 12) == 0x8000ffff);
    CHECK(get<uint32_t>(m.info, 48) == 0x9000);  // mmap_addr
    auto at = [&](uint32_t addr) {
        REQUIRE(addr >= m.load_addr);
        REQUIRE(addr - m.load_addr < m.buf.size());
        return size_t(addr - m.load_addr);
    };
    CHECK(cstr(m.buf, at(get<uint32_t>(m.info, 16))) == "kern.bin console=ttyS0 a=b");
    CHECK(cstr(m.buf, at(get<uint32_t>(m.info, 64))) == "qemu");

    // Modules: list right after the page-aligned kernel; each module page aligned (flag 0), its
    // string the whole -initrd item, mod_end one past its last byte.
    REQUIRE(get<uint32_t>(m.info, 20) == 2);
    uint32_t mods = get<uint32_t>(m.info, 24);
    CHECK(mods == 0x100000 + 0x2000);  // kernel + bss = 0x1b00 bytes -> 2 pages
    uint32_t s1 = get<uint32_t>(m.buf, at(mods)), e1 = get<uint32_t>(m.buf, at(mods) + 4);
    uint32_t s2 = get<uint32_t>(m.buf, at(mods) + 16), e2 = get<uint32_t>(m.buf, at(mods) + 20);
    CHECK(s1 % 4096 == 0);
    CHECK(s2 % 4096 == 0);
    CHECK(e1 - s1 == 5000);
    CHECK(e2 - s2 == 3);
    CHECK(s2 >= e1);
    CHECK(cstr(m.buf, at(get<uint32_t>(m.buf, at(mods) + 8))) == "mod1 arg1 arg2");
    CHECK(cstr(m.buf, at(get<uint32_t>(m.buf, at(mods) + 24))) == "mod2 a,b");
    CHECK(m.buf[at(s1)] == 0x11);
    CHECK(m.buf[at(s1) + 4999] == 0x11);
    CHECK(std::memcmp(m.buf.data() + at(s2), "xyz", 3) == 0);
    CHECK(m.load_addr + m.buf.size() >= e2);
}

TEST_CASE("multiboot: ELF kernel by physical address, entry translated from the virtual address") {
    MultibootImage m;
    std::string err;
    REQUIRE_MESSAGE(build_multiboot(elf_kernel(), "k.elf", "", "", files({}), m, err), err);
    CHECK(m.load_addr == 0x200000);
    CHECK(m.entry == 0x200010);
    CHECK(m.buf[0] == uint8_t(mb::kHeaderMagic & 0xff));  // file offset 0x1000 at paddr 0x200000
    CHECK(m.buf[0x2000] == 0xd0);                           // second segment at 0x202000
    CHECK(m.buf[0x200f] == 0xdf);
    for (size_t i = 0x2010; i < 0x2030; i++) REQUIRE(m.buf[i] == 0);  // its bss
    CHECK(get<uint32_t>(m.info, 20) == 0);  // no modules
    CHECK(cstr(m.buf, get<uint32_t>(m.info, 16) - m.load_addr) == "k.elf ");
}

TEST_CASE("multiboot: malformed kernels are refused with a reason") {
    MultibootImage m;
    std::string err;
    CHECK_FALSE(build_multiboot(elf_kernel(62, 2), "k", "", "", files({}), m, err));
    CHECK(err.find("64") != std::string::npos);
    auto f = aout_kernel(0);
    put<uint32_t>(f, 0x4c, 0x0fffff);  // header_addr below load_addr
    CHECK_FALSE(build_multiboot(f, "k", "", "", files({}), m, err));
    f = aout_kernel(0);
    put<uint32_t>(f, 0x54, 0x110000);  // load_end_addr beyond the file
    CHECK_FALSE(build_multiboot(f, "k", "", "", files({}), m, err));
    f = aout_kernel(0);
    CHECK_FALSE(build_multiboot(f, "k", "", "missing", files({}), m, err));
    CHECK(err.find("missing") != std::string::npos);
    std::vector<uint8_t> none(4096, 0);
    CHECK_FALSE(build_multiboot(none, "k", "", "", files({}), m, err));
}

TEST_CASE("multiboot: direct boot places everything and enters as the specification says") {
    MultibootImage m;
    std::string err;
    REQUIRE(build_multiboot(aout_kernel(0), "k", "x", "mod1", files({{"mod1", {1, 2, 3}}}), m, err));
    GuestRam ram(64ull << 20);
    std::vector<E820Entry> map = {{0, 0x9fc00, kE820Ram}, {0x100000, (64ull << 20) - 0x100000, kE820Ram}};
    cpu::CpuState s;
    REQUIRE_MESSAGE(load_multiboot(m, map, ram, s, err), err);

    CHECK(s.gpr[cpu::RAX] == 0x2BADB002);
    CHECK(s.gpr[cpu::RBX] == 0x9500);
    CHECK(s.rip == 0x100080);
    CHECK((s.cr0 & cpu::cr0::PE));
    CHECK_FALSE((s.cr0 & cpu::cr0::PG));
    CHECK_FALSE((s.rflags & cpu::fl::IF));
    CHECK(s.seg[cpu::CS].base == 0);
    CHECK(s.seg[cpu::CS].limit == 0xffffffff);
    CHECK((s.seg[cpu::CS].attr & cpu::SegReg::kDB));  // 32-bit code
    CHECK(s.seg[cpu::DS].limit == 0xffffffff);

    std::vector<uint8_t> k(m.buf.size());
    REQUIRE(ram.read(0x100000, k.data(), k.size()));
    CHECK(k == m.buf);
    std::vector<uint8_t> info(88);
    REQUIRE(ram.read(0x9500, info.data(), info.size()));
    CHECK(get<uint32_t>(info, 4) == 639);                       // mem_lower, KiB
    CHECK(get<uint32_t>(info, 8) == ((64u << 20) - (1u << 20)) / 1024);  // mem_upper, KiB above 1 MiB
    CHECK(get<uint32_t>(info, 44) == 2 * 24);                   // mmap_length
    std::vector<uint8_t> mm(48);
    REQUIRE(ram.read(0x9000, mm.data(), mm.size()));
    CHECK(get<uint32_t>(mm, 0) == 20);  // entry size, not counting the size field
    CHECK(get<uint64_t>(mm, 4) == 0);
    CHECK(get<uint64_t>(mm, 12) == 0x9fc00);
    CHECK(get<uint32_t>(mm, 20) == 1);
    CHECK(get<uint64_t>(mm, 24 + 4) == 0x100000);
    CHECK(get<uint32_t>(mm, 24 + 20) == 1);
}

TEST_CASE("multiboot: the fw_cfg items QEMU hands the firmware") {
    MultibootImage m;
    std::string err;
    REQUIRE(build_multiboot(aout_kernel(0), "k", "", "", files({}), m, err));
    dev::FwCfg fw;
    multiboot_fw_cfg(m, fw);
    auto u32 = [&](uint16_t key) {
        auto* d = fw.item(key);
        REQUIRE(d);
        REQUIRE(d->size() == 4);
        uint32_t v;
        std::memcpy(&v, d->data(), 4);
        return v;
    };
    using namespace dev::fwcfg;
    CHECK(u32(kKernelEntry) == 0x100080);
    CHECK(u32(kKernelAddr) == 0x100000);
    CHECK(u32(kKernelSize) == m.buf.size());
    CHECK(*fw.item(kKernelData) == m.buf);
    CHECK(u32(kInitrdAddr) == 0x9500);
    CHECK(u32(kInitrdSize) == 88);
    CHECK(*fw.item(kInitrdData) == m.info);
}
