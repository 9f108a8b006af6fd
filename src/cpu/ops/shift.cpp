// Shifts and rotates: SHL/SAL SHR SAR ROL ROR RCL RCR (by 1, CL, imm8), SHLD SHRD (imm8, CL).
//
// One width-templated semantic function per operation (Op<W>::apply, called only with a non-zero
// masked count) and one handler template per operand form: destination register/memory x count
// immediate/CL. The by-1 encodings (D0/D1) reach the immediate form: Zydis gives their implicit 1
// as an immediate operand.
//
// SDM Vol. 2B "SAL/SAR/SHL/SHR", "RCL/RCR/ROL/ROR", "SHLD", "SHRD":
//  - the count is masked to 5 bits (6 with 64-bit operands); a zero masked count changes no flag,
//    but a register destination is still written (a 32-bit one is zero-extended: the host does it);
//  - RCL/RCR rotate through CF over 9/17/33/65 bits (count mod 9 and mod 17 for 8/16-bit);
//  - OF is defined for a count of 1 only, AF is undefined for the shifts. We give the values an
//    AMD Zen 4 gives (measured): the count-1 OF formula for every count (SHL/ROL/RCL/SHLD:
//    MSB(result) ^ CF; SHR/ROR/RCR/SHRD: MSB(result) ^ MSB-1(result); SAR: 0) and AF = 1 for
//    SHL/SHR/SAR/SHLD/SHRD. Rotates write only CF and OF.
//  - SHLD/SHRD with a 16-bit operand and a count above 16 have undefined results; we give Zen 4's
//    (the source is repeated: dest:src:src for SHLD, src:src:dest for SHRD) and flags (CF = 0;
//    OF: SHLD takes the "MSB" from the shifted destination alone, which makes OF = CF from 16 up).
#include "cpu/decode.h"
#include "cpu/mem.h"

#include <type_traits>

namespace m86::cpu {
namespace {

// Write all six status flags at once: nothing of the lazy record survives, so no need to
// materialise it first.
inline void set_status(Cpu& c, uint64_t bits) {
    c.s.rflags = (c.s.rflags & ~fl::kArith) | bits;
    c.lf.set_none();
}

template <int W> constexpr unsigned kBits = 8 * W;
template <int W> constexpr unsigned kCountMask = W == 8 ? 63 : 31;

template <int W> inline bool msb(uint64_t v) { return (v >> (kBits<W> - 1)) & 1; }
template <int W> inline bool msb2(uint64_t v) { return (v >> (kBits<W> - 2)) & 1; }

// SF, ZF, PF of a W-byte result.
template <int W> inline uint64_t szp(U<W> r) {
    return (r == 0 ? fl::ZF : 0) | (msb<W>(r) ? fl::SF : 0) | (parity_even(r) ? fl::PF : 0);
}

// ---- semantics: apply(cpu, value, n) with n = masked count, 1 <= n <= kCountMask ----------------

template <int W> struct Shl {
    static U<W> apply(Cpu& c, U<W> a, unsigned n) {
        uint64_t t = uint64_t(a) << (n - 1);  // n - 1 <= 62: defined for every width
        bool cf = msb<W>(t);
        U<W> r = U<W>(t << 1);
        set_status(c, szp<W>(r) | fl::AF | (cf ? fl::CF : 0) | (msb<W>(r) != cf ? fl::OF : 0));
        return r;
    }
};
template <int W> struct Shr {
    static U<W> apply(Cpu& c, U<W> a, unsigned n) {
        uint64_t t = uint64_t(a) >> (n - 1);
        bool cf = t & 1;
        U<W> r = U<W>(t >> 1);
        set_status(c, szp<W>(r) | fl::AF | (cf ? fl::CF : 0) | (msb<W>(r) != msb2<W>(r) ? fl::OF : 0));
        return r;
    }
};
template <int W> struct Sar {
    static U<W> apply(Cpu& c, U<W> a, unsigned n) {
        int64_t t = int64_t(S<W>(a)) >> (n - 1);
        bool cf = t & 1;
        U<W> r = U<W>(t >> 1);
        set_status(c, szp<W>(r) | fl::AF | (cf ? fl::CF : 0));
        return r;
    }
};

template <int W> inline U<W> rotl(U<W> a, unsigned k) {  // 0 <= k < kBits
    return k ? U<W>((a << k) | (a >> (kBits<W> - k))) : a;
}
template <int W> inline U<W> rotr(U<W> a, unsigned k) {
    return k ? U<W>((a >> k) | (a << (kBits<W> - k))) : a;
}

template <int W> struct Rol {
    static U<W> apply(Cpu& c, U<W> a, unsigned n) {
        U<W> r = rotl<W>(a, n & (kBits<W> - 1));
        bool cf = r & 1;
        c.set_flags(fl::CF | fl::OF, (cf ? fl::CF : 0) | (msb<W>(r) != cf ? fl::OF : 0));
        return r;
    }
};
template <int W> struct Ror {
    static U<W> apply(Cpu& c, U<W> a, unsigned n) {
        U<W> r = rotr<W>(a, n & (kBits<W> - 1));
        c.set_flags(fl::CF | fl::OF, (msb<W>(r) ? fl::CF : 0) | (msb<W>(r) != msb2<W>(r) ? fl::OF : 0));
        return r;
    }
};

// RCL/RCR rotate the (kBits+1)-bit value CF:a. Wide<W> holds it.
template <int W> using Wide = std::conditional_t<W == 8, unsigned __int128, uint64_t>;

template <int W> inline unsigned rc_count(unsigned n) {
    if constexpr (W == 1) return n % 9;
    else if constexpr (W == 2) return n % 17;
    else return n;  // already < kBits + 1
}

template <int W> struct Rcl {
    static U<W> apply(Cpu& c, U<W> a, unsigned n) {
        constexpr unsigned m = kBits<W> + 1;
        unsigned k = rc_count<W>(n);
        Wide<W> v = (Wide<W>(c.cf()) << kBits<W>) | a;
        if (k) v = ((v << k) | (v >> (m - k))) & ((Wide<W>(1) << m) - 1);
        U<W> r = U<W>(v);
        bool cf = (v >> kBits<W>) & 1;
        c.set_flags(fl::CF | fl::OF, (cf ? fl::CF : 0) | (msb<W>(r) != cf ? fl::OF : 0));
        return r;
    }
};
template <int W> struct Rcr {
    static U<W> apply(Cpu& c, U<W> a, unsigned n) {
        constexpr unsigned m = kBits<W> + 1;
        unsigned k = rc_count<W>(n);
        Wide<W> v = (Wide<W>(c.cf()) << kBits<W>) | a;
        if (k) v = ((v >> k) | (v << (m - k))) & ((Wide<W>(1) << m) - 1);
        U<W> r = U<W>(v);
        bool cf = (v >> kBits<W>) & 1;
        c.set_flags(fl::CF | fl::OF, (cf ? fl::CF : 0) | (msb<W>(r) != msb2<W>(r) ? fl::OF : 0));
        return r;
    }
};

// Double-precision shifts: apply(cpu, dest, src, n).
template <int W> struct Shld {
    static U<W> apply(Cpu& c, U<W> a, U<W> b, unsigned n) {
        U<W> r;
        bool cf;
        if constexpr (W == 2) {
            uint64_t v = (uint64_t(a) << 32) | (uint64_t(b) << 16) | b;
            r = U<W>(v >> (32 - n));
            cf = n <= 16 && ((a >> (16 - n)) & 1);
        } else {
            r = U<W>((a << n) | (b >> (kBits<W> - n)));  // n < kBits for 32/64
            cf = (a >> (kBits<W> - n)) & 1;
        }
        // Zen 4 takes OF's "MSB" from the shifted destination alone, so a 16-bit count of 16
        // gives OF = CF; for smaller counts that bit is the result's MSB.
        bool top = (W == 2 && n >= 16) ? false : msb<W>(r);
        set_status(c, szp<W>(r) | fl::AF | (cf ? fl::CF : 0) | (top != cf ? fl::OF : 0));
        return r;
    }
};
template <int W> struct Shrd {
    static U<W> apply(Cpu& c, U<W> a, U<W> b, unsigned n) {
        U<W> r;
        bool cf;
        if constexpr (W == 2) {
            uint64_t v = (uint64_t(b) << 32) | (uint64_t(b) << 16) | a;
            r = U<W>(v >> n);
            cf = n <= 16 && ((a >> (n - 1)) & 1);
        } else {
            r = U<W>((a >> n) | (b << (kBits<W> - n)));
            cf = (a >> (n - 1)) & 1;
        }
        set_status(c, szp<W>(r) | fl::AF | (cf ? fl::CF : 0) | (msb<W>(r) != msb2<W>(r) ? fl::OF : 0));
        return r;
    }
};

// ---- operand-form handlers -----------------------------------------------------------------------

template <int W, uint8_t CK> inline unsigned count_of(const Cpu& c, const Insn& i) {
    if constexpr (CK == kOpImm) return unsigned(i.imm) & kCountMask<W>;
    else return unsigned(c.s.gpr[RCX]) & kCountMask<W>;
}

template <int W, template <int> class Op, uint8_t DK, uint8_t CK> void shift(Cpu& c, const Insn& i) {
    unsigned n = count_of<W, CK>(c, i);
    if constexpr (DK == kOpReg) {
        U<W> a = c.get_reg<W>(i.reg[0]);
        if (n) a = Op<W>::apply(c, a, n);
        c.set_reg<W>(i.reg[0], a);
    } else {
        rmw<U<W>>(c, lin(c, i), [&](U<W> a) { return n ? Op<W>::apply(c, a, n) : a; });
    }
}

template <int W, template <int> class Op, uint8_t DK, uint8_t CK> void dshift(Cpu& c, const Insn& i) {
    unsigned n = count_of<W, CK>(c, i);
    U<W> b = c.get_reg<W>(i.reg[1]);
    if constexpr (DK == kOpReg) {
        U<W> a = c.get_reg<W>(i.reg[0]);
        if (n) a = Op<W>::apply(c, a, b, n);
        c.set_reg<W>(i.reg[0], a);
    } else {
        rmw<U<W>>(c, lin(c, i), [&](U<W> a) { return n ? Op<W>::apply(c, a, b, n) : a; });
    }
}

template <template <int> class Op, uint8_t DK, uint8_t CK> Handler shift_w(unsigned w) {
    switch (w) {
        case 1: return &shift<1, Op, DK, CK>;
        case 2: return &shift<2, Op, DK, CK>;
        case 4: return &shift<4, Op, DK, CK>;
        default: return &shift<8, Op, DK, CK>;
    }
}

template <template <int> class Op> Handler select_shift(const DecodeCtx& d) {
    const Insn& i = d.insn;
    bool imm = i.kind[1] == kOpImm;  // imm8 or the implicit 1; otherwise CL
    if (i.kind[0] == kOpReg)
        return imm ? shift_w<Op, kOpReg, kOpImm>(i.osz) : shift_w<Op, kOpReg, kOpReg>(i.osz);
    return imm ? shift_w<Op, kOpMem, kOpImm>(i.osz) : shift_w<Op, kOpMem, kOpReg>(i.osz);
}

template <template <int> class Op, uint8_t DK, uint8_t CK> Handler dshift_w(unsigned w) {
    switch (w) {
        case 2: return &dshift<2, Op, DK, CK>;
        case 4: return &dshift<4, Op, DK, CK>;
        case 8: return &dshift<8, Op, DK, CK>;
        default: return nullptr;
    }
}

template <template <int> class Op> Handler select_dshift(const DecodeCtx& d) {
    const Insn& i = d.insn;
    bool imm = i.kind[2] == kOpImm;
    if (i.kind[0] == kOpReg)
        return imm ? dshift_w<Op, kOpReg, kOpImm>(i.osz) : dshift_w<Op, kOpReg, kOpReg>(i.osz);
    return imm ? dshift_w<Op, kOpMem, kOpImm>(i.osz) : dshift_w<Op, kOpMem, kOpReg>(i.osz);
}

}  // namespace

void register_shift(Registry& r) {
    r.add(ZYDIS_MNEMONIC_SHL, select_shift<Shl>);  // also /6 (SAL): Zydis names both SHL
    r.add(ZYDIS_MNEMONIC_SHR, select_shift<Shr>);
    r.add(ZYDIS_MNEMONIC_SAR, select_shift<Sar>);
    r.add(ZYDIS_MNEMONIC_ROL, select_shift<Rol>);
    r.add(ZYDIS_MNEMONIC_ROR, select_shift<Ror>);
    r.add(ZYDIS_MNEMONIC_RCL, select_shift<Rcl>);
    r.add(ZYDIS_MNEMONIC_RCR, select_shift<Rcr>);
    r.add(ZYDIS_MNEMONIC_SHLD, select_dshift<Shld>);
    r.add(ZYDIS_MNEMONIC_SHRD, select_dshift<Shrd>);
}

}  // namespace m86::cpu
