// Miscellaneous instructions: HLT, CPUID, RDTSC, RDTSCP, RDPID, PAUSE, UD0/UD1/UD2.
// (Fences, CLFLUSH* and PREFETCH* are in ops/sse_int.cpp.)
//
// SDM Vol. 2: the instruction pages. The CPUID model itself is cpu/cpuid.{h,cpp}.
#include "cpu/cpuid.h"
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {
namespace {

// Current privilege level: 0 in real mode, 3 in virtual-8086 mode, else CS.RPL.
unsigned cur_cpl(const Cpu& c) {
    if (c.mode() == Mode::Real) return 0;
    if (c.s.rflags & fl::VM) return 3;
    return c.s.seg[CS].sel & 3;
}

void hlt(Cpu& c, const Insn&) {
    if (c.mode() != Mode::Real && (c.s.seg[CS].sel & 3) != 0) c.raise_gp(0);
    c.halted = true;
    c.exit_request = true;
}

// CPUID: EAX = leaf, ECX = subleaf; the four results are 32-bit register writes (zero-extended in
// 64-bit mode).
void cpuid_insn(Cpu& c, const Insn&) {
    cpuid::Regs r = cpuid::query(c, uint32_t(c.s.gpr[RAX]), uint32_t(c.s.gpr[RCX]));
    c.set_reg<4>(RAX, r.eax);
    c.set_reg<4>(RBX, r.ebx);
    c.set_reg<4>(RCX, r.ecx);
    c.set_reg<4>(RDX, r.edx);
}

// RDTSC / RDTSCP: #GP(0) when CR4.TSD is set and CPL > 0 (SDM Vol. 2, RDTSC "Protected Mode
// Exceptions"; in virtual-8086 mode CPL is 3, so the same rule applies). EDX:EAX = TSC.
void rdtsc(Cpu& c, const Insn&) {
    if ((c.s.cr4 & cr4::TSD) && cur_cpl(c) != 0) c.raise_gp(0);
    uint64_t t = c.tsc();
    c.set_reg<4>(RAX, uint32_t(t));
    c.set_reg<4>(RDX, uint32_t(t >> 32));
}

// RDTSCP additionally loads ECX with IA32_TSC_AUX[31:0].
void rdtscp(Cpu& c, const Insn&) {
    if ((c.s.cr4 & cr4::TSD) && cur_cpl(c) != 0) c.raise_gp(0);
    uint64_t t = c.tsc();
    c.set_reg<4>(RAX, uint32_t(t));
    c.set_reg<4>(RDX, uint32_t(t >> 32));
    c.set_reg<4>(RCX, uint32_t(c.s.tsc_aux));
}

// RDPID r32/r64: the register gets IA32_TSC_AUX (its low 32 bits, zero-extended: the MSR's upper
// half is reserved and always 0). Not affected by CR4.TSD.
void rdpid(Cpu& c, const Insn& i) { c.s.gpr[i.reg[0]] = uint32_t(c.s.tsc_aux); }

// PAUSE: a spin-wait hint. Architecturally a NOP. (Once several vCPUs share a host thread, this is
// where a spinning vCPU could give up the rest of its time slice.)
void pause(Cpu&, const Insn&) {}

// UD0, UD1, UD2: always #UD; their ModRM operands are not accessed.
void ud(Cpu& c, const Insn&) { c.raise_ud(); }

}  // namespace

void register_misc(Registry& r) {
    r.add(ZYDIS_MNEMONIC_HLT, [](const DecodeCtx&) -> Handler { return hlt; });
    r.add(ZYDIS_MNEMONIC_CPUID, [](const DecodeCtx&) -> Handler { return cpuid_insn; });
    r.add(ZYDIS_MNEMONIC_RDTSC, [](const DecodeCtx&) -> Handler { return rdtsc; });
    r.add(ZYDIS_MNEMONIC_RDTSCP, [](const DecodeCtx&) -> Handler { return rdtscp; });
    r.add(ZYDIS_MNEMONIC_RDPID, [](const DecodeCtx& d) -> Handler {
        return d.insn.kind[0] == kOpReg && d.insn.reg[0] < 16 ? rdpid : nullptr;
    });
    r.add(ZYDIS_MNEMONIC_PAUSE, [](const DecodeCtx&) -> Handler { return pause; });
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_UD0, ZYDIS_MNEMONIC_UD1, ZYDIS_MNEMONIC_UD2})
        r.add(m, [](const DecodeCtx&) -> Handler { return ud; });
}

}  // namespace m86::cpu
