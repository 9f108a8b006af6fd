// The CPUID model (see cpuid.h for the choices and their reasons).
//
// Leaf layouts: SDM Vol. 2, CPUID, Table 3-8 "Information Returned by CPUID Instruction".
#include "cpu/cpuid.h"

#include <cstring>

#include "cpu/cpu.h"

namespace m86::cpu::cpuid {
namespace {

// Topology: every logical CPU is one core with one thread, all in one package. APIC IDs are the
// CPU indexes 0..N-1 (the board assigns Cpu::apic_id), so the core-ID field of an APIC ID is
// ceil(log2 N) bits wide and the SMT field is empty.
unsigned core_bits(uint32_t n) {
    unsigned b = 0;
    while ((1u << b) < n) b++;
    return b;
}

// The caches leaf 4 describes (and leaf 0x80000006 repeats for L2). Sizes are nominal: nothing in
// micro86 depends on them; they only have to be self-consistent.
struct Cache {
    uint8_t level, type;  // type: 1 data, 2 instruction, 3 unified
    uint16_t ways;
    uint32_t sets;
    bool shared;  // shared by the whole package (else per core)
};
constexpr unsigned kLine = 64;
constexpr Cache kCaches[] = {
    {1, 1, 8, 64, false},     // L1d 32 KiB
    {1, 2, 8, 64, false},     // L1i 32 KiB
    {2, 3, 16, 1024, false},  // L2 1 MiB
    {3, 3, 16, 8192, true},   // L3 8 MiB
};

uint32_t chars(const char* s, unsigned at) {
    uint32_t v;
    std::memcpy(&v, s + at, 4);
    return v;
}

void set(Regs& r, uint8_t reg, uint8_t bit) {
    uint32_t m = 1u << bit;
    switch (reg) {
        case kEax: r.eax |= m; break;
        case kEbx: r.ebx |= m; break;
        case kEcx: r.ecx |= m; break;
        default: r.edx |= m; break;
    }
}

// The static feature bits of one leaf/subleaf.
Regs features(uint32_t leaf, uint32_t subleaf) {
    Regs r;
    for (const Feature& f : kFeatures)
        if (f.on && f.leaf == leaf && f.subleaf == subleaf) set(r, f.reg, f.bit);
    return r;
}

Regs basic(const Cpu& c, uint32_t leaf, uint32_t sub) {
    uint32_t n = c.num_cpus ? c.num_cpus : 1;
    unsigned cb = core_bits(n);
    Regs r;
    switch (leaf) {
        case 0:
            r.eax = kMaxBasicLeaf;
            r.ebx = chars(kVendor, 0);
            r.edx = chars(kVendor, 4);
            r.ecx = chars(kVendor, 8);
            break;
        case 1:
            r = features(1, 0);
            r.eax = kSignature;
            // EBX: brand index 0, CLFLUSH line size in 8-byte units, addressable logical processor
            // IDs in the package, initial APIC ID.
            r.ebx = (kLine / 8) << 8 | (1u << cb) << 16 | (c.apic_id & 0xff) << 24;
            if (n > 1) r.edx |= 1u << 28;                   // HTT: several logical CPUs
            if (c.s.cr4 & cr4::OSXSAVE) r.ecx |= 1u << 27;  // OSXSAVE
            if (kHaveLocalApic && (c.s.apic_base & (1u << 11))) r.edx |= 1u << 9;  // APIC
            break;
        case 2:
            // One iteration; descriptor 0xFF: "no cache descriptors here, use leaf 4".
            r.eax = 0x0000ff01;
            break;
        case 4: {
            if (sub >= sizeof(kCaches) / sizeof(kCaches[0])) break;  // type 0: no more caches
            const Cache& k = kCaches[sub];
            uint32_t sharing = k.shared ? (1u << cb) - 1 : 0;
            r.eax = k.type | k.level << 5 | 1u << 8 /* self-initialising */ | sharing << 14 |
                    ((1u << cb) - 1) << 26;
            r.ebx = (kLine - 1) | 0u << 12 /* 1 partition */ | uint32_t(k.ways - 1) << 22;
            r.ecx = k.sets - 1;
            r.edx = k.level == 3 ? 0x2 : 0x0;  // EDX[1]: inclusive of lower levels
            break;
        }
        case 6:
        case 7:
            if (leaf == 7 && sub != 0) break;  // EAX of subleaf 0 = 0: no further subleaves
            r = features(leaf, 0);
            break;
        case 0xb:
            // Extended topology (SDM Vol. 3, 10.12.3 / Vol. 2 CPUID leaf 0BH): level 0 = SMT with
            // one thread per core, level 1 = core with all N CPUs; EDX = x2APIC ID at every level.
            if (sub == 0) {
                r.eax = 0;
                r.ebx = 1;
                r.ecx = 1u << 8 | sub;
            } else if (sub == 1) {
                r.eax = cb;
                r.ebx = n;
                r.ecx = 2u << 8 | sub;
            } else {
                r.ecx = sub & 0xff;  // level type 0: invalid
            }
            r.edx = c.apic_id;
            break;
        case 0xd:
            if (sub == 0) {
                r.eax = uint32_t(kXcr0Supported);
                r.ebx = kXsaveAreaSize;  // for the enabled components: x87/SSE live in the legacy area
                r.ecx = kXsaveAreaSize;  // for all supported components
                r.edx = uint32_t(kXcr0Supported >> 32);
            }
            // Subleaf 1: no XSAVEOPT/XSAVEC/XGETBV1/XSAVES. Subleaves >= 2: no such components.
            break;
        case 0x15:
            r.eax = 1;  // TSC / crystal = EBX / EAX
            r.ebx = uint32_t(kTscHz / kCrystalHz);
            r.ecx = uint32_t(kCrystalHz);  // crystal frequency in Hz
            break;
        case 0x16:
            r.eax = uint32_t(kTscHz / 1'000'000);  // base frequency, MHz
            r.ebx = uint32_t(kTscHz / 1'000'000);  // maximum frequency, MHz
            r.ecx = 100;                           // bus (reference) frequency, MHz
            break;
        default: break;  // reserved or not modelled (3, 5, 8-0xA, 0xC, 0xE-0x14): zeros
    }
    return r;
}

Regs extended(const Cpu& c, uint32_t leaf) {
    Regs r;
    switch (leaf) {
        case 0x80000000: r.eax = kMaxExtLeaf; break;
        case 0x80000001:
            r = features(leaf, 0);
            // SYSCALL/SYSRET exist only in 64-bit mode on Intel (ops/system.cpp raises #UD
            // elsewhere), and Intel processors enumerate the flag only when CPUID itself runs in
            // 64-bit mode (SDM Vol. 2, CPUID, leaf 80000001H EDX[11] and its note).
            if (c.mode() != Mode::Long64) r.edx &= ~(1u << 11);
            break;
        case 0x80000002:
        case 0x80000003:
        case 0x80000004: {
            char brand[48] = {};
            std::memcpy(brand, kBrand, sizeof(kBrand) < 48 ? sizeof(kBrand) : 47);
            unsigned at = (leaf - 0x80000002) * 16;
            r.eax = chars(brand, at);
            r.ebx = chars(brand, at + 4);
            r.ecx = chars(brand, at + 8);
            r.edx = chars(brand, at + 12);
            break;
        }
        case 0x80000006: {
            // L2 as in leaf 4: line size, associativity (encoding 08h = 16 ways), size in KiB.
            const Cache& l2 = kCaches[2];
            uint32_t kib = l2.ways * l2.sets * kLine / 1024;
            r.ecx = kLine | 0x8u << 12 | kib << 16;
            break;
        }
        case 0x80000007: r = features(leaf, 0); break;
        case 0x80000008: r.eax = kPhysAddrBits | kLinearAddrBits << 8; break;
        default: break;  // 0x80000005: reserved on Intel
    }
    return r;
}

Regs hypervisor(uint32_t leaf) {
    Regs r;
    if (leaf == kHypervisorBase) {
        r.eax = kMaxHypervisorLeaf;
        r.ebx = chars(kHypervisorId, 0);
        r.ecx = chars(kHypervisorId, 4);
        r.edx = chars(kHypervisorId, 8);
    } else if (leaf == 0x40000010) {
        r.eax = uint32_t(kTscHz / 1000);      // TSC frequency, kHz
        r.ebx = uint32_t(kCrystalHz / 1000);  // local-APIC timer (bus) frequency, kHz
    }
    return r;
}

}  // namespace

Regs query(const Cpu& c, uint32_t leaf, uint32_t subleaf) {
    if (leaf <= kMaxBasicLeaf) return basic(c, leaf, subleaf);
    if (leaf >= 0x80000000 && leaf <= kMaxExtLeaf) return extended(c, leaf);
    if (kAdvertiseHypervisor && leaf >= kHypervisorBase && leaf <= 0x4fffffff)
        return leaf <= kMaxHypervisorLeaf ? hypervisor(leaf) : Regs{};
    return basic(c, kMaxBasicLeaf, subleaf);  // out of range: the highest basic leaf (Intel)
}

}  // namespace m86::cpu::cpuid
