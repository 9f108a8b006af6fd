// The Intel MultiProcessor Specification 1.4 table (chapter 4), laid out as qboot builds it for
// microvm: floating pointer at 0x9fc00 followed by the configuration table with one processor
// entry per CPU (APIC IDs 0..n-1, the first the BSP), an ISA bus, the IOAPIC (ID n+1), ISA IRQs
// 0..15 routed to the same IOAPIC pins except IRQ0 -> pin 2 (the IRQ0 override; IRQ2 has no
// entry), ExtINT on LINT0 of the BSP and NMI on LINT1 of every CPU.
#include <cstring>

#include "machine/boot/linux.h"
#include "machine/layout.h"

namespace m86::machine::boot {

namespace {

constexpr uint8_t kProcessor = 0, kBus = 1, kIoapic = 2, kIntSrc = 3, kLintSrc = 4;
constexpr uint8_t kIntTypeInt = 0, kIntTypeNmi = 1, kIntTypeExtInt = 3;
constexpr uint8_t kApicVersion = 0x14;
constexpr uint8_t kCpuEnabled = 1, kCpuBsp = 2;

struct Writer {
    std::vector<uint8_t> b;
    void u8(uint8_t v) { b.push_back(v); }
    void u16(uint16_t v) { u8(uint8_t(v)), u8(uint8_t(v >> 8)); }
    void u32(uint32_t v) { u16(uint16_t(v)), u16(uint16_t(v >> 16)); }
    void str(const char* s, size_t n) {
        for (size_t i = 0; i < n; i++) u8(uint8_t(s[i]));
    }
};

uint8_t checksum(const uint8_t* p, size_t n) {
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++) sum = uint8_t(sum + p[i]);
    return uint8_t(-sum);
}

}  // namespace

void write_mptable(GuestRam& ram, unsigned cpus) {
    const uint64_t fp_addr = layout::kMpTable, table_addr = fp_addr + 16;
    const uint8_t ioapic_id = uint8_t(cpus + 1);

    Writer e;  // entries
    unsigned count = 0;
    for (unsigned i = 0; i < cpus; i++, count++) {
        e.u8(kProcessor);
        e.u8(uint8_t(i));
        e.u8(kApicVersion);
        e.u8(kCpuEnabled | (i == 0 ? kCpuBsp : 0));
        e.u32(0x00a00f11);  // CPU signature: family/model/stepping as CPUID leaf 1 EAX
        e.u32(0x0781abfd);  // feature flags (CPUID leaf 1 EDX subset: FPU, TSC, MSR, APIC, ...)
        e.u32(0), e.u32(0);
    }
    e.u8(kBus), e.u8(0), e.str("ISA   ", 6), count++;
    e.u8(kIoapic), e.u8(ioapic_id), e.u8(kApicVersion), e.u8(1), e.u32(uint32_t(layout::kIoapicBase)), count++;
    for (unsigned irq = 0; irq < 16; irq++) {
        if (irq == 2) continue;  // the IRQ0 override takes pin 2
        e.u8(kIntSrc), e.u8(kIntTypeInt), e.u16(0), e.u8(0), e.u8(uint8_t(irq)), e.u8(ioapic_id);
        e.u8(uint8_t(irq == 0 ? 2 : irq));
        count++;
    }
    e.u8(kLintSrc), e.u8(kIntTypeExtInt), e.u16(0), e.u8(0), e.u8(0), e.u8(0), e.u8(0), count++;
    e.u8(kLintSrc), e.u8(kIntTypeNmi), e.u16(0), e.u8(0), e.u8(0), e.u8(0xff), e.u8(1), count++;

    Writer t;  // configuration table header (44 bytes) + entries
    t.str("PCMP", 4);
    t.u16(uint16_t(44 + e.b.size()));
    t.u8(4);  // spec revision 1.4
    t.u8(0);  // checksum, below
    t.str("QBOOT   ", 8);
    t.str("000000000000", 12);
    t.u32(0), t.u16(0);  // no OEM table
    t.u16(uint16_t(count));
    t.u32(uint32_t(layout::kLapicBase));
    t.u16(0), t.u8(0), t.u8(0);  // no extended table
    t.b.insert(t.b.end(), e.b.begin(), e.b.end());
    t.b[7] = checksum(t.b.data(), t.b.size());

    Writer fp;  // floating pointer structure (16 bytes)
    fp.str("_MP_", 4);
    fp.u32(uint32_t(table_addr));
    fp.u8(1);  // length in 16-byte units
    fp.u8(4);  // spec revision
    fp.u8(0);  // checksum, below
    fp.u8(0), fp.u8(0), fp.u8(0), fp.u8(0), fp.u8(0);  // feature bytes: a configuration table is present
    fp.b[10] = checksum(fp.b.data(), fp.b.size());

    ram.write(fp_addr, fp.b.data(), fp.b.size());
    ram.write(table_addr, t.b.data(), t.b.size());
}

}  // namespace m86::machine::boot
