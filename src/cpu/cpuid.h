// The CPUID model: the processor micro86 tells the guest it is.
//
// Rule: advertise exactly what micro86 implements, never more. Every feature bit lives in one
// table (kFeatures below) with a name (as Linux's /proc/cpuinfo spells it) and a switch; the unit
// tests (tests/cpu/test_string_misc.cpp, "cpuid ...") execute one instruction of every advertised
// instruction-set feature and fail if it raises #UD, so a bit cannot get ahead of its handlers.
// Features that belong to work outside the CPU core (local APIC, x2APIC, TSC deadline, ...) have
// named switches here, off until that work lands.
//
// Identity: vendor "GenuineIntel". Linux takes its TSC frequency from CPUID leaf 0x15 only on Intel
// (arch/x86/kernel/tsc.c, native_calibrate_tsc), and on a microvm board without a PIT that is the
// only way a kernel learns the TSC and local-APIC timer rates ("could not calculate TSC khz"
// otherwise); on AMD there is no CPUID path at all. The Intel vendor also keeps Linux on the
// Intel cache/topology leaves (2, 4, 0xB) that we model below.
// Signature (leaf 1 EAX): family 0xF + extended family 0xA = 0x19 (25), model 1, stepping 1. No
// Intel processor has that family, so Linux applies none of its model-specific quirk tables (all
// keyed on Intel family 6 or 19), while its "family >= 6" paths treat it as a modern core. The same
// value is in RDX after RESET (cpu.cpp) and in the MP table's processor entries (machine/boot).
//
// Time: the TSC runs at kTscHz (what the board's clock delivers through Bus::tsc). Leaf 0x15
// reports it as kCrystalHz * EBX / EAX with the crystal frequency given, which Linux treats as a
// "known frequency" (no calibration) and also uses as the local-APIC timer's input clock
// (lapic_timer_period = crystal / HZ, no APIC calibration either): THE BOARD'S LAPIC TIMER MUST
// COUNT AT kCrystalHz (before its divide configuration). Both are 1 GHz, QEMU's APIC bus frequency
// and the default of the LAPIC model (devices/lapic.h); the crystal ratio is then 1/1. Leaf 0x16
// gives the nominal core frequency, and the hypervisor leaf 0x40000010 (the convention VMware
// started: EAX = TSC kHz, EBX = APIC bus kHz) says the same for guests that look there. The TSC is
// invariant (leaf 0x80000007 EDX[8]).
//
// Leaves that are not implemented: a leaf at or below the maximum of its range returns zeros; a
// leaf above the maximum basic or extended leaf returns the data of the highest basic leaf, as
// Intel processors do (SDM Vol. 2, CPUID: "If a value entered for CPUID.EAX is higher than the
// maximum input value for basic or extended function for that processor then the data for the
// highest basic information leaf is returned").
#pragma once

#include <cstddef>
#include <cstdint>

namespace m86::cpu {

class Cpu;

namespace cpuid {

// ---- identity ------------------------------------------------------------------------------------
inline constexpr char kVendor[] = "GenuineIntel";                  // EBX, EDX, ECX of leaf 0
inline constexpr uint32_t kSignature = 0x00a00f11;                 // leaf 1 EAX (see the file comment)
inline constexpr char kBrand[] = "micro86 virtual CPU @ 1.00GHz";  // leaves 0x80000002..4
inline constexpr char kHypervisorId[] = "micro86\0\0\0\0\0";       // leaf 0x40000000 EBX ECX EDX

// ---- time ----------------------------------------------------------------------------------------
inline constexpr uint64_t kTscHz = 1'000'000'000;      // TSC rate; leaf 0x15/0x16/0x40000010
inline constexpr uint64_t kCrystalHz = 1'000'000'000;  // core crystal = local-APIC timer input clock
static_assert(kTscHz % kCrystalHz == 0, "leaf 0x15 states the TSC as an integer crystal ratio");

// ---- address sizes (leaf 0x80000008) -------------------------------------------------------------
// 52 physical bits: the page walker (mmu.cpp) takes frame addresses from PTE bits 51:12 and has no
// reserved bits there, which is exactly the architecture with MAXPHYADDR = 52.
inline constexpr unsigned kPhysAddrBits = 52;
inline constexpr unsigned kLinearAddrBits = 48;  // 57 once LA57 is advertised

// ---- XSAVE (leaf 0xD) ----------------------------------------------------------------------------
// State components XSAVE/XRSTOR handle: x87 (bit 0) and SSE (bit 1). XSETBV must refuse others.
inline constexpr uint64_t kXcr0Supported = 0x3;
inline constexpr uint32_t kXsaveAreaSize = 512 + 64;  // legacy region + XSAVE header

// ---- IA32_ARCH_CAPABILITIES value ----------------------------------------------------------------
// An interpreter executes nothing speculatively: no load returns data it was not allowed to read,
// no buffer or predictor state is shared with the host's privileged code as guest-visible state. So
// every "not susceptible" bit holds (bit numbers: SDM Vol. 4, Table 2-2, IA32_ARCH_CAPABILITIES):
// RDCL_NO(0) SKIP_L1DFL_VMENTRY(3) SSB_NO(4) MDS_NO(5) IF_PSCHANGE_MC_NO(6) TAA_NO(8)
// SBDR_SSDP_NO(13) FBSDP_NO(14) PSDP_NO(15) BHI_NO(20) PBRSB_NO(24) GDS_NO(26) RFDS_NO(27).
inline constexpr uint64_t kArchCapabilities = 1u << 0 | 1u << 3 | 1u << 4 | 1u << 5 | 1u << 6 | 1u << 8 |
                                              1u << 13 | 1u << 14 | 1u << 15 | 1u << 20 | 1u << 24 |
                                              1u << 26 | 1u << 27;

// ---- leaf ranges ---------------------------------------------------------------------------------
inline constexpr uint32_t kMaxBasicLeaf = 0x16;
inline constexpr uint32_t kMaxExtLeaf = 0x80000008;
inline constexpr uint32_t kHypervisorBase = 0x40000000, kMaxHypervisorLeaf = 0x40000010;

// ---- switches for features that depend on work outside the instruction set ----------------------
inline constexpr bool kHaveMmx = true;          // MMX forms (ops/sse_int.cpp)
inline constexpr bool kHaveLocalApic = true;    // board: xAPIC at IA32_APIC_BASE (EDX.APIC)
inline constexpr bool kHaveX2apic = true;       // board: x2APIC MSRs 0x800..0x8ff
inline constexpr bool kHaveTscDeadline = true;  // board: IA32_TSC_DEADLINE timer mode
inline constexpr bool kHaveArat = true;         // board: APIC timer keeps running in deep C-states
inline constexpr bool kHaveSysenter = true;     // system: SYSENTER/SYSEXIT and their MSRs
inline constexpr bool kHaveMtrr = true;         // system: MTRRcap/MTRR MSRs
inline constexpr bool kHaveFsgsbase = true;     // system: RD/WRFSBASE, RD/WRGSBASE, CR4.FSGSBASE
inline constexpr bool kHaveSmep = true;         // system: CR4.SMEP in the page walker
inline constexpr bool kHaveSmap = true;         // system: CR4.SMAP, STAC/CLAC
inline constexpr bool kHaveUmip = true;         // system: CR4.UMIP
inline constexpr bool kHaveLa57 = false;        // system: 5-level paging
inline constexpr bool kHavePcid = true;         // system: CR4.PCIDE, PCIDs in CR3 (leaf 1 ECX.PCID)
inline constexpr bool kHaveInvpcid = true;      // system: INVPCID
// IA32_TSC_ADJUST (MSR 0x3B, SDM Vol. 3, 18.17.3): 0 at RESET, kept by INIT; a write adds the
// difference to the TSC, a write to IA32_TSC adds the TSC's change to it (ops/crmsr.cpp).
inline constexpr bool kHaveTscAdjust = true;
// IA32_ARCH_CAPABILITIES (MSR 0x10A, leaf 7 EDX[29]) reading kArchCapabilities (above), read-only
// (ops/crmsr.cpp). Without it Linux assumes every speculative-execution bug of an unknown Intel CPU
// and turns on page-table isolation (a CR3 write, hence a TLB flush, on every kernel entry and exit)
// and the MDS buffer clearing (VERW on every return to user mode).
inline constexpr bool kHaveArchCapabilities = true;
inline constexpr bool kAdvertiseHypervisor = true;  // leaf 1 ECX[31] and leaves 0x40000000..10

// ---- the feature table ---------------------------------------------------------------------------
enum Reg : uint8_t { kEax, kEbx, kEcx, kEdx };

// What checks a feature in the unit tests: an instruction that must not #UD, or (system features)
// nothing executable on its own.
enum class Kind : uint8_t { Insn, System };

struct Feature {
    const char* name;  // Linux's /proc/cpuinfo name
    uint32_t leaf;
    uint8_t subleaf;
    uint8_t reg;
    uint8_t bit;
    bool on;
    Kind kind;
};

// Bits that depend on run-time state are computed in query(), not listed here:
//   leaf 1 EDX[28] HTT      set when Cpu::num_cpus > 1
//   leaf 1 ECX[27] OSXSAVE  mirrors CR4.OSXSAVE
//   leaf 1 EDX[9]  APIC     kHaveLocalApic and IA32_APIC_BASE[11] (global enable)
inline constexpr Feature kFeatures[] = {
    // leaf 1 EDX
    {"fpu", 1, 0, kEdx, 0, true, Kind::Insn},
    {"pse", 1, 0, kEdx, 3, true, Kind::System},  // 4 MiB pages, CR4.PSE (issue #3 paging)
    {"tsc", 1, 0, kEdx, 4, true, Kind::Insn},
    {"msr", 1, 0, kEdx, 5, true, Kind::Insn},    // RDMSR/WRMSR (ops/system.cpp)
    {"pae", 1, 0, kEdx, 6, true, Kind::System},  // implied by long mode
    {"cx8", 1, 0, kEdx, 8, true, Kind::Insn},
    {"sep", 1, 0, kEdx, 11, kHaveSysenter, Kind::Insn},
    {"mtrr", 1, 0, kEdx, 12, kHaveMtrr, Kind::System},
    {"pge", 1, 0, kEdx, 13, true, Kind::System},  // CR4.PGE (global pages: a TLB hint)
    {"cmov", 1, 0, kEdx, 15, true, Kind::Insn},
    {"pat", 1, 0, kEdx, 16, true, Kind::System},  // IA32_PAT (memory types do not matter here)
    {"clflush", 1, 0, kEdx, 19, true, Kind::Insn},
    {"mmx", 1, 0, kEdx, 23, kHaveMmx, Kind::Insn},
    {"fxsr", 1, 0, kEdx, 24, true, Kind::Insn},
    {"sse", 1, 0, kEdx, 25, true, Kind::Insn},
    {"sse2", 1, 0, kEdx, 26, true, Kind::Insn},
    // leaf 1 ECX
    {"cx16", 1, 0, kEcx, 13, true, Kind::Insn},
    {"pcid", 1, 0, kEcx, 17, kHavePcid, Kind::System},
    {"x2apic", 1, 0, kEcx, 21, kHaveX2apic, Kind::System},
    {"movbe", 1, 0, kEcx, 22, true, Kind::Insn},
    {"popcnt", 1, 0, kEcx, 23, true, Kind::Insn},
    {"tsc_deadline_timer", 1, 0, kEcx, 24, kHaveTscDeadline, Kind::System},
    {"xsave", 1, 0, kEcx, 26, true, Kind::Insn},
    {"hypervisor", 1, 0, kEcx, 31, kAdvertiseHypervisor, Kind::System},
    // leaf 6 EAX
    {"arat", 6, 0, kEax, 2, kHaveArat, Kind::System},
    // leaf 7.0 EBX
    {"fsgsbase", 7, 0, kEbx, 0, kHaveFsgsbase, Kind::Insn},
    {"tsc_adjust", 7, 0, kEbx, 1, kHaveTscAdjust, Kind::System},
    {"bmi1", 7, 0, kEbx, 3, true, Kind::Insn},
    {"smep", 7, 0, kEbx, 7, kHaveSmep, Kind::System},
    {"bmi2", 7, 0, kEbx, 8, true, Kind::Insn},
    // ERMS / FSRM: "REP MOVSB/STOSB are fast (also for short counts)". No new instructions; true of
    // ops/string.cpp, whose REP MOVS/STOS copy page-sized runs through host pointers. They make
    // Linux use REP MOVSB/STOSB for memcpy/memset/clear_page, the fastest path in an interpreter.
    {"erms", 7, 0, kEbx, 9, true, Kind::Insn},
    {"invpcid", 7, 0, kEbx, 10, kHaveInvpcid, Kind::Insn},
    {"adx", 7, 0, kEbx, 19, true, Kind::Insn},
    {"smap", 7, 0, kEbx, 20, kHaveSmap, Kind::System},
    {"clflushopt", 7, 0, kEbx, 23, true, Kind::Insn},
    {"clwb", 7, 0, kEbx, 24, true, Kind::Insn},
    // leaf 7.0 ECX
    {"umip", 7, 0, kEcx, 2, kHaveUmip, Kind::System},
    {"la57", 7, 0, kEcx, 16, kHaveLa57, Kind::System},
    {"rdpid", 7, 0, kEcx, 22, true, Kind::Insn},
    // leaf 7.0 EDX
    {"fsrm", 7, 0, kEdx, 4, true, Kind::Insn},
    {"arch_capabilities", 7, 0, kEdx, 29, kHaveArchCapabilities, Kind::System},
    // leaf 0x80000001 ECX
    {"lahf_lm", 0x80000001, 0, kEcx, 0, true, Kind::Insn},
    {"abm", 0x80000001, 0, kEcx, 5, true, Kind::Insn},            // LZCNT
    {"3dnowprefetch", 0x80000001, 0, kEcx, 8, true, Kind::Insn},  // PREFETCHW
    // leaf 0x80000001 EDX
    {"syscall", 0x80000001, 0, kEdx, 11, true, Kind::Insn},
    {"nx", 0x80000001, 0, kEdx, 20, true, Kind::System},
    {"pdpe1gb", 0x80000001, 0, kEdx, 26, true, Kind::System},
    {"rdtscp", 0x80000001, 0, kEdx, 27, true, Kind::Insn},
    {"lm", 0x80000001, 0, kEdx, 29, true, Kind::System},
    // leaf 0x80000007 EDX: invariant TSC (Linux: constant_tsc, nonstop_tsc)
    {"invtsc", 0x80000007, 0, kEdx, 8, true, Kind::System},
};
inline constexpr size_t kNumFeatures = sizeof(kFeatures) / sizeof(kFeatures[0]);

struct Regs {
    uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

// CPUID for `leaf`/`subleaf` as CPU `c` answers it (topology from c.apic_id and c.num_cpus,
// OSXSAVE from c.s.cr4).
Regs query(const Cpu& c, uint32_t leaf, uint32_t subleaf);

}  // namespace cpuid
}  // namespace m86::cpu
