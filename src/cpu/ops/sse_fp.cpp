// SSE/SSE2 floating point: arithmetic, min/max, compares, approximations and conversions.
//
// The arithmetic is the portable softfloat (cpu/softfloat.h), driven by MXCSR: rounding control,
// DAZ, FTZ and the exception masks. Each instruction computes every lane into a copy of the
// destination with one Env, so the flags of all lanes are accumulated before finish() decides
// (SDM Vol. 1, 11.5.1 and 11.5.2):
//  - no unmasked exception: the flags are ORed into MXCSR (sticky) and the destination is written;
//  - an unmasked pre-computation exception (IE, DE, ZE) in any lane: only the pre-computation flags
//    are recorded, the destination is not written, #XM (CR4.OSXMMEXCPT = 1) or #UD is raised;
//  - otherwise an unmasked post-computation exception (OE, UE, PE): all flags are recorded, the
//    destination is not written, #XM/#UD.
// RCPPS/RCPSS/RSQRTPS/RSQRTSS are approximations whose exact values differ between vendors; the SDM
// only bounds the relative error by 1.5 * 2^-12. micro86 returns the correctly rounded reciprocal
// (square root) instead, which is inside that bound, with the SDM's special cases (0 and
// denormals -> infinity, tiny results -> 0, no exceptions, MXCSR ignored).
#include "cpu/ops/sse.h"
#include "cpu/softfloat.h"

namespace m86::cpu {
namespace {

using namespace sse;

// MXCSR fields (SDM Vol. 1, 10.2.3).
constexpr uint32_t kMxDaz = 1u << 6, kMxFtz = 1u << 15;

inline sf::Env env_of(const Cpu& c) {
    sf::Env e;
    uint32_t m = c.s.mxcsr;
    e.round = sf::Round((m >> 13) & 3);
    e.daz = m & kMxDaz;
    e.ftz = m & kMxFtz;
    e.masks = uint8_t((m >> 7) & 0x3f);
    e.flags = 0;
    return e;
}

// Record the accumulated flags; raise #XM/#UD (before the caller writes anything) when one of them
// is unmasked.
inline void finish(Cpu& c, const sf::Env& e) {
    uint8_t f = e.flags;
    if (f == 0) [[likely]] return;
    uint8_t unmasked = f & ~e.masks & 0x3f;
    if (unmasked) {
        constexpr uint8_t kPre = sf::kInvalid | sf::kDenormal | sf::kDivZero;
        if (unmasked & kPre) f &= kPre;
        c.s.mxcsr |= f;
        raise_simd_fp(c);
    }
    c.s.mxcsr |= f;
}

// ---- element formats -----------------------------------------------------------------------------
struct F32 {
    using T = uint32_t;
    static constexpr int kLanes = 4;
    static uint32_t get(const Xmm& x, int k) { return x.d[k]; }
    static void set(Xmm& x, int k, uint32_t v) { x.d[k] = v; }
    static sf::Relation cmp(T a, T b, bool sig, sf::Env& e) { return sf::f32_compare(a, b, sig, e); }
    static constexpr T kSign = 0x80000000u;
    static bool is_denormal(T v) { return (v & 0x7f800000u) == 0 && (v & 0x007fffffu) != 0; }
};
struct F64 {
    using T = uint64_t;
    static constexpr int kLanes = 2;
    static uint64_t get(const Xmm& x, int k) { return x.q[k]; }
    static void set(Xmm& x, int k, uint64_t v) { x.q[k] = v; }
    static sf::Relation cmp(T a, T b, bool sig, sf::Env& e) { return sf::f64_compare(a, b, sig, e); }
    static constexpr T kSign = 1ull << 63;
    static bool is_denormal(T v) { return (v & 0x7ff0000000000000ull) == 0 && (v & 0x000fffffffffffffull) != 0; }
};

// MINxx/MAXxx (SDM MINPS/MAXPS): the second source is returned when either operand is a NaN or both
// are zeros (of any sign); any NaN operand, even a QNaN, raises IE; denormals raise DE. With DAZ the
// operands are read as zeros, so a denormal result comes back as a signed zero (as on hardware).
template <class F, bool Max> typename F::T minmax(typename F::T a, typename F::T b, sf::Env& e) {
    sf::Relation r = F::cmp(a, b, true, e);
    typename F::T v = r == (Max ? sf::kGreater : sf::kLess) ? a : b;
    if (e.daz && F::is_denormal(v)) v &= F::kSign;
    return v;
}

// ---- lane-wise operations ------------------------------------------------------------------------

// d[k] = Fn(d[k], s[k]) on all lanes (Packed) or lane 0.
template <class F, typename F::T (*Fn)(typename F::T, typename F::T, sf::Env&), bool Packed> struct Bin {
    template <int VB> static void apply(Cpu& c, Xmm& d, const Xmm& s, uint8_t) {
        sf::Env e = env_of(c);
        for (int k = 0; k < (Packed ? F::kLanes : 1); k++) F::set(d, k, Fn(F::get(d, k), F::get(s, k), e));
        finish(c, e);
    }
};
// d[k] = Fn(s[k]).
template <class F, typename F::T (*Fn)(typename F::T, sf::Env&), bool Packed> struct Un {
    template <int VB> static void apply(Cpu& c, Xmm& d, const Xmm& s, uint8_t) {
        sf::Env e = env_of(c);
        for (int k = 0; k < (Packed ? F::kLanes : 1); k++) F::set(d, k, Fn(F::get(s, k), e));
        finish(c, e);
    }
};

// CMPPS/CMPPD/CMPSS/CMPSD with predicates 0-7 (imm8 bits 3-7 ignored): all-ones or zero per lane.
// LT, LE, NLT, NLE are signaling (IE for QNaN too); EQ, UNORD, NEQ, ORD are quiet.
template <class F, bool Packed> struct Cmp {
    template <int VB> static void apply(Cpu& c, Xmm& d, const Xmm& s, uint8_t imm) {
        sf::Env e = env_of(c);
        unsigned pred = imm & 7;
        bool sig = pred == 1 || pred == 2 || pred == 5 || pred == 6;
        for (int k = 0; k < (Packed ? F::kLanes : 1); k++) {
            sf::Relation r = F::cmp(F::get(d, k), F::get(s, k), sig, e);
            bool t;
            switch (pred) {
                case 0: t = r == sf::kEqual; break;
                case 1: t = r == sf::kLess; break;
                case 2: t = r == sf::kLess || r == sf::kEqual; break;
                case 3: t = r == sf::kUnordered; break;
                case 4: t = r != sf::kEqual; break;
                case 5: t = r != sf::kLess; break;
                case 6: t = !(r == sf::kLess || r == sf::kEqual); break;
                default: t = r != sf::kUnordered; break;
            }
            F::set(d, k, t ? typename F::T(~typename F::T(0)) : typename F::T(0));
        }
        finish(c, e);
    }
};

// ---- approximations ------------------------------------------------------------------------------
// Correctly rounded (round to nearest) values, ignoring MXCSR; see the file comment.
uint32_t rcp32(uint32_t x) {
    uint32_t sign = x & 0x80000000u, exp = (x >> 23) & 0xff;
    if (sf::f32_is_nan(x)) return x | 0x00400000u;
    if (exp == 0) return sign | 0x7f800000u;  // +-0 and denormals -> +-infinity
    if (exp == 0xff) return sign;             // +-infinity -> +-0
    sf::Env e;
    uint32_t r = sf::f32_div(0x3f800000u, x, e);
    if (((r >> 23) & 0xff) == 0) return sign;  // tiny results are flushed to zero
    return r;
}
uint32_t rsqrt32(uint32_t x) {
    uint32_t sign = x & 0x80000000u, exp = (x >> 23) & 0xff;
    if (sf::f32_is_nan(x)) return x | 0x00400000u;
    if (exp == 0) return sign | 0x7f800000u;  // +-0 and denormals -> +-infinity
    if (sign) return sf::kF32DefaultNaN;      // negative -> QNaN indefinite
    if (exp == 0xff) return 0;                // +infinity -> +0
    sf::Env e;
    uint64_t r = sf::f64_div(0x3ff0000000000000ull, sf::f64_sqrt(sf::f32_to_f64(x, e), e), e);
    return sf::f64_to_f32(r, e);
}
template <uint32_t (*Fn)(uint32_t), bool Packed> struct Approx {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) {
        for (int k = 0; k < (Packed ? 4 : 1); k++) d.d[k] = Fn(s.d[k]);
    }
};

// ---- conversions ---------------------------------------------------------------------------------
// Each converts source lanes [0, N) to destination lanes [0, N); Clear: destination lanes from N up
// to the end of the register are zeroed (CVTPD2PS, CVTPD2DQ), else they keep their value.
template <class Dst, class Src, int N, bool Clear, auto Fn> struct Cvt {
    template <int VB> static void apply(Cpu& c, Xmm& d, const Xmm& s, uint8_t) {
        sf::Env e = env_of(c);
        typename Dst::T r[4];
        for (int k = 0; k < N; k++) r[k] = typename Dst::T(Fn(typename Src::T(Src::get(s, k)), e));
        finish(c, e);
        if constexpr (Clear) d = Xmm();
        for (int k = 0; k < N; k++) Dst::set(d, k, r[k]);
    }
};
// Integer lane formats for conversions.
struct I32 {
    using T = int32_t;
    static uint32_t get(const Xmm& x, int k) { return x.d[k]; }
    static void set(Xmm& x, int k, int32_t v) { x.d[k] = uint32_t(v); }
};
struct I64 {
    using T = int64_t;
    static uint64_t get(const Xmm& x, int k) { return x.q[k]; }
    static void set(Xmm& x, int k, int64_t v) { x.q[k] = uint64_t(v); }
};

// Float -> GPR (CVTSS2SI, CVTTSD2SI...): vtog operation returning the integer.
template <class Src, auto Fn> struct CvtToGpr {
    template <uint8_t SK> static uint64_t apply(Cpu& c, const Xmm& s, uint8_t) {
        sf::Env e = env_of(c);
        auto r = Fn(typename Src::T(Src::get(s, 0)), e);
        finish(c, e);
        return uint64_t(int64_t(r));
    }
};

// COMISS/COMISD (signaling) and UCOMISS/UCOMISD (quiet): ZF/PF/CF from the relation, OF/SF/AF clear
// (SDM COMISS: unordered 111, greater 000, less 001, equal 100). No flag changes on #XM.
template <class F, bool Sig, uint8_t SK, int MB> void comis(Cpu& c, const Insn& i) {
    check_sse(c);
    Xmm s = fetch<SK, MB, false>(c, i, 1);
    sf::Env e = env_of(c);
    sf::Relation r = F::cmp(F::get(c.s.xmm[i.reg[0]], 0), F::get(s, 0), Sig, e);
    finish(c, e);
    uint64_t f = r == sf::kUnordered ? (fl::ZF | fl::PF | fl::CF)
                 : r == sf::kLess    ? fl::CF
                 : r == sf::kEqual   ? fl::ZF
                                     : 0;
    c.set_flags(fl::kArith, f);
}

// ---- selectors -----------------------------------------------------------------------------------

// Packed (xmm, xmm/m128 aligned) or scalar (xmm, xmm/m32|m64) forms.
template <class Op> Handler sel_packed(const DecodeCtx& d) { return sel_vop<Op, vf::kXX, 16>(d); }
template <class Op, int MB> Handler sel_scalar(const DecodeCtx& d) { return sel_vop<Op, vf::kXX, MB>(d); }

// CVTSI2SS/CVTSI2SD xmm, r/m32 or r/m64: the integer width picks the operation.
template <class Op32, class Op64> Handler sel_from_int(const DecodeCtx& d) {
    uint8_t sk = op_class(d.ops[1]);
    bool w64 = d.ops[1].size == 64;
    if (op_class(d.ops[0]) != kX) return nullptr;
    if (sk == kG) return w64 ? &vop<Op64, kX, kG, 8, false> : &vop<Op32, kX, kG, 4, false>;
    if (sk == kMem) return w64 ? &vop<Op64, kX, kMem, 8, false> : &vop<Op32, kX, kMem, 4, false>;
    return nullptr;
}

// CVT(T)SS2SI / CVT(T)SD2SI r32/r64, xmm/m32|m64.
template <class Src, auto Fn32, auto Fn64, int MB> Handler sel_to_int(const DecodeCtx& d) {
    if (op_class(d.ops[0]) != kG) return nullptr;
    bool w64 = d.ops[0].size == 64;
    uint8_t sk = op_class(d.ops[1]);
    using O32 = CvtToGpr<Src, Fn32>;
    using O64 = CvtToGpr<Src, Fn64>;
    if (sk == kX) return w64 ? &vtog<O64, 8, kX, 16, false> : &vtog<O32, 4, kX, 16, false>;
    if (sk == kMem) return w64 ? &vtog<O64, 8, kMem, MB, false> : &vtog<O32, 4, kMem, MB, false>;
    return nullptr;
}

template <class F, bool Sig, int MB> Handler sel_comis(const DecodeCtx& d) {
    if (op_class(d.ops[0]) != kX) return nullptr;
    switch (op_class(d.ops[1])) {
        case kX: return &comis<F, Sig, kX, 16>;
        case kMem: return &comis<F, Sig, kMem, MB>;
        default: return nullptr;
    }
}

template <class F, typename F::T (*Fn)(typename F::T, typename F::T, sf::Env&)>
void reg_arith(Registry& r, ZydisMnemonic packed, ZydisMnemonic scalar) {
    r.add(packed, sel_packed<Bin<F, Fn, true>>);
    r.add(scalar, sel_scalar<Bin<F, Fn, false>, int(sizeof(typename F::T))>);
}

}  // namespace

void register_sse_fp(Registry& r) {
    using namespace vf;
    reg_arith<F32, sf::f32_add>(r, ZYDIS_MNEMONIC_ADDPS, ZYDIS_MNEMONIC_ADDSS);
    reg_arith<F64, sf::f64_add>(r, ZYDIS_MNEMONIC_ADDPD, ZYDIS_MNEMONIC_ADDSD);
    reg_arith<F32, sf::f32_sub>(r, ZYDIS_MNEMONIC_SUBPS, ZYDIS_MNEMONIC_SUBSS);
    reg_arith<F64, sf::f64_sub>(r, ZYDIS_MNEMONIC_SUBPD, ZYDIS_MNEMONIC_SUBSD);
    reg_arith<F32, sf::f32_mul>(r, ZYDIS_MNEMONIC_MULPS, ZYDIS_MNEMONIC_MULSS);
    reg_arith<F64, sf::f64_mul>(r, ZYDIS_MNEMONIC_MULPD, ZYDIS_MNEMONIC_MULSD);
    reg_arith<F32, sf::f32_div>(r, ZYDIS_MNEMONIC_DIVPS, ZYDIS_MNEMONIC_DIVSS);
    reg_arith<F64, sf::f64_div>(r, ZYDIS_MNEMONIC_DIVPD, ZYDIS_MNEMONIC_DIVSD);
    reg_arith<F32, minmax<F32, false>>(r, ZYDIS_MNEMONIC_MINPS, ZYDIS_MNEMONIC_MINSS);
    reg_arith<F64, minmax<F64, false>>(r, ZYDIS_MNEMONIC_MINPD, ZYDIS_MNEMONIC_MINSD);
    reg_arith<F32, minmax<F32, true>>(r, ZYDIS_MNEMONIC_MAXPS, ZYDIS_MNEMONIC_MAXSS);
    reg_arith<F64, minmax<F64, true>>(r, ZYDIS_MNEMONIC_MAXPD, ZYDIS_MNEMONIC_MAXSD);
    r.add(ZYDIS_MNEMONIC_SQRTPS, sel_packed<Un<F32, sf::f32_sqrt, true>>);
    r.add(ZYDIS_MNEMONIC_SQRTSS, sel_scalar<Un<F32, sf::f32_sqrt, false>, 4>);
    r.add(ZYDIS_MNEMONIC_SQRTPD, sel_packed<Un<F64, sf::f64_sqrt, true>>);
    r.add(ZYDIS_MNEMONIC_SQRTSD, sel_scalar<Un<F64, sf::f64_sqrt, false>, 8>);
    r.add(ZYDIS_MNEMONIC_RCPPS, sel_packed<Approx<rcp32, true>>);
    r.add(ZYDIS_MNEMONIC_RCPSS, sel_scalar<Approx<rcp32, false>, 4>);
    r.add(ZYDIS_MNEMONIC_RSQRTPS, sel_packed<Approx<rsqrt32, true>>);
    r.add(ZYDIS_MNEMONIC_RSQRTSS, sel_scalar<Approx<rsqrt32, false>, 4>);
    r.add(ZYDIS_MNEMONIC_CMPPS, sel_packed<Cmp<F32, true>>);
    r.add(ZYDIS_MNEMONIC_CMPPD, sel_packed<Cmp<F64, true>>);
    r.add(ZYDIS_MNEMONIC_CMPSS, sel_scalar<Cmp<F32, false>, 4>);
    // CMPSD: the string instruction has no explicit operands; sel_vop finds no XMM and returns null.
    r.add(ZYDIS_MNEMONIC_CMPSD, [](const DecodeCtx& d) -> Handler {
        return d.zi.operand_count_visible < 2 ? nullptr : sel_scalar<Cmp<F64, false>, 8>(d);
    });
    r.add(ZYDIS_MNEMONIC_COMISS, sel_comis<F32, true, 4>);
    r.add(ZYDIS_MNEMONIC_COMISD, sel_comis<F64, true, 8>);
    r.add(ZYDIS_MNEMONIC_UCOMISS, sel_comis<F32, false, 4>);
    r.add(ZYDIS_MNEMONIC_UCOMISD, sel_comis<F64, false, 8>);

    // Conversions between floating-point formats.
    r.add(ZYDIS_MNEMONIC_CVTPS2PD, sel_vop<Cvt<F64, F32, 2, false, sf::f32_to_f64>, kXX, 8>);
    r.add(ZYDIS_MNEMONIC_CVTPD2PS, sel_vop<Cvt<F32, F64, 2, true, sf::f64_to_f32>, kXX, 16>);
    r.add(ZYDIS_MNEMONIC_CVTSS2SD, sel_vop<Cvt<F64, F32, 1, false, sf::f32_to_f64>, kXX, 4>);
    r.add(ZYDIS_MNEMONIC_CVTSD2SS, sel_vop<Cvt<F32, F64, 1, false, sf::f64_to_f32>, kXX, 8>);
    // Integer -> float.
    r.add(ZYDIS_MNEMONIC_CVTDQ2PS, sel_vop<Cvt<F32, I32, 4, false, sf::i32_to_f32>, kXX, 16>);
    r.add(ZYDIS_MNEMONIC_CVTDQ2PD, sel_vop<Cvt<F64, I32, 2, false, sf::i32_to_f64>, kXX, 8>);
    r.add(ZYDIS_MNEMONIC_CVTPI2PS, sel_vop<Cvt<F32, I32, 2, false, sf::i32_to_f32>, kXMm, 8>);
    r.add(ZYDIS_MNEMONIC_CVTPI2PD, sel_vop<Cvt<F64, I32, 2, false, sf::i32_to_f64>, kXMm, 8>);
    r.add(ZYDIS_MNEMONIC_CVTSI2SS,
          sel_from_int<Cvt<F32, I32, 1, false, sf::i32_to_f32>, Cvt<F32, I64, 1, false, sf::i64_to_f32>>);
    r.add(ZYDIS_MNEMONIC_CVTSI2SD,
          sel_from_int<Cvt<F64, I32, 1, false, sf::i32_to_f64>, Cvt<F64, I64, 1, false, sf::i64_to_f64>>);
    // Float -> integer, rounding with MXCSR.RC or truncating.
    r.add(ZYDIS_MNEMONIC_CVTPS2DQ, sel_vop<Cvt<I32, F32, 4, false, sf::f32_to_i32>, kXX, 16>);
    r.add(ZYDIS_MNEMONIC_CVTTPS2DQ, sel_vop<Cvt<I32, F32, 4, false, sf::f32_to_i32_trunc>, kXX, 16>);
    r.add(ZYDIS_MNEMONIC_CVTPD2DQ, sel_vop<Cvt<I32, F64, 2, true, sf::f64_to_i32>, kXX, 16>);
    r.add(ZYDIS_MNEMONIC_CVTTPD2DQ, sel_vop<Cvt<I32, F64, 2, true, sf::f64_to_i32_trunc>, kXX, 16>);
    r.add(ZYDIS_MNEMONIC_CVTPS2PI, sel_vop<Cvt<I32, F32, 2, false, sf::f32_to_i32>, kMmX, 0, 8>);
    r.add(ZYDIS_MNEMONIC_CVTTPS2PI, sel_vop<Cvt<I32, F32, 2, false, sf::f32_to_i32_trunc>, kMmX, 0, 8>);
    r.add(ZYDIS_MNEMONIC_CVTPD2PI, sel_vop<Cvt<I32, F64, 2, false, sf::f64_to_i32>, kMmX, 0, 16>);
    r.add(ZYDIS_MNEMONIC_CVTTPD2PI, sel_vop<Cvt<I32, F64, 2, false, sf::f64_to_i32_trunc>, kMmX, 0, 16>);
    r.add(ZYDIS_MNEMONIC_CVTSS2SI, sel_to_int<F32, sf::f32_to_i32, sf::f32_to_i64, 4>);
    r.add(ZYDIS_MNEMONIC_CVTTSS2SI, sel_to_int<F32, sf::f32_to_i32_trunc, sf::f32_to_i64_trunc, 4>);
    r.add(ZYDIS_MNEMONIC_CVTSD2SI, sel_to_int<F64, sf::f64_to_i32, sf::f64_to_i64, 8>);
    r.add(ZYDIS_MNEMONIC_CVTTSD2SI, sel_to_int<F64, sf::f64_to_i32_trunc, sf::f64_to_i64_trunc, 8>);
}

}  // namespace m86::cpu
