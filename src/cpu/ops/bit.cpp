// Bit operations: BT BTS BTR BTC, BSF BSR, LZCNT TZCNT POPCNT, BMI1 (ANDN BEXTR BLSI BLSMSK BLSR),
// BMI2 (BZHI PDEP PEXT RORX SARX SHLX SHRX), ADX (ADCX ADOX).
//
// One width-templated semantic function per operation; handlers are instantiated per operand kind
// so the register forms do no kind checks. (MULX lives with the multiplies in muldiv.cpp.)
//
// SDM Vol. 2 instruction pages; quirks:
//  - BT* with a register bit offset and a memory operand address a bit string: the offset is a
//    signed operand-size value and the W-byte word at EA + W * floor(offset / 8W) is accessed
//    (SDM "BT", Table 3-2 and the note below it). Zen 4 accesses exactly that word (measured: the
//    access faults when any of its bytes is on a not-present page), so we do the same. Immediate
//    offsets are taken modulo the operand size.
//  - BSF/BSR with a zero source: ZF = 1 and the destination is left unchanged (a 32-bit
//    destination keeps its upper half), as Intel and AMD processors do.
//  - Undefined flags get the values Zen 4 gives (measured): BT* change only CF; BSF/BSR clear CF
//    OF SF AF and set PF from the result (PF = 1 for a zero source); LZCNT/TZCNT keep OF and clear SF PF AF; ANDN BLS* BZHI set PF from the result and
//    clear AF; BEXTR sets PF from the result, AF = 1 and SF = 0.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {
namespace {

template <int W> constexpr unsigned kBits = 8 * W;
template <int W> constexpr unsigned kLog2Bits = W == 1 ? 3 : W == 2 ? 4 : W == 4 ? 5 : 6;

inline void set_status(Cpu& c, uint64_t bits) {
    c.s.rflags = (c.s.rflags & ~fl::kArith) | bits;
    c.lf.set_none();
}
inline uint64_t if_(bool b, uint64_t f) { return b ? f : 0; }
template <int W> inline bool msb(U<W> v) { return v >> (kBits<W> - 1); }
template <int W> inline uint64_t szp(U<W> r) {
    return if_(r == 0, fl::ZF) | if_(msb<W>(r), fl::SF) | if_(parity_even(r), fl::PF);
}
template <int W> inline U<W> low_mask(unsigned n) {  // n < kBits
    return U<W>((U<W>(1) << n) - 1);
}

// ---- BT BTS BTR BTC ------------------------------------------------------------------------------

struct Bt { static constexpr bool kWrites = false; template <class T> static T apply(T a, T) { return a; } };
struct Bts { static constexpr bool kWrites = true; template <class T> static T apply(T a, T m) { return a | m; } };
struct Btr { static constexpr bool kWrites = true; template <class T> static T apply(T a, T m) { return a & ~m; } };
struct Btc { static constexpr bool kWrites = true; template <class T> static T apply(T a, T m) { return a ^ m; } };

// DK: destination register/memory; OK: bit offset register/immediate.
template <int W, class Op, uint8_t DK, uint8_t OK> void bt(Cpu& c, const Insn& i) {
    U<W> off = OK == kOpImm ? U<W>(i.imm) : c.get_reg<W>(i.reg[1]);
    U<W> m = U<W>(U<W>(1) << (off & (kBits<W> - 1)));
    if constexpr (DK == kOpReg) {
        U<W> a = c.get_reg<W>(i.reg[0]);
        c.set_flags(fl::CF, if_(a & m, fl::CF));
        if constexpr (Op::kWrites) c.set_reg<W>(i.reg[0], Op::apply(a, m));
    } else {
        uint64_t la;
        if constexpr (OK == kOpImm) {
            la = lin(c, i);
        } else {
            // Bit-string addressing: a signed offset selects the W-byte word (floor division).
            uint64_t e = ea(c, i) + uint64_t((int64_t(S<W>(off)) >> kLog2Bits<W>) * W);
            if (i.asz == 4) e = uint32_t(e);
            else if (i.asz == 2) e = uint16_t(e);
            la = lin_op(c, i, e);  // BTS/BTR/BTC: write range
        }
        if constexpr (Op::kWrites) {
            rmw<U<W>>(c, la, [&](U<W> a) {
                c.set_flags(fl::CF, if_(a & m, fl::CF));
                return Op::apply(a, m);
            });
        } else {
            U<W> a = read<U<W>>(c, la);
            c.set_flags(fl::CF, if_(a & m, fl::CF));
        }
    }
}

template <class Op, uint8_t DK, uint8_t OK> Handler bt_w(unsigned w) {
    switch (w) {
        case 2: return &bt<2, Op, DK, OK>;
        case 4: return &bt<4, Op, DK, OK>;
        case 8: return &bt<8, Op, DK, OK>;
        default: return nullptr;
    }
}

template <class Op> Handler select_bt(const DecodeCtx& d) {
    const Insn& i = d.insn;
    bool imm = i.kind[1] == kOpImm;
    if (i.kind[0] == kOpReg) return imm ? bt_w<Op, kOpReg, kOpImm>(i.osz) : bt_w<Op, kOpReg, kOpReg>(i.osz);
    return imm ? bt_w<Op, kOpMem, kOpImm>(i.osz) : bt_w<Op, kOpMem, kOpReg>(i.osz);
}

// ---- BSF BSR -------------------------------------------------------------------------------------

template <int W, bool kReverse, uint8_t SK> void bsf(Cpu& c, const Insn& i) {
    U<W> s = get<W, SK>(c, i, 1);
    if (s == 0) {  // destination unchanged
        set_status(c, fl::ZF | fl::PF);
        return;
    }
    unsigned r = kReverse ? 63 - __builtin_clzll(s) : __builtin_ctzll(s);
    c.set_reg<W>(i.reg[0], U<W>(r));
    set_status(c, if_(parity_even(r), fl::PF));
}

// ---- one-source operations: dest = Op(src) -------------------------------------------------------

template <int W> struct Tzcnt {
    static U<W> apply(Cpu& c, U<W> s) {
        U<W> r = s ? U<W>(__builtin_ctzll(s)) : U<W>(kBits<W>);
        c.set_flags(fl::kArith & ~fl::OF, if_(s == 0, fl::CF) | if_(r == 0, fl::ZF));
        return r;
    }
};
template <int W> struct Lzcnt {
    static U<W> apply(Cpu& c, U<W> s) {
        U<W> r = s ? U<W>(__builtin_clzll(s) - (64 - kBits<W>)) : U<W>(kBits<W>);
        c.set_flags(fl::kArith & ~fl::OF, if_(s == 0, fl::CF) | if_(r == 0, fl::ZF));
        return r;
    }
};
template <int W> struct Popcnt {
    static U<W> apply(Cpu& c, U<W> s) {
        set_status(c, if_(s == 0, fl::ZF));
        return U<W>(__builtin_popcountll(s));
    }
};
template <int W> struct Blsi {
    static U<W> apply(Cpu& c, U<W> s) {
        U<W> r = U<W>(U<W>(0) - s) & s;
        set_status(c, szp<W>(r) | if_(s != 0, fl::CF));
        return r;
    }
};
template <int W> struct Blsmsk {
    static U<W> apply(Cpu& c, U<W> s) {
        U<W> r = U<W>(s - 1) ^ s;
        set_status(c, szp<W>(r) | if_(s == 0, fl::CF));
        return r;
    }
};
template <int W> struct Blsr {
    static U<W> apply(Cpu& c, U<W> s) {
        U<W> r = U<W>(s - 1) & s;
        set_status(c, szp<W>(r) | if_(s == 0, fl::CF));
        return r;
    }
};

template <int W, template <int> class Op, uint8_t K1> void unary(Cpu& c, const Insn& i) {
    c.set_reg<W>(i.reg[0], Op<W>::apply(c, get<W, K1>(c, i, 1)));
}

// ---- two-source operations: dest = Op(op1, op2) --------------------------------------------------

template <int W> struct Andn {  // dest = ~op1 & op2
    static U<W> apply(Cpu& c, U<W> a, U<W> b) {
        U<W> r = U<W>(~a) & b;
        c.set_lazy(FlagOp::Logic, W, r, a, b);  // SF ZF by result, CF = OF = 0 (+ PF, AF = 0)
        return r;
    }
};
template <int W> struct Bextr {  // op1 = source, op2 = start[7:0] | length[15:8]
    static U<W> apply(Cpu& c, U<W> a, U<W> ctl) {
        unsigned start = ctl & 0xff, len = (ctl >> 8) & 0xff;
        U<W> r = start < kBits<W> ? U<W>(a >> start) : 0;
        if (len < kBits<W>) r &= low_mask<W>(len);
        set_status(c, if_(r == 0, fl::ZF) | if_(parity_even(r), fl::PF) | fl::AF);
        return r;
    }
};
template <int W> struct Bzhi {  // op1 = source, op2[7:0] = index
    static U<W> apply(Cpu& c, U<W> a, U<W> idx) {
        unsigned n = idx & 0xff;
        U<W> r = n < kBits<W> ? U<W>(a & low_mask<W>(n)) : a;
        set_status(c, szp<W>(r) | if_(n >= kBits<W>, fl::CF));
        return r;
    }
};
template <int W> struct Pdep {  // deposit op1's low bits at the set bits of the mask op2
    static U<W> apply(Cpu&, U<W> a, U<W> mask) {
        U<W> r = 0;
        for (U<W> k = 1; mask; mask &= U<W>(mask - 1), k = U<W>(k << 1))
            if (a & k) r |= U<W>(mask & (U<W>(0) - mask));
        return r;
    }
};
template <int W> struct Pext {  // gather op1's bits at the set bits of the mask op2
    static U<W> apply(Cpu&, U<W> a, U<W> mask) {
        U<W> r = 0;
        for (U<W> k = 1; mask; mask &= U<W>(mask - 1), k = U<W>(k << 1))
            if (a & mask & (U<W>(0) - mask)) r |= k;
        return r;
    }
};
template <int W> constexpr unsigned kCountMask = W == 8 ? 63 : 31;
template <int W> struct Shlx {
    static U<W> apply(Cpu&, U<W> a, U<W> n) { return U<W>(a << (n & kCountMask<W>)); }
};
template <int W> struct Shrx {
    static U<W> apply(Cpu&, U<W> a, U<W> n) { return U<W>(a >> (n & kCountMask<W>)); }
};
template <int W> struct Sarx {
    static U<W> apply(Cpu&, U<W> a, U<W> n) { return U<W>(S<W>(a) >> (n & kCountMask<W>)); }
};
template <int W> struct Rorx {  // op2 = imm8
    static U<W> apply(Cpu&, U<W> a, U<W> n) {
        unsigned k = n & kCountMask<W>;
        return k ? U<W>((a >> k) | (a << (kBits<W> - k))) : a;
    }
};

template <int W, template <int> class Op, uint8_t K1, uint8_t K2> void binary(Cpu& c, const Insn& i) {
    U<W> a = get<W, K1>(c, i, 1);
    U<W> b = get<W, K2>(c, i, 2);
    c.set_reg<W>(i.reg[0], Op<W>::apply(c, a, b));
}

// ---- ADCX ADOX: dest += src + carry, carry in and out through CF (ADCX) or OF (ADOX) -------------

template <int W, bool kOverflow, uint8_t SK> void adx(Cpu& c, const Insn& i) {
    U<W> b = get<W, SK>(c, i, 1);
    U<W> a = c.get_reg<W>(i.reg[0]);
    unsigned carry = kOverflow ? c.of() : c.cf();
    U<W> r = U<W>(a + b + carry);
    bool out = carry ? r <= a : r < a;
    c.set_flags(kOverflow ? fl::OF : fl::CF, out ? ~0ull : 0);
    c.set_reg<W>(i.reg[0], r);
}

// ---- selectors -----------------------------------------------------------------------------------

// Widths: 2, 4, 8 for the legacy-encoded forms; the VEX-encoded BMI forms only come as 4 or 8.
template <template <int> class Op, uint8_t K1> Handler unary_w(unsigned w) {
    switch (w) {
        case 2: return &unary<2, Op, K1>;
        case 4: return &unary<4, Op, K1>;
        case 8: return &unary<8, Op, K1>;
        default: return nullptr;
    }
}
template <template <int> class Op> Handler select_unary(const DecodeCtx& d) {
    const Insn& i = d.insn;
    return i.kind[1] == kOpReg ? unary_w<Op, kOpReg>(i.osz) : unary_w<Op, kOpMem>(i.osz);
}

template <template <int> class Op, uint8_t K1, uint8_t K2> Handler binary_w(unsigned w) {
    switch (w) {
        case 4: return &binary<4, Op, K1, K2>;
        case 8: return &binary<8, Op, K1, K2>;
        default: return nullptr;
    }
}
template <template <int> class Op> Handler select_binary(const DecodeCtx& d) {
    const Insn& i = d.insn;
    if (i.kind[1] == kOpMem)
        return i.kind[2] == kOpImm ? binary_w<Op, kOpMem, kOpImm>(i.osz) : binary_w<Op, kOpMem, kOpReg>(i.osz);
    if (i.kind[2] == kOpMem) return binary_w<Op, kOpReg, kOpMem>(i.osz);
    if (i.kind[2] == kOpImm) return binary_w<Op, kOpReg, kOpImm>(i.osz);
    return binary_w<Op, kOpReg, kOpReg>(i.osz);
}

template <bool kReverse> Handler select_bsf(const DecodeCtx& d) {
    const Insn& i = d.insn;
    bool reg = i.kind[1] == kOpReg;
    switch (i.osz) {
        case 2: return reg ? &bsf<2, kReverse, kOpReg> : &bsf<2, kReverse, kOpMem>;
        case 4: return reg ? &bsf<4, kReverse, kOpReg> : &bsf<4, kReverse, kOpMem>;
        case 8: return reg ? &bsf<8, kReverse, kOpReg> : &bsf<8, kReverse, kOpMem>;
        default: return nullptr;
    }
}

template <bool kOverflow> Handler select_adx(const DecodeCtx& d) {
    const Insn& i = d.insn;
    bool reg = i.kind[1] == kOpReg;
    switch (i.osz) {
        case 4: return reg ? &adx<4, kOverflow, kOpReg> : &adx<4, kOverflow, kOpMem>;
        case 8: return reg ? &adx<8, kOverflow, kOpReg> : &adx<8, kOverflow, kOpMem>;
        default: return nullptr;
    }
}

}  // namespace

void register_bit(Registry& r) {
    r.add(ZYDIS_MNEMONIC_BT, select_bt<Bt>);
    r.add(ZYDIS_MNEMONIC_BTS, select_bt<Bts>);
    r.add(ZYDIS_MNEMONIC_BTR, select_bt<Btr>);
    r.add(ZYDIS_MNEMONIC_BTC, select_bt<Btc>);
    r.add(ZYDIS_MNEMONIC_BSF, select_bsf<false>);
    r.add(ZYDIS_MNEMONIC_BSR, select_bsf<true>);
    r.add(ZYDIS_MNEMONIC_TZCNT, select_unary<Tzcnt>);
    r.add(ZYDIS_MNEMONIC_LZCNT, select_unary<Lzcnt>);
    r.add(ZYDIS_MNEMONIC_POPCNT, select_unary<Popcnt>);
    r.add(ZYDIS_MNEMONIC_BLSI, select_unary<Blsi>);
    r.add(ZYDIS_MNEMONIC_BLSMSK, select_unary<Blsmsk>);
    r.add(ZYDIS_MNEMONIC_BLSR, select_unary<Blsr>);
    r.add(ZYDIS_MNEMONIC_ANDN, select_binary<Andn>);
    r.add(ZYDIS_MNEMONIC_BEXTR, select_binary<Bextr>);
    r.add(ZYDIS_MNEMONIC_BZHI, select_binary<Bzhi>);
    r.add(ZYDIS_MNEMONIC_PDEP, select_binary<Pdep>);
    r.add(ZYDIS_MNEMONIC_PEXT, select_binary<Pext>);
    r.add(ZYDIS_MNEMONIC_SHLX, select_binary<Shlx>);
    r.add(ZYDIS_MNEMONIC_SHRX, select_binary<Shrx>);
    r.add(ZYDIS_MNEMONIC_SARX, select_binary<Sarx>);
    r.add(ZYDIS_MNEMONIC_RORX, select_binary<Rorx>);
    r.add(ZYDIS_MNEMONIC_ADCX, select_adx<false>);
    r.add(ZYDIS_MNEMONIC_ADOX, select_adx<true>);
}

}  // namespace m86::cpu
