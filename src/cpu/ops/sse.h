// Shared machinery of the SSE/SSE2/MMX instruction classes (sse_int.cpp, sse_fp.cpp, fpstate.cpp).
//
// What lives here:
//  - the availability checks every SSE/MMX instruction makes before anything else (one inline test
//    on the hot path, the fault choice in a cold function);
//  - MMX register access: MM0..MM7 alias the significands of the physical x87 registers R0..R7, and
//    every MMX instruction switches the x87 unit to "MMX state" (SDM Vol. 1, 9.5.1 and Table 9-3);
//  - the generic vector handler vop<Op, DK, SK, MB, Al>: "dst = Op(dst, src[, imm8])" where the
//    destination is an XMM or MMX register and the source an XMM/MMX/GPR register, memory or an
//    immediate. Op is a struct with `template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s,
//    uint8_t imm)`, VB = 16 for an XMM destination and 8 for an MMX one. apply works on a copy of the
//    destination and may raise a fault (#XM): the register is written only after it returns;
//  - store and GPR-destination handlers, and the selector that picks a handler instance.
// Memory sources are read into a zero-filled Xmm, so "load and zero-extend" forms are plain copies.
#pragma once

#include <cstring>

#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu::sse {

// Operand classes, as template parameters.
enum : uint8_t { kX = 1, kMm, kG, kMem, kImm };

constexpr uint16_t kFswES = 0x80;  // x87 status word: exception summary (a pending x87 exception)

// ---- availability checks -------------------------------------------------------------------------
// SSE/SSE2 (SDM Vol. 2, 2.5 / Table 2-? exception classes; Vol. 3, 13.1): #UD when CR0.EM = 1 or
// CR4.OSFXSR = 0, then #NM when CR0.TS = 1.
[[noreturn, gnu::cold, gnu::noinline]] inline void sse_unavailable(Cpu& c) {
    if ((c.s.cr0 & cr0::EM) || !(c.s.cr4 & cr4::OSFXSR)) c.raise_ud();
    c.raise_fault(kNM);
}
inline void check_sse(Cpu& c) {
    if (((c.s.cr0 & (cr0::EM | cr0::TS)) | (~c.s.cr4 & cr4::OSFXSR)) != 0) [[unlikely]]
        sse_unavailable(c);
}
// MMX (SDM Vol. 3, Table 12-? "Effects of MMX instructions..." / Vol. 2 Table 22-?): #UD when CR0.EM,
// #NM when CR0.TS, #MF when an x87 exception is pending (FSW.ES).
[[noreturn, gnu::cold, gnu::noinline]] inline void mmx_unavailable(Cpu& c) {
    if (c.s.cr0 & cr0::EM) c.raise_ud();
    if (c.s.cr0 & cr0::TS) c.raise_fault(kNM);
    c.raise_fault(kMF);
}
inline void check_mmx(Cpu& c) {
    if (((c.s.cr0 & (cr0::EM | cr0::TS)) | (c.s.x87.fsw & kFswES)) != 0) [[unlikely]] mmx_unavailable(c);
}
// The checks for an instruction with operands of classes DK and SK: SSE checks when an XMM register
// is involved or no MMX register is, MMX checks when an MMX register is (both for CVTPI2PS xmm, mm).
template <uint8_t DK, uint8_t SK> inline void check(Cpu& c) {
    constexpr bool mmx = DK == kMm || SK == kMm;
    constexpr bool xmm = DK == kX || SK == kX || !mmx;
    if constexpr (xmm) check_sse(c);
    if constexpr (mmx) check_mmx(c);
}

// SIMD floating-point exception delivery (SDM Vol. 1, 11.5.1): #XM when CR4.OSXMMEXCPT = 1, else #UD.
[[noreturn, gnu::cold, gnu::noinline]] inline void raise_simd_fp(Cpu& c) {
    if (c.s.cr4 & cr4::OSXMMEXCPT) c.raise_fault(kXM);
    c.raise_ud();
}

// ---- MMX registers -------------------------------------------------------------------------------
inline uint64_t mm(const Cpu& c, unsigned n) { return c.s.x87.st[n & 7].mant; }
// Any MMX instruction (except EMMS): TOP = 0 and all tags valid (SDM Vol. 1, 9.5.1).
inline void mmx_enter(Cpu& c) {
    c.s.x87.fsw = uint16_t(c.s.x87.fsw & ~0x3800);
    c.s.x87.ftw = 0;
}
// A write to an MMX register also sets bits 64..79 (sign and exponent) of the x87 register to ones.
inline void set_mm(Cpu& c, unsigned n, uint64_t v) {
    c.s.x87.st[n & 7].mant = v;
    c.s.x87.st[n & 7].se = 0xffff;
}

// ---- memory --------------------------------------------------------------------------------------
// Linear address of the memory operand; Al: 16-byte operands of legacy SSE instructions must be
// 16-byte aligned, else #GP(0) (SDM Vol. 1, 11.6.7 / Vol. 2 exception class 1 "Legacy SSE").
template <int MB, bool Al> inline uint64_t mem_addr(Cpu& c, const Insn& i) {
    uint64_t a = lin(c, i);
    if constexpr (Al)
        if (a & (MB - 1)) [[unlikely]] c.raise_gp(0);
    return a;
}
template <int MB> inline Xmm read_v(Cpu& c, uint64_t a) {
    Xmm v;
    if constexpr (MB == 16) v = read<Xmm>(c, a);
    else if constexpr (MB == 8) v.q[0] = read<uint64_t>(c, a);
    else if constexpr (MB == 4) v.d[0] = read<uint32_t>(c, a);
    else v.w[0] = read<uint16_t>(c, a);
    return v;
}
// Write MB bytes of v, starting at byte Off of v.
template <int MB, int Off = 0> inline void write_v(Cpu& c, uint64_t a, const Xmm& v) {
    if constexpr (MB == 16) write<Xmm>(c, a, v);
    else if constexpr (MB == 8) write<uint64_t>(c, a, v.q[Off / 8]);
    else if constexpr (MB == 4) write<uint32_t>(c, a, v.d[Off / 4]);
    else write<uint16_t>(c, a, v.w[Off / 2]);
}

// Operand n of class K as a vector (MB = memory size in bytes, or the GPR width for kG).
template <uint8_t K, int MB, bool Al> inline Xmm fetch(Cpu& c, const Insn& i, int n) {
    if constexpr (K == kX) {
        return c.s.xmm[i.reg[n]];
    } else if constexpr (K == kMm) {
        Xmm v;
        v.q[0] = mm(c, i.reg[n]);
        return v;
    } else if constexpr (K == kG) {
        Xmm v;
        v.q[0] = c.s.gpr[i.reg[n]] & kMask<MB>;
        return v;
    } else if constexpr (K == kImm) {
        Xmm v;
        v.q[0] = uint8_t(i.imm);
        return v;
    } else {
        return read_v<MB>(c, mem_addr<MB, Al>(c, i));
    }
}

// ---- generic handlers ----------------------------------------------------------------------------

// dst (XMM or MMX register, operand 0) = Op(dst, operand 1 [, imm8]).
template <class Op, uint8_t DK, uint8_t SK, int MB, bool Al> void vop(Cpu& c, const Insn& i) {
    check<DK, SK>(c);
    Xmm s = fetch<SK, MB, Al>(c, i, 1);
    // The switch to MMX state happens once the operands are read: a #XM raised by the operation
    // (CVTPI2PS xmm, mm...) finds it done, a #PF on the memory operand does not (as on the host).
    if constexpr (DK == kMm || SK == kMm) mmx_enter(c);
    if constexpr (DK == kX) {
        Xmm d = c.s.xmm[i.reg[0]];
        Op::template apply<16>(c, d, s, uint8_t(i.imm));
        c.s.xmm[i.reg[0]] = d;
    } else {
        Xmm d;
        d.q[0] = mm(c, i.reg[0]);
        Op::template apply<8>(c, d, s, uint8_t(i.imm));
        set_mm(c, i.reg[0], d.q[0]);
    }
}

// Memory (operand 0) = MB bytes of register operand 1 (class SK), from its byte Off.
template <uint8_t SK, int MB, bool Al, int Off> void vstore(Cpu& c, const Insn& i) {
    check<kMem, SK>(c);
    uint64_t a = mem_addr<MB, Al>(c, i);
    const Xmm s = fetch<SK, 8, false>(c, i, 1);
    write_v<MB, Off>(c, a, s);
    if constexpr (SK == kMm) mmx_enter(c);
}

// GPR (operand 0, W bytes; 4-byte writes zero-extend) = Op::apply(c, source, imm8), source =
// operand 1 of class SK (MB bytes when memory).
template <class Op, int W, uint8_t SK, int MB, bool Al> void vtog(Cpu& c, const Insn& i) {
    check<kG, SK>(c);
    Xmm s = fetch<SK, MB, Al>(c, i, 1);
    uint64_t r = Op::template apply<SK>(c, s, uint8_t(i.imm));
    c.set_reg<W>(i.reg[0], U<W>(r));
    if constexpr (SK == kMm) mmx_enter(c);
}

// ---- selection -----------------------------------------------------------------------------------

inline uint8_t op_class(const ZydisDecodedOperand& o) {
    switch (o.type) {
        case ZYDIS_OPERAND_TYPE_MEMORY: return kMem;
        case ZYDIS_OPERAND_TYPE_IMMEDIATE: return kImm;
        case ZYDIS_OPERAND_TYPE_REGISTER:
            if (o.reg.value >= ZYDIS_REGISTER_XMM0 && o.reg.value <= ZYDIS_REGISTER_XMM15) return kX;
            if (o.reg.value >= ZYDIS_REGISTER_MM0 && o.reg.value <= ZYDIS_REGISTER_MM7) return kMm;
            switch (ZydisRegisterGetClass(o.reg.value)) {
                case ZYDIS_REGCLASS_GPR32:
                case ZYDIS_REGCLASS_GPR64: return kG;
                default: return 0;
            }
        default: return 0;
    }
}
inline int mem_bytes(const ZydisDecodedOperand& o) { return int(o.size / 8); }

// Which (destination, source) register-class pairs a vop instruction has.
namespace vf {
constexpr unsigned kXX = 1, kMM = 2, kXMm = 4 /* xmm <- mm */, kMmX = 8 /* mm <- xmm */, kXG = 16, kMG = 32, kXI = 64, kMI = 128,
                   kUnaligned = 256;  // 16-byte memory operand without the alignment requirement
}

// Picks vop<Op,...> for "dst, src[, imm8]". F: vf flags; XB/MB: memory operand size with an XMM/MMX
// destination (0 = no memory form). A form outside the table gives nullptr (the guest sees #UD).
template <class Op, unsigned F, int XB = 16, int MB = 0> Handler sel_vop(const DecodeCtx& d) {
    uint8_t dk = op_class(d.ops[0]), sk = op_class(d.ops[1]);
    if (dk == kX) {
        if constexpr ((F & vf::kXX) != 0)
            if (sk == kX) return &vop<Op, kX, kX, 16, false>;
        if constexpr ((F & vf::kXMm) != 0)
            if (sk == kMm) return &vop<Op, kX, kMm, 8, false>;
        if constexpr ((F & vf::kXG) != 0) {
            if (sk == kG) return d.ops[1].size == 64 ? &vop<Op, kX, kG, 8, false> : &vop<Op, kX, kG, 4, false>;
        }
        if constexpr ((F & vf::kXI) != 0)
            if (sk == kImm) return &vop<Op, kX, kImm, 1, false>;
        if constexpr (XB != 0) {
            if (sk == kMem && mem_bytes(d.ops[1]) == XB)
                return &vop<Op, kX, kMem, XB, XB == 16 && !(F & vf::kUnaligned)>;
            // The GPR forms' memory variant (MOVD/MOVQ xmm, m32/m64) takes the size of the operand.
            if constexpr ((F & vf::kXG) != 0)
                if (sk == kMem && mem_bytes(d.ops[1]) == 8) return &vop<Op, kX, kMem, 8, false>;
        }
    } else if (dk == kMm) {
        if constexpr ((F & vf::kMM) != 0)
            if (sk == kMm) return &vop<Op, kMm, kMm, 8, false>;
        if constexpr ((F & vf::kMmX) != 0)
            if (sk == kX) return &vop<Op, kMm, kX, 16, false>;
        if constexpr ((F & vf::kMG) != 0) {
            if (sk == kG) return d.ops[1].size == 64 ? &vop<Op, kMm, kG, 8, false> : &vop<Op, kMm, kG, 4, false>;
        }
        if constexpr ((F & vf::kMI) != 0)
            if (sk == kImm) return &vop<Op, kMm, kImm, 1, false>;
        if constexpr (MB != 0) {
            if (sk == kMem && mem_bytes(d.ops[1]) == MB) return &vop<Op, kMm, kMem, MB, MB == 16>;
            if constexpr ((F & vf::kMG) != 0)
                if (sk == kMem && mem_bytes(d.ops[1]) == 8) return &vop<Op, kMm, kMem, 8, false>;
        }
    }
    return nullptr;
}

// ---- lane helpers --------------------------------------------------------------------------------
// d[k] = f(d[k], s[k]) for the VB / sizeof(T) lanes of type T.
template <class T, int VB, class F> inline void lanes(Xmm& d, const Xmm& s, F f) {
    constexpr int N = VB / int(sizeof(T));
    T a[N], b[N];
    std::memcpy(a, d.b, VB);
    std::memcpy(b, s.b, VB);
    for (int k = 0; k < N; k++) a[k] = T(f(a[k], b[k]));
    std::memcpy(d.b, a, VB);
}

}  // namespace m86::cpu::sse
