// Control-register writes with their side effects (mode switches, TLB invalidation) and the MSRs
// (RDMSR/WRMSR). SDM Vol. 3, 2.5 (control registers), 2.2.1 (EFER), 4.10.4 (TLB invalidation),
// Vol. 4 (MSR index and fields).
//
// TLB policy: the software TLB (cpu.h) is a cache of the current address space and of global
// translations, so every CR3 write flushes all but the global entries (also with the PCID "no
// flush" bit: flushing more than asked is always allowed); changes of CR0.PG/WP/PE, the CR4 paging
// bits (PGE among them) and EFER.NXE flush everything.
#include "cpu/cpuid.h"
#include "cpu/decode.h"
#include "cpu/sys.h"

namespace m86::cpu::sys {

bool pae_pdptes_valid(Cpu& c, uint64_t cr3);  // mmu.cpp

namespace {

constexpr uint64_t kCr0Impl = cr0::PE | cr0::MP | cr0::EM | cr0::TS | cr0::ET | cr0::NE | cr0::WP | cr0::AM |
                              cr0::NW | cr0::CD | cr0::PG;
constexpr uint64_t kCr4Impl = cr4::TSD | cr4::DE | cr4::PSE | cr4::PAE | cr4::MCE | cr4::PGE | cr4::PCE |
                              cr4::OSFXSR | cr4::OSXMMEXCPT | cr4::UMIP | cr4::LA57 | cr4::FSGSBASE |
                              cr4::PCIDE | cr4::OSXSAVE | cr4::SMEP | cr4::SMAP;
constexpr uint64_t kCr4Paging = cr4::PSE | cr4::PAE | cr4::PGE | cr4::PCIDE | cr4::SMEP | cr4::SMAP | cr4::LA57;

bool legacy_pae_paging(const Cpu& c, uint64_t cr0v, uint64_t cr4v) {
    return (cr0v & cr0::PG) && (cr4v & cr4::PAE) && !(c.s.efer & efer::LMA);
}

}  // namespace

void write_cr0(Cpu& c, uint64_t v) {
    if (v >> 32) c.raise_gp(0);
    v = (v & kCr0Impl) | cr0::ET;  // ET is hardwired to 1; other reserved bits of 31:0 are ignored
    if ((v & cr0::PG) && !(v & cr0::PE)) c.raise_gp(0);
    if ((v & cr0::NW) && !(v & cr0::CD)) c.raise_gp(0);
    uint64_t old = c.s.cr0, e = c.s.efer;
    if ((v & cr0::PG) && !(old & cr0::PG) && (e & efer::LME)) {
        // Activating IA-32e mode (SDM Vol. 3, 10.8.5): needs PAE and a CS that is not 64-bit.
        if (!(c.s.cr4 & cr4::PAE) || (c.s.seg[CS].attr & SegReg::kL)) c.raise_gp(0);
        e |= efer::LMA;
    } else if (!(v & cr0::PG) && (old & cr0::PG) && (e & efer::LMA)) {
        // Leaving IA-32e mode: only from compatibility mode, and not with PCIDE set.
        if (c.mode() == Mode::Long64 || (c.s.cr4 & cr4::PCIDE)) c.raise_gp(0);
        e &= ~efer::LMA;
    }
    if (!(e & efer::LMA) && (v & cr0::PG) && (c.s.cr4 & cr4::PAE) && !(old & cr0::PG) &&
        !pae_pdptes_valid(c, c.s.cr3))
        c.raise_gp(0);
    c.s.cr0 = v;
    c.s.efer = e;
    if ((old ^ v) & (cr0::PG | cr0::WP | cr0::PE)) c.tlb_flush();
    c.update_mode();
}

void write_cr3(Cpu& c, uint64_t v) {
    if (c.s.efer & efer::LMA) {
        if (c.s.cr4 & cr4::PCIDE) v &= ~(1ull << 63);  // "no flush" hint (see the file comment)
        if (v >> cpuid::kPhysAddrBits) c.raise_gp(0);
    } else {
        v = uint32_t(v);
    }
    if (legacy_pae_paging(c, c.s.cr0, c.s.cr4) && !pae_pdptes_valid(c, v)) c.raise_gp(0);
    c.s.cr3 = v;
    c.tlb_flush(true);  // global translations stay (SDM Vol. 3, 4.10.4.1)
}

void write_cr4(Cpu& c, uint64_t v) {
    uint64_t old = c.s.cr4;
    bool lm = c.s.efer & efer::LMA;
    if (v & ~kCr4Impl) c.raise_gp(0);
    if (lm && !(v & cr4::PAE)) c.raise_gp(0);
    if (lm && ((v ^ old) & cr4::LA57)) c.raise_gp(0);
    if ((v & cr4::PCIDE) && !(old & cr4::PCIDE) && (!lm || (c.s.cr3 & 0xfff))) c.raise_gp(0);
    if (legacy_pae_paging(c, c.s.cr0, v) && ((v ^ old) & kCr4Paging) && !pae_pdptes_valid(c, c.s.cr3))
        c.raise_gp(0);
    c.s.cr4 = v;
    if ((old ^ v) & kCr4Paging) c.tlb_flush();
    c.update_mode();
}

// ---- MSRs ----------------------------------------------------------------------------------------

namespace msr {
constexpr uint32_t kTsc = 0x10, kApicBase = 0x1b, kFeatureControl = 0x3a, kTscAdjust = 0x3b,
                   kBiosSignId = 0x8b, kMtrrCap = 0xfe, kArchCapabilities = 0x10a, kSysenterCs = 0x174, kSysenterEsp = 0x175,
                   kSysenterEip = 0x176, kMcgCap = 0x179, kMcgStatus = 0x17a, kMiscEnable = 0x1a0,
                   kMtrrPhysBase0 = 0x200, kMtrrFix64k = 0x250, kMtrrFix16k8 = 0x258, kMtrrFix16kA = 0x259,
                   kMtrrFix4kC0 = 0x268, kPat = 0x277, kMtrrDefType = 0x2ff, kEfer = 0xc0000080,
                   kStar = 0xc0000081, kLstar = 0xc0000082, kCstar = 0xc0000083, kFmask = 0xc0000084,
                   kFsBase = 0xc0000100, kGsBase = 0xc0000101, kKernelGsBase = 0xc0000102, kTscAux = 0xc0000103;
}

namespace {

// Index into CpuState::mtrr_fixed, or -1.
int fixed_mtrr(uint32_t m) {
    if (m == msr::kMtrrFix64k) return 0;
    if (m == msr::kMtrrFix16k8) return 1;
    if (m == msr::kMtrrFix16kA) return 2;
    if (m >= msr::kMtrrFix4kC0 && m <= msr::kMtrrFix4kC0 + 7) return int(3 + m - msr::kMtrrFix4kC0);
    return -1;
}
bool valid_mem_type(uint64_t t, bool pat) { return t == 0 || t == 1 || t == 4 || t == 5 || t == 6 || (pat && t == 7); }
constexpr uint64_t kPhysMask = ((1ull << cpuid::kPhysAddrBits) - 1) & ~0xfffull;

}  // namespace

bool read_msr(Cpu& c, uint32_t m, uint64_t& v) {
    if (c.platform && (c.side_effect(), c.platform->msr_read(m, &v))) return true;
    const CpuState& s = c.s;
    switch (m) {
        case msr::kTsc: v = c.tsc(); return true;
        case msr::kApicBase: v = (s.apic_base & ~0x100ull) | (c.is_bsp ? 0x100 : 0); return true;
        case msr::kTscAdjust: v = s.tsc_adjust; return true;
        case msr::kBiosSignId: v = 0; return true;  // microcode revision 0
        case msr::kArchCapabilities:  // read-only (SDM Vol. 4, Table 2-2); see cpuid.h
            if (!cpuid::kHaveArchCapabilities) return false;
            v = cpuid::kArchCapabilities;
            return true;
        case msr::kMtrrCap: v = 0x508; return true;  // 8 variable ranges, fixed ranges, WC
        case msr::kSysenterCs: v = s.sysenter_cs; return true;
        case msr::kSysenterEsp: v = s.sysenter_esp; return true;
        case msr::kSysenterEip: v = s.sysenter_eip; return true;
        case msr::kMcgCap: v = 0; return true;  // no machine-check banks
        case msr::kMcgStatus: v = 0; return true;
        case msr::kMiscEnable: v = s.misc_enable; return true;
        case msr::kPat: v = s.pat; return true;
        case msr::kMtrrDefType: v = s.mtrr_def_type; return true;
        case msr::kEfer: v = s.efer; return true;
        case msr::kStar: v = s.star; return true;
        case msr::kLstar: v = s.lstar; return true;
        case msr::kCstar: v = s.cstar; return true;
        case msr::kFmask: v = s.sfmask; return true;
        case msr::kFsBase: v = s.seg[FS].base; return true;
        case msr::kGsBase: v = s.seg[GS].base; return true;
        case msr::kKernelGsBase: v = s.kernel_gs_base; return true;
        case msr::kTscAux: v = s.tsc_aux; return true;
        default: break;
    }
    if (m >= msr::kMtrrPhysBase0 && m < msr::kMtrrPhysBase0 + 16) {
        v = s.mtrr_var[m - msr::kMtrrPhysBase0];
        return true;
    }
    if (int k = fixed_mtrr(m); k >= 0) {
        v = s.mtrr_fixed[k];
        return true;
    }
    return false;
}

bool write_msr(Cpu& c, uint32_t m, uint64_t v) {
    if (c.platform && (c.side_effect(), c.platform->msr_write(m, v))) return true;
    CpuState& s = c.s;
    switch (m) {
        case msr::kTsc: {
            // SDM Vol. 3, 18.17.3: a write to the TSC adjusts IA32_TSC_ADJUST by the same amount.
            uint64_t delta = v - c.tsc();
            s.tsc_offset += delta;
            s.tsc_adjust += delta;
            return true;
        }
        case msr::kTscAdjust: {
            uint64_t delta = v - s.tsc_adjust;
            s.tsc_adjust = v;
            s.tsc_offset += delta;
            return true;
        }
        case msr::kApicBase:
            // Bits 7:0, 9 and above MAXPHYADDR are reserved; BSP (bit 8) is read-only; x2APIC mode
            // (bit 10) needs the board's x2APIC.
            if ((v & 0x2ff) || (v >> cpuid::kPhysAddrBits) || (v & 0x400)) return false;
            s.apic_base = v & ~0x100ull;
            return true;
        case msr::kBiosSignId: return true;  // "trigger microcode update": nothing to update
        case msr::kSysenterCs: s.sysenter_cs = uint32_t(v); return true;
        case msr::kSysenterEsp:
        case msr::kSysenterEip:
        case msr::kLstar:
        case msr::kCstar:
        case msr::kFsBase:
        case msr::kGsBase:
        case msr::kKernelGsBase:
            if (!canonical(c, v)) return false;
            if (m == msr::kSysenterEsp) s.sysenter_esp = v;
            else if (m == msr::kSysenterEip) s.sysenter_eip = v;
            else if (m == msr::kLstar) s.lstar = v;
            else if (m == msr::kCstar) s.cstar = v;
            else if (m == msr::kFsBase) s.seg[FS].base = v;
            else if (m == msr::kGsBase) s.seg[GS].base = v;
            else s.kernel_gs_base = v;
            return true;
        case msr::kMcgStatus: return v == 0;
        case msr::kMiscEnable: s.misc_enable = v; return true;
        case msr::kPat:
            for (int b = 0; b < 8; b++)
                if (!valid_mem_type((v >> (8 * b)) & 0xff, true)) return false;
            s.pat = v;
            return true;
        case msr::kMtrrDefType:
            if ((v & ~0xcffull) || !valid_mem_type(v & 0xff, false)) return false;
            s.mtrr_def_type = v;
            return true;
        case msr::kEfer: {
            // SCE, LME, NXE are writable; LMA is read-only (kept); LME cannot change with paging on.
            constexpr uint64_t kW = efer::SCE | efer::LME | efer::NXE;
            if (v & ~(kW | efer::LMA)) return false;
            if (((v ^ s.efer) & efer::LME) && (s.cr0 & cr0::PG)) return false;
            uint64_t nv = (v & kW) | (s.efer & efer::LMA);
            if ((nv ^ s.efer) & efer::NXE) c.tlb_flush();
            s.efer = nv;
            c.update_mode();
            return true;
        }
        case msr::kStar: s.star = v; return true;
        case msr::kFmask:
            if (v >> 32) return false;
            s.sfmask = v;
            return true;
        case msr::kTscAux:
            if (v >> 32) return false;
            s.tsc_aux = v;
            return true;
        default: break;
    }
    if (m >= msr::kMtrrPhysBase0 && m < msr::kMtrrPhysBase0 + 16) {
        bool mask = (m - msr::kMtrrPhysBase0) & 1;
        uint64_t ok = mask ? (kPhysMask | 0x800) : (kPhysMask | 0xff);
        if ((v & ~ok) || (!mask && !valid_mem_type(v & 0xff, false))) return false;
        s.mtrr_var[m - msr::kMtrrPhysBase0] = v;
        return true;
    }
    if (int k = fixed_mtrr(m); k >= 0) {
        for (int b = 0; b < 8; b++)
            if (!valid_mem_type((v >> (8 * b)) & 0xff, false)) return false;
        s.mtrr_fixed[k] = v;
        return true;
    }
    return false;
}

namespace {

void rdmsr(Cpu& c, const Insn&) {
    if (cpl(c) != 0) c.raise_gp(0);
    uint64_t v;
    if (!read_msr(c, uint32_t(c.s.gpr[RCX]), v)) c.raise_gp(0);
    c.set_reg<4>(RAX, uint32_t(v));
    c.set_reg<4>(RDX, uint32_t(v >> 32));
}

void wrmsr(Cpu& c, const Insn&) {
    if (cpl(c) != 0) c.raise_gp(0);
    uint64_t v = uint32_t(c.s.gpr[RAX]) | (uint64_t(uint32_t(c.s.gpr[RDX])) << 32);
    if (!write_msr(c, uint32_t(c.s.gpr[RCX]), v)) c.raise_gp(0);
    c.exit_request = true;
}

}  // namespace

void register_msr(Registry& r) {
    r.add(ZYDIS_MNEMONIC_RDMSR, [](const DecodeCtx&) -> Handler { return rdmsr; });
    r.add(ZYDIS_MNEMONIC_WRMSR, [](const DecodeCtx&) -> Handler { return wrmsr; });
}

}  // namespace m86::cpu::sys
