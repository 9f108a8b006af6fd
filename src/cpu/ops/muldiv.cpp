// Multiply and divide: MUL, IMUL (one, two and three operands), DIV, IDIV, MULX (BMI2).
//
// One width-templated function per operation; the source operand's kind (register/memory) is a
// template parameter so the register forms do no kind checks.
//
// SDM Vol. 2 "MUL", "IMUL", "DIV", "IDIV", "MULX":
//  - MUL/IMUL define only CF and OF (= the product does not fit the destination); SF, ZF, AF, PF
//    are undefined. AMD Zen 4 leaves them unchanged (measured), but keeping them would force the
//    pending lazy flags to be materialised on every multiply (162 -> 247 MIPS on an IMUL loop), so
//    we set SF ZF PF from the low half of the product and AF = 0 (QEMU's model): without overflow
//    that is exactly FlagOp::Logic, which costs a few stores.
//  - DIV/IDIV leave all six flags undefined. Zen 4 keeps CF and OF and sets PF=0 AF=1 ZF=0 SF=0
//    (measured on random operands); we do the same.
//  - DIV/IDIV raise #DE for a zero divisor and for a quotient that does not fit; the check comes
//    before any register is written, so the fault leaves the state at the instruction's start.
//  - MULX writes the low half first, then the high half: with both destinations the same register
//    it holds the high half. No flags.
#include "cpu/decode.h"
#include "cpu/mem.h"

#include <type_traits>

namespace m86::cpu {
namespace {

template <int W> constexpr unsigned kBits = 8 * W;

// Flags of a multiply whose low half (the destination) is `lo`; `ovf`: the product did not fit.
template <int W> inline void mul_flags(Cpu& c, U<W> lo, bool ovf) {
    if (!ovf) [[likely]] {
        c.set_lazy(FlagOp::Logic, W, lo, lo, lo);
        return;
    }
    uint64_t f = fl::CF | fl::OF | (lo == 0 ? fl::ZF : 0) | (S<W>(lo) < 0 ? fl::SF : 0) | (parity_even(lo) ? fl::PF : 0);
    c.s.rflags = (c.s.rflags & ~fl::kArith) | f;
    c.lf.set_none();
}

// The accumulator pair: AL/AH (as AX) for bytes, rDX:rAX otherwise.
template <int W> inline void put_pair(Cpu& c, U<W> lo, U<W> hi) {
    if constexpr (W == 1) {
        c.set_reg<2>(RAX, uint16_t(lo | (hi << 8)));
    } else {
        c.set_reg<W>(RAX, lo);
        c.set_reg<W>(RDX, hi);
    }
}
template <int W> inline U<W> acc_hi(const Cpu& c) {
    if constexpr (W == 1) return uint8_t(c.s.gpr[RAX] >> 8);
    else return c.get_reg<W>(RDX);
}

// ---- one-operand MUL/IMUL: rDX:rAX = rAX * src ---------------------------------------------------

template <int W, uint8_t SK> void mul1(Cpu& c, const Insn& i) {
    U<W> b = get<W, SK>(c, i, 0);
    U<W> a = c.get_reg<W>(RAX);
    U<W> lo, hi;
    if constexpr (W == 8) {
        unsigned __int128 p = (unsigned __int128)a * b;
        lo = U<W>(p);
        hi = U<W>(p >> 64);
    } else {
        uint64_t p = uint64_t(a) * b;
        lo = U<W>(p);
        hi = U<W>(p >> kBits<W>);
    }
    put_pair<W>(c, lo, hi);
    mul_flags<W>(c, lo, hi != 0);
}

template <int W, uint8_t SK> void imul1(Cpu& c, const Insn& i) {
    S<W> b = S<W>(get<W, SK>(c, i, 0));
    S<W> a = S<W>(c.get_reg<W>(RAX));
    U<W> lo, hi;
    if constexpr (W == 8) {
        __int128 p = (__int128)a * b;
        lo = U<W>(p);
        hi = U<W>((unsigned __int128)p >> 64);
    } else {
        int64_t p = int64_t(a) * b;
        lo = U<W>(p);
        hi = U<W>(uint64_t(p) >> kBits<W>);
    }
    put_pair<W>(c, lo, hi);
    // Fits iff the high half is the sign extension of the low half.
    mul_flags<W>(c, lo, hi != U<W>(S<W>(lo) < 0 ? ~U<W>(0) : 0));
}

// ---- two- and three-operand IMUL: dest = a * b, truncated ---------------------------------------

template <int W> inline U<W> imul_trunc(Cpu& c, U<W> a, U<W> b) {
    bool ovf;
    U<W> r;
    if constexpr (W == 8) {
        int64_t p;
        ovf = __builtin_mul_overflow(int64_t(a), int64_t(b), &p);
        r = U<W>(p);
    } else {
        int64_t p = int64_t(S<W>(a)) * S<W>(b);
        r = U<W>(p);
        ovf = p != int64_t(S<W>(r));
    }
    mul_flags<W>(c, r, ovf);
    return r;
}

// imul r, r/m (kThree = false) or imul r, r/m, imm (kThree = true; imm is sign-extended).
template <int W, uint8_t SK, bool kThree> void imul_n(Cpu& c, const Insn& i) {
    U<W> a = kThree ? U<W>(i.imm) : c.get_reg<W>(i.reg[0]);
    U<W> b = get<W, SK>(c, i, 1);
    c.set_reg<W>(i.reg[0], imul_trunc<W>(c, a, b));
}

// ---- DIV/IDIV: rAX = rDX:rAX / src, rDX = remainder ---------------------------------------------

// The flag values DIV/IDIV leave on Zen 4 (see the top of the file).
inline void div_flags(Cpu& c) {
    uint64_t f = fl::AF | (c.cf() ? fl::CF : 0) | (c.of() ? fl::OF : 0);  // two flags, not all six
    c.s.rflags = (c.s.rflags & ~fl::kArith) | f;
    c.lf.set_none();
}

template <int W, uint8_t SK> void div(Cpu& c, const Insn& i) {
    U<W> d = get<W, SK>(c, i, 0);
    U<W> hi = acc_hi<W>(c);
    U<W> lo = c.get_reg<W>(RAX);
    // The quotient fits in W bytes iff hi < d (this also catches d == 0).
    if (hi >= d) c.raise_fault(kDE);
    U<W> q, r;
    if constexpr (W == 8) {
        if (hi == 0) {
            q = lo / d;
            r = lo % d;
        } else {
            unsigned __int128 n = ((unsigned __int128)hi << 64) | lo;
            q = U<W>(n / d);
            r = U<W>(n % d);
        }
    } else {
        uint64_t n = (uint64_t(hi) << kBits<W>) | lo;
        q = U<W>(n / d);
        r = U<W>(n % d);
    }
    put_pair<W>(c, q, r);
    div_flags(c);
}

template <int W, uint8_t SK> void idiv(Cpu& c, const Insn& i) {
    S<W> d = S<W>(get<W, SK>(c, i, 0));
    U<W> hi = acc_hi<W>(c);
    U<W> lo = c.get_reg<W>(RAX);
    if (d == 0) c.raise_fault(kDE);
    // Divide magnitudes (no signed overflow is possible in host arithmetic), then check that the
    // signed quotient fits: -2^(n-1) <= q <= 2^(n-1) - 1 (SDM "IDIV", Operation).
    using UW = std::conditional_t<W == 8, unsigned __int128, uint64_t>;
    constexpr unsigned kNBits = 2 * kBits<W>;  // dividend width
    auto trunc = [](UW v) -> UW {
        if constexpr (kNBits < 8 * sizeof(UW)) return v & ((UW(1) << kNBits) - 1);
        else return v;
    };
    bool nneg = S<W>(hi) < 0;
    UW n = (UW(hi) << kBits<W>) | lo;
    UW nmag = nneg ? trunc(UW(0) - n) : n;  // |-2^(2n-1)| stays exact: it is unsigned
    uint64_t dmag = d < 0 ? uint64_t(0) - uint64_t(int64_t(d)) : uint64_t(d);
    bool qneg = nneg != (d < 0);
    // The magnitude must fit in W bytes first (also keeps the 128/64 division cheap to reason about).
    if ((nmag >> kBits<W>) >= dmag) c.raise_fault(kDE);
    uint64_t qmag, rmag;
    if constexpr (W == 8) {
        if ((nmag >> 64) == 0) {
            qmag = uint64_t(nmag) / dmag;
            rmag = uint64_t(nmag) % dmag;
        } else {
            qmag = uint64_t(nmag / dmag);
            rmag = uint64_t(nmag % dmag);
        }
    } else {
        qmag = uint64_t(nmag) / dmag;
        rmag = uint64_t(nmag) % dmag;
    }
    if (qmag > (qneg ? kSign<W> : kSign<W> - 1)) c.raise_fault(kDE);
    U<W> q = U<W>(qneg ? uint64_t(0) - qmag : qmag);
    U<W> r = U<W>(nneg ? uint64_t(0) - rmag : rmag);  // the remainder has the dividend's sign
    put_pair<W>(c, q, r);
    div_flags(c);
}

// ---- MULX r_hi, r_lo, r/m (source 2 = rDX); W = 4 or 8 -----------------------------------------

template <int W, uint8_t SK> void mulx(Cpu& c, const Insn& i) {
    U<W> b = get<W, SK>(c, i, 2);
    U<W> a = c.get_reg<W>(RDX);
    U<W> lo, hi;
    if constexpr (W == 8) {
        unsigned __int128 p = (unsigned __int128)a * b;
        lo = U<W>(p);
        hi = U<W>(p >> 64);
    } else {
        uint64_t p = uint64_t(a) * b;
        lo = U<W>(p);
        hi = U<W>(p >> 32);
    }
    c.set_reg<W>(i.reg[1], lo);
    c.set_reg<W>(i.reg[0], hi);
}

// ---- selectors -----------------------------------------------------------------------------------

#define M86_BY_WIDTH_KIND(fn, w, k)                                                       \
    ((k) == kOpReg ? M86_BY_WIDTH_K(fn, w, kOpReg) : M86_BY_WIDTH_K(fn, w, kOpMem))
#define M86_BY_WIDTH_K(fn, w, K) \
    ((w) == 1 ? &fn<1, K> : (w) == 2 ? &fn<2, K> : (w) == 4 ? &fn<4, K> : &fn<8, K>)

Handler select_mul(const DecodeCtx& d) { return M86_BY_WIDTH_KIND(mul1, d.insn.osz, d.insn.kind[0]); }
Handler select_div(const DecodeCtx& d) { return M86_BY_WIDTH_KIND(div, d.insn.osz, d.insn.kind[0]); }
Handler select_idiv(const DecodeCtx& d) { return M86_BY_WIDTH_KIND(idiv, d.insn.osz, d.insn.kind[0]); }

template <uint8_t SK, bool kThree> Handler imul_n_w(unsigned w) {
    switch (w) {
        case 2: return &imul_n<2, SK, kThree>;
        case 4: return &imul_n<4, SK, kThree>;
        case 8: return &imul_n<8, SK, kThree>;
        default: return nullptr;
    }
}

Handler select_imul(const DecodeCtx& d) {
    const Insn& i = d.insn;
    if (i.kind[1] == kOpNone) return M86_BY_WIDTH_KIND(imul1, i.osz, i.kind[0]);
    bool three = i.kind[2] == kOpImm;
    if (i.kind[1] == kOpReg) return three ? imul_n_w<kOpReg, true>(i.osz) : imul_n_w<kOpReg, false>(i.osz);
    return three ? imul_n_w<kOpMem, true>(i.osz) : imul_n_w<kOpMem, false>(i.osz);
}

Handler select_mulx(const DecodeCtx& d) {
    const Insn& i = d.insn;
    bool reg = i.kind[2] == kOpReg;
    if (i.osz == 8) return reg ? &mulx<8, kOpReg> : &mulx<8, kOpMem>;
    if (i.osz == 4) return reg ? &mulx<4, kOpReg> : &mulx<4, kOpMem>;
    return nullptr;
}

#undef M86_BY_WIDTH_KIND
#undef M86_BY_WIDTH_K

}  // namespace

void register_muldiv(Registry& r) {
    r.add(ZYDIS_MNEMONIC_MUL, select_mul);
    r.add(ZYDIS_MNEMONIC_IMUL, select_imul);
    r.add(ZYDIS_MNEMONIC_DIV, select_div);
    r.add(ZYDIS_MNEMONIC_IDIV, select_idiv);
    r.add(ZYDIS_MNEMONIC_MULX, select_mulx);
}

}  // namespace m86::cpu
