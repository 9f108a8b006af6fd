// Software floating point with x86 semantics (see softfloat.h for the contract).
//
// Design: every operand is unpacked into a sign, an exponent and a 64-bit significand normalised
// with its leading one at bit 63 (value = sig * 2^(e - 63)). Operations compute an exact (or
// exact-enough: sticky bit) 128-bit significand, and one routine, round_pack(), rounds it to the
// destination's precision and exponent range, handling overflow, underflow, denormals and flags for
// every format. A format is just (bias, emin, emax, precision), so x87 precision control is the
// 80-bit format with a smaller precision.
#include "cpu/softfloat.h"

#include <utility>

namespace m86::cpu::sf {
namespace {

using u128 = unsigned __int128;

struct Fmt {
    int32_t bias, emin, emax;  // emin/emax: unbiased exponents of the smallest/largest normal
    int p;                     // significand bits including the integer bit
    bool x87;                  // x87 rules: NaN choice, unsupported encodings, wrapped exponents
};
constexpr Fmt kF32{127, -126, 127, 24, false};
constexpr Fmt kF64{1023, -1022, 1023, 53, false};
constexpr Fmt kF80{16383, -16382, 16383, 64, true};
// x87 storing to single/double: x87 NaN rules but the smaller format.
constexpr Fmt kF32x{127, -126, 127, 24, true};
constexpr Fmt kF64x{1023, -1022, 1023, 53, true};

constexpr uint64_t kTop = 1ull << 63, kQuiet = 1ull << 62;
// Exponent bias adjustment for unmasked x87 overflow/underflow (SDM Vol. 1, 8.5.4, 8.5.5).
constexpr int32_t kWrap = 24576;

enum Cls : uint8_t { cZero, cFinite, cInf, cQNaN, cSNaN, cBad };

// An unpacked operand. For finite non-zero values sig has bit 63 set and value = sig * 2^(e-63).
// For NaNs sig is the left-aligned significand (integer bit at 63, quiet bit at 62).
struct Unp {
    Cls cls;
    bool sign;
    bool den;  // the encoding was a denormal (or x87 pseudo-denormal): DE
    int32_t e;
    uint64_t sig;
};

// A packed-ready result: biased exponent E and significand with the integer bit at 63 (for
// denormals E = 0 and the integer bit clear), in the destination format's terms.
struct Wide {
    bool sign;
    int32_t E;
    uint64_t mant;
};

inline bool is_nan(const Unp& u) { return u.cls == cQNaN || u.cls == cSNaN; }
inline int clz128(u128 x) {
    uint64_t hi = uint64_t(x >> 64);
    return hi ? __builtin_clzll(hi) : 64 + __builtin_clzll(uint64_t(x));
}

// ---- unpack ----------------------------------------------------------------------------------------

Unp unpack_f32(uint32_t x, bool daz) {
    Unp u{cFinite, bool(x >> 31), false, 0, 0};
    uint32_t E = (x >> 23) & 0xff, frac = x & 0x7fffff;
    if (E == 0xff) {
        u.sig = kTop | uint64_t(frac) << 40;
        u.cls = frac == 0 ? cInf : (frac >> 22) ? cQNaN : cSNaN;
    } else if (E == 0) {
        if (frac == 0 || daz) {
            u.cls = cZero;
        } else {
            uint64_t s = uint64_t(frac) << 40;
            int lz = __builtin_clzll(s);
            u.sig = s << lz;
            u.e = -126 - lz;
            u.den = true;
        }
    } else {
        u.sig = kTop | uint64_t(frac) << 40;
        u.e = int32_t(E) - 127;
    }
    return u;
}

Unp unpack_f64(uint64_t x, bool daz) {
    Unp u{cFinite, bool(x >> 63), false, 0, 0};
    uint32_t E = (x >> 52) & 0x7ff;
    uint64_t frac = x & ((1ull << 52) - 1);
    if (E == 0x7ff) {
        u.sig = kTop | frac << 11;
        u.cls = frac == 0 ? cInf : (frac >> 51) ? cQNaN : cSNaN;
    } else if (E == 0) {
        if (frac == 0 || daz) {
            u.cls = cZero;
        } else {
            uint64_t s = frac << 11;
            int lz = __builtin_clzll(s);
            u.sig = s << lz;
            u.e = -1022 - lz;
            u.den = true;
        }
    } else {
        u.sig = kTop | frac << 11;
        u.e = int32_t(E) - 1023;
    }
    return u;
}

// SDM Vol. 1, 8.2.2 "Unsupported Double Extended-Precision Floating-Point Encodings and
// Pseudo-Denormals".
Unp unpack_f80(F80 x) {
    Unp u{cFinite, bool(x.se >> 15), false, 0, x.mant};
    uint32_t E = x.se & 0x7fff;
    if (E == 0x7fff) {
        if (!(x.mant & kTop)) u.cls = cBad;  // pseudo-infinity / pseudo-NaN
        else if ((x.mant << 1) == 0) u.cls = cInf;
        else u.cls = (x.mant & kQuiet) ? cQNaN : cSNaN;
    } else if (E == 0) {
        if (x.mant == 0) {
            u.cls = cZero;
        } else {  // denormal, or pseudo-denormal (integer bit set): both have exponent emin
            int lz = __builtin_clzll(x.mant);
            u.sig = x.mant << lz;
            u.e = -16382 - lz;
            u.den = true;
        }
    } else if (!(x.mant & kTop)) {
        u.cls = cBad;  // unnormal
    } else {
        u.e = int32_t(E) - 16383;
    }
    return u;
}

// ---- pack ------------------------------------------------------------------------------------------

inline uint32_t pack32(Wide w) {
    return uint32_t(w.sign) << 31 | uint32_t(w.E & 0xff) << 23 | (uint32_t(w.mant >> 40) & 0x7fffff);
}
inline uint64_t pack64(Wide w) {
    return uint64_t(w.sign) << 63 | uint64_t(w.E & 0x7ff) << 52 | ((w.mant >> 11) & ((1ull << 52) - 1));
}
inline F80 pack80(Wide w) { return F80{w.mant, uint16_t(uint16_t(w.sign) << 15 | (w.E & 0x7fff))}; }

inline int32_t e_special(const Fmt& f) { return f.emax + f.bias + 1; }
inline Wide w_zero(bool sign) { return {sign, 0, 0}; }
inline Wide w_inf(bool sign, const Fmt& f) { return {sign, e_special(f), kTop}; }
inline Wide w_default_nan(const Fmt& f) { return {true, e_special(f), kTop | kQuiet}; }
inline Wide w_nan(const Unp& u, const Fmt& f) { return {u.sign, e_special(f), u.sig | kQuiet}; }

// ---- rounding --------------------------------------------------------------------------------------

// s >> sh rounded with mode r (sign of the value: `sign`). Sets inexact and whether it incremented.
inline u128 round_shift(u128 s, int sh, bool sign, Round r, bool& inexact, bool& inc) {
    u128 q, rem;
    int cmp;  // rem compared with half an ulp: -1 below, 0 equal, 1 above
    if (sh <= 0) {
        inexact = inc = false;
        return s;
    }
    if (sh < 128) {
        q = s >> sh;
        rem = s & ((u128(1) << sh) - 1);
        u128 half = u128(1) << (sh - 1);
        cmp = rem > half ? 1 : rem == half ? 0 : -1;
    } else {
        q = 0;
        rem = s;
        cmp = sh == 128 ? (rem > (u128(1) << 127) ? 1 : rem == (u128(1) << 127) ? 0 : -1) : -1;
    }
    inexact = rem != 0;
    switch (r) {
        case kNearest: inc = cmp > 0 || (cmp == 0 && (q & 1)); break;
        case kUp: inc = !sign && inexact; break;
        case kDown: inc = sign && inexact; break;
        default: inc = false; break;
    }
    return q;
}

// Round the non-zero value sig * 2^(e - 127) (sig normalised: bit 127 set) to format f with
// precision p. SDM Vol. 1, 4.9.1.4-4.9.1.6 (overflow, underflow, inexact), 11.5.2.3-11.5.2.5.
Wide round_pack(bool sign, int32_t e, u128 sig, const Fmt& f, int p, Env& env) {
    // Fast path: a normal result that cannot overflow, rounded with 64-bit arithmetic.
    if (e >= f.emin && e < f.emax) [[likely]] {
        uint64_t hi = uint64_t(sig >> 64), lo = uint64_t(sig);
        int s = 64 - p;
        uint64_t q = hi >> s, r1 = s ? hi << (64 - s) : lo, r2 = s ? lo : 0;  // discarded: r1:r2
        bool inexact = (r1 | r2) != 0, inc;
        switch (env.round) {
            case kNearest: inc = r1 > kTop || (r1 == kTop && (r2 != 0 || (q & 1))); break;
            case kUp: inc = !sign && inexact; break;
            case kDown: inc = sign && inexact; break;
            default: inc = false; break;
        }
        q += inc;
        if (p == 64 ? q == 0 : (q >> p) != 0) {  // carried into the next binade
            q = p == 64 ? kTop : q >> 1;
            e++;
        }
        env.rounded_up = inc;
        if (inexact) env.flags |= kInexact;
        return {sign, e + f.bias, q << s};
    }
    int sh = 128 - p;
    bool inexact, inc;
    if (e >= f.emin) {
        u128 q = round_shift(sig, sh, sign, env.round, inexact, inc);
        q += inc;
        if (q >> p) {
            q >>= 1;
            e++;
        }
        env.rounded_up = inc;
        if (e > f.emax) {
            // Unmasked: the result with the exponent wrapped; if even that does not fit, an
            // infinity whatever the rounding mode, with OE and PE (measured).
            if (!(env.masks & kOverflow)) {
                if (f.bias == 16383 && e + f.bias - kWrap >= 0x7fff) {
                    env.flags |= kOverflow | kInexact;
                    env.rounded_up = true;
                    return w_inf(sign, f);
                }
                env.flags |= kOverflow | (inexact ? kInexact : 0);
                return {sign, e + f.bias - (f.bias == 16383 ? kWrap : 0), uint64_t(q) << (64 - p)};
            }
            env.flags |= kOverflow | kInexact;
            bool to_inf = env.round == kNearest || (env.round == kUp && !sign) || (env.round == kDown && sign);
            env.rounded_up = to_inf;
            if (to_inf) return w_inf(sign, f);
            return {sign, f.emax + f.bias, ((p == 64 ? ~0ull : (1ull << p) - 1)) << (64 - p)};
        }
        if (inexact) env.flags |= kInexact;
        return {sign, e + f.bias, uint64_t(q) << (64 - p)};
    }
    // Below the normal range. Tininess is detected after rounding (x86): round as if the exponent
    // range were unbounded and see whether the result is still below 2^emin.
    u128 q1 = round_shift(sig, sh, sign, env.round, inexact, inc);
    q1 += inc;
    int32_t e1 = e;
    if (q1 >> p) {
        q1 >>= 1;
        e1++;
    }
    bool tiny = e1 < f.emin;
    if (tiny && !(env.masks & kUnderflow)) {
        // Unmasked: x87 delivers the rounded result with the exponent wrapped up by 24576; if even
        // that is too small, a signed zero with UE and PE (measured).
        if (f.bias == 16383 && e1 + f.bias + kWrap <= 0) {
            env.rounded_up = false;
            env.flags |= kUnderflow | kInexact;
            return w_zero(sign);
        }
        env.rounded_up = inc;
        env.flags |= kUnderflow | (inexact ? kInexact : 0);
        return {sign, e1 + f.bias + (f.bias == 16383 ? kWrap : 0), uint64_t(q1) << (64 - p)};
    }
    if (tiny && env.ftz) {  // SSE flush-to-zero (MXCSR.FZ), only with underflow masked
        env.rounded_up = false;
        env.flags |= kUnderflow | kInexact;
        return w_zero(sign);
    }
    // Denormalise: the lsb sits at 2^(emin - (p-1)).
    u128 q = round_shift(sig, sh + (f.emin - e), sign, env.round, inexact, inc);
    q += inc;
    env.rounded_up = inc;
    uint64_t mant = uint64_t(q) << (64 - p);
    if (inexact) env.flags |= kInexact | (tiny ? kUnderflow : 0);
    return {sign, (mant >> 63) ? 1 : 0, mant};
}

// Round a finite unpacked value (exact) to the format.
inline Wide round_unp(const Unp& u, const Fmt& f, int p, Env& env) {
    return round_pack(u.sign, u.e, u128(u.sig) << 64, f, p, env);
}

// NaN operand handling for two-operand operations (SDM Vol. 1, Table 4-7). Precondition: at least
// one operand is a NaN (or, for x87, unsupported).
Wide propagate2(const Unp& a, const Unp& b, const Fmt& f, Env& env) {
    env.rounded_up = false;
    if (a.cls == cBad || b.cls == cBad) {
        env.flags |= kInvalid;
        return w_default_nan(f);
    }
    if (a.cls == cSNaN || b.cls == cSNaN) env.flags |= kInvalid;
    if (!is_nan(a)) return w_nan(b, f);
    if (!is_nan(b)) return w_nan(a, f);
    if (!f.x87) return w_nan(a, f);
    // x87: the NaN with the larger significand; quiet beats signalling as the quiet bit is part
    // of the significand. Equal significands: the one with the positive sign... (see tests).
    uint64_t sa = a.sig | kQuiet, sb = b.sig | kQuiet;
    if (a.cls != b.cls) return w_nan(a.cls == cQNaN ? a : b, f);
    if (sa != sb) return w_nan(sa > sb ? a : b, f);
    return w_nan(a.sign ? b : a, f);
}

Wide propagate1(const Unp& a, const Fmt& f, Env& env) {
    env.rounded_up = false;
    if (a.cls == cBad) {
        env.flags |= kInvalid;
        return w_default_nan(f);
    }
    if (a.cls == cSNaN) env.flags |= kInvalid;
    return w_nan(a, f);
}

inline Wide invalid(const Fmt& f, Env& env) {
    env.flags |= kInvalid;
    env.rounded_up = false;
    return w_default_nan(f);
}

inline bool special(const Unp& u) { return u.cls >= cQNaN; }  // NaN or unsupported

// A denormal operand: DE. Unmasked, DE is a pre-computation exception: the operation stops here
// with no other flag (measured on the host; SDM Vol. 1, 4.9.2) and the caller writes no result.
inline bool denormal_stop(Env& env) {
    env.flags |= kDenormal;
    if (env.masks & kDenormal) return false;
    env.rounded_up = false;
    return true;
}

// ---- arithmetic cores ------------------------------------------------------------------------------

Wide add_core(Unp a, Unp b, bool negate_b, const Fmt& f, int p, Env& env) {
    if (special(a) || special(b)) return propagate2(a, b, f, env);
    b.sign ^= negate_b;
    if (a.cls == cInf || b.cls == cInf) {
        env.rounded_up = false;
        if (a.cls == cInf && b.cls == cInf && a.sign != b.sign) return invalid(f, env);
        if ((a.den || b.den) && denormal_stop(env)) return w_default_nan(f);
        return w_inf(a.cls == cInf ? a.sign : b.sign, f);
    }
    if ((a.den || b.den) && denormal_stop(env)) return w_default_nan(f);
    if (a.cls == cZero || b.cls == cZero) {
        if (a.cls == cZero && b.cls == cZero) {
            env.rounded_up = false;
            if (a.sign == b.sign) return w_zero(a.sign);
            return w_zero(env.round == kDown);
        }
        return round_unp(a.cls == cZero ? b : a, f, p, env);
    }
    if (a.e < b.e || (a.e == b.e && a.sig < b.sig)) {
        Unp t = a;
        a = b;
        b = t;
    }
    int d = a.e - b.e;
    u128 A = u128(a.sig) << 63, B = u128(b.sig) << 63;  // leading one at bit 126
    if (d) {
        if (d >= 127) {
            B = 1;
        } else {
            bool sticky = (B & ((u128(1) << d) - 1)) != 0;
            B = (B >> d) | sticky;
        }
    }
    u128 S = a.sign == b.sign ? A + B : A - B;
    if (S == 0) {
        env.rounded_up = false;
        return w_zero(env.round == kDown);
    }
    int lz = clz128(S);
    return round_pack(a.sign, a.e + 1 - lz, S << lz, f, p, env);
}

Wide mul_core(const Unp& a, const Unp& b, const Fmt& f, int p, Env& env) {
    if (special(a) || special(b)) return propagate2(a, b, f, env);
    bool sign = a.sign ^ b.sign;
    if (a.cls == cInf || b.cls == cInf) {
        if (a.cls == cZero || b.cls == cZero) return invalid(f, env);
        if ((a.den || b.den) && denormal_stop(env)) return w_default_nan(f);
        env.rounded_up = false;
        return w_inf(sign, f);
    }
    if ((a.den || b.den) && denormal_stop(env)) return w_default_nan(f);
    if (a.cls == cZero || b.cls == cZero) {
        env.rounded_up = false;
        return w_zero(sign);
    }
    u128 P = u128(a.sig) * b.sig;
    int32_t e = a.e + b.e;
    if (P >> 127) e++;
    else P <<= 1;
    return round_pack(sign, e, P, f, p, env);
}

Wide div_core(const Unp& a, const Unp& b, const Fmt& f, int p, Env& env) {
    if (special(a) || special(b)) return propagate2(a, b, f, env);
    bool sign = a.sign ^ b.sign;
    env.rounded_up = false;
    if (a.cls == cInf) {
        if (b.cls == cInf) return invalid(f, env);
        if ((b.den) && denormal_stop(env)) return w_default_nan(f);
        return w_inf(sign, f);
    }
    if (b.cls == cInf) {
        if ((a.den) && denormal_stop(env)) return w_default_nan(f);
        return w_zero(sign);
    }
    if (b.cls == cZero) {
        if (a.cls == cZero) return invalid(f, env);
        env.flags |= kDivZero;  // takes precedence over DE (SDM Vol. 1, 4.9.2)
        return w_inf(sign, f);
    }
    if ((a.den || b.den) && denormal_stop(env)) return w_default_nan(f);
    if (a.cls == cZero) return w_zero(sign);
    // Quotient bits: (a.sig * 2^127) / b.sig in two 64-bit steps, sticky from the remainder.
    u128 n = u128(a.sig) << 63;
    uint64_t q1 = uint64_t(n / b.sig);
    u128 r = n % b.sig;
    u128 n2 = r << 64;
    uint64_t q2 = uint64_t(n2 / b.sig);
    bool sticky = (n2 % b.sig) != 0;
    u128 Q = (u128(q1) << 64 | q2) | sticky;  // value = Q * 2^(a.e - b.e - 127)
    int lz = clz128(Q);
    return round_pack(sign, a.e - b.e - lz, Q << lz, f, p, env);
}

// Integer square root of a 128-bit number: floor(sqrt(n)) for 2^126 <= n < 2^128 (the caller's
// range; the result then has bit 63 set). 32 bits by bisection on the high half, then one Newton
// step and a final correction.
uint64_t isqrt128(u128 n, u128* rem) {
    uint64_t t = uint64_t(n >> 64), y = 0;
    for (int bit = 31; bit >= 0; bit--) {  // floor(sqrt(t)), branch-free
        uint64_t c = y | (1ull << bit);
        uint64_t take = 0 - uint64_t(c * c <= t);
        y = (c & take) | (y & ~take);
    }
    u128 s0 = u128(y) << 32;  // sqrt(n) - 2^32 < s0 <= sqrt(n)
    u128 s1 = (s0 + n / s0) >> 1;  // >= floor(sqrt(n)), within a few units
    uint64_t q = s1 >> 64 ? ~0ull : uint64_t(s1);
    while (u128(q) * q > n) q--;
    while (q != ~0ull && u128(q + 1) * (q + 1) <= n) q++;
    *rem = n - u128(q) * q;
    return q;
}

Wide sqrt_core(const Unp& a, const Fmt& f, int p, Env& env) {
    if (special(a)) return propagate1(a, f, env);
    env.rounded_up = false;
    if (a.cls == cZero) return w_zero(a.sign);
    if (a.sign) return invalid(f, env);
    if (a.cls == cInf) return w_inf(false, f);
    if ((a.den) && denormal_stop(env)) return w_default_nan(f);
    // value = sig * 2^(e-63). Make the exponent even: R = sig << 64 (e odd) or sig << 63 (e even),
    // so sqrt(value) = sqrt(R) * 2^((e - 127 or e - 126) / 2).
    bool odd = a.e & 1;
    u128 R = odd ? u128(a.sig) << 64 : u128(a.sig) << 63;
    int32_t e2 = odd ? (a.e - 127) : (a.e - 126);  // even
    u128 rem;
    uint64_t q = isqrt128(R, &rem);  // q has bit 63 set (R >= 2^126)
    // The next bit is 1 iff rem > q (sqrt = q + f, f >= 1/2 <=> rem >= q + 1/4); sticky iff rem != 0.
    u128 S = u128(q) << 64 | (rem > q ? (1ull << 63) : 0) | (rem != 0 ? 1 : 0);
    // value = S * 2^(e2/2 - 64) ; leading bit 127 has weight 2^(e2/2 + 63)
    return round_pack(false, e2 / 2 + 63, S, f, p, env);
}

Wide round_int_core(const Unp& a, Round r, bool report_inexact, const Fmt& f, Env& env) {
    if (special(a)) return propagate1(a, f, env);
    env.rounded_up = false;
    if ((a.den && f.x87) && denormal_stop(env)) return w_default_nan(f);  // ROUNDSS/SD do not report DE; FRNDINT does
    if (a.cls == cZero) return w_zero(a.sign);
    if (a.cls == cInf) return w_inf(a.sign, f);
    if (a.e >= f.p - 1) return round_unp(a, f, f.p, env);  // already integral (exact)
    bool inexact, inc;
    u128 q = round_shift(u128(a.sig), 63 - a.e, a.sign, r, inexact, inc);
    q += inc;
    env.rounded_up = inc;
    if (inexact && report_inexact) env.flags |= kInexact;
    if (q == 0) return w_zero(a.sign);
    uint64_t m = uint64_t(q);
    int lz = __builtin_clzll(m);
    Env tmp = env;  // exact: no flags
    Wide w = round_pack(a.sign, 63 - lz, u128(m << lz) << 64, f, f.p, tmp);
    return w;
}

// Finite/special value -> signed integer of `bits`, rounding with r. SDM Vol. 1, 4.8.3.7 (integer
// indefinite) and the CVT*/FIST pages.
int64_t to_int_core(const Unp& a, unsigned bits, Round r, Env& env) {
    const uint64_t indefinite = 1ull << (bits - 1);
    env.rounded_up = false;
    if (a.cls >= cInf) {
        env.flags |= kInvalid;
        return int64_t(bits == 64 ? indefinite : (~0ull << (bits - 1)));
    }
    if (a.cls == cZero) return 0;
    bool inexact = false, inc = false;
    uint64_t mag;
    if (a.e > 63) {
        env.flags |= kInvalid;
        return int64_t(bits == 64 ? indefinite : (~0ull << (bits - 1)));
    }
    u128 q = round_shift(u128(a.sig) << 64, 127 - a.e, a.sign, r, inexact, inc);
    q += inc;
    if (q > indefinite || (q == indefinite && !a.sign)) {
        env.flags |= kInvalid;
        return int64_t(bits == 64 ? indefinite : (~0ull << (bits - 1)));
    }
    mag = uint64_t(q);
    if (inexact) env.flags |= kInexact;
    env.rounded_up = inc;
    return a.sign ? int64_t(0 - mag) : int64_t(mag);
}

Relation compare_core(const Unp& a, const Unp& b, bool signaling, Env& env) {
    env.rounded_up = false;
    if (special(a) || special(b)) {
        if (signaling || a.cls == cSNaN || b.cls == cSNaN || a.cls == cBad || b.cls == cBad)
            env.flags |= kInvalid;
        return kUnordered;
    }
    if (a.den || b.den) env.flags |= kDenormal;
    if (a.cls == cZero && b.cls == cZero) return kEqual;
    // Compare as sign-magnitude keys.
    auto key = [](const Unp& u, int32_t& e, uint64_t& s) {
        if (u.cls == cZero) { e = INT32_MIN; s = 0; }
        else if (u.cls == cInf) { e = INT32_MAX; s = 0; }
        else { e = u.e; s = u.sig; }
    };
    int32_t ea, eb;
    uint64_t sa, sb;
    key(a, ea, sa);
    key(b, eb, sb);
    int mag = ea != eb ? (ea < eb ? -1 : 1) : sa != sb ? (sa < sb ? -1 : 1) : 0;
    bool na = a.sign && a.cls != cZero, nb = b.sign && b.cls != cZero;
    if (na != nb) return na ? kLess : kGreater;
    if (mag == 0) return kEqual;
    if (na) mag = -mag;
    return mag < 0 ? kLess : kGreater;
}

// Integer -> format (rounds when the integer has more bits than p).
Wide from_int(int64_t v, const Fmt& f, Env& env) {
    env.rounded_up = false;
    if (v == 0) return w_zero(false);
    bool sign = v < 0;
    uint64_t m = sign ? 0 - uint64_t(v) : uint64_t(v);
    int lz = __builtin_clzll(m);
    return round_pack(sign, 63 - lz, u128(m << lz) << 64, f, f.p, env);
}

// Conversion between formats (NaNs quieted and payload truncated/extended).
// `report_denormal`: FST/FSTP m32/m64 do not raise DE for an 80-bit denormal source (measured; the
// SDM's FST page lists no #D), the SSE conversions and FLD m32/m64 do.
Wide convert(const Unp& a, const Fmt& to, Env& env, bool report_denormal = true) {
    if (special(a)) return propagate1(a, to, env);
    env.rounded_up = false;
    if (a.den && report_denormal) env.flags |= kDenormal;
    if (a.cls == cZero) return w_zero(a.sign);
    if (a.cls == cInf) return w_inf(a.sign, to);
    return round_unp(a, to, to.p, env);
}

// ---- fast paths: binary32/binary64 with normal operands and a normal result ----------------------
//
// The common case of SSE arithmetic, with 64-bit integers (binary64 also needs one 64x64->128
// product or one 128/64 division). Each returns false, having changed nothing, when an operand is
// zero, denormal, infinite or NaN, or the result could overflow or be tiny: the general path above
// then computes everything, flags included. For normal operands and a normal result the only
// possible exception is PE, and DAZ/FTZ have no effect, so both paths give the same bits and flags.

template <class T> struct BinFmt;
template <> struct BinFmt<uint32_t> {
    static constexpr int kMan = 23, kBias = 127;
    static constexpr uint32_t kExpMax = 0xff;
};
template <> struct BinFmt<uint64_t> {
    static constexpr int kMan = 52, kBias = 1023;
    static constexpr uint32_t kExpMax = 0x7ff;
};

template <class T> constexpr int kBitsOf = int(sizeof(T) * 8);
template <class T> inline uint32_t exp_field(T x) { return uint32_t(x >> BinFmt<T>::kMan) & BinFmt<T>::kExpMax; }
// Biased exponent field of a normal number (1 .. max-1)?
template <class T> inline bool normal_field(uint32_t e) { return e - 1 < BinFmt<T>::kExpMax - 1; }
template <class T> inline uint64_t man_of(T x) {
    return uint64_t(x & ((T(1) << BinFmt<T>::kMan) - 1)) | (1ull << BinFmt<T>::kMan);
}

// Round S (leading one at bit 63; anything below the kept bits, sticky included, in the low bits)
// of biased exponent E; false if the result is not normal.
template <class T> inline bool fast_round(bool sign, int32_t E, uint64_t S, Env& env, T* out) {
    constexpr int P = BinFmt<T>::kMan + 1;
    constexpr int32_t kMax = int32_t(BinFmt<T>::kExpMax);
    if (E < 1 || E >= kMax) return false;
    uint64_t q = S >> (64 - P), rest = S << P;
    bool inexact = rest != 0, inc;
    switch (env.round) {
        case kNearest: inc = rest > kTop || (rest == kTop && (q & 1)); break;
        case kUp: inc = !sign && inexact; break;
        case kDown: inc = sign && inexact; break;
        default: inc = false; break;
    }
    q += inc;
    if (q >> P) {  // rounded up into the next binade: q was all ones, now 2^P
        q >>= 1;
        if (++E >= kMax) return false;
    }
    env.rounded_up = inc;
    if (inexact) env.flags |= kInexact;
    *out = T(T(sign) << (kBitsOf<T> - 1) | T(E) << BinFmt<T>::kMan | (T(q) & ((T(1) << BinFmt<T>::kMan) - 1)));
    return true;
}

template <class T> inline bool is_zero(T x) { return (x << 1) == 0; }

template <class T> inline bool fast_add(T a, T b, bool negate_b, Env& env, T* out) {
    constexpr int M = BinFmt<T>::kMan;
    constexpr T kSign = T(1) << (kBitsOf<T> - 1);
    uint32_t ea = exp_field(a), eb = exp_field(b);
    if (!normal_field<T>(ea) || !normal_field<T>(eb)) [[unlikely]] {
        // A zero and a normal number: the normal one, exactly (no flag, DAZ/FTZ do not apply).
        if (is_zero(a) && normal_field<T>(eb)) return env.rounded_up = false, *out = negate_b ? b ^ kSign : b, true;
        if (is_zero(b) && normal_field<T>(ea)) return env.rounded_up = false, *out = a, true;
        return false;
    }
    bool sa = a >> (kBitsOf<T> - 1), sb = bool(b >> (kBitsOf<T> - 1)) ^ negate_b;
    uint64_t A = man_of(a) << (62 - M), B = man_of(b) << (62 - M);  // leading one at bit 62
    if ((a & ~kSign) < (b & ~kSign)) {  // order by magnitude (the encodings order normal numbers)
        std::swap(A, B);
        std::swap(ea, eb);
        std::swap(sa, sb);
    }
    uint32_t d = ea - eb;
    if (d >= 64) {
        B = 1;  // sticky only
    } else if (d) {
        bool sticky = (B << (64 - d)) != 0;
        B = (B >> d) | sticky;
    }
    // With d <= 62 - M nothing was shifted out (exact, also for cancellation); beyond, the result
    // keeps its leading bit at 62 or 61, so the sticky bit stays below the rounding position.
    uint64_t S = sa == sb ? A + B : A - B;
    if (S == 0) {  // exact cancellation: +0, or -0 when rounding down (SDM Vol. 1, 4.8.3.1)
        env.rounded_up = false;
        *out = env.round == kDown ? kSign : 0;
        return true;
    }
    int lz = __builtin_clzll(S);
    return fast_round<T>(sa, int32_t(ea) + 1 - lz, S << lz, env, out);
}

template <class T> inline bool fast_mul(T a, T b, Env& env, T* out) {
    constexpr int M = BinFmt<T>::kMan;
    uint32_t ea = exp_field(a), eb = exp_field(b);
    bool sign = (a ^ b) >> (kBitsOf<T> - 1);
    if (!normal_field<T>(ea) || !normal_field<T>(eb)) [[unlikely]] {
        // A zero times a normal number: a zero with the sign of the product, exactly.
        if ((is_zero(a) && normal_field<T>(eb)) || (is_zero(b) && normal_field<T>(ea))) {
            env.rounded_up = false;
            return *out = T(sign) << (kBitsOf<T> - 1), true;
        }
        return false;
    }
    u128 P = u128(man_of(a)) * man_of(b);  // leading one at bit 2M or 2M+1
    int lz = clz128(P);
    uint64_t hi = uint64_t((P << lz) >> 64), lo = uint64_t(P << lz);
    // value = P * 2^(ea + eb - 2 bias - 2M); the leading bit (127 - lz) has weight 2^(127 - lz - 2M).
    int32_t E = int32_t(ea + eb) - BinFmt<T>::kBias + 127 - lz - 2 * M;
    return fast_round<T>(sign, E, hi | (lo != 0), env, out);
}

template <class T> inline bool fast_div(T a, T b, Env& env, T* out) {
    constexpr int M = BinFmt<T>::kMan;
    uint32_t ea = exp_field(a), eb = exp_field(b);
    if (!normal_field<T>(ea) || !normal_field<T>(eb)) return false;
    bool sign = (a ^ b) >> (kBitsOf<T> - 1);
    uint64_t ma = man_of(a), mb = man_of(b), q;
    bool sticky;
    if constexpr (M == 23) {
        uint64_t n = ma << 40;  // < 2^64; q = n / mb in (2^39, 2^41)
        q = n / mb;
        sticky = n % mb != 0;
    } else {
        u128 n = u128(ma) << 63;  // q = n / mb in (2^62, 2^64)
        q = uint64_t(n / mb);
        sticky = n - u128(q) * mb != 0;
    }
    constexpr int kShift = M == 23 ? 40 : 63;  // ma / mb = q / 2^kShift (+ remainder)
    int lz = __builtin_clzll(q);
    int32_t E = int32_t(ea) - int32_t(eb) + BinFmt<T>::kBias + (63 - lz - kShift);
    return fast_round<T>(sign, E, (q << lz) | sticky, env, out);
}

// floor(sqrt(k * 2^54)) for k = 64 .. 511: a first estimate (from below, within 1/128) of sqrt(n)
// for n in [k * 2^54, (k + 1) * 2^54).
constexpr uint64_t isqrt_exact(uint64_t n) {
    uint64_t y = 0;
    for (int bit = 31; bit >= 0; bit--)
        if ((y | (1ull << bit)) * (y | (1ull << bit)) <= n) y |= 1ull << bit;
    return y;
}
struct SqrtTable {
    uint32_t v[448];
    constexpr SqrtTable() : v() {
        for (unsigned k = 64; k < 512; k++) v[k - 64] = uint32_t(isqrt_exact(uint64_t(k) << 54));
    }
};
constexpr SqrtTable kSqrtTable;

// floor(sqrt(n)) and the remainder, for 2^60 <= n < 2^63: the table's estimate, two Newton steps
// (relative error 2^-7, then about 2^-15, then below one unit), a final correction. An integer
// Newton step (q + floor(n/q)) / 2 never goes below floor(sqrt(n)) (AM-GM), so the correction
// only ever steps down.
inline uint64_t isqrt64(uint64_t n, uint64_t* rem) {
    uint64_t q = kSqrtTable.v[(n >> 54) - 64];
    q = (q + n / q) >> 1;
    q = (q + n / q) >> 1;
    while (q * q > n) q--;
    *rem = n - q * q;
    return q;
}

template <class T> inline bool fast_sqrt(T a, Env& env, T* out) {
    constexpr int M = BinFmt<T>::kMan;
    uint32_t ea = exp_field(a);
    if (!normal_field<T>(ea) || (a >> (kBitsOf<T> - 1))) return false;  // negative: IE
    // value = m * 2^x, x = ea - bias - M. Shift m so that the exponent is even and R has its leading
    // one at bit 2K-2 or 2K-1 (K = 31 for binary32: 64-bit R; K = 63 for binary64: 128-bit R).
    int32_t x = int32_t(ea) - BinFmt<T>::kBias - M;
    uint64_t y;
    bool sticky;
    int32_t half;  // sqrt(value) = sqrt(R) * 2^half
    if constexpr (M == 23) {
        int s = (x & 1) ? 39 : 38;  // m << s in [2^61, 2^63)
        uint64_t rem;
        y = isqrt64(man_of(a) << s, &rem);
        sticky = rem != 0;
        half = (x - s) / 2;
    } else {
        int s = (x & 1) ? 71 : 72;  // m << s in [2^124, 2^126): the root is below 2^63
        u128 R = u128(man_of(a)) << s;
        // The root of the high half t in [2^59, 2^61) (as floor(sqrt(4t)) / 2), then one Newton step
        // on R (a 128/64 division) and a correction.
        uint64_t t = uint64_t(R >> 64), rem_t;
        uint64_t z = isqrt64(t << 2, &rem_t) >> 1;  // floor(sqrt(t))
        uint64_t s0 = z << 32;  // sqrt(R) - 2^32 < s0 <= sqrt(R) < 2^63
        uint64_t q = uint64_t((u128(s0) + R / s0) >> 1);  // >= floor(sqrt(R)) (AM-GM)
        while (u128(q) * q > R) q--;
        y = q;
        sticky = R != u128(q) * q;
        half = (x - s) / 2;
    }
    int lz = __builtin_clzll(y);
    int32_t E = (63 - lz) + half + BinFmt<T>::kBias;
    return fast_round<T>(false, E, (y << lz) | sticky, env, out);
}

}  // namespace

// ---- binary32 / binary64 ---------------------------------------------------------------------------

uint32_t f32_add(uint32_t a, uint32_t b, Env& e) {
    if (uint32_t r; fast_add(a, b, false, e, &r)) [[likely]]
        return r;
    return pack32(add_core(unpack_f32(a, e.daz), unpack_f32(b, e.daz), false, kF32, 24, e));
}
uint32_t f32_sub(uint32_t a, uint32_t b, Env& e) {
    if (uint32_t r; fast_add(a, b, true, e, &r)) [[likely]]
        return r;
    return pack32(add_core(unpack_f32(a, e.daz), unpack_f32(b, e.daz), true, kF32, 24, e));
}
uint32_t f32_mul(uint32_t a, uint32_t b, Env& e) {
    if (uint32_t r; fast_mul(a, b, e, &r)) [[likely]]
        return r;
    return pack32(mul_core(unpack_f32(a, e.daz), unpack_f32(b, e.daz), kF32, 24, e));
}
uint32_t f32_div(uint32_t a, uint32_t b, Env& e) {
    if (uint32_t r; fast_div(a, b, e, &r)) [[likely]]
        return r;
    return pack32(div_core(unpack_f32(a, e.daz), unpack_f32(b, e.daz), kF32, 24, e));
}
uint32_t f32_sqrt(uint32_t a, Env& e) {
    if (uint32_t r; fast_sqrt(a, e, &r)) [[likely]]
        return r;
    return pack32(sqrt_core(unpack_f32(a, e.daz), kF32, 24, e));
}

uint64_t f64_add(uint64_t a, uint64_t b, Env& e) {
    if (uint64_t r; fast_add(a, b, false, e, &r)) [[likely]]
        return r;
    return pack64(add_core(unpack_f64(a, e.daz), unpack_f64(b, e.daz), false, kF64, 53, e));
}
uint64_t f64_sub(uint64_t a, uint64_t b, Env& e) {
    if (uint64_t r; fast_add(a, b, true, e, &r)) [[likely]]
        return r;
    return pack64(add_core(unpack_f64(a, e.daz), unpack_f64(b, e.daz), true, kF64, 53, e));
}
uint64_t f64_mul(uint64_t a, uint64_t b, Env& e) {
    if (uint64_t r; fast_mul(a, b, e, &r)) [[likely]]
        return r;
    return pack64(mul_core(unpack_f64(a, e.daz), unpack_f64(b, e.daz), kF64, 53, e));
}
uint64_t f64_div(uint64_t a, uint64_t b, Env& e) {
    if (uint64_t r; fast_div(a, b, e, &r)) [[likely]]
        return r;
    return pack64(div_core(unpack_f64(a, e.daz), unpack_f64(b, e.daz), kF64, 53, e));
}
uint64_t f64_sqrt(uint64_t a, Env& e) {
    if (uint64_t r; fast_sqrt(a, e, &r)) [[likely]]
        return r;
    return pack64(sqrt_core(unpack_f64(a, e.daz), kF64, 53, e));
}

uint64_t f32_to_f64(uint32_t a, Env& e) { return pack64(convert(unpack_f32(a, e.daz), kF64, e)); }
uint32_t f64_to_f32(uint64_t a, Env& e) { return pack32(convert(unpack_f64(a, e.daz), kF32, e)); }
uint32_t i32_to_f32(int32_t a, Env& e) { return pack32(from_int(a, kF32, e)); }
uint32_t i64_to_f32(int64_t a, Env& e) { return pack32(from_int(a, kF32, e)); }
uint64_t i32_to_f64(int32_t a, Env& e) { return pack64(from_int(a, kF64, e)); }
uint64_t i64_to_f64(int64_t a, Env& e) { return pack64(from_int(a, kF64, e)); }

int32_t f32_to_i32(uint32_t a, Env& e) { return int32_t(to_int_core(unpack_f32(a, e.daz), 32, e.round, e)); }
int32_t f32_to_i32_trunc(uint32_t a, Env& e) { return int32_t(to_int_core(unpack_f32(a, e.daz), 32, kZero, e)); }
int64_t f32_to_i64(uint32_t a, Env& e) { return to_int_core(unpack_f32(a, e.daz), 64, e.round, e); }
int64_t f32_to_i64_trunc(uint32_t a, Env& e) { return to_int_core(unpack_f32(a, e.daz), 64, kZero, e); }
int32_t f64_to_i32(uint64_t a, Env& e) { return int32_t(to_int_core(unpack_f64(a, e.daz), 32, e.round, e)); }
int32_t f64_to_i32_trunc(uint64_t a, Env& e) { return int32_t(to_int_core(unpack_f64(a, e.daz), 32, kZero, e)); }
int64_t f64_to_i64(uint64_t a, Env& e) { return to_int_core(unpack_f64(a, e.daz), 64, e.round, e); }
int64_t f64_to_i64_trunc(uint64_t a, Env& e) { return to_int_core(unpack_f64(a, e.daz), 64, kZero, e); }

Relation f32_compare(uint32_t a, uint32_t b, bool signaling, Env& e) {
    return compare_core(unpack_f32(a, e.daz), unpack_f32(b, e.daz), signaling, e);
}
Relation f64_compare(uint64_t a, uint64_t b, bool signaling, Env& e) {
    return compare_core(unpack_f64(a, e.daz), unpack_f64(b, e.daz), signaling, e);
}

uint32_t f32_round_to_int(uint32_t a, Round r, bool inexact, Env& e) {
    return pack32(round_int_core(unpack_f32(a, e.daz), r, inexact, kF32, e));
}
uint64_t f64_round_to_int(uint64_t a, Round r, bool inexact, Env& e) {
    return pack64(round_int_core(unpack_f64(a, e.daz), r, inexact, kF64, e));
}

// ---- x87 80-bit ------------------------------------------------------------------------------------

F80Class f80_classify(F80 a) {
    Unp u = unpack_f80(a);
    switch (u.cls) {
        case cZero: return F80Class::Zero;
        case cFinite: return u.den ? F80Class::Denormal : F80Class::Normal;
        case cInf: return F80Class::Infinity;
        case cQNaN: return F80Class::QNaN;
        case cSNaN: return F80Class::SNaN;
        default: return F80Class::Unsupported;
    }
}

namespace {
inline int prec(const Env& e) { return e.precision == 24 || e.precision == 53 ? e.precision : 64; }
}  // namespace

F80 f80_add(F80 a, F80 b, Env& e) { return pack80(add_core(unpack_f80(a), unpack_f80(b), false, kF80, prec(e), e)); }
F80 f80_sub(F80 a, F80 b, Env& e) { return pack80(add_core(unpack_f80(a), unpack_f80(b), true, kF80, prec(e), e)); }
F80 f80_mul(F80 a, F80 b, Env& e) { return pack80(mul_core(unpack_f80(a), unpack_f80(b), kF80, prec(e), e)); }
F80 f80_div(F80 a, F80 b, Env& e) { return pack80(div_core(unpack_f80(a), unpack_f80(b), kF80, prec(e), e)); }
F80 f80_sqrt(F80 a, Env& e) { return pack80(sqrt_core(unpack_f80(a), kF80, prec(e), e)); }
F80 f80_round_to_int(F80 a, Env& e) { return pack80(round_int_core(unpack_f80(a), e.round, true, kF80, e)); }

namespace {
Wide op_core(Op80 op, const Unp& a, const Unp& b, Env& e) {
    int p = prec(e);
    switch (op) {
        case Op80::Add: return add_core(a, b, false, kF80, p, e);
        case Op80::Sub: return add_core(a, b, true, kF80, p, e);
        case Op80::SubR: return add_core(b, a, true, kF80, p, e);
        case Op80::Mul: return mul_core(a, b, kF80, p, e);
        case Op80::Div: return div_core(a, b, kF80, p, e);
        default: return div_core(b, a, kF80, p, e);
    }
}
}  // namespace

F80 f80_op(Op80 op, F80 a, F80 b, Env& e) { return pack80(op_core(op, unpack_f80(a), unpack_f80(b), e)); }
F80 f80_op_f32(Op80 op, F80 a, uint32_t b, Env& e) {
    return pack80(op_core(op, unpack_f80(a), unpack_f32(b, false), e));
}
F80 f80_op_f64(Op80 op, F80 a, uint64_t b, Env& e) {
    return pack80(op_core(op, unpack_f80(a), unpack_f64(b, false), e));
}
Relation f80_compare_f32(F80 a, uint32_t b, bool signaling, Env& e) {
    return compare_core(unpack_f80(a), unpack_f32(b, false), signaling, e);
}
Relation f80_compare_f64(F80 a, uint64_t b, bool signaling, Env& e) {
    return compare_core(unpack_f80(a), unpack_f64(b, false), signaling, e);
}

Relation f80_compare(F80 a, F80 b, bool signaling, Env& e) {
    return compare_core(unpack_f80(a), unpack_f80(b), signaling, e);
}

F80 f32_to_f80(uint32_t a, Env& e) { return pack80(convert(unpack_f32(a, false), kF80, e)); }
F80 f64_to_f80(uint64_t a, Env& e) { return pack80(convert(unpack_f64(a, false), kF80, e)); }
uint32_t f80_to_f32(F80 a, Env& e) { return pack32(convert(unpack_f80(a), kF32x, e, false)); }
uint64_t f80_to_f64(F80 a, Env& e) { return pack64(convert(unpack_f80(a), kF64x, e, false)); }

F80 i64_to_f80(int64_t a) {
    Env e;
    return pack80(from_int(a, kF80, e));
}

int64_t f80_to_int(F80 a, unsigned bits, bool truncate, Env& e) {
    return to_int_core(unpack_f80(a), bits, truncate ? kZero : e.round, e);
}

// FSCALE (SDM Vol. 2 FSCALE, results table): a * 2^trunc(b).
F80 f80_scale(F80 a, F80 b, Env& e) {
    Unp x = unpack_f80(a), y = unpack_f80(b);
    if (special(x) || special(y)) return pack80(propagate2(x, y, kF80, e));
    e.rounded_up = false;
    if (y.cls == cInf) {
        if ((x.den) && denormal_stop(e)) return pack80(w_default_nan(kF80));
        if (!y.sign) {  // * +inf
            if (x.cls == cZero) return pack80(invalid(kF80, e));
            return pack80(w_inf(x.sign, kF80));
        }
        if (x.cls == cInf) return pack80(invalid(kF80, e));
        return pack80(w_zero(x.sign));
    }
    if ((x.den || y.den) && denormal_stop(e)) return pack80(w_default_nan(kF80));
    if (x.cls == cZero) return pack80(w_zero(x.sign));
    if (x.cls == cInf) return pack80(w_inf(x.sign, kF80));
    int64_t n = 0;
    if (y.cls == cFinite && y.e >= 0) {
        n = y.e > 30 ? (int64_t(1) << 31) : int64_t(y.sig >> (63 - y.e));
        if (y.sign) n = -n;
    }
    int64_t ne = int64_t(x.e) + n;
    if (ne > 100000) ne = 100000;
    if (ne < -100000) ne = -100000;
    return pack80(round_pack(x.sign, int32_t(ne), u128(x.sig) << 64, kF80, 64, e));
}

// FXTRACT (SDM Vol. 2, FXTRACT).
void f80_extract(F80 a, F80* exponent, F80* significand, Env& e) {
    Unp x = unpack_f80(a);
    e.rounded_up = false;
    if (special(x)) {
        *exponent = *significand = pack80(propagate1(x, kF80, e));
        return;
    }
    if (x.cls == cZero) {  // divide-by-zero, exponent -inf, significand the zero
        e.flags |= kDivZero;
        *exponent = pack80(w_inf(true, kF80));
        *significand = a;
        return;
    }
    if (x.cls == cInf) {
        *exponent = pack80(w_inf(false, kF80));
        *significand = a;
        return;
    }
    if ((x.den) && denormal_stop(e)) return;
    *exponent = i64_to_f80(x.e);
    *significand = F80{x.sig, uint16_t(uint16_t(x.sign) << 15 | 0x3fff)};
}

// FPREM / FPREM1 (SDM Vol. 2, FPREM, FPREM1): exact remainder, partial when the exponents differ
// by 64 or more.
F80 f80_rem(F80 a, F80 b, bool ieee, Env& e, unsigned* quotient, bool* incomplete) {
    Unp x = unpack_f80(a), y = unpack_f80(b);
    *quotient = 0;
    *incomplete = false;
    if (special(x) || special(y)) return pack80(propagate2(x, y, kF80, e));
    e.rounded_up = false;
    if (x.cls == cInf || y.cls == cZero) return pack80(invalid(kF80, e));
    if ((x.den || y.den) && denormal_stop(e)) return pack80(w_default_nan(kF80));
    // Nothing to reduce: the result is ST(0) itself, normalised (pseudo-denormals become normals).
    if (x.cls == cZero) return a;
    int32_t d = x.e - y.e;
    if (y.cls == cInf || (d < 0 && !(ieee && d == -1))) return pack80(round_unp(x, kF80, 64, e));
    bool sign = x.sign;
    u128 r;
    uint64_t q;
    int32_t re;  // r's units: 2^(re - 63)
    if (d < 64) {
        if (d < 0) {  // FPREM1, |x| in [|y|/2, |y|): q = 0 or 1
            r = x.sig;
            q = 0;
            re = x.e;
            // compare 2|x| with |y|: x.sig * 2^(x.e) vs y.sig * 2^(y.e-1) with x.e = y.e - 1
            u128 rs = r;
            if (rs > y.sig) {  // a tie (rs == y.sig) keeps the even quotient 0
                // |x| > |y|/2: q = 1, r = |y| - |x| (in units of 2^(x.e-63)), sign flips
                r = (u128(y.sig) << 1) - rs;
                q = 1;
                sign = !sign;
            }
        } else {
            u128 n = u128(x.sig) << d;
            q = uint64_t(n / y.sig);
            r = n % y.sig;
            re = y.e;
            if (ieee) {
                u128 twice = r << 1;
                if (twice > y.sig || (twice == y.sig && (q & 1))) {
                    r = y.sig - r;
                    q++;
                    sign = !sign;
                }
            }
        }
        *quotient = unsigned(q & 7);
    } else {
        int32_t n_bits = 32 + (d & 31);
        u128 n = u128(x.sig) << n_bits;
        q = uint64_t(n / y.sig);
        r = n % y.sig;
        re = x.e - n_bits;
        *incomplete = true;
        *quotient = unsigned(q & 7);
    }
    if (r == 0) return pack80(w_zero(x.sign));
    int lz = clz128(r);
    // r * 2^(re - 63) ; leading bit at (127 - lz) -> exponent re - 63 + 127 - lz
    return pack80(round_pack(sign, re + 64 - lz, r << lz, kF80, 64, e));
}

// Packed BCD (SDM Vol. 1, 4.7): bytes 0..8 hold 18 digits (two per byte, low digit in the low
// nibble), byte 9 bit 7 the sign.
F80 bcd_to_f80(const uint8_t bcd[10]) {
    uint64_t v = 0;
    for (int i = 8; i >= 0; i--) v = v * 100 + (bcd[i] >> 4) * 10 + (bcd[i] & 15);
    F80 r = i64_to_f80(int64_t(v));
    if (bcd[9] & 0x80) r.se |= 0x8000;
    return r;
}

void f80_to_bcd(F80 a, uint8_t bcd[10], Env& e) {
    Unp x = unpack_f80(a);
    e.rounded_up = false;
    auto indefinite = [&] {
        e.flags |= kInvalid;
        for (int i = 0; i < 7; i++) bcd[i] = 0;
        bcd[7] = 0xc0;
        bcd[8] = bcd[9] = 0xff;
    };
    if (special(x) || x.cls == cInf) return indefinite();
    uint64_t mag = 0;  // (no DE: FBSTP lists no #D)
    if (x.cls != cZero) {
        if (x.e > 63) return indefinite();
        bool inexact, inc;
        u128 q = round_shift(u128(x.sig) << 64, 127 - x.e, x.sign, e.round, inexact, inc);
        q += inc;
        if (q > 999999999999999999ull) return indefinite();
        if (inexact) e.flags |= kInexact;
        e.rounded_up = inc;
        mag = uint64_t(q);
    }
    for (int i = 0; i < 9; i++) {
        unsigned lo = unsigned(mag % 10);
        mag /= 10;
        unsigned hi = unsigned(mag % 10);
        mag /= 10;
        bcd[i] = uint8_t(hi << 4 | lo);
    }
    bcd[9] = x.sign ? 0x80 : 0;
}

// ---- x87 transcendentals -------------------------------------------------------------------------
//
// Computed in a small 128-bit-significand floating point (BF: truncating arithmetic, about 120
// correct bits after a few dozen operations) and rounded once to the 80-bit result with
// round_pack(), so precision, flags and C1 come from one place. Hardware is not correctly rounded
// here; results agree with it to within an ulp or so (the differential tests allow 2).
//
// Argument reduction of FSIN/FCOS/FSINCOS/FPTAN follows the hardware, which reduces modulo a 66-bit
// approximation of pi (SDM Vol. 1, 8.3.10: "the FPU uses a 66-bit approximation of pi"; measured:
// fsin of the 80-bit pi gives -2^-64 exactly). The reduction itself is exact.

namespace {

struct BF {
    bool neg = false;
    int32_t e = 0;  // value = m * 2^(e - 127)
    u128 m = 0;     // normalised (bit 127 set) unless zero
};

BF bf_norm(bool neg, int32_t e, u128 m) {
    if (!m) return BF{neg, 0, 0};
    int lz = clz128(m);
    return BF{neg, e - lz, m << lz};
}
BF bf_from_unp(const Unp& u) { return bf_norm(u.sign, u.e, u128(u.sig) << 64); }
BF bf_int(int64_t v) {
    uint64_t mag = v < 0 ? 0 - uint64_t(v) : uint64_t(v);
    return bf_norm(v < 0, 127, u128(mag));
}
BF bf_neg(BF a) {
    a.neg = !a.neg;
    return a;
}

// High 128 bits of a 128x128-bit product.
u128 mul_hi(u128 a, u128 b) {
    uint64_t a1 = uint64_t(a >> 64), a0 = uint64_t(a), b1 = uint64_t(b >> 64), b0 = uint64_t(b);
    u128 p00 = u128(a0) * b0, p01 = u128(a0) * b1, p10 = u128(a1) * b0, p11 = u128(a1) * b1;
    u128 mid = (p00 >> 64) + uint64_t(p01) + uint64_t(p10);
    return p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
}

BF bf_mul(const BF& a, const BF& b) {
    if (!a.m || !b.m) return BF{bool(a.neg ^ b.neg), 0, 0};
    return bf_norm(a.neg ^ b.neg, a.e + b.e + 1, mul_hi(a.m, b.m));
}

BF bf_add(BF a, BF b) {
    if (!a.m) return b;
    if (!b.m) return a;
    if (a.e < b.e || (a.e == b.e && a.m < b.m)) {
        BF t = a;
        a = b;
        b = t;
    }
    int d = a.e - b.e;
    u128 bm = d >= 128 ? 0 : b.m >> d;
    if (a.neg == b.neg) {
        u128 s = a.m + bm;
        if (s < a.m) return BF{a.neg, a.e + 1, (s >> 1) | (u128(1) << 127)};
        return BF{a.neg, a.e, s};
    }
    return bf_norm(a.neg, a.e, a.m - bm);
}
BF bf_sub(const BF& a, const BF& b) { return bf_add(a, bf_neg(b)); }

BF bf_div(const BF& a, const BF& b) {  // b != 0
    if (!a.m) return BF{bool(a.neg ^ b.neg), 0, 0};
    u128 r = a.m, d = b.m, q = 0;
    for (int k = 0; k < 128; k++) {
        bool top = false;
        if (k) {
            top = r >> 127;
            r <<= 1;
        }
        q <<= 1;
        if (top || r >= d) {
            r -= d;
            q |= 1;
        }
    }
    return bf_norm(a.neg ^ b.neg, a.e - b.e, q);
}
BF bf_div_u(const BF& a, uint64_t d) {  // by a small positive integer (d < 2^32)
    if (!a.m) return a;
    u128 q1 = a.m / d, rem = a.m % d;
    uint64_t q2 = uint64_t((rem << 64) / d);  // rem < d: the next 64 quotient bits
    int lz = clz128(q1);                       // < 64 as d < 2^32
    u128 m = lz ? (q1 << lz) | (q2 >> (64 - lz)) : q1;
    return BF{a.neg, a.e - lz, m};
}

BF bf_sqrt(const BF& a) {  // a > 0
    // A 64-bit first approximation from the integer square root of the significand (exponent made
    // even), then one Newton step s = (s + a/s) / 2.
    int32_t E = a.e - 127;
    u128 m = a.m;
    if (E & 1) {
        m >>= 1;
        E += 1;
    }
    u128 rem;
    uint64_t q = isqrt128(m, &rem);
    BF s = bf_norm(false, 127 + E / 2, u128(q));
    BF half{false, -1, u128(1) << 127};
    return bf_mul(bf_add(s, bf_div(a, s)), half);
}

const BF kBfOne{false, 0, u128(1) << 127};
const BF kBfPi{false, 1, u128(0xc90fdaa22168c234ull) << 64 | 0xc4c6628b80dc1cd1ull};
const BF kBfPi2{false, 0, u128(0xc90fdaa22168c234ull) << 64 | 0xc4c6628b80dc1cd1ull};
const BF kBfPi4{false, -1, u128(0xc90fdaa22168c234ull) << 64 | 0xc4c6628b80dc1cd1ull};
const BF kBfLn2{false, -1, u128(0xb17217f7d1cf79abull) << 64 | 0xc9e3b39803f2f6afull};
const BF kBfLog2e{false, 0, u128(0xb8aa3b295c17f0bbull) << 64 | 0xbe87fed0691d3e89ull};

// Round a BF result to the 80-bit format (64-bit precision, env.round).
F80 bf_round(const BF& v, Env& env) {
    if (!v.m) {
        env.rounded_up = false;
        return F80{0, uint16_t(v.neg ? 0x8000 : 0)};
    }
    env.flags |= kInexact;  // a transcendental result that is not exact (exact ones are handled apart)
    Wide w = round_pack(v.neg, v.e, v.m | 1, kF80, 64, env);  // the sticky 1: never exact
    return pack80(w);
}

bool bf_small(const BF& term, const BF& sum) { return !term.m || term.e < sum.e - 132; }

// sin and cos of |r| <= ~pi/4.
BF bf_sin(const BF& r) {
    BF r2 = bf_mul(r, r), term = r, sum = r;
    for (uint64_t k = 1; k < 40; k++) {
        term = bf_div_u(bf_mul(term, r2), (2 * k) * (2 * k + 1));
        term.neg = !term.neg;
        sum = bf_add(sum, term);
        if (bf_small(term, sum)) break;
    }
    return sum;
}
BF bf_cos(const BF& r) {
    BF r2 = bf_mul(r, r), term = kBfOne, sum = kBfOne;
    for (uint64_t k = 1; k < 40; k++) {
        term = bf_div_u(bf_mul(term, r2), (2 * k - 1) * (2 * k));
        term.neg = !term.neg;
        sum = bf_add(sum, term);
        if (bf_small(term, sum)) break;
    }
    return sum;
}
// atanh(s) = s + s^3/3 + s^5/5 + ... for |s| <= ~0.18
BF bf_atanh(const BF& s) {
    BF s2 = bf_mul(s, s), pw = s, sum = s;
    for (uint64_t k = 3; k < 200; k += 2) {
        pw = bf_mul(pw, s2);
        BF term = bf_div_u(pw, k);
        sum = bf_add(sum, term);
        if (bf_small(term, sum)) break;
    }
    return sum;
}
// atan(t) for 0 <= t <= 1: three argument halvings, then the series.
BF bf_atan01(BF t) {
    for (int k = 0; k < 3; k++) t = bf_div(t, bf_add(kBfOne, bf_sqrt(bf_add(kBfOne, bf_mul(t, t)))));
    BF t2 = bf_mul(t, t), pw = t, sum = t;
    for (uint64_t k = 3; k < 200; k += 2) {
        pw = bf_mul(pw, t2);
        BF term = bf_div_u(pw, k);
        term.neg = ((k >> 1) & 1) != 0;
        sum = bf_add(sum, term);
        if (bf_small(term, sum)) break;
    }
    sum.e += 3;
    return sum;
}
// log2(v) for v > 0 (exact when v is a power of two).
BF bf_log2(const BF& v) {
    int32_t E = v.e;
    BF m = v;
    m.e = 0;  // [1, 2)
    // m > sqrt(2): use m/2 and E+1, so m is in [sqrt(2)/2, sqrt(2)].
    if (uint64_t(m.m >> 64) > 0xb504f333f9de6484ull) {
        m.e -= 1;
        E += 1;
    }
    BF s = bf_div(bf_sub(m, kBfOne), bf_add(m, kBfOne));
    BF l = bf_mul(bf_atanh(s), kBfLog2e);
    l.e += 1;  // ln(m) = 2 atanh(s)
    return bf_add(bf_int(E), l);
}

// Exact special results: flags and C1 as for any exactly representable value.
F80 exact80(bool, const BF& v, Env& env) {
    if (!v.m) {
        env.rounded_up = false;
        return F80{0, uint16_t(v.neg ? 0x8000 : 0)};
    }
    return pack80(round_pack(v.neg, v.e, v.m, kF80, 64, env));
}

F80 inf80(bool neg) { return F80{kTop, uint16_t(neg ? 0xffff : 0x7fff)}; }
F80 zero80(bool neg) { return F80{0, uint16_t(neg ? 0x8000 : 0)}; }

// The 66-bit pi of the hardware's reduction: P66 * 2^-64 (pi/2 = P66 * 2^-65).
constexpr u128 kP66 = (u128(0xc90fdaa22168c234ull) << 2) | 3;

// Reduce |x| (finite, < 2^63) modulo pi66/2: |x| = k * pi66/2 + r, |r| <= pi66/4. Exact.
BF reduce(const Unp& x, unsigned* quadrant) {
    if (x.e < -1) {  // |x| < 0.5: nothing to reduce
        *quadrant = 0;
        return bf_from_unp(Unp{cFinite, false, false, x.e, x.sig});
    }
    u128 X = u128(x.sig) << (x.e + 2);  // |x| in units of 2^-65 (x.e <= 62)
    u128 k = X / kP66, R = X - k * kP66;  // 0 <= R < P66
    bool neg = false;
    if (R > kP66 / 2) {  // nearest multiple: |r| <= pi66/4
        R = kP66 - R;
        neg = true;
        k++;
    }
    *quadrant = unsigned(k & 3);
    u128 mag = R;
    return bf_norm(neg, 127 - 65, mag);
}

}  // namespace

bool f80_sincos(F80 a, F80* sin_out, F80* cos_out, Env& e) {
    Unp x = unpack_f80(a);
    e.rounded_up = false;
    if (special(x) || x.cls == cInf) {
        F80 r = x.cls == cInf ? pack80(invalid(kF80, e)) : pack80(propagate1(x, kF80, e));
        if (sin_out) *sin_out = r;
        if (cos_out) *cos_out = r;
        return true;
    }
    if (x.cls == cZero) {
        if (sin_out) *sin_out = a;
        if (cos_out) *cos_out = F80{kTop, 0x3fff};
        return true;
    }
    if (x.e >= 63) return false;  // |x| >= 2^63: C2 = 1, operand unchanged
    if (x.den && denormal_stop(e)) return true;
    unsigned q;
    BF r = reduce(x, &q);
    BF s = bf_sin(r), c = bf_cos(r);
    BF sv = (q & 1) ? c : s, cv = (q & 1) ? s : c;
    if (q == 2 || q == 3) sv = bf_neg(sv);
    if (q == 1 || q == 2) cv = bf_neg(cv);
    if (x.sign) sv = bf_neg(sv);
    if (sin_out) *sin_out = bf_round(sv, e);
    if (cos_out) {
        bool up = e.rounded_up;
        *cos_out = bf_round(cv, e);
        if (sin_out) e.rounded_up = e.rounded_up || up;
    }
    return true;
}

bool f80_tan(F80 a, F80* out, Env& e) {
    Unp x = unpack_f80(a);
    e.rounded_up = false;
    if (special(x) || x.cls == cInf) {
        *out = x.cls == cInf ? pack80(invalid(kF80, e)) : pack80(propagate1(x, kF80, e));
        return true;
    }
    if (x.cls == cZero) {
        *out = a;
        return true;
    }
    if (x.e >= 63) return false;
    if (x.den && denormal_stop(e)) return true;
    unsigned q;
    BF r = reduce(x, &q);
    BF s = bf_sin(r), c = bf_cos(r);
    BF t = (q & 1) ? bf_neg(bf_div(c, s)) : bf_div(s, c);
    if (x.sign) t = bf_neg(t);
    *out = bf_round(t, e);
    return true;
}

// FPATAN (SDM Vol. 2 FPATAN, results table): arctan(y / x), quadrant from both signs.
F80 f80_atan(F80 a, F80 b, Env& e) {
    Unp x = unpack_f80(a), y = unpack_f80(b);
    if (special(x) || special(y)) return pack80(propagate2(x, y, kF80, e));
    e.rounded_up = false;
    if ((x.den || y.den) && denormal_stop(e)) return kF80DefaultNaN;
    BF res;
    if (y.cls == cZero) {
        if (!x.sign) return zero80(y.sign);  // +0 or positive x
        res = kBfPi;
    } else if (y.cls == cInf) {
        if (x.cls == cInf) res = x.sign ? bf_add(kBfPi2, kBfPi4) : kBfPi4;
        else res = kBfPi2;
    } else if (x.cls == cZero) {
        res = kBfPi2;
    } else if (x.cls == cInf) {
        if (!x.sign) return zero80(y.sign);
        res = kBfPi;
    } else {
        BF ax = bf_from_unp(x), ay = bf_from_unp(y);
        ax.neg = ay.neg = false;
        bool swap = ay.e > ax.e || (ay.e == ax.e && ay.m > ax.m);  // |y| > |x|
        BF t = swap ? bf_div(ax, ay) : bf_div(ay, ax);
        res = bf_atan01(t);
        if (swap) res = bf_sub(kBfPi2, res);
        if (x.sign) res = bf_sub(kBfPi, res);
    }
    res.neg = y.sign;
    return bf_round(res, e);
}

// F2XM1 (SDM Vol. 2 F2XM1): 2^x - 1 for -1 <= x <= 1 (other inputs: undefined by the SDM).
F80 f80_2xm1(F80 a, Env& e) {
    Unp x = unpack_f80(a);
    if (special(x)) return pack80(propagate1(x, kF80, e));
    e.rounded_up = false;
    if (x.cls == cZero) return a;
    if (x.cls == cInf) return x.sign ? F80{kTop, 0xbfff} : a;
    if (x.den && denormal_stop(e)) return kF80DefaultNaN;
    // Outside [-1, 1] (undefined by the SDM) the operand is left as it is, with PE (measured).
    if (x.e > 0 || (x.e == 0 && x.sig != kTop)) {
        e.flags |= kInexact;
        return a;
    }
    if (x.e == 0) {  // +-1: exact results 1 and -1/2, still reported inexact (measured)
        e.flags |= kInexact;
        return x.sign ? F80{kTop, 0xbffe} : F80{kTop, 0x3fff};
    }
    BF t = bf_mul(bf_from_unp(x), kBfLn2);
    BF term = t, sum = t;
    for (uint64_t k = 2; k < 60; k++) {
        term = bf_div_u(bf_mul(term, t), k);
        sum = bf_add(sum, term);
        if (bf_small(term, sum)) break;
    }
    return bf_round(sum, e);
}

// FYL2X (SDM Vol. 2 FYL2X, results table): y * log2(x).
F80 f80_yl2x(F80 a, F80 b, Env& e) {
    Unp x = unpack_f80(a), y = unpack_f80(b);
    if (special(x) || special(y)) return pack80(propagate2(x, y, kF80, e));
    e.rounded_up = false;
    if (x.sign && x.cls != cZero) return pack80(invalid(kF80, e));  // log of a negative number
    if (x.cls == cZero) {  // (ZE takes precedence over DE)
        if (y.cls == cZero) return pack80(invalid(kF80, e));
        if (y.cls != cInf) e.flags |= kDivZero;
        return inf80(!y.sign);
    }
    if ((x.den || y.den) && denormal_stop(e)) return kF80DefaultNaN;
    bool x_one = x.e == 0 && x.sig == kTop, x_below_one = x.e < 0;
    if (x.cls == cInf) {
        if (y.cls == cZero) return pack80(invalid(kF80, e));
        return inf80(y.sign);
    }
    if (y.cls == cInf) {
        if (x_one) return pack80(invalid(kF80, e));
        return inf80(y.sign ^ x_below_one);
    }
    if (y.cls == cZero || x_one) return zero80(y.sign ^ x_below_one);
    BF l = bf_log2(bf_from_unp(x));
    BF p = bf_mul(bf_from_unp(y), l);
    // x a power of two: log2(x) is exact and so is the rounding of y * log2(x); the hardware still
    // reports PE (measured).
    if ((x.sig << 1) == 0) {
        F80 r = exact80(false, p, e);
        e.flags |= kInexact;
        if ((r.se & 0x7fff) == 0 && r.mant) e.flags |= kUnderflow;  // tiny and "inexact" (measured)
        return r;
    }
    return bf_round(p, e);
}

// FYL2XP1 (SDM Vol. 2 FYL2XP1): y * log2(x + 1) for |x| < 1 - sqrt(2)/2.
F80 f80_yl2xp1(F80 a, F80 b, Env& e) {
    Unp x = unpack_f80(a), y = unpack_f80(b);
    if (special(x) || special(y)) return pack80(propagate2(x, y, kF80, e));
    e.rounded_up = false;
    if (x.cls == cInf && x.sign) return pack80(invalid(kF80, e));  // log of -inf (measured; before DE)
    if ((x.den || y.den) && denormal_stop(e)) return kF80DefaultNaN;
    if (x.cls == cZero) {
        if (y.cls == cInf) return pack80(invalid(kF80, e));
        return zero80(x.sign ^ y.sign);
    }
    if (y.cls == cZero) {
        if (x.cls == cInf) return pack80(invalid(kF80, e));
        return zero80(x.sign ^ y.sign);
    }
    if (x.cls == cInf || y.cls == cInf) return inf80(x.sign ^ y.sign);
    // x <= -1 (log undefined): the result is x itself, with PE (measured).
    if (x.sign && x.e >= 0) {
        e.flags |= kInexact;
        return a;
    }
    BF bx = bf_from_unp(x), l;
    if (x.e >= -2) {  // |x| >= 1/4: log2(1 + x) directly (x beyond the SDM's domain is computed too)
        l = bf_log2(bf_add(bx, kBfOne));
    } else {
        BF two{false, 1, u128(1) << 127};
        BF s = bf_div(bx, bf_add(bx, two));
        l = bf_mul(bf_atanh(s), kBfLog2e);
        l.e += 1;
    }
    return bf_round(bf_mul(bf_from_unp(y), l), e);
}

}  // namespace m86::cpu::sf
