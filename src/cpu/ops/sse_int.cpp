// SSE/SSE2 and MMX integer, move, logic, shuffle and cache-control instructions.
//
// Every vector operation is one small struct (the "Op" of sse.h's vop handler) written once for both
// register files: apply<VB> works on the VB bytes of the destination (16 = XMM, 8 = MMX). The
// selectors pick an instance per operand form, so a register form runs with no kind checks. None of
// this goes through the float core: these instructions never raise SIMD floating-point exceptions.
// SDM Vol. 2: the individual instruction pages; Vol. 1 chapters 9 (MMX), 10 (SSE), 11 (SSE2).
#include <limits>
#include <type_traits>

#include "cpu/ops/sse.h"

namespace m86::cpu {
namespace {

using namespace sse;

template <class T> inline T sat(int64_t v) {
    if (v < int64_t(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
    if (v > int64_t(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    return T(v);
}

// ---- lane-wise operations ------------------------------------------------------------------------

#define M86_LANE_OP(Name, T, expr)                                                \
    struct Name {                                                                 \
        template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) { \
            lanes<T, VB>(d, s, [](T a, T b) { return expr; });                    \
        }                                                                         \
    };

M86_LANE_OP(PaddB, uint8_t, a + b)
M86_LANE_OP(PaddW, uint16_t, a + b)
M86_LANE_OP(PaddD, uint32_t, a + b)
M86_LANE_OP(PaddQ, uint64_t, a + b)
M86_LANE_OP(PsubB, uint8_t, a - b)
M86_LANE_OP(PsubW, uint16_t, a - b)
M86_LANE_OP(PsubD, uint32_t, a - b)
M86_LANE_OP(PsubQ, uint64_t, a - b)
M86_LANE_OP(PaddSB, int8_t, sat<int8_t>(int64_t(a) + b))
M86_LANE_OP(PaddSW, int16_t, sat<int16_t>(int64_t(a) + b))
M86_LANE_OP(PaddUSB, uint8_t, sat<uint8_t>(int64_t(a) + b))
M86_LANE_OP(PaddUSW, uint16_t, sat<uint16_t>(int64_t(a) + b))
M86_LANE_OP(PsubSB, int8_t, sat<int8_t>(int64_t(a) - b))
M86_LANE_OP(PsubSW, int16_t, sat<int16_t>(int64_t(a) - b))
M86_LANE_OP(PsubUSB, uint8_t, sat<uint8_t>(int64_t(a) - b))
M86_LANE_OP(PsubUSW, uint16_t, sat<uint16_t>(int64_t(a) - b))
M86_LANE_OP(PmullW, int16_t, int16_t(int32_t(a) * b))
M86_LANE_OP(PmulhW, int16_t, int16_t((int32_t(a) * b) >> 16))
M86_LANE_OP(PmulhUW, uint16_t, uint16_t((uint32_t(a) * b) >> 16))
M86_LANE_OP(PavgB, uint8_t, (unsigned(a) + b + 1) >> 1)
M86_LANE_OP(PavgW, uint16_t, (unsigned(a) + b + 1) >> 1)
M86_LANE_OP(PminUB, uint8_t, a < b ? a : b)
M86_LANE_OP(PmaxUB, uint8_t, a > b ? a : b)
M86_LANE_OP(PminSW, int16_t, a < b ? a : b)
M86_LANE_OP(PmaxSW, int16_t, a > b ? a : b)
M86_LANE_OP(PcmpeqB, uint8_t, a == b ? 0xff : 0)
M86_LANE_OP(PcmpeqW, uint16_t, a == b ? 0xffff : 0)
M86_LANE_OP(PcmpeqD, uint32_t, a == b ? ~0u : 0)
M86_LANE_OP(PcmpgtB, int8_t, a > b ? -1 : 0)
M86_LANE_OP(PcmpgtW, int16_t, a > b ? -1 : 0)
M86_LANE_OP(PcmpgtD, int32_t, a > b ? -1 : 0)
M86_LANE_OP(Pand, uint64_t, a & b)
M86_LANE_OP(Pandn, uint64_t, ~a & b)
M86_LANE_OP(Por, uint64_t, a | b)
M86_LANE_OP(Pxor, uint64_t, a ^ b)
#undef M86_LANE_OP

// PMULUDQ: unsigned 32x32->64 products of the even doublewords.
struct PmulUDQ {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) {
        for (int k = 0; k < VB / 8; k++) d.q[k] = uint64_t(d.d[2 * k]) * s.d[2 * k];
    }
};
// PMADDWD: pairwise sums of signed word products. 0x8000*0x8000*2 wraps to 0x80000000 (SDM).
struct PmaddWD {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) {
        for (int k = 0; k < VB / 4; k++) {
            int64_t p = int64_t(int16_t(d.w[2 * k])) * int16_t(s.w[2 * k]) +
                        int64_t(int16_t(d.w[2 * k + 1])) * int16_t(s.w[2 * k + 1]);
            d.d[k] = uint32_t(p);
        }
    }
};
// PSADBW: per quadword, the sum of absolute byte differences in the low word, the rest zero.
struct PsadBW {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) {
        for (int k = 0; k < VB / 8; k++) {
            unsigned sum = 0;
            for (int j = 0; j < 8; j++) {
                int diff = int(d.b[8 * k + j]) - int(s.b[8 * k + j]);
                sum += unsigned(diff < 0 ? -diff : diff);
            }
            d.q[k] = sum;
        }
    }
};

// ---- shifts --------------------------------------------------------------------------------------
// Count = the low 64 bits of the source (register, memory or imm8). Counts above the lane width give
// 0 for logical shifts and the sign fill for arithmetic ones (SDM PSLLW/PSRAW pages).
template <class T, int Kind /*0 left, 1 logical right, 2 arithmetic right*/> struct Shift {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) {
        constexpr unsigned kBits = sizeof(T) * 8;
        uint64_t n = s.q[0];
        constexpr int N = VB / int(sizeof(T));
        T a[N];
        std::memcpy(a, d.b, VB);
        if (Kind == 2) {
            unsigned sh = n >= kBits ? kBits - 1 : unsigned(n);
            for (int k = 0; k < N; k++) a[k] = T(std::make_signed_t<T>(a[k]) >> sh);
        } else if (n >= kBits) {
            for (int k = 0; k < N; k++) a[k] = 0;
        } else {
            for (int k = 0; k < N; k++) a[k] = Kind == 0 ? T(a[k] << n) : T(a[k] >> n);
        }
        std::memcpy(d.b, a, VB);
    }
};
// PSLLDQ/PSRLDQ: byte shifts of the whole register by imm8 (> 15 clears it).
template <bool Left> struct ShiftDQ {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) {
        unsigned n = unsigned(s.q[0]);
        Xmm r;
        if (n < 16) {
            for (unsigned k = 0; k < 16; k++) {
                if (Left && k >= n) r.b[k] = d.b[k - n];
                if (!Left && k + n < 16) r.b[k] = d.b[k + n];
            }
        }
        d = r;
    }
};

// ---- pack / unpack -------------------------------------------------------------------------------
// Narrow the lanes of destination then source, with signed (S) or unsigned saturation of To.
template <class From, class To> struct Pack {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) {
        constexpr int N = VB / int(sizeof(From));
        From a[2 * N];
        std::memcpy(a, d.b, VB);
        std::memcpy(a + N, s.b, VB);
        To r[2 * N];
        for (int k = 0; k < 2 * N; k++) r[k] = sat<To>(a[k]);
        std::memcpy(d.b, r, VB);
    }
};
// Interleave the low (High=false) or high halves of destination and source lanes.
template <class T, bool High> struct Unpack {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) {
        constexpr int N = VB / int(sizeof(T));
        T a[N], b[N], r[N];
        std::memcpy(a, d.b, VB);
        std::memcpy(b, s.b, VB);
        constexpr int base = High ? N / 2 : 0;
        for (int k = 0; k < N / 2; k++) {
            r[2 * k] = a[base + k];
            r[2 * k + 1] = b[base + k];
        }
        std::memcpy(d.b, r, VB);
    }
};

// ---- shuffles ------------------------------------------------------------------------------------
struct PshufD {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t imm) {
        for (int k = 0; k < 4; k++) d.d[k] = s.d[(imm >> (2 * k)) & 3];
    }
};
// PSHUFLW (Hi = false) / PSHUFHW: shuffle the words of one half, copy the other.
template <bool Hi> struct PshufHalf {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t imm) {
        constexpr int o = Hi ? 4 : 0;
        d = s;
        for (int k = 0; k < 4; k++) d.w[o + k] = s.w[o + ((imm >> (2 * k)) & 3)];
    }
};
struct PshufW {  // MMX
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t imm) {
        for (int k = 0; k < 4; k++) d.w[k] = s.w[(imm >> (2 * k)) & 3];
    }
};
struct ShufPS {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t imm) {
        Xmm r;
        r.d[0] = d.d[imm & 3];
        r.d[1] = d.d[(imm >> 2) & 3];
        r.d[2] = s.d[(imm >> 4) & 3];
        r.d[3] = s.d[(imm >> 6) & 3];
        d = r;
    }
};
struct ShufPD {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t imm) {
        Xmm r;
        r.q[0] = d.q[imm & 1];
        r.q[1] = s.q[(imm >> 1) & 1];
        d = r;
    }
};
struct PinsrW {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t imm) {
        d.w[imm & (VB / 2 - 1)] = s.w[0];
    }
};

// ---- moves ---------------------------------------------------------------------------------------
// Memory and GPR sources arrive zero-filled, so a load that zero-extends is a plain copy.
struct Mov {
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) { d = s; }
};
struct MovQ {  // low quadword, upper cleared (MOVQ xmm, xmm; MOVQ2DQ; MOVDQ2Q)
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) {
        d.q[0] = s.q[0];
        d.q[1] = 0;
    }
};
struct MovLo32 {  // MOVSS xmm, xmm merges the low doubleword
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) { d.d[0] = s.d[0]; }
};
struct MovLo64 {  // MOVSD xmm, xmm; MOVLPS/MOVLPD xmm, m64
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) { d.q[0] = s.q[0]; }
};
struct MovHi64 {  // MOVHPS/MOVHPD xmm, m64; MOVLHPS
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) { d.q[1] = s.q[0]; }
};
struct MovHL {  // MOVHLPS
    template <int VB> static void apply(Cpu&, Xmm& d, const Xmm& s, uint8_t) { d.q[0] = s.q[1]; }
};

// ---- GPR-destination operations (vtog) -----------------------------------------------------------
struct Low {  // MOVD/MOVQ r, xmm/mm (the handler truncates to the width)
    template <uint8_t SK> static uint64_t apply(Cpu&, const Xmm& s, uint8_t) { return s.q[0]; }
};
struct PextrW {
    template <uint8_t SK> static uint64_t apply(Cpu&, const Xmm& s, uint8_t imm) {
        return s.w[imm & (SK == kMm ? 3 : 7)];
    }
};
struct PmovmskB {
    template <uint8_t SK> static uint64_t apply(Cpu&, const Xmm& s, uint8_t) {
        uint64_t r = 0;
        for (int k = 0; k < (SK == kMm ? 8 : 16); k++) r |= uint64_t(s.b[k] >> 7) << k;
        return r;
    }
};
struct MovmskPS {
    template <uint8_t SK> static uint64_t apply(Cpu&, const Xmm& s, uint8_t) {
        uint64_t r = 0;
        for (int k = 0; k < 4; k++) r |= uint64_t(s.d[k] >> 31) << k;
        return r;
    }
};
struct MovmskPD {
    template <uint8_t SK> static uint64_t apply(Cpu&, const Xmm& s, uint8_t) {
        return (s.q[0] >> 63) | ((s.q[1] >> 63) << 1);
    }
};

// ---- special handlers ----------------------------------------------------------------------------

// MASKMOVDQU / MASKMOVQ: store the bytes of operand 0 whose mask byte (operand 1) has bit 7 set to
// DS:rDI (segment overridable). Unaligned. The whole 16/8-byte range is checked first, whichever bytes
// are selected (as the host does: a fault leaves memory untouched and reports the range's page). With
// an all-zero mask nothing is accessed (SDM: faults are then implementation-specific).
template <uint8_t K> void maskmov(Cpu& c, const Insn& i) {
    check<K, K>(c);
    constexpr int N = K == kX ? 16 : 8;
    const Xmm v = fetch<K, 8, false>(c, i, 0), m = fetch<K, 8, false>(c, i, 1);
    int first = -1, last = -1;
    for (int k = 0; k < N; k++)
        if (m.b[k] & 0x80) {
            if (first < 0) first = k;
            last = k;
        }
    // Both operands are registers: the MMX transition precedes a #PF on the store (as on the host).
    if constexpr (K == kMm) mmx_enter(c);
    if (first >= 0) {
        uint64_t di = c.s.gpr[RDI];
        if (i.asz == 4) di = uint32_t(di);
        else if (i.asz == 2) di = uint16_t(di);
        uint64_t a = lin_of_w(c, i.seg, di);
        c.probe_write(a, N);
        for (int k = first; k <= last; k++)
            if (m.b[k] & 0x80) write<uint8_t>(c, a + unsigned(k), v.b[k]);
    }
}

// MOVNTI m32/m64, r: a plain store (the non-temporal hint has no architectural effect). No SSE checks.
template <int W> void movnti(Cpu& c, const Insn& i) { write<U<W>>(c, lin(c, i), c.get_reg<W>(i.reg[1])); }

// EMMS: all x87 tags empty and TOP = 0 (SDM Vol. 1, Table 9-3).
void emms(Cpu& c, const Insn&) {
    check_mmx(c);
    mmx_enter(c);
    c.s.x87.ftw = 0xffff;
}

// Fences and prefetch hints: no architectural effect in an in-order interpreter. PREFETCHh never
// faults (SDM PREFETCHh: "does not affect program behavior").
void nop_hint(Cpu&, const Insn&) {}

// CLFLUSH/CLFLUSHOPT/CLWB: no caches to flush, but the address is checked like a byte load
// (SDM CLFLUSH: "subject to all permission checking and faults associated with a byte load"), so a
// not-present page raises #PF.
void clflush(Cpu& c, const Insn& i) { c.translate(lin(c, i), Access::Read, c.tlb_ctx == 1); }

// ---- selectors -----------------------------------------------------------------------------------

// Stores "m, xmm/mm": MB bytes from byte Off; Al = alignment required.
template <int MB, bool Al, int Off = 0> Handler sel_store(const DecodeCtx& d) {
    if (op_class(d.ops[0]) != kMem) return nullptr;
    switch (op_class(d.ops[1])) {
        case kX: return &vstore<kX, MB, Al, Off>;
        case kMm: return MB <= 8 ? &vstore<kMm, MB, Al, Off> : nullptr;
        default: return nullptr;
    }
}

// MOVDQA/MOVAPS... (Al) and MOVDQU/MOVUPS...: load, store or register copy of 16 bytes.
template <bool Al> Handler sel_mov128(const DecodeCtx& d) {
    if (op_class(d.ops[0]) == kMem) return sel_store<16, Al>(d);
    return sel_vop<Mov, vf::kXX | (Al ? 0 : vf::kUnaligned), 16>(d);
}

// MOVD / MOVQ: every direction between XMM/MMX, GPRs and memory.
template <int W> Handler sel_movdq(const DecodeCtx& d) {
    uint8_t dk = op_class(d.ops[0]), sk = op_class(d.ops[1]);
    if (dk == kG) {
        bool w8 = d.ops[0].size == 64;
        if (sk == kX) return w8 ? &vtog<Low, 8, kX, 8, false> : &vtog<Low, 4, kX, 8, false>;
        if (sk == kMm) return w8 ? &vtog<Low, 8, kMm, 8, false> : &vtog<Low, 4, kMm, 8, false>;
        return nullptr;
    }
    if (dk == kMem) return mem_bytes(d.ops[0]) == 8 ? sel_store<8, false>(d) : sel_store<4, false>(d);
    // To a register: MOVQ xmm, xmm clears the upper quadword, like every load here.
    return sel_vop<MovQ, vf::kXX | vf::kMM | vf::kXG | vf::kMG, W, W>(d);
}

// MOVSS / MOVSD (W = 4 / 8): register forms merge, loads zero-extend, stores write W bytes.
template <int W> Handler sel_movs(const DecodeCtx& d) {
    if (d.zi.operand_count_visible < 2) return nullptr;  // the string instruction MOVSD
    uint8_t dk = op_class(d.ops[0]), sk = op_class(d.ops[1]);
    if (dk == kMem && sk == kX) return &vstore<kX, W, false, 0>;
    if (dk != kX) return nullptr;
    if (sk == kX) return W == 4 ? &vop<MovLo32, kX, kX, 16, false> : &vop<MovLo64, kX, kX, 16, false>;
    if (sk == kMem && mem_bytes(d.ops[1]) == W) return &vop<Mov, kX, kMem, W, false>;
    return nullptr;
}

// MOVLPS/MOVLPD (Off = 0) and MOVHPS/MOVHPD (Off = 8): 64-bit load into a half, or store of a half.
template <int Off> Handler sel_movhalf(const DecodeCtx& d) {
    if (op_class(d.ops[0]) == kMem) return sel_store<8, false, Off>(d);
    if (op_class(d.ops[0]) == kX && op_class(d.ops[1]) == kMem)
        return Off ? &vop<MovHi64, kX, kMem, 8, false> : &vop<MovLo64, kX, kMem, 8, false>;
    return nullptr;
}

// GPR destination from an XMM or MMX register: PEXTRW, PMOVMSKB, MOVMSKPS/PD.
template <class Op> Handler sel_tog(const DecodeCtx& d) {
    if (op_class(d.ops[0]) != kG) return nullptr;
    switch (op_class(d.ops[1])) {
        case kX: return &vtog<Op, 4, kX, 16, false>;
        case kMm: return &vtog<Op, 4, kMm, 8, false>;
        default: return nullptr;
    }
}

template <class Op> void reg_packed(Registry& r, ZydisMnemonic m) {  // XMM and MMX forms
    r.add(m, sel_vop<Op, vf::kXX | vf::kMM, 16, 8>);
}
template <class Op> void reg_xmm(Registry& r, ZydisMnemonic m) {  // XMM only
    r.add(m, sel_vop<Op, vf::kXX, 16>);
}
template <class Op> void reg_shift(Registry& r, ZydisMnemonic m) {  // by xmm/m128, mm/m64 or imm8
    r.add(m, sel_vop<Op, vf::kXX | vf::kMM | vf::kXI | vf::kMI, 16, 8>);
}

}  // namespace

void register_sse_int(Registry& r) {
    using namespace vf;
    // Moves.
    for (auto m : {ZYDIS_MNEMONIC_MOVDQA, ZYDIS_MNEMONIC_MOVAPS, ZYDIS_MNEMONIC_MOVAPD})
        r.add(m, sel_mov128<true>);
    for (auto m : {ZYDIS_MNEMONIC_MOVDQU, ZYDIS_MNEMONIC_MOVUPS, ZYDIS_MNEMONIC_MOVUPD})
        r.add(m, sel_mov128<false>);
    for (auto m : {ZYDIS_MNEMONIC_MOVNTDQ, ZYDIS_MNEMONIC_MOVNTPS, ZYDIS_MNEMONIC_MOVNTPD})
        r.add(m, sel_store<16, true>);
    r.add(ZYDIS_MNEMONIC_MOVNTQ, sel_store<8, false>);
    r.add(ZYDIS_MNEMONIC_MOVNTI, [](const DecodeCtx& d) -> Handler {
        return d.ops[1].size == 64 ? &movnti<8> : &movnti<4>;
    });
    r.add(ZYDIS_MNEMONIC_MOVD, sel_movdq<4>);
    r.add(ZYDIS_MNEMONIC_MOVQ, sel_movdq<8>);
    r.add(ZYDIS_MNEMONIC_MOVSS, sel_movs<4>);
    r.add(ZYDIS_MNEMONIC_MOVSD, sel_movs<8>);
    r.add(ZYDIS_MNEMONIC_MOVLPS, sel_movhalf<0>);
    r.add(ZYDIS_MNEMONIC_MOVLPD, sel_movhalf<0>);
    r.add(ZYDIS_MNEMONIC_MOVHPS, sel_movhalf<8>);
    r.add(ZYDIS_MNEMONIC_MOVHPD, sel_movhalf<8>);
    r.add(ZYDIS_MNEMONIC_MOVHLPS, sel_vop<MovHL, kXX, 0>);
    r.add(ZYDIS_MNEMONIC_MOVLHPS, sel_vop<MovHi64, kXX, 0>);
    r.add(ZYDIS_MNEMONIC_MOVQ2DQ, sel_vop<MovQ, kXMm, 0>);
    r.add(ZYDIS_MNEMONIC_MOVDQ2Q, sel_vop<MovQ, kMmX, 0>);
    r.add(ZYDIS_MNEMONIC_MASKMOVDQU, [](const DecodeCtx&) -> Handler { return &maskmov<kX>; });
    r.add(ZYDIS_MNEMONIC_MASKMOVQ, [](const DecodeCtx&) -> Handler { return &maskmov<kMm>; });
    r.add(ZYDIS_MNEMONIC_PMOVMSKB, sel_tog<PmovmskB>);
    r.add(ZYDIS_MNEMONIC_MOVMSKPS, sel_tog<MovmskPS>);
    r.add(ZYDIS_MNEMONIC_MOVMSKPD, sel_tog<MovmskPD>);
    r.add(ZYDIS_MNEMONIC_PEXTRW, sel_tog<PextrW>);
    r.add(ZYDIS_MNEMONIC_PINSRW, sel_vop<PinsrW, kXG | kMG, 2, 2>);

    // Packed integer arithmetic.
    reg_packed<PaddB>(r, ZYDIS_MNEMONIC_PADDB);
    reg_packed<PaddW>(r, ZYDIS_MNEMONIC_PADDW);
    reg_packed<PaddD>(r, ZYDIS_MNEMONIC_PADDD);
    reg_packed<PaddQ>(r, ZYDIS_MNEMONIC_PADDQ);
    reg_packed<PsubB>(r, ZYDIS_MNEMONIC_PSUBB);
    reg_packed<PsubW>(r, ZYDIS_MNEMONIC_PSUBW);
    reg_packed<PsubD>(r, ZYDIS_MNEMONIC_PSUBD);
    reg_packed<PsubQ>(r, ZYDIS_MNEMONIC_PSUBQ);
    reg_packed<PaddSB>(r, ZYDIS_MNEMONIC_PADDSB);
    reg_packed<PaddSW>(r, ZYDIS_MNEMONIC_PADDSW);
    reg_packed<PaddUSB>(r, ZYDIS_MNEMONIC_PADDUSB);
    reg_packed<PaddUSW>(r, ZYDIS_MNEMONIC_PADDUSW);
    reg_packed<PsubSB>(r, ZYDIS_MNEMONIC_PSUBSB);
    reg_packed<PsubSW>(r, ZYDIS_MNEMONIC_PSUBSW);
    reg_packed<PsubUSB>(r, ZYDIS_MNEMONIC_PSUBUSB);
    reg_packed<PsubUSW>(r, ZYDIS_MNEMONIC_PSUBUSW);
    reg_packed<PmullW>(r, ZYDIS_MNEMONIC_PMULLW);
    reg_packed<PmulhW>(r, ZYDIS_MNEMONIC_PMULHW);
    reg_packed<PmulhUW>(r, ZYDIS_MNEMONIC_PMULHUW);
    reg_packed<PmulUDQ>(r, ZYDIS_MNEMONIC_PMULUDQ);
    reg_packed<PmaddWD>(r, ZYDIS_MNEMONIC_PMADDWD);
    reg_packed<PavgB>(r, ZYDIS_MNEMONIC_PAVGB);
    reg_packed<PavgW>(r, ZYDIS_MNEMONIC_PAVGW);
    reg_packed<PminUB>(r, ZYDIS_MNEMONIC_PMINUB);
    reg_packed<PmaxUB>(r, ZYDIS_MNEMONIC_PMAXUB);
    reg_packed<PminSW>(r, ZYDIS_MNEMONIC_PMINSW);
    reg_packed<PmaxSW>(r, ZYDIS_MNEMONIC_PMAXSW);
    reg_packed<PsadBW>(r, ZYDIS_MNEMONIC_PSADBW);
    reg_packed<PcmpeqB>(r, ZYDIS_MNEMONIC_PCMPEQB);
    reg_packed<PcmpeqW>(r, ZYDIS_MNEMONIC_PCMPEQW);
    reg_packed<PcmpeqD>(r, ZYDIS_MNEMONIC_PCMPEQD);
    reg_packed<PcmpgtB>(r, ZYDIS_MNEMONIC_PCMPGTB);
    reg_packed<PcmpgtW>(r, ZYDIS_MNEMONIC_PCMPGTW);
    reg_packed<PcmpgtD>(r, ZYDIS_MNEMONIC_PCMPGTD);

    // Logic: integer forms have MMX variants; the PS/PD forms are bitwise and XMM-only.
    reg_packed<Pand>(r, ZYDIS_MNEMONIC_PAND);
    reg_packed<Pandn>(r, ZYDIS_MNEMONIC_PANDN);
    reg_packed<Por>(r, ZYDIS_MNEMONIC_POR);
    reg_packed<Pxor>(r, ZYDIS_MNEMONIC_PXOR);
    reg_xmm<Pand>(r, ZYDIS_MNEMONIC_ANDPS);
    reg_xmm<Pand>(r, ZYDIS_MNEMONIC_ANDPD);
    reg_xmm<Pandn>(r, ZYDIS_MNEMONIC_ANDNPS);
    reg_xmm<Pandn>(r, ZYDIS_MNEMONIC_ANDNPD);
    reg_xmm<Por>(r, ZYDIS_MNEMONIC_ORPS);
    reg_xmm<Por>(r, ZYDIS_MNEMONIC_ORPD);
    reg_xmm<Pxor>(r, ZYDIS_MNEMONIC_XORPS);
    reg_xmm<Pxor>(r, ZYDIS_MNEMONIC_XORPD);

    // Shifts.
    reg_shift<Shift<uint16_t, 0>>(r, ZYDIS_MNEMONIC_PSLLW);
    reg_shift<Shift<uint32_t, 0>>(r, ZYDIS_MNEMONIC_PSLLD);
    reg_shift<Shift<uint64_t, 0>>(r, ZYDIS_MNEMONIC_PSLLQ);
    reg_shift<Shift<uint16_t, 1>>(r, ZYDIS_MNEMONIC_PSRLW);
    reg_shift<Shift<uint32_t, 1>>(r, ZYDIS_MNEMONIC_PSRLD);
    reg_shift<Shift<uint64_t, 1>>(r, ZYDIS_MNEMONIC_PSRLQ);
    reg_shift<Shift<uint16_t, 2>>(r, ZYDIS_MNEMONIC_PSRAW);
    reg_shift<Shift<uint32_t, 2>>(r, ZYDIS_MNEMONIC_PSRAD);
    r.add(ZYDIS_MNEMONIC_PSLLDQ, sel_vop<ShiftDQ<true>, kXI, 0>);
    r.add(ZYDIS_MNEMONIC_PSRLDQ, sel_vop<ShiftDQ<false>, kXI, 0>);

    // Pack / unpack. MMX PUNPCKL* read only 32 bits from memory.
    reg_packed<Pack<int16_t, int8_t>>(r, ZYDIS_MNEMONIC_PACKSSWB);
    reg_packed<Pack<int32_t, int16_t>>(r, ZYDIS_MNEMONIC_PACKSSDW);
    reg_packed<Pack<int16_t, uint8_t>>(r, ZYDIS_MNEMONIC_PACKUSWB);
    r.add(ZYDIS_MNEMONIC_PUNPCKLBW, sel_vop<Unpack<uint8_t, false>, kXX | kMM, 16, 4>);
    r.add(ZYDIS_MNEMONIC_PUNPCKLWD, sel_vop<Unpack<uint16_t, false>, kXX | kMM, 16, 4>);
    r.add(ZYDIS_MNEMONIC_PUNPCKLDQ, sel_vop<Unpack<uint32_t, false>, kXX | kMM, 16, 4>);
    reg_packed<Unpack<uint8_t, true>>(r, ZYDIS_MNEMONIC_PUNPCKHBW);
    reg_packed<Unpack<uint16_t, true>>(r, ZYDIS_MNEMONIC_PUNPCKHWD);
    reg_packed<Unpack<uint32_t, true>>(r, ZYDIS_MNEMONIC_PUNPCKHDQ);
    reg_xmm<Unpack<uint64_t, false>>(r, ZYDIS_MNEMONIC_PUNPCKLQDQ);
    reg_xmm<Unpack<uint64_t, true>>(r, ZYDIS_MNEMONIC_PUNPCKHQDQ);
    reg_xmm<Unpack<uint32_t, false>>(r, ZYDIS_MNEMONIC_UNPCKLPS);
    reg_xmm<Unpack<uint32_t, true>>(r, ZYDIS_MNEMONIC_UNPCKHPS);
    reg_xmm<Unpack<uint64_t, false>>(r, ZYDIS_MNEMONIC_UNPCKLPD);
    reg_xmm<Unpack<uint64_t, true>>(r, ZYDIS_MNEMONIC_UNPCKHPD);

    // Shuffles.
    reg_xmm<PshufD>(r, ZYDIS_MNEMONIC_PSHUFD);
    reg_xmm<PshufHalf<true>>(r, ZYDIS_MNEMONIC_PSHUFHW);
    reg_xmm<PshufHalf<false>>(r, ZYDIS_MNEMONIC_PSHUFLW);
    r.add(ZYDIS_MNEMONIC_PSHUFW, sel_vop<PshufW, kMM, 0, 8>);
    reg_xmm<ShufPS>(r, ZYDIS_MNEMONIC_SHUFPS);
    reg_xmm<ShufPD>(r, ZYDIS_MNEMONIC_SHUFPD);

    // MMX state, cache control, hints.
    r.add(ZYDIS_MNEMONIC_EMMS, [](const DecodeCtx&) -> Handler { return &emms; });
    for (auto m : {ZYDIS_MNEMONIC_PREFETCHT0, ZYDIS_MNEMONIC_PREFETCHT1, ZYDIS_MNEMONIC_PREFETCHT2,
                   ZYDIS_MNEMONIC_PREFETCHNTA, ZYDIS_MNEMONIC_PREFETCHW, ZYDIS_MNEMONIC_PREFETCH,
                   ZYDIS_MNEMONIC_PREFETCHWT1,  // 0F 0D /2: a prefetch hint (NOP) wherever it decodes
                   ZYDIS_MNEMONIC_LFENCE, ZYDIS_MNEMONIC_MFENCE, ZYDIS_MNEMONIC_SFENCE})
        r.add(m, [](const DecodeCtx&) -> Handler { return &nop_hint; });
    for (auto m : {ZYDIS_MNEMONIC_CLFLUSH, ZYDIS_MNEMONIC_CLFLUSHOPT, ZYDIS_MNEMONIC_CLWB})
        r.add(m, [](const DecodeCtx&) -> Handler { return &clflush; });
}

}  // namespace m86::cpu
