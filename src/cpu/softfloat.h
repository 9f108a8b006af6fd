// Portable software floating point with x86 semantics: IEEE-754 binary32/binary64 (SSE) and the
// x87 80-bit extended format, exact on any host.
//
// Everything is integer arithmetic (uint64_t / unsigned __int128): no host floating point, no
// <cfenv>, so results and exception flags are identical on x86, ARM or anything else.
//
// The semantics are x86's, not generic IEEE defaults (SDM Vol. 1, 4.8 and 4.9, 8.5, 11.5):
//  - NaN propagation: SSE picks the first NaN source (quieted), x87 the NaN with the larger
//    significand (Table 4-7); invalid operations give the "real indefinite" negative QNaN.
//  - Tininess is detected after rounding; masked underflow is flagged only when the result is also
//    inexact; unmasked underflow/overflow flag UE/OE whether or not the result is exact.
//  - DAZ (SSE only) reads denormal inputs as zero without DE; FTZ (SSE only) flushes tiny results
//    to zero with UE+PE when underflow is masked.
//  - Exception priority (4.9.2): SNaN/invalid before QNaN handling before ZE/DE before OE/UE/PE.
//
// How it is used: fill an Env (rounding, DAZ/FTZ, masks, x87 precision), call the operation, read
// env.flags (accumulated). For unmasked IE/ZE/DE the caller must not write the result; for unmasked
// OE/UE, SSE writes nothing while x87 stores the returned value (exponent wrapped by 24576, SDM
// 8.5.4/8.5.5). env.rounded_up tells whether the returned magnitude was rounded up (x87 C1).
#pragma once

#include <cstdint>

#include "cpu/state.h"

namespace m86::cpu::sf {

// Rounding control, encoded as the x86 RC field (MXCSR bits 13-14, FCW bits 10-11).
enum Round : uint8_t { kNearest = 0, kDown = 1, kUp = 2, kZero = 3 };

// Exception flags, numbered as in MXCSR bits 0-5 and FSW bits 0-5.
enum Flag : uint8_t {
    kInvalid = 1, kDenormal = 2, kDivZero = 4, kOverflow = 8, kUnderflow = 16, kInexact = 32,
};

struct Env {
    Round round = kNearest;
    bool daz = false;  // SSE only: denormal inputs read as zero
    bool ftz = false;  // SSE only: tiny results flushed to zero (when UE is masked)
    uint8_t flags = 0;     // accumulated exception flags
    uint8_t masks = 0x3f;  // exception masks (same bit numbering as flags)
    // x87 only: precision control, significand bits that F80 add/sub/mul/div/sqrt round to (24, 53, 64).
    uint8_t precision = 64;
    // Output of the last operation: the result's magnitude was rounded up (x87 C1).
    bool rounded_up = false;
};

// x86 default values.
constexpr uint32_t kF32DefaultNaN = 0xffc00000u;
constexpr uint64_t kF64DefaultNaN = 0xfff8000000000000ull;
constexpr F80 kF80DefaultNaN{0xc000000000000000ull, 0xffff};
constexpr uint32_t kInt32Indefinite = 0x80000000u;
constexpr uint64_t kInt64Indefinite = 0x8000000000000000ull;

enum Relation : uint8_t { kLess, kEqual, kGreater, kUnordered };

// ---- binary32 / binary64 (SSE semantics: first-operand NaN propagation, DAZ/FTZ) ----------------
uint32_t f32_add(uint32_t a, uint32_t b, Env& e);
uint32_t f32_sub(uint32_t a, uint32_t b, Env& e);
uint32_t f32_mul(uint32_t a, uint32_t b, Env& e);
uint32_t f32_div(uint32_t a, uint32_t b, Env& e);
uint32_t f32_sqrt(uint32_t a, Env& e);
uint64_t f64_add(uint64_t a, uint64_t b, Env& e);
uint64_t f64_sub(uint64_t a, uint64_t b, Env& e);
uint64_t f64_mul(uint64_t a, uint64_t b, Env& e);
uint64_t f64_div(uint64_t a, uint64_t b, Env& e);
uint64_t f64_sqrt(uint64_t a, Env& e);

uint64_t f32_to_f64(uint32_t a, Env& e);
uint32_t f64_to_f32(uint64_t a, Env& e);
uint32_t i32_to_f32(int32_t a, Env& e);
uint32_t i64_to_f32(int64_t a, Env& e);
uint64_t i32_to_f64(int32_t a, Env& e);
uint64_t i64_to_f64(int64_t a, Env& e);
// Float -> integer with the current rounding (CVTSS2SI...) or truncating (CVTTSS2SI...). NaN, infinity
// and out-of-range give the integer indefinite with IE; inexact gives PE.
int32_t f32_to_i32(uint32_t a, Env& e);
int32_t f32_to_i32_trunc(uint32_t a, Env& e);
int64_t f32_to_i64(uint32_t a, Env& e);
int64_t f32_to_i64_trunc(uint32_t a, Env& e);
int32_t f64_to_i32(uint64_t a, Env& e);
int32_t f64_to_i32_trunc(uint64_t a, Env& e);
int64_t f64_to_i64(uint64_t a, Env& e);
int64_t f64_to_i64_trunc(uint64_t a, Env& e);

// Quiet compare (UCOMIS*, CMPccPS with quiet predicates) raises IE only for SNaN operands; signaling
// compare (COMIS*, ordered-signaling predicates) for any NaN. DE for denormal operands (unless DAZ).
Relation f32_compare(uint32_t a, uint32_t b, bool signaling, Env& e);
Relation f64_compare(uint64_t a, uint64_t b, bool signaling, Env& e);

// Round to an integral value in the same format (ROUNDSS/ROUNDSD): `r` is the rounding to use,
// `inexact` false suppresses PE (imm8 bit 3).
uint32_t f32_round_to_int(uint32_t a, Round r, bool inexact, Env& e);
uint64_t f64_round_to_int(uint64_t a, Round r, bool inexact, Env& e);

// Classification helpers.
inline bool f32_is_nan(uint32_t a) { return (a & 0x7fffffff) > 0x7f800000; }
inline bool f64_is_nan(uint64_t a) { return (a & ~(1ull << 63)) > 0x7ff0000000000000ull; }
inline bool f32_is_snan(uint32_t a) { return f32_is_nan(a) && !(a & 0x00400000); }
inline bool f64_is_snan(uint64_t a) { return f64_is_nan(a) && !(a & (1ull << 51)); }

// ---- x87 80-bit extended (x87 semantics: larger-significand NaN, precision control, wrapping) ----
// Unsupported encodings (pseudo-NaN, pseudo-infinity, unnormals) are invalid operands (IE, default
// NaN); pseudo-denormals are read as denormals (DE) (SDM Vol. 1, 8.2.2).
enum class F80Class : uint8_t { Zero, Normal, Denormal, Infinity, QNaN, SNaN, Unsupported };
F80Class f80_classify(F80 a);
inline bool f80_sign(F80 a) { return a.se >> 15; }
inline bool f80_is_nan(F80 a) {
    F80Class c = f80_classify(a);
    return c == F80Class::QNaN || c == F80Class::SNaN;
}

// The four basic operations as a value (x87 register and memory forms share one path). SubR/DivR
// compute b - a and b / a.
enum class Op80 : uint8_t { Add, Mul, Sub, SubR, Div, DivR };
F80 f80_op(Op80 op, F80 a, F80 b, Env& e);
// The same with a single/double memory operand b, converted exactly inside the operation so that its
// SNaN (IE) and denormal (DE) status follow the operation's exception priorities.
F80 f80_op_f32(Op80 op, F80 a, uint32_t b, Env& e);
F80 f80_op_f64(Op80 op, F80 a, uint64_t b, Env& e);
Relation f80_compare_f32(F80 a, uint32_t b, bool signaling, Env& e);
Relation f80_compare_f64(F80 a, uint64_t b, bool signaling, Env& e);

F80 f80_add(F80 a, F80 b, Env& e);
F80 f80_sub(F80 a, F80 b, Env& e);
F80 f80_mul(F80 a, F80 b, Env& e);
F80 f80_div(F80 a, F80 b, Env& e);
F80 f80_sqrt(F80 a, Env& e);
// FRNDINT: round to an integral value with env.round (precision control does not apply).
F80 f80_round_to_int(F80 a, Env& e);
// FSCALE: a * 2^trunc(b).
F80 f80_scale(F80 a, F80 b, Env& e);
// FXTRACT: splits a into its unbiased exponent (as a value) and its significand (exponent 0).
void f80_extract(F80 a, F80* exponent, F80* significand, Env& e);
// FPREM (ieee=false: truncating quotient) / FPREM1 (ieee=true: round-to-nearest quotient).
// On return *quotient holds the low 3 bits of the quotient (for C0/C3/C1) and *incomplete tells
// whether only a partial reduction was done (C2).
F80 f80_rem(F80 a, F80 b, bool ieee, Env& e, unsigned* quotient, bool* incomplete);
Relation f80_compare(F80 a, F80 b, bool signaling, Env& e);

// x87 transcendentals, computed with ~128-bit internal precision and rounded once with env.round
// (precision control does not apply). FSIN/FCOS/FSINCOS/FPTAN return false (operand out of range,
// C2 = 1, nothing written) when |a| >= 2^63.
bool f80_sincos(F80 a, F80* sin, F80* cos, Env& e);  // either output may be null
bool f80_tan(F80 a, F80* tan, Env& e);
F80 f80_atan(F80 x, F80 y, Env& e);    // FPATAN: arctan(y / x) with x = ST(0), y = ST(1)
F80 f80_2xm1(F80 a, Env& e);           // F2XM1: 2^a - 1
F80 f80_yl2x(F80 x, F80 y, Env& e);    // FYL2X: y * log2(x), x = ST(0), y = ST(1)
F80 f80_yl2xp1(F80 x, F80 y, Env& e);  // FYL2XP1: y * log2(x + 1)

// Conversions. Loading f32/f64 is exact (SNaN -> IE + quieted, denormal -> DE); storing rounds with
// env.round (precision control does not apply) and can overflow/underflow.
F80 f32_to_f80(uint32_t a, Env& e);
F80 f64_to_f80(uint64_t a, Env& e);
uint32_t f80_to_f32(F80 a, Env& e);
uint64_t f80_to_f64(F80 a, Env& e);
F80 i64_to_f80(int64_t a);
// F80 -> signed integer of `bits` (16, 32, 64) with env.round, or truncating (FISTTP). Out of range or
// NaN: IE and the integer indefinite (1 << (bits-1)).
int64_t f80_to_int(F80 a, unsigned bits, bool truncate, Env& e);
// Packed BCD (FBLD/FBSTP): 10 bytes, little-endian, 18 digits + sign byte.
F80 bcd_to_f80(const uint8_t bcd[10]);
void f80_to_bcd(F80 a, uint8_t bcd[10], Env& e);

}  // namespace m86::cpu::sf
