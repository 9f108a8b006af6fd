// Data movement and flag-register operations:
//   MOV (general registers), LEA, MOVSX/MOVZX/MOVSXD, XCHG, CMPXCHG, CMPXCHG8B/16B, XADD, BSWAP,
//   MOVBE, CMOVcc, SETcc, CBW/CWDE/CDQE, CWD/CDQ/CQO, LAHF/SAHF, XLAT, CLC/STC/CMC/CLD/STD, NOP.
//
// One width-templated handler per operation and operand form, picked by the selectors at decode
// time (as in alu.cpp). Locked forms (XCHG with memory is always locked; LOCK CMPXCHG/XADD) are
// plain read-modify-writes through rmw<T>(), which is atomic on a single host thread. MOV forms
// with segment/control/debug registers belong to the system class (select_mov returns nullptr).
// SDM Vol. 2: the individual instruction pages.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {
namespace {

// ---- MOV, LEA ------------------------------------------------------------------------------------

template <int W, uint8_t DK, uint8_t SK> void mov(Cpu& c, const Insn& i) {
    U<W> v = get<W, SK>(c, i, 1);
    if constexpr (DK == kOpReg)
        c.set_reg<W>(i.reg[0], v);
    else
        write<U<W>>(c, lin(c, i), v);
}

template <uint8_t DK, uint8_t SK> Handler mov_w(unsigned w) {
    switch (w) {
        case 1: return &mov<1, DK, SK>;
        case 2: return &mov<2, DK, SK>;
        case 4: return &mov<4, DK, SK>;
        default: return &mov<8, DK, SK>;
    }
}

bool is_gpr(const ZydisDecodedOperand& op) {
    if (op.type != ZYDIS_OPERAND_TYPE_REGISTER) return true;  // memory/immediate: fine
    switch (ZydisRegisterGetClass(op.reg.value)) {
        case ZYDIS_REGCLASS_GPR8:
        case ZYDIS_REGCLASS_GPR16:
        case ZYDIS_REGCLASS_GPR32:
        case ZYDIS_REGCLASS_GPR64: return true;
        default: return false;
    }
}

Handler select_mov(const DecodeCtx& d) {
    const Insn& i = d.insn;
    // MOV to/from segment and control/debug registers belong to the system class.
    if (!is_gpr(d.ops[0]) || !is_gpr(d.ops[1])) return nullptr;
    unsigned w = i.osz;
    if (i.kind[0] == kOpReg) {
        if (i.kind[1] == kOpReg) return mov_w<kOpReg, kOpReg>(w);
        if (i.kind[1] == kOpMem) return mov_w<kOpReg, kOpMem>(w);
        return mov_w<kOpReg, kOpImm>(w);
    }
    if (i.kind[1] == kOpReg) return mov_w<kOpMem, kOpReg>(w);
    return mov_w<kOpMem, kOpImm>(w);
}

template <int W> void lea(Cpu& c, const Insn& i) { c.set_reg<W>(i.reg[0], U<W>(ea(c, i))); }

// ---- MOVSX, MOVZX, MOVSXD -----------------------------------------------------------------------
// Destination width W, source width SW. MOVSXD with a 16- or 32-bit destination is a plain move of
// that width (SDM Vol. 2, "MOVSX/MOVSXD"; the host agrees: 66 63 merges into AX, 63 zero-extends).
// 66 63 with a memory source reads an m32 and keeps its low 16 bits (Zydis reports an m32 and the
// host faults on the dword: SW = 4, W = 2).

template <int W, int SW, bool Sx, uint8_t SK> void movx(Cpu& c, const Insn& i) {
    U<SW> v = get<SW, SK>(c, i, 1);
    if constexpr (Sx)
        c.set_reg<W>(i.reg[0], U<W>(S<SW>(v)));
    else
        c.set_reg<W>(i.reg[0], U<W>(v));
}

template <bool Sx, uint8_t SK> Handler movx_for(unsigned w, unsigned sw) {
    if (sw == 1) return w == 2 ? &movx<2, 1, Sx, SK> : w == 4 ? &movx<4, 1, Sx, SK> : &movx<8, 1, Sx, SK>;
    if (sw == 2) return w == 2 ? &movx<2, 2, Sx, SK> : w == 4 ? &movx<4, 2, Sx, SK> : &movx<8, 2, Sx, SK>;
    return w == 2 ? &movx<2, 4, Sx, SK> : w == 4 ? &movx<4, 4, Sx, SK> : &movx<8, 4, Sx, SK>;
}

template <bool Sx> Handler select_movx(const DecodeCtx& d) {
    unsigned w = d.insn.osz, sw = d.ops[1].size / 8;
    if (w < 2) return nullptr;
    d.insn.aux = uint16_t(sw);  // the source size (for the JIT; memory sources also have msz)
    return d.insn.kind[1] == kOpReg ? movx_for<Sx, kOpReg>(w, sw) : movx_for<Sx, kOpMem>(w, sw);
}

// ---- XCHG ----------------------------------------------------------------------------------------

template <int W> void xchg_rr(Cpu& c, const Insn& i) {
    U<W> a = c.get_reg<W>(i.reg[0]), b = c.get_reg<W>(i.reg[1]);
    c.set_reg<W>(i.reg[0], b);
    c.set_reg<W>(i.reg[1], a);
}

// XCHG with memory (implicitly locked: SDM Vol. 2, "XCHG"). aux = index of the register operand.
template <int W> void xchg_m(Cpu& c, const Insn& i) {
    unsigned r = i.reg[i.aux];
    U<W> v = c.get_reg<W>(r), old = 0;
    rmw<U<W>>(c, lin(c, i), [&](U<W> m) {
        old = m;
        return v;
    });
    c.set_reg<W>(r, old);
}

Handler select_xchg(const DecodeCtx& d) {
    Insn& i = d.insn;
    if (i.kind[0] == kOpReg && i.kind[1] == kOpReg) return M86_BY_WIDTH(xchg_rr, i.osz);
    i.aux = i.kind[0] == kOpMem ? 1 : 0;
    return M86_BY_WIDTH(xchg_m, i.osz);
}

// ---- CMPXCHG, CMPXCHG8B, CMPXCHG16B, XADD --------------------------------------------------------
// CMPXCHG: flags as CMP accumulator, destination. On success the destination is written, on
// failure the accumulator; the other register is not written (so with 32-bit operands only the
// written one is zero-extended: checked on the host). A memory destination is always written back.

template <int W, uint8_t DK> void cmpxchg(Cpu& c, const Insn& i) {
    U<W> acc = c.get_reg<W>(RAX), src = c.get_reg<W>(i.reg[1]), d;
    if constexpr (DK == kOpReg) {
        d = c.get_reg<W>(i.reg[0]);
        if (acc == d) c.set_reg<W>(i.reg[0], src);
    } else {
        d = 0;
        rmw<U<W>>(c, lin(c, i), [&](U<W> m) {
            d = m;
            return acc == m ? src : m;
        });
    }
    c.set_lazy(FlagOp::Sub, W, U<W>(acc - d), acc, d);
    if (acc != d) c.set_reg<W>(RAX, d);
}

// CMPXCHG8B m64: EDX:EAX vs m64; equal: m64 = ECX:EBX; else EDX:EAX = m64 (both zero-extended in
// 64-bit mode). Only ZF changes.
void cmpxchg8b(Cpu& c, const Insn& i) {
    uint64_t expect = (uint64_t(uint32_t(c.s.gpr[RDX])) << 32) | uint32_t(c.s.gpr[RAX]);
    uint64_t repl = (uint64_t(uint32_t(c.s.gpr[RCX])) << 32) | uint32_t(c.s.gpr[RBX]);
    uint64_t old = 0;
    rmw<uint64_t>(c, lin(c, i), [&](uint64_t m) {
        old = m;
        return m == expect ? repl : m;
    });
    bool eq = old == expect;
    c.set_flags(fl::ZF, eq ? fl::ZF : 0);
    if (!eq) {
        c.s.gpr[RAX] = uint32_t(old);
        c.s.gpr[RDX] = old >> 32;
    }
}

// CMPXCHG16B m128: as CMPXCHG8B with RDX:RAX and RCX:RBX; #GP(0) if m128 is not 16-byte aligned.
void cmpxchg16b(Cpu& c, const Insn& i) {
    using u128 = unsigned __int128;
    uint64_t a = lin(c, i);
    if (a & 15) c.raise_gp(0);
    u128 expect = (u128(c.s.gpr[RDX]) << 64) | c.s.gpr[RAX];
    u128 repl = (u128(c.s.gpr[RCX]) << 64) | c.s.gpr[RBX];
    u128 old = 0;
    rmw<u128>(c, a, [&](u128 m) {
        old = m;
        return m == expect ? repl : m;
    });
    bool eq = old == expect;
    c.set_flags(fl::ZF, eq ? fl::ZF : 0);
    if (!eq) {
        c.s.gpr[RAX] = uint64_t(old);
        c.s.gpr[RDX] = uint64_t(old >> 64);
    }
}

Handler select_cmpxchg8b(const DecodeCtx& d) { return d.insn.kind[0] == kOpMem ? cmpxchg8b : nullptr; }
Handler select_cmpxchg16b(const DecodeCtx& d) { return d.insn.kind[0] == kOpMem ? cmpxchg16b : nullptr; }

// XADD: TEMP = SRC + DEST; SRC = DEST; DEST = TEMP (so "xadd eax, eax" leaves the sum). Flags as ADD.
template <int W, uint8_t DK> void xadd(Cpu& c, const Insn& i) {
    U<W> s = c.get_reg<W>(i.reg[1]);
    if constexpr (DK == kOpReg) {
        U<W> d = c.get_reg<W>(i.reg[0]);
        U<W> sum = U<W>(d + s);
        c.set_lazy(FlagOp::Add, W, sum, d, s);
        c.set_reg<W>(i.reg[1], d);
        c.set_reg<W>(i.reg[0], sum);
    } else {
        U<W> old = 0;
        rmw<U<W>>(c, lin(c, i), [&](U<W> m) {
            old = m;
            return U<W>(m + s);
        });
        c.set_lazy(FlagOp::Add, W, U<W>(old + s), old, s);
        c.set_reg<W>(i.reg[1], old);
    }
}

template <int W, uint8_t DK> struct CmpxchgH { static constexpr Handler fn = &cmpxchg<W, DK>; };
template <int W, uint8_t DK> struct XaddH { static constexpr Handler fn = &xadd<W, DK>; };

template <template <int, uint8_t> class H> Handler select_rm_r(const DecodeCtx& d) {
    unsigned w = d.insn.osz;
    if (d.insn.kind[0] == kOpReg) {
        switch (w) {
            case 1: return H<1, kOpReg>::fn;
            case 2: return H<2, kOpReg>::fn;
            case 4: return H<4, kOpReg>::fn;
            default: return H<8, kOpReg>::fn;
        }
    }
    switch (w) {
        case 1: return H<1, kOpMem>::fn;
        case 2: return H<2, kOpMem>::fn;
        case 4: return H<4, kOpMem>::fn;
        default: return H<8, kOpMem>::fn;
    }
}

// ---- BSWAP, MOVBE --------------------------------------------------------------------------------

template <int W> inline U<W> byteswap(U<W> v) {
    if constexpr (W == 2) return __builtin_bswap16(v);
    else if constexpr (W == 4) return __builtin_bswap32(v);
    else return __builtin_bswap64(v);
}

// BSWAP r16 is undefined (SDM Vol. 2, "BSWAP"); Intel and AMD hardware clear the register's low
// 16 bits, and so do we.
template <int W> void bswap(Cpu& c, const Insn& i) {
    if constexpr (W == 2)
        c.set_reg<2>(i.reg[0], 0);
    else
        c.set_reg<W>(i.reg[0], byteswap<W>(c.get_reg<W>(i.reg[0])));
}

template <int W> void movbe_load(Cpu& c, const Insn& i) {
    c.set_reg<W>(i.reg[0], byteswap<W>(read<U<W>>(c, lin(c, i))));
}
template <int W> void movbe_store(Cpu& c, const Insn& i) {
    write<U<W>>(c, lin(c, i), byteswap<W>(c.get_reg<W>(i.reg[1])));
}

Handler select_movbe(const DecodeCtx& d) {
    unsigned w = d.insn.osz;
    if (d.insn.kind[0] == kOpReg && d.insn.kind[1] == kOpMem) return M86_BY_WIDTH(movbe_load, w);
    if (d.insn.kind[0] == kOpMem && d.insn.kind[1] == kOpReg) return M86_BY_WIDTH(movbe_store, w);
    return nullptr;
}

// ---- CMOVcc, SETcc -------------------------------------------------------------------------------
// aux = condition code (low nibble of 0F 40+cc / 0F 90+cc). CMOV reads its source even when the
// condition is false (a memory source can fault), and with a 32-bit destination the register is
// zero-extended in either case (SDM Vol. 2, "CMOVcc": "the upper 32 bits ... are cleared").

template <int W, uint8_t SK> void cmov(Cpu& c, const Insn& i) {
    U<W> v = get<W, SK>(c, i, 1);
    if (c.cond(i.aux))
        c.set_reg<W>(i.reg[0], v);
    else if constexpr (W == 4)
        c.s.gpr[i.reg[0]] = uint32_t(c.s.gpr[i.reg[0]]);
}

Handler select_cmov(const DecodeCtx& d) {
    d.insn.aux = d.zi.opcode & 0xf;
    unsigned w = d.insn.osz;
    if (d.insn.kind[1] == kOpReg) return w == 2 ? &cmov<2, kOpReg> : w == 4 ? &cmov<4, kOpReg> : &cmov<8, kOpReg>;
    return w == 2 ? &cmov<2, kOpMem> : w == 4 ? &cmov<4, kOpMem> : &cmov<8, kOpMem>;
}

template <uint8_t DK> void setcc(Cpu& c, const Insn& i) {
    uint8_t v = c.cond(i.aux);
    if constexpr (DK == kOpReg)
        c.set_r8(i.reg[0], v);
    else
        write<uint8_t>(c, lin(c, i), v);
}

Handler select_setcc(const DecodeCtx& d) {
    d.insn.aux = d.zi.opcode & 0xf;
    return d.insn.kind[0] == kOpReg ? &setcc<kOpReg> : &setcc<kOpMem>;
}

// ---- CBW/CWDE/CDQE, CWD/CDQ/CQO ------------------------------------------------------------------

// Sign-extend the low half of the accumulator into the whole (W = the operand size).
template <int W> void cbw(Cpu& c, const Insn&) {
    using Half = typename UintOf<W / 2>::S;
    c.set_reg<W>(RAX, U<W>(Half(c.s.gpr[RAX])));
}

// Replicate the accumulator's sign into DX/EDX/RDX.
template <int W> void cwd(Cpu& c, const Insn&) {
    c.set_reg<W>(RDX, U<W>(S<W>(c.get_reg<W>(RAX)) >> (8 * W - 1)));
}

// ---- LAHF/SAHF, flag bits ------------------------------------------------------------------------

constexpr uint64_t kAhFlags = fl::SF | fl::ZF | fl::AF | fl::PF | fl::CF;

// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF (SDM Vol. 2, "LAHF").
void lahf(Cpu& c, const Insn&) { c.set_r8(kRegAH, uint8_t((c.rflags() & kAhFlags) | fl::kFixed1)); }
void sahf(Cpu& c, const Insn&) { c.set_flags(kAhFlags, c.get_r8(kRegAH)); }

void clc(Cpu& c, const Insn&) { c.set_flags(fl::CF, 0); }
void stc(Cpu& c, const Insn&) { c.set_flags(fl::CF, fl::CF); }
void cmc(Cpu& c, const Insn&) { c.set_flags(fl::CF, c.cf() ? 0 : fl::CF); }
void cld(Cpu& c, const Insn&) { c.s.rflags &= ~fl::DF; }  // DF is never part of the lazy record
void std_(Cpu& c, const Insn&) { c.s.rflags |= fl::DF; }

// ---- XLAT ----------------------------------------------------------------------------------------
// AL = [seg: rBX + AL], the address size selecting RBX/EBX/BX; the segment is DS or an override.

template <int AW> void xlat(Cpu& c, const Insn& i) {
    U<AW> off = U<AW>(c.get_reg<AW>(RBX) + uint8_t(c.s.gpr[RAX]));
    c.set_r8(RAX, read<uint8_t>(c, lin_of(c, i.seg, off)));
}

Handler select_xlat(const DecodeCtx& d) {
    switch (d.insn.asz) {
        case 2: return &xlat<2>;
        case 4: return &xlat<4>;
        default: return &xlat<8>;
    }
}

// ---- NOP -----------------------------------------------------------------------------------------
// 90, 0F 1F /0 and the reserved hint NOPs 0F 18..1F that Zydis decodes as NOP: no operand is
// accessed, a memory operand is not even translated.
void nop(Cpu&, const Insn&) {}

}  // namespace

void register_data(Registry& r) {
    r.add(ZYDIS_MNEMONIC_MOV, select_mov);
    r.add(ZYDIS_MNEMONIC_LEA, [](const DecodeCtx& d) -> Handler { return M86_BY_WIDTH(lea, d.insn.osz); });
    r.add(ZYDIS_MNEMONIC_NOP, [](const DecodeCtx&) -> Handler { return nop; });
    r.add(ZYDIS_MNEMONIC_MOVSX, select_movx<true>);
    r.add(ZYDIS_MNEMONIC_MOVSXD, select_movx<true>);
    r.add(ZYDIS_MNEMONIC_MOVZX, select_movx<false>);
    r.add(ZYDIS_MNEMONIC_XCHG, select_xchg);
    r.add(ZYDIS_MNEMONIC_CMPXCHG, select_rm_r<CmpxchgH>);
    r.add(ZYDIS_MNEMONIC_CMPXCHG8B, select_cmpxchg8b);
    r.add(ZYDIS_MNEMONIC_CMPXCHG16B, select_cmpxchg16b);
    r.add(ZYDIS_MNEMONIC_XADD, select_rm_r<XaddH>);
    r.add(ZYDIS_MNEMONIC_BSWAP, [](const DecodeCtx& d) -> Handler { return M86_BY_WIDTH(bswap, d.insn.osz); });
    r.add(ZYDIS_MNEMONIC_MOVBE, select_movbe);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVNB,
                            ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVNZ, ZYDIS_MNEMONIC_CMOVBE,
                            ZYDIS_MNEMONIC_CMOVNBE, ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVNS,
                            ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVNP, ZYDIS_MNEMONIC_CMOVL,
                            ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVLE, ZYDIS_MNEMONIC_CMOVNLE})
        r.add(m, select_cmov);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETB, ZYDIS_MNEMONIC_SETNB,
                            ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ, ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE,
                            ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETNP,
                            ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETLE, ZYDIS_MNEMONIC_SETNLE})
        r.add(m, select_setcc);
    r.add(ZYDIS_MNEMONIC_CBW, [](const DecodeCtx&) -> Handler { return &cbw<2>; });
    r.add(ZYDIS_MNEMONIC_CWDE, [](const DecodeCtx&) -> Handler { return &cbw<4>; });
    r.add(ZYDIS_MNEMONIC_CDQE, [](const DecodeCtx&) -> Handler { return &cbw<8>; });
    r.add(ZYDIS_MNEMONIC_CWD, [](const DecodeCtx&) -> Handler { return &cwd<2>; });
    r.add(ZYDIS_MNEMONIC_CDQ, [](const DecodeCtx&) -> Handler { return &cwd<4>; });
    r.add(ZYDIS_MNEMONIC_CQO, [](const DecodeCtx&) -> Handler { return &cwd<8>; });
    r.add(ZYDIS_MNEMONIC_LAHF, [](const DecodeCtx&) -> Handler { return lahf; });
    r.add(ZYDIS_MNEMONIC_SAHF, [](const DecodeCtx&) -> Handler { return sahf; });
    r.add(ZYDIS_MNEMONIC_XLAT, select_xlat);
    r.add(ZYDIS_MNEMONIC_CLC, [](const DecodeCtx&) -> Handler { return clc; });
    r.add(ZYDIS_MNEMONIC_STC, [](const DecodeCtx&) -> Handler { return stc; });
    r.add(ZYDIS_MNEMONIC_CMC, [](const DecodeCtx&) -> Handler { return cmc; });
    r.add(ZYDIS_MNEMONIC_CLD, [](const DecodeCtx&) -> Handler { return cld; });
    r.add(ZYDIS_MNEMONIC_STD, [](const DecodeCtx&) -> Handler { return std_; });
}

}  // namespace m86::cpu
