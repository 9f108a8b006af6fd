// Differential-test forms: SSE/SSE2, MMX, MXCSR and the FXSAVE/XSAVE state instructions.
//
// Form names start with "sse." (MMX register forms with "sse.mmx.") so M86_DIFF_FILTER=sse. runs them
// all. Inputs: integer lanes are mixed with edge values of the lane width (saturation boundaries);
// float lanes mix zeros of both signs, denormals, infinities, QNaN/SNaN, extremes and random values;
// MXCSR gets random rounding, DAZ/FTZ and (some forms) unmasked exceptions. Memory operands point
// into the data area: 16-byte operands of aligned forms are aligned 3 times in 4 (else #GP), and the
// picker's offsets also straddle the page boundary inside the data area and cross into the guard
// page (#PF).
#include <functional>

#include "diff/harness.h"

namespace m86::difftest {
namespace {

using G = Xbyak::CodeGenerator;
using Xbyak::Address;
using Xbyak::Mmx;
using Xbyak::Operand;
using Xbyak::Xmm;

// ---- inputs ----------------------------------------------------------------------------------------

// Integer lanes of `lane` bytes, each an edge value half the time.
void int_lanes(Picker& p, cpu::Xmm& x, unsigned lane) {
    for (unsigned k = 0; k < 16; k += lane) {
        uint64_t v = p.rng() % 2 ? p.edge(lane) : p.u64();
        std::memcpy(x.b + k, &v, lane);
    }
}

uint32_t f32_edge(Picker& p) {
    uint32_t sign = uint32_t(p.rng() & 1) << 31;
    switch (p.rng() % 20) {
        case 0: return sign;                                       // +-0
        case 1: return sign | uint32_t(1 + p.rng() % 0x7fffff);    // denormal
        case 2: return sign | 0x7f800000;                          // +-inf
        case 3: return sign | 0x7fc00000 | uint32_t(p.rng() % 0x400000);  // QNaN
        case 4: return sign | 0x7f800000 | uint32_t(1 + p.rng() % 0x3fffff);  // SNaN
        case 5: return sign | 0x7f7fffff;                          // max
        case 6: return sign | 0x00800000;                          // min normal
        case 7: return sign | 0x007fffff;                          // max denormal
        case 8: return sign | uint32_t(0x3f800000 + p.rng() % 3);  // ~1
        case 9: return sign | uint32_t(0x4f000000 - 2 + p.rng() % 5);  // ~2^31 (int32 conversion edge)
        case 10: return sign | uint32_t(0x5f000000 - 2 + p.rng() % 5);  // ~2^63
        case 11: return sign | uint32_t((0x3f000000 + (p.rng() % 0x2000000)));  // 0.5 .. 32768
        case 12: return sign | uint32_t(0x00800000 + p.rng() % 0x01000000);     // tiny normals
        case 13: return sign | uint32_t(0x7e800000 + p.rng() % 0x01000000);     // huge
        default: {
            uint32_t e = uint32_t(0x60 + p.rng() % 0x40) << 23;  // moderate exponents
            return sign | e | uint32_t(p.rng() & 0x7fffff);
        }
    }
}
uint64_t f64_edge(Picker& p) {
    uint64_t sign = (p.rng() & 1) << 63;
    const uint64_t frac = (1ull << 52) - 1;
    switch (p.rng() % 20) {
        case 0: return sign;
        case 1: return sign | (1 + p.rng() % frac);
        case 2: return sign | 0x7ff0000000000000ull;
        case 3: return sign | 0x7ff8000000000000ull | (p.rng() & (frac >> 1));
        case 4: return sign | 0x7ff0000000000000ull | (1 + p.rng() % (frac >> 1));
        case 5: return sign | 0x7fefffffffffffffull;
        case 6: return sign | 0x0010000000000000ull;
        case 7: return sign | frac;
        case 8: return sign | (0x3ff0000000000000ull + p.rng() % 3);
        case 9: return sign | (0x41e0000000000000ull - 2 + p.rng() % 5);  // ~2^31
        case 10: return sign | (0x43e0000000000000ull - 2 + p.rng() % 5);  // ~2^63
        case 11: return sign | (0x3fe0000000000000ull + (p.rng() % (0x40ull << 52)));
        case 12: return sign | (0x0010000000000000ull + (p.rng() % (0x30ull << 52)));  // tiny normals
        case 13: return sign | (0x7fd0000000000000ull + (p.rng() % (0x1ull << 52)));  // huge
        case 14: {  // representable in float (CVTSD2SS exactness) or just outside its range
            uint64_t e = uint64_t(0x380 + p.rng() % 0x100) << 52;
            return sign | e | ((p.rng() & 0xffffff) << 29);
        }
        default: {
            uint64_t e = uint64_t(0x3c0 + p.rng() % 0x80) << 52;
            return sign | e | (p.rng() & frac);
        }
    }
}
void f32_lanes(Picker& p, cpu::Xmm& x) {
    for (int k = 0; k < 4; k++) x.d[k] = p.rng() % 4 ? f32_edge(p) : uint32_t(p.u64());
}
void f64_lanes(Picker& p, cpu::Xmm& x) {
    for (int k = 0; k < 2; k++) x.q[k] = p.rng() % 4 ? f64_edge(p) : p.u64();
}

// Lane content of the XMM inputs of a form.
enum class Lanes { Random, I8, I16, I32, I64, F32, F64 };
void fill(Picker& p, cpu::Xmm& x, Lanes l) {
    switch (l) {
        case Lanes::I8: int_lanes(p, x, 1); break;
        case Lanes::I16: int_lanes(p, x, 2); break;
        case Lanes::I32: int_lanes(p, x, 4); break;
        case Lanes::I64: int_lanes(p, x, 8); break;
        case Lanes::F32: f32_lanes(p, x); break;
        case Lanes::F64: f64_lanes(p, x); break;
        default: break;
    }
}
void fill_all(Picker& p, State& st, Lanes l) {
    for (auto& x : st.xmm) fill(p, x, l);
}
// The same lanes in the data area (for memory sources), 16 bytes at a time.
void fill_data(Picker& p, State& st, Lanes l) {
    if (l == Lanes::Random) return;
    for (uint64_t off = 0; off < kDataSize; off += 16) {
        cpu::Xmm x;
        fill(p, x, l);
        std::memcpy(st.data + off, x.b, 16);
    }
}

// MMX inputs: random significands (the MMX registers), random exponents, a random TOP and tag word;
// rarely a pending x87 exception (FSW.ES), which must raise #MF.
void mmx_inputs(Picker& p, State& st, Lanes l) {
    for (auto& r : st.st) {
        cpu::Xmm x;
        fill(p, x, l == Lanes::Random ? Lanes::I64 : l);
        r.mant = p.rng() % 4 ? x.q[0] : p.u64();
        r.se = uint16_t(p.rng() % 3 ? p.u64() : 0);
    }
    st.fsw = uint16_t((p.rng() % 8) << 11);
    st.ftw = uint16_t(p.rng() % 3 == 0 ? 0xffff : p.rng() % 2 ? 0 : p.u64());
    if (p.rng() % 25 == 0) {
        st.fcw = 0x037e;   // IE unmasked
        st.fsw |= 0x8081;  // IE + ES (+ B, which mirrors ES): a pending exception
    }
}

// A random MXCSR: rounding, DAZ, FTZ, random flags; masks all set unless `unmask` (then each mask
// bit is cleared with probability 1/4).
uint32_t random_mxcsr(Picker& p, bool unmask) {
    uint32_t m = 0x1f80;
    m |= uint32_t(p.rng() % 4) << 13;                // RC
    if (p.rng() % 4 == 0) m |= 0x40;                 // DAZ
    if (p.rng() % 4 == 0) m |= 0x8000;               // FTZ
    if (p.rng() % 4 == 0) m |= uint32_t(p.rng() & 0x3f);  // sticky flags already set
    if (unmask && p.rng() % 3 == 0)
        for (int b = 7; b <= 12; b++)
            if (p.rng() % 4 == 0) m &= ~(1u << b);
    return m;
}

// ---- operands --------------------------------------------------------------------------------------

// A memory operand of `size` bytes in the data area through a random base register (not in `avoid`),
// sometimes with a displacement. Aligned forms get 16-byte-aligned addresses 3 times in 4.
Address mem(Picker& p, State& st, unsigned size, bool align16, uint64_t* off_out = nullptr,
            std::initializer_list<int> avoid = {}) {
    int b = p.gpr(avoid);
    uint64_t off;
    if (align16 && p.rng() % 4 != 0) {
        p.fault_percent = 0;
        off = (p.rng() % (kDataSize / 16)) * 16;
        if (p.rng() % 40 == 0) off = kDataSize;  // the guard page itself: #PF (alignment is fine)
    } else {
        p.fault_percent = 3;
        off = p.data_offset(size);
    }
    int32_t disp = 0;
    switch (p.rng() % 3) {
        case 0: disp = int32_t(p.rng() % 256) - 128; break;
        case 1: disp = int32_t(p.rng() % 0x10000) - 0x8000; break;
        default: break;
    }
    st.gpr[b] = kDataAddr + off - uint64_t(int64_t(disp));
    if (off_out) *off_out = off;
    return Xbyak::util::ptr[p.r64(b) + disp];
}

const Mmx& mmx(int n) {
    static const Mmx r[8] = {Mmx(0), Mmx(1), Mmx(2), Mmx(3), Mmx(4), Mmx(5), Mmx(6), Mmx(7)};
    return r[n & 7];
}

// ---- form builders ---------------------------------------------------------------------------------

using Op2 = std::function<void(G&, const Operand&, const Operand&)>;

struct VOpt {
    Lanes lanes = Lanes::Random;
    unsigned msize = 16;       // memory operand size (0: register source only)
    bool align = true;         // 16-byte memory operand must be aligned
    bool mmx = false;          // MMX register form (mm, mm/m64)
    bool mxcsr = false;        // randomise MXCSR (float forms)
    bool unmask = false;       // ... including unmasked exceptions
    bool reg_only = false;
    int cases = 0;
};

// "op dst, src" with dst an XMM (or MMX) register and src a register of the same file or memory.
void add_vv(std::vector<Form>& forms, const std::string& name, Op2 op, VOpt o) {
    Form f;
    f.name = name;
    f.sse = true;
    f.x87 = o.mmx;
    f.cases = o.cases;
    f.emit = [op, o](G& g, Picker& p, State& st) {
        fill_all(p, st, o.lanes);
        fill_data(p, st, o.lanes);
        if (o.mmx) mmx_inputs(p, st, o.lanes);
        if (o.mxcsr) st.mxcsr = random_mxcsr(p, o.unmask);
        int nregs = o.mmx ? 8 : 16;
        int d = int(p.rng() % nregs), s = int(p.rng() % nregs);
        const Operand& dr = o.mmx ? static_cast<const Operand&>(mmx(d)) : p.xmm(d);
        if (o.msize && !o.reg_only && p.rng() % 2) {
            op(g, dr, mem(p, st, o.msize, o.align && o.msize == 16));
        } else {
            const Operand& sr = o.mmx ? static_cast<const Operand&>(mmx(s)) : p.xmm(s);
            op(g, dr, sr);
        }
    };
    forms.push_back(std::move(f));
}

// Both forms of an integer instruction that exists for XMM and MMX registers.
void add_int(std::vector<Form>& forms, const std::string& mn, Op2 op, Lanes l, unsigned mmx_msize = 8) {
    add_vv(forms, "sse." + mn + " xmm, xmm/m128", op, VOpt{.lanes = l});
    add_vv(forms, "sse.mmx." + mn + " mm, mm/m64", op, VOpt{.lanes = l, .msize = mmx_msize, .mmx = true});
}

// A form with a free-style emitter (the body gets fresh inputs filled with `l`).
void add_custom(std::vector<Form>& forms, const std::string& name, bool mmx_form, Lanes l,
                std::function<void(G&, Picker&, State&)> body, int cases = 0) {
    Form f;
    f.name = name;
    f.sse = true;
    f.x87 = mmx_form;
    f.cases = cases;
    f.emit = [body, l, mmx_form](G& g, Picker& p, State& st) {
        fill_all(p, st, l);
        fill_data(p, st, l);
        if (mmx_form) mmx_inputs(p, st, l);
        body(g, p, st);
    };
    forms.push_back(std::move(f));
}

#define OPX(mn) [](G& g, const Operand& d, const Operand& s) { g.mn(static_cast<const Xmm&>(d), s); }
#define OPM(mn) [](G& g, const Operand& d, const Operand& s) { g.mn(static_cast<const Mmx&>(d), s); }

// ---- integer, move, logic, shuffle forms -----------------------------------------------------------

void integer_forms(std::vector<Form>& v) {
    add_int(v, "paddb", OPM(paddb), Lanes::I8);
    add_int(v, "paddw", OPM(paddw), Lanes::I16);
    add_int(v, "paddd", OPM(paddd), Lanes::I32);
    add_int(v, "paddq", OPM(paddq), Lanes::I64);
    add_int(v, "psubb", OPM(psubb), Lanes::I8);
    add_int(v, "psubw", OPM(psubw), Lanes::I16);
    add_int(v, "psubd", OPM(psubd), Lanes::I32);
    add_int(v, "psubq", OPM(psubq), Lanes::I64);
    add_int(v, "paddsb", OPM(paddsb), Lanes::I8);
    add_int(v, "paddsw", OPM(paddsw), Lanes::I16);
    add_int(v, "paddusb", OPM(paddusb), Lanes::I8);
    add_int(v, "paddusw", OPM(paddusw), Lanes::I16);
    add_int(v, "psubsb", OPM(psubsb), Lanes::I8);
    add_int(v, "psubsw", OPM(psubsw), Lanes::I16);
    add_int(v, "psubusb", OPM(psubusb), Lanes::I8);
    add_int(v, "psubusw", OPM(psubusw), Lanes::I16);
    add_int(v, "pmullw", OPM(pmullw), Lanes::I16);
    add_int(v, "pmulhw", OPM(pmulhw), Lanes::I16);
    add_int(v, "pmulhuw", OPM(pmulhuw), Lanes::I16);
    add_int(v, "pmuludq", OPM(pmuludq), Lanes::I32);
    add_int(v, "pmaddwd", OPM(pmaddwd), Lanes::I16);
    add_int(v, "pavgb", OPM(pavgb), Lanes::I8);
    add_int(v, "pavgw", OPM(pavgw), Lanes::I16);
    add_int(v, "pminub", OPM(pminub), Lanes::I8);
    add_int(v, "pmaxub", OPM(pmaxub), Lanes::I8);
    add_int(v, "pminsw", OPM(pminsw), Lanes::I16);
    add_int(v, "pmaxsw", OPM(pmaxsw), Lanes::I16);
    add_int(v, "psadbw", OPM(psadbw), Lanes::I8);
    add_int(v, "pcmpeqb", OPM(pcmpeqb), Lanes::I8);
    add_int(v, "pcmpeqw", OPM(pcmpeqw), Lanes::I16);
    add_int(v, "pcmpeqd", OPM(pcmpeqd), Lanes::I32);
    add_int(v, "pcmpgtb", OPM(pcmpgtb), Lanes::I8);
    add_int(v, "pcmpgtw", OPM(pcmpgtw), Lanes::I16);
    add_int(v, "pcmpgtd", OPM(pcmpgtd), Lanes::I32);
    add_int(v, "pand", OPM(pand), Lanes::Random);
    add_int(v, "pandn", OPM(pandn), Lanes::Random);
    add_int(v, "por", OPM(por), Lanes::Random);
    add_int(v, "pxor", OPM(pxor), Lanes::Random);
    add_int(v, "packsswb", OPM(packsswb), Lanes::I16);
    add_int(v, "packssdw", OPM(packssdw), Lanes::I32);
    add_int(v, "packuswb", OPM(packuswb), Lanes::I16);
    add_int(v, "punpcklbw", OPM(punpcklbw), Lanes::Random, 4);
    add_int(v, "punpcklwd", OPM(punpcklwd), Lanes::Random, 4);
    add_int(v, "punpckldq", OPM(punpckldq), Lanes::Random, 4);
    add_int(v, "punpckhbw", OPM(punpckhbw), Lanes::Random);
    add_int(v, "punpckhwd", OPM(punpckhwd), Lanes::Random);
    add_int(v, "punpckhdq", OPM(punpckhdq), Lanes::Random);
    add_vv(v, "sse.punpcklqdq xmm, xmm/m128", OPX(punpcklqdq), {});
    add_vv(v, "sse.punpckhqdq xmm, xmm/m128", OPX(punpckhqdq), {});
    add_vv(v, "sse.unpcklps xmm, xmm/m128", OPX(unpcklps), {});
    add_vv(v, "sse.unpckhps xmm, xmm/m128", OPX(unpckhps), {});
    add_vv(v, "sse.unpcklpd xmm, xmm/m128", OPX(unpcklpd), {});
    add_vv(v, "sse.unpckhpd xmm, xmm/m128", OPX(unpckhpd), {});
    for (const char* mn : {"andps", "andpd", "andnps", "andnpd", "orps", "orpd", "xorps", "xorpd"}) {
        std::string m = mn;
        Op2 op;
        if (m == "andps") op = OPX(andps);
        else if (m == "andpd") op = OPX(andpd);
        else if (m == "andnps") op = OPX(andnps);
        else if (m == "andnpd") op = OPX(andnpd);
        else if (m == "orps") op = OPX(orps);
        else if (m == "orpd") op = OPX(orpd);
        else if (m == "xorps") op = OPX(xorps);
        else op = OPX(xorpd);
        add_vv(v, "sse." + m + " xmm, xmm/m128", op, {});
    }

    // Shifts: by register/memory count (small counts most of the time) and by imm8.
    struct ShiftMn {
        const char* mn;
        void (G::*by_op)(const Mmx&, const Operand&);
        void (G::*by_imm)(const Mmx&, int);
        unsigned lane;
    };
    const ShiftMn shifts[] = {
        {"psllw", &G::psllw, &G::psllw, 2}, {"pslld", &G::pslld, &G::pslld, 4}, {"psllq", &G::psllq, &G::psllq, 8},
        {"psrlw", &G::psrlw, &G::psrlw, 2}, {"psrld", &G::psrld, &G::psrld, 4}, {"psrlq", &G::psrlq, &G::psrlq, 8},
        {"psraw", &G::psraw, &G::psraw, 2}, {"psrad", &G::psrad, &G::psrad, 4},
    };
    for (const ShiftMn& sm : shifts) {
        for (bool mm_form : {false, true}) {
            std::string pre = mm_form ? "sse.mmx." : "sse.";
            auto by_op = sm.by_op;
            auto by_imm = sm.by_imm;
            unsigned lane = sm.lane;
            add_custom(v, pre + sm.mn + (mm_form ? " mm, mm/m64" : " xmm, xmm/m128"), mm_form, Lanes::Random,
                       [=](G& g, Picker& p, State& st) {
                           int nregs = mm_form ? 8 : 16;
                           int d = int(p.rng() % nregs), s = int(p.rng() % nregs);
                           const Mmx& dr = mm_form ? mmx(d) : p.xmm(d);
                           auto count = [&]() -> uint64_t {
                               switch (p.rng() % 4) {
                                   case 0: return p.u64();
                                   case 1: return lane * 8 - 1 + p.rng() % 3;
                                   default: return p.rng() % (lane * 8);
                               }
                           };
                           if (p.rng() % 2) {
                               if (mm_form) st.st[s].mant = count();
                               else st.xmm[s].q[0] = count();
                               (g.*by_op)(dr, mm_form ? mmx(s) : p.xmm(s));
                           } else {
                               uint64_t off = 0;
                               Address a = mem(p, st, mm_form ? 8 : 16, !mm_form, &off);
                               uint64_t c = count();  // the count goes where the operand is
                               if (off + 8 <= kDataSize) std::memcpy(st.data + off, &c, 8);
                               (g.*by_op)(dr, a);
                           }
                       });
            add_custom(v, pre + sm.mn + (mm_form ? " mm, imm8" : " xmm, imm8"), mm_form, Lanes::Random,
                       [=](G& g, Picker& p, State&) {
                           int d = int(p.rng() % (mm_form ? 8 : 16));
                           int imm = p.rng() % 3 ? int(p.rng() % (lane * 8 + 2)) : int(p.rng() % 256);
                           (g.*by_imm)(mm_form ? mmx(d) : p.xmm(d), imm);
                       });
        }
    }
    add_custom(v, "sse.pslldq xmm, imm8", false, Lanes::Random, [](G& g, Picker& p, State&) {
        g.pslldq(p.xmm(int(p.rng() % 16)), int(p.rng() % 3 ? p.rng() % 18 : p.rng() % 256));
    });
    add_custom(v, "sse.psrldq xmm, imm8", false, Lanes::Random, [](G& g, Picker& p, State&) {
        g.psrldq(p.xmm(int(p.rng() % 16)), int(p.rng() % 3 ? p.rng() % 18 : p.rng() % 256));
    });

    // Shuffles with imm8.
    auto add_imm = [&](const std::string& name, bool mm_form, bool align,
                       std::function<void(G&, const Operand&, const Operand&, uint8_t)> op) {
        add_custom(v, name, mm_form, Lanes::Random, [=](G& g, Picker& p, State& st) {
            int n = mm_form ? 8 : 16;
            const Operand& d = mm_form ? static_cast<const Operand&>(mmx(int(p.rng() % n))) : p.xmm(int(p.rng() % n));
            uint8_t imm = uint8_t(p.rng());
            if (p.rng() % 2)
                op(g, d, mem(p, st, mm_form ? 8 : 16, align), imm);
            else
                op(g, d, mm_form ? static_cast<const Operand&>(mmx(int(p.rng() % n))) : p.xmm(int(p.rng() % n)), imm);
        });
    };
    add_imm("sse.pshufd xmm, xmm/m128, imm8", false, true,
            [](G& g, const Operand& d, const Operand& s, uint8_t i) { g.pshufd(static_cast<const Mmx&>(d), s, i); });
    add_imm("sse.pshufhw xmm, xmm/m128, imm8", false, true,
            [](G& g, const Operand& d, const Operand& s, uint8_t i) { g.pshufhw(static_cast<const Mmx&>(d), s, i); });
    add_imm("sse.pshuflw xmm, xmm/m128, imm8", false, true,
            [](G& g, const Operand& d, const Operand& s, uint8_t i) { g.pshuflw(static_cast<const Mmx&>(d), s, i); });
    add_imm("sse.mmx.pshufw mm, mm/m64, imm8", true, false,
            [](G& g, const Operand& d, const Operand& s, uint8_t i) { g.pshufw(static_cast<const Mmx&>(d), s, i); });
    add_imm("sse.shufps xmm, xmm/m128, imm8", false, true,
            [](G& g, const Operand& d, const Operand& s, uint8_t i) { g.shufps(static_cast<const Xmm&>(d), s, i); });
    add_imm("sse.shufpd xmm, xmm/m128, imm8", false, true,
            [](G& g, const Operand& d, const Operand& s, uint8_t i) { g.shufpd(static_cast<const Xmm&>(d), s, i); });

    // PINSRW / PEXTRW, PMOVMSKB, MOVMSKPS/PD.
    for (bool mm_form : {false, true}) {
        std::string pre = mm_form ? "sse.mmx." : "sse.";
        add_custom(v, pre + (mm_form ? "pinsrw mm, r32/m16, imm8" : "pinsrw xmm, r32/m16, imm8"), mm_form,
                   Lanes::Random, [mm_form](G& g, Picker& p, State& st) {
                       const Mmx& d = mm_form ? mmx(int(p.rng() % 8)) : p.xmm(int(p.rng() % 16));
                       uint8_t imm = uint8_t(p.rng());
                       if (p.rng() % 2) g.pinsrw(d, mem(p, st, 2, false), imm);
                       else g.pinsrw(d, p.r32(p.gpr()), imm);
                   });
        add_custom(v, pre + (mm_form ? "pextrw r32, mm, imm8" : "pextrw r32, xmm, imm8"), mm_form, Lanes::Random,
                   [mm_form](G& g, Picker& p, State&) {
                       const Mmx& s = mm_form ? mmx(int(p.rng() % 8)) : p.xmm(int(p.rng() % 16));
                       uint8_t imm = uint8_t(p.rng());
                       if (p.rng() % 2) g.pextrw(p.r32(p.gpr()), s, imm);
                       else g.pextrw(p.r64(p.gpr()), s, imm);
                   });
        add_custom(v, pre + (mm_form ? "pmovmskb r, mm" : "pmovmskb r, xmm"), mm_form, Lanes::I8,
                   [mm_form](G& g, Picker& p, State&) {
                       const Mmx& s = mm_form ? mmx(int(p.rng() % 8)) : p.xmm(int(p.rng() % 16));
                       if (p.rng() % 2) g.pmovmskb(p.r32(p.gpr()), s);
                       else g.pmovmskb(p.r64(p.gpr()), s);
                   });
    }
    add_custom(v, "sse.movmskps r, xmm", false, Lanes::F32, [](G& g, Picker& p, State&) {
        if (p.rng() % 2) g.movmskps(p.r32(p.gpr()), p.xmm(int(p.rng() % 16)));
        else g.movmskps(p.r64(p.gpr()), p.xmm(int(p.rng() % 16)));
    });
    add_custom(v, "sse.movmskpd r, xmm", false, Lanes::F64, [](G& g, Picker& p, State&) {
        if (p.rng() % 2) g.movmskpd(p.r32(p.gpr()), p.xmm(int(p.rng() % 16)));
        else g.movmskpd(p.r64(p.gpr()), p.xmm(int(p.rng() % 16)));
    });
}

void move_forms(std::vector<Form>& v) {
    // 128-bit loads, stores, copies: aligned and unaligned variants.
    struct M128 {
        const char* mn;
        void (G::*load)(const Xmm&, const Operand&);
        bool align;
    };
    const M128 m128[] = {{"movdqa", &G::movdqa, true}, {"movdqu", &G::movdqu, false}, {"movaps", &G::movaps, true},
                         {"movups", &G::movups, false}, {"movapd", &G::movapd, true}, {"movupd", &G::movupd, false}};
    for (const M128& m : m128) {
        auto load = m.load;
        bool align = m.align;
        std::string mn = m.mn;
        add_custom(v, "sse." + mn + " xmm, xmm/m128", false, Lanes::Random, [=](G& g, Picker& p, State& st) {
            const Xmm& d = p.xmm(int(p.rng() % 16));
            if (p.rng() % 2) (g.*load)(d, mem(p, st, 16, align));
            else (g.*load)(d, p.xmm(int(p.rng() % 16)));
        });
        add_custom(v, "sse." + mn + " m128, xmm", false, Lanes::Random, [=](G& g, Picker& p, State& st) {
            Address a = mem(p, st, 16, align);
            const Xmm& s = p.xmm(int(p.rng() % 16));
            if (mn == "movdqa") g.movdqa(a, s);
            else if (mn == "movdqu") g.movdqu(a, s);
            else if (mn == "movaps") g.movaps(a, s);
            else if (mn == "movups") g.movups(a, s);
            else if (mn == "movapd") g.movapd(a, s);
            else g.movupd(a, s);
        });
    }
    add_custom(v, "sse.movntdq/ps/pd m128, xmm", false, Lanes::Random, [](G& g, Picker& p, State& st) {
        Address a = mem(p, st, 16, true);
        const Xmm& s = p.xmm(int(p.rng() % 16));
        switch (p.rng() % 3) {
            case 0: g.movntdq(a, s); break;
            case 1: g.movntps(a, s); break;
            default: g.movntpd(a, s); break;
        }
    });
    add_custom(v, "sse.mmx.movntq m64, mm", true, Lanes::Random,
               [](G& g, Picker& p, State& st) { g.movntq(mem(p, st, 8, false), mmx(int(p.rng() % 8))); });
    add_custom(v, "sse.movnti m32/m64, r", false, Lanes::Random, [](G& g, Picker& p, State& st) {
        if (p.rng() % 2) {
            Address a = mem(p, st, 4, false);
            g.movnti(a, p.r32(p.gpr()));
        } else {
            Address a = mem(p, st, 8, false);
            g.movnti(a, p.r64(p.gpr()));
        }
    });

    // MOVD / MOVQ in every direction.
    for (bool mm_form : {false, true}) {
        std::string pre = mm_form ? "sse.mmx." : "sse.";
        std::string r = mm_form ? "mm" : "xmm";
        auto reg = [mm_form](Picker& p) -> const Mmx& {
            return mm_form ? mmx(int(p.rng() % 8)) : static_cast<const Mmx&>(p.xmm(int(p.rng() % 16)));
        };
        add_custom(v, pre + "movd " + r + ", r32/m32", mm_form, Lanes::Random, [=](G& g, Picker& p, State& st) {
            const Mmx& d = reg(p);
            if (p.rng() % 2) g.movd(d, mem(p, st, 4, false));
            else g.movd(d, p.r32(p.gpr()));
        });
        add_custom(v, pre + "movd r32/m32, " + r, mm_form, Lanes::Random, [=](G& g, Picker& p, State& st) {
            const Mmx& s = reg(p);
            if (p.rng() % 2) g.movd(mem(p, st, 4, false), s);
            else g.movd(p.r32(p.gpr()), s);
        });
        add_custom(v, pre + "movq " + r + ", r64", mm_form, Lanes::Random,
                   [=](G& g, Picker& p, State&) { g.movq(reg(p), p.r64(p.gpr())); });
        add_custom(v, pre + "movq r64, " + r, mm_form, Lanes::Random,
                   [=](G& g, Picker& p, State&) { g.movq(p.r64(p.gpr()), reg(p)); });
        add_custom(v, pre + "movq " + r + ", " + r + "/m64", mm_form, Lanes::Random, [=](G& g, Picker& p, State& st) {
            const Mmx& d = reg(p);
            if (p.rng() % 2) g.movq(d, mem(p, st, 8, false));
            else g.movq(d, reg(p));
        });
        add_custom(v, pre + "movq m64, " + r, mm_form, Lanes::Random,
                   [=](G& g, Picker& p, State& st) { g.movq(mem(p, st, 8, false), reg(p)); });
    }
    // MOVQ xmm, xmm (66 0F D6 /r register form) and the 64-bit-load encodings with REX.W (66 REX.W 0F 6E/7E
    // with a memory operand).
    add_custom(v, "sse.movq xmm/m64, xmm (66 0f d6)", false, Lanes::Random, [](G& g, Picker& p, State&) {
        int d = int(p.rng() % 16), s = int(p.rng() % 16);
        g.db(0x66);
        if (d >= 8 || s >= 8) g.db(0x40 | (s >= 8 ? 4 : 0) | (d >= 8 ? 1 : 0));
        g.db(0x0f);
        g.db(0xd6);
        g.db(0xc0 | ((s & 7) << 3) | (d & 7));
    });
    add_custom(v, "sse.movq xmm, m64 / m64, xmm (66 REX.W 0f 6e/7e)", false, Lanes::Random,
               [](G& g, Picker& p, State& st) {
                   int x = int(p.rng() % 8);
                   int b = p.gpr({cpu::RBP, cpu::R12, cpu::R13});
                   p.fault_percent = 3;
                   st.gpr[b] = kDataAddr + p.data_offset(8);
                   g.db(0x66);
                   g.db(0x48 | (b >= 8 ? 1 : 0));
                   g.db(0x0f);
                   g.db(p.rng() % 2 ? 0x6e : 0x7e);
                   g.db(((x & 7) << 3) | (b & 7));  // mod 00: [base]
               });
    add_custom(v, "sse.movq2dq xmm, mm", true, Lanes::Random,
               [](G& g, Picker& p, State&) { g.movq2dq(p.xmm(int(p.rng() % 16)), mmx(int(p.rng() % 8))); });
    add_custom(v, "sse.movdq2q mm, xmm", true, Lanes::Random,
               [](G& g, Picker& p, State&) { g.movdq2q(mmx(int(p.rng() % 8)), p.xmm(int(p.rng() % 16))); });

    // MOVSS / MOVSD: merge, zero-extending load, store.
    add_custom(v, "sse.movss xmm, xmm/m32", false, Lanes::Random, [](G& g, Picker& p, State& st) {
        const Xmm& d = p.xmm(int(p.rng() % 16));
        if (p.rng() % 2) g.movss(d, mem(p, st, 4, false));
        else g.movss(d, p.xmm(int(p.rng() % 16)));
    });
    add_custom(v, "sse.movss m32, xmm", false, Lanes::Random,
               [](G& g, Picker& p, State& st) { g.movss(mem(p, st, 4, false), p.xmm(int(p.rng() % 16))); });
    add_custom(v, "sse.movsd xmm, xmm/m64", false, Lanes::Random, [](G& g, Picker& p, State& st) {
        const Xmm& d = p.xmm(int(p.rng() % 16));
        if (p.rng() % 2) g.movsd(d, mem(p, st, 8, false));
        else g.movsd(d, p.xmm(int(p.rng() % 16)));
    });
    add_custom(v, "sse.movsd m64, xmm", false, Lanes::Random,
               [](G& g, Picker& p, State& st) { g.movsd(mem(p, st, 8, false), p.xmm(int(p.rng() % 16))); });

    // Half moves.
    add_custom(v, "sse.movlps/movhps/movlpd/movhpd xmm, m64", false, Lanes::Random, [](G& g, Picker& p, State& st) {
        const Xmm& d = p.xmm(int(p.rng() % 16));
        Address a = mem(p, st, 8, false);
        switch (p.rng() % 4) {
            case 0: g.movlps(d, a); break;
            case 1: g.movhps(d, a); break;
            case 2: g.movlpd(d, a); break;
            default: g.movhpd(d, a); break;
        }
    });
    add_custom(v, "sse.movlps/movhps/movlpd/movhpd m64, xmm", false, Lanes::Random, [](G& g, Picker& p, State& st) {
        const Xmm& s = p.xmm(int(p.rng() % 16));
        Address a = mem(p, st, 8, false);
        switch (p.rng() % 4) {
            case 0: g.movlps(a, s); break;
            case 1: g.movhps(a, s); break;
            case 2: g.movlpd(a, s); break;
            default: g.movhpd(a, s); break;
        }
    });
    add_custom(v, "sse.movhlps/movlhps xmm, xmm", false, Lanes::Random, [](G& g, Picker& p, State&) {
        const Xmm& d = p.xmm(int(p.rng() % 16));
        const Xmm& s = p.xmm(int(p.rng() % 16));
        if (p.rng() % 2) g.movhlps(d, s);
        else g.movlhps(d, s);
    });

    // MASKMOVDQU / MASKMOVQ: RDI into the data area (sometimes near the guard page), a mask with
    // random bit 7s (never all clear: faults are then implementation-specific).
    for (bool mm_form : {false, true}) {
        add_custom(v, mm_form ? "sse.mmx.maskmovq mm, mm" : "sse.maskmovdqu xmm, xmm", mm_form, Lanes::Random,
                   [mm_form](G& g, Picker& p, State& st) {
                       int n = mm_form ? 8 : 16;
                       int d = int(p.rng() % n), m;
                       do m = int(p.rng() % n); while (m == d);
                       uint8_t mask[16];
                       bool any = false;
                       for (int k = 0; k < n; k++) {
                           mask[k] = uint8_t(p.rng() & 0x7f) | (p.rng() % 2 ? 0x80 : 0);
                           any |= mask[k] & 0x80;
                       }
                       if (!any) mask[p.rng() % n] |= 0x80;
                       if (mm_form) std::memcpy(&st.st[m].mant, mask, 8);
                       else std::memcpy(st.xmm[m].b, mask, 16);
                       p.fault_percent = 3;
                       st.gpr[cpu::RDI] = kDataAddr + p.data_offset(unsigned(n));
                       if (mm_form) g.maskmovq(mmx(d), mmx(m));
                       else g.maskmovdqu(p.xmm(d), p.xmm(m));
                   });
    }

    // Hints, fences and cache-line flushes. CLFLUSH* fault like a byte load; prefetches never fault.
    add_custom(v, "sse.prefetch*/fences/clflush*", false, Lanes::Random, [](G& g, Picker& p, State& st) {
        int b = p.gpr();
        uint64_t off = p.rng() % 8 == 0 ? kDataSize + p.rng() % 0x1000 : p.rng() % kDataSize;
        st.gpr[b] = kDataAddr + off;
        Address a = Xbyak::util::ptr[p.r64(b)];
        switch (p.rng() % 12) {
            case 0: g.prefetcht0(a); break;
            case 1: g.prefetcht1(a); break;
            case 2: g.prefetcht2(a); break;
            case 3: g.prefetchnta(a); break;
            case 4: g.prefetchw(a); break;
            case 5: g.lfence(); break;
            case 6: g.mfence(); break;
            case 7: g.sfence(); break;
            case 8: g.clflush(a); break;
            case 9: g.clflushopt(a); break;
            case 10: g.clwb(a); break;
            default: g.prefetchwt1(a); break;
        }
    });
    add_custom(v, "sse.mmx.emms", true, Lanes::Random, [](G& g, Picker&, State&) { g.emms(); });
}


// ---- floating-point forms --------------------------------------------------------------------------

// One float form: packed (m128, aligned) or scalar (m32/m64), random MXCSR; every third case may
// unmask exceptions (#XM, destination and flags as the hardware leaves them).
void add_fp(std::vector<Form>& v, const std::string& mn, Op2 op, bool f64, bool packed, const std::string& extra = "") {
    unsigned ms = packed ? 16 : f64 ? 8 : 4;
    std::string shape = packed ? "xmm, xmm/m128" : f64 ? "xmm, xmm/m64" : "xmm, xmm/m32";
    add_vv(v, "sse." + mn + " " + shape + extra, op,
           VOpt{.lanes = f64 ? Lanes::F64 : Lanes::F32, .msize = ms, .align = packed, .mxcsr = true, .unmask = true});
}

#define FP4(base, OPS, OPD)                                           \
    add_fp(v, #base "ps", OPX(base##ps), false, true);                \
    add_fp(v, #base "ss", OPX(base##ss), false, false);               \
    add_fp(v, #base "pd", OPX(base##pd), true, true);                 \
    add_fp(v, #base "sd", OPX(base##sd), true, false);

void float_forms(std::vector<Form>& v) {
    FP4(add, , )
    FP4(sub, , )
    FP4(mul, , )
    FP4(div, , )
    FP4(min, , )
    FP4(max, , )
    FP4(sqrt, , )

    // CMPccPS/PD/SS/SD: predicates 0-7, sometimes an imm8 with the reserved bits set.
    struct CmpMn {
        const char* mn;
        void (G::*fn)(const Xmm&, const Operand&, uint8_t);
        bool f64, packed;
    };
    const CmpMn cmps[] = {{"cmpps", &G::cmpps, false, true},
                          {"cmpss", &G::cmpss, false, false},
                          {"cmppd", &G::cmppd, true, true},
                          {"cmpsd", &G::cmpsd, true, false}};
    for (const CmpMn& cm : cmps) {
        auto fn = cm.fn;
        bool f64 = cm.f64, packed = cm.packed;
        unsigned ms = packed ? 16 : f64 ? 8 : 4;
        add_custom(v, std::string("sse.") + cm.mn + " xmm, xmm/m, imm8", false, f64 ? Lanes::F64 : Lanes::F32,
                   [=](G& g, Picker& p, State& st) {
                       st.mxcsr = random_mxcsr(p, true);
                       uint8_t imm = uint8_t(p.rng() % 8 ? p.rng() % 8 : p.rng());
                       const Xmm& d = p.xmm(int(p.rng() % 16));
                       if (p.rng() % 2) (g.*fn)(d, mem(p, st, ms, packed), imm);
                       else (g.*fn)(d, p.xmm(int(p.rng() % 16)), imm);
                   });
    }
    // COMISS/UCOMISS/COMISD/UCOMISD.
    struct ComMn {
        const char* mn;
        void (G::*fn)(const Xmm&, const Operand&);
        bool f64;
    };
    const ComMn coms[] = {{"comiss", &G::comiss, false},
                          {"ucomiss", &G::ucomiss, false},
                          {"comisd", &G::comisd, true},
                          {"ucomisd", &G::ucomisd, true}};
    for (const ComMn& cm : coms) {
        auto fn = cm.fn;
        bool f64 = cm.f64;
        add_custom(v, std::string("sse.") + cm.mn + " xmm, xmm/m", false, f64 ? Lanes::F64 : Lanes::F32,
                   [=](G& g, Picker& p, State& st) {
                       st.mxcsr = random_mxcsr(p, true);
                       int d = int(p.rng() % 16);
                       // Equal operands now and then.
                       if (p.rng() % 8 == 0) st.xmm[(d + 1) & 15] = st.xmm[d];
                       if (p.rng() % 2) (g.*fn)(p.xmm(d), mem(p, st, f64 ? 8 : 4, false));
                       else (g.*fn)(p.xmm(d), p.xmm(p.rng() % 2 ? (d + 1) & 15 : int(p.rng() % 16)));
                   });
    }

    // RCP/RSQRT: only operands whose results the SDM defines exactly (zeros, denormals, infinities,
    // NaNs, negatives for RSQRT); finite results are approximations, checked against the SDM bound
    // by the unit tests.
    add_custom(v, "sse.rcpps/rcpss/rsqrtps/rsqrtss special operands", false, Lanes::Random,
               [](G& g, Picker& p, State& st) {
                   auto special = [&]() -> uint32_t {
                       uint32_t sign = uint32_t(p.rng() & 1) << 31;
                       switch (p.rng() % 5) {
                           case 0: return sign;
                           case 1: return sign | uint32_t(1 + p.rng() % 0x7fffff);
                           case 2: return sign | 0x7f800000u;
                           case 3: return sign | 0x7fc00000u | uint32_t(p.rng() % 0x400000);
                           default: return sign | 0x7f800000u | uint32_t(1 + p.rng() % 0x3fffff);
                       }
                   };
                   bool rsqrt = p.rng() % 2;
                   for (auto& x : st.xmm)
                       for (auto& d : x.d)
                           d = rsqrt && p.rng() % 4 == 0 ? 0x80000000u | uint32_t(0x00800000 + p.rng() % 0x7e000000)
                                                         : special();
                   for (uint64_t off = 0; off < kDataSize; off += 4) {
                       uint32_t d = special();
                       std::memcpy(st.data + off, &d, 4);
                   }
                   st.mxcsr = random_mxcsr(p, true);
                   const Xmm& d = p.xmm(int(p.rng() % 16));
                   bool scalar = p.rng() % 2;
                   if (p.rng() % 2) {
                       int s = int(p.rng() % 16);
                       if (scalar) rsqrt ? g.rsqrtss(d, p.xmm(s)) : g.rcpss(d, p.xmm(s));
                       else rsqrt ? g.rsqrtps(d, p.xmm(s)) : g.rcpps(d, p.xmm(s));
                   } else {
                       // 16-byte aligned so the operand is one of the special values above.
                       int b = p.gpr();
                       st.gpr[b] = kDataAddr + (p.rng() % (kDataSize / 16)) * 16;
                       Address a = Xbyak::util::ptr[p.r64(b)];
                       if (scalar) rsqrt ? g.rsqrtss(d, a) : g.rcpss(d, a);
                       else rsqrt ? g.rsqrtps(d, a) : g.rcpps(d, a);
                   }
               });

    // Conversions between float formats and from/to packed integers.
    auto cvt = [&](const std::string& name, Op2 op, Lanes l, unsigned ms, bool align) {
        add_vv(v, "sse." + name, op, VOpt{.lanes = l, .msize = ms, .align = align, .mxcsr = true, .unmask = true});
    };
    cvt("cvtps2pd xmm, xmm/m64", OPX(cvtps2pd), Lanes::F32, 8, false);
    cvt("cvtpd2ps xmm, xmm/m128", OPX(cvtpd2ps), Lanes::F64, 16, true);
    cvt("cvtss2sd xmm, xmm/m32", OPX(cvtss2sd), Lanes::F32, 4, false);
    cvt("cvtsd2ss xmm, xmm/m64", OPX(cvtsd2ss), Lanes::F64, 8, false);
    cvt("cvtdq2ps xmm, xmm/m128", OPX(cvtdq2ps), Lanes::I32, 16, true);
    cvt("cvtdq2pd xmm, xmm/m64", OPX(cvtdq2pd), Lanes::I32, 8, false);
    cvt("cvtps2dq xmm, xmm/m128", OPX(cvtps2dq), Lanes::F32, 16, true);
    cvt("cvttps2dq xmm, xmm/m128", OPX(cvttps2dq), Lanes::F32, 16, true);
    cvt("cvtpd2dq xmm, xmm/m128", OPX(cvtpd2dq), Lanes::F64, 16, true);
    cvt("cvttpd2dq xmm, xmm/m128", OPX(cvttpd2dq), Lanes::F64, 16, true);

    // Conversions with an MMX operand (register forms switch the x87 unit to MMX state).
    struct MmxCvt {
        const char* name;
        void (G::*fn)(const Operand&, const Operand&);
        bool to_mm;  // destination is an MMX register
        Lanes lanes;
        unsigned ms;
    };
    const MmxCvt mcv[] = {
        {"cvtpi2ps xmm, mm/m64", &G::cvtpi2ps, false, Lanes::I32, 8},
        {"cvtpi2pd xmm, mm/m64", &G::cvtpi2pd, false, Lanes::I32, 8},
        {"cvtps2pi mm, xmm/m64", &G::cvtps2pi, true, Lanes::F32, 8},
        {"cvttps2pi mm, xmm/m64", &G::cvttps2pi, true, Lanes::F32, 8},
        {"cvtpd2pi mm, xmm/m128", &G::cvtpd2pi, true, Lanes::F64, 16},
        {"cvttpd2pi mm, xmm/m128", &G::cvttpd2pi, true, Lanes::F64, 16},
    };
    for (const MmxCvt& m : mcv) {
        auto fn = m.fn;
        bool to_mm = m.to_mm;
        unsigned ms = m.ms;
        add_custom(v, std::string("sse.mmx.") + m.name, true, m.lanes, [=](G& g, Picker& p, State& st) {
            st.mxcsr = random_mxcsr(p, true);
            const Operand& x = p.xmm(int(p.rng() % 16));
            const Operand& mr = mmx(int(p.rng() % 8));
            const Operand& d = to_mm ? mr : x;
            if (p.rng() % 2) (g.*fn)(d, mem(p, st, ms, ms == 16));
            else (g.*fn)(d, to_mm ? x : mr);
        });
    }

    // Scalar int <-> float with a GPR.
    struct GprCvt {
        const char* name;
        void (G::*fn)(const Operand&, const Operand&);
        bool to_gpr;
        bool f64;
    };
    const GprCvt gcv[] = {
        {"cvtsi2ss", &G::cvtsi2ss, false, false}, {"cvtsi2sd", &G::cvtsi2sd, false, true},
        {"cvtss2si", &G::cvtss2si, true, false},  {"cvttss2si", &G::cvttss2si, true, false},
        {"cvtsd2si", &G::cvtsd2si, true, true},   {"cvttsd2si", &G::cvttsd2si, true, true},
    };
    for (const GprCvt& m : gcv) {
        auto fn = m.fn;
        bool to_gpr = m.to_gpr, f64 = m.f64;
        for (bool w64 : {false, true}) {
            std::string name = std::string("sse.") + m.name + (w64 ? " (64-bit int)" : " (32-bit int)");
            add_custom(v, name, false, f64 ? Lanes::F64 : Lanes::F32, [=](G& g, Picker& p, State& st) {
                st.mxcsr = random_mxcsr(p, true);
                const Xmm& x = p.xmm(int(p.rng() % 16));
                int r = p.gpr();
                if (!to_gpr) st.gpr[r] = p.rng() % 2 ? p.edge(w64 ? 8 : 4) : p.u64();
                const Operand& gr = w64 ? static_cast<const Operand&>(p.r64(r)) : p.r32(r);
                if (p.rng() % 2) {
                    unsigned ms = to_gpr ? (f64 ? 8 : 4) : (w64 ? 8 : 4);
                    uint64_t off = 0;
                    Address a = mem(p, st, ms, false, &off, {r});
                    if (!to_gpr && off + 8 <= kDataSize) {
                        uint64_t iv = p.edge(ms);
                        std::memcpy(st.data + off, &iv, ms);
                    }
                    Address sized = ms == 8 ? Xbyak::util::qword[a.getRegExp()] : Xbyak::util::dword[a.getRegExp()];
                    if (to_gpr) {
                        (g.*fn)(gr, sized);
                    } else if (w64) {
                        // xbyak drops REX.W for CVTSI2Sx xmm, m64: encode F3/F2 REX.W 0F 2A by hand.
                        int b = 0;
                        while (st.gpr[b] != kDataAddr + off - uint64_t(int64_t(a.getRegExp().getDisp())) ||
                               b == cpu::RSP)
                            b++;
                        int xr = x.getIdx();
                        g.db(f64 ? 0xf2 : 0xf3);
                        g.db(0x48 | (xr >= 8 ? 4 : 0) | (b >= 8 ? 1 : 0));
                        g.db(0x0f);
                        g.db(0x2a);
                        g.db(0x80 | ((xr & 7) << 3) | (b & 7));
                        if ((b & 7) == 4) g.db(0x24);
                        g.dd(uint32_t(int32_t(a.getRegExp().getDisp())));
                    } else {
                        (g.*fn)(x, sized);
                    }
                } else {
                    if (to_gpr) (g.*fn)(gr, x);
                    else (g.*fn)(x, gr);
                }
            });
        }
    }
}
#undef FP4

// ---- MXCSR and state-save forms ---------------------------------------------------------------------

// Random x87 contents that are not in the initial configuration (so XINUSE[0] = 1 on any processor):
// registers with special values now and then, a tag word with at least one register in use, a
// random TOP, FSW.B = FSW.ES.
void x87_inputs(Picker& p, State& st) {
    for (auto& r : st.st) {
        r.mant = p.u64();
        r.se = uint16_t(p.u64());
        switch (p.rng() % 6) {
            case 0: r.se &= 0x8000; break;                          // zero/denormal exponent
            case 1: r.se |= 0x7fff; break;                          // infinity/NaN exponent
            case 2: r.mant &= ~(1ull << 63); break;                 // unnormal
            case 3: r.mant = p.rng() % 2 ? 0 : 1ull << 63; break;   // zero or a power of two
            default: r.mant |= 1ull << 63; break;
        }
    }
    do st.ftw = uint16_t(p.u64()); while (st.ftw == 0xffff);
    // FCW bit 6 reads as 1; FSW.ES summarises the unmasked exception flags and FSW.B mirrors ES (the
    // host normalises both when it loads the state).
    st.fcw = uint16_t((p.u64() & 0x0f3f) | 0x40);
    st.fsw = uint16_t(p.u64() & 0x3f7f);
    if (st.fsw & ~st.fcw & 0x3f) st.fsw |= 0x8080;
}

// 0F AE /ext with a [base + disp32] operand (xbyak has no FXSAVE/XSAVE).
void emit_0fae(G& g, int ext, int base, int32_t disp, bool rexw) {
    uint8_t rex = uint8_t(0x40 | (rexw ? 8 : 0) | (base >= 8 ? 1 : 0));
    if (rex != 0x40) g.db(rex);
    g.db(0x0f);
    g.db(0xae);
    if ((base & 7) == 4) {
        g.db(0x80 | (ext << 3) | 4);
        g.db(0x24);
    } else {
        g.db(0x80 | (ext << 3) | (base & 7));
    }
    g.dd(uint32_t(disp));
}

// An area of `size` bytes for a state instruction: `align`-aligned 7 times in 8 (else misaligned by a
// multiple of 8: #GP), now and then reaching into the guard page (#PF). Returns the offset.
uint64_t area_offset(Picker& p, unsigned size, unsigned align) {
    uint64_t slots = (kDataSize - size) / align + 1;
    uint64_t off = (p.rng() % slots) * align;
    switch (p.rng() % 16) {
        case 0: off += 8 * (1 + p.rng() % (align / 8 - 1 + (align == 8))); break;  // misaligned
        case 1: off = kDataSize - size + align * (1 + p.rng() % 4); break;          // into the guard page
        default: break;
    }
    return off;
}

void state_forms(std::vector<Form>& v) {
    add_custom(v, "sse.ldmxcsr m32", false, Lanes::Random, [](G& g, Picker& p, State& st) {
        st.mxcsr = random_mxcsr(p, true);
        uint64_t off = 0;
        Address a = mem(p, st, 4, false, &off);
        uint32_t m = random_mxcsr(p, true);
        // A reserved bit now and then (#GP). Bit 17 is left out: the AMD host implements it (MM).
        if (p.rng() % 8 == 0) {
            unsigned b = 16 + unsigned(p.rng() % 16);
            if (b != 17) m |= 1u << b;
        }
        if (off + 4 <= kDataSize) std::memcpy(st.data + off, &m, 4);
        g.ldmxcsr(a);
    });
    add_custom(v, "sse.stmxcsr m32", false, Lanes::Random, [](G& g, Picker& p, State& st) {
        st.mxcsr = random_mxcsr(p, true);
        g.stmxcsr(mem(p, st, 4, false));
    });

    // FXSAVE / FXSAVE64. MXCSR_MASK differs by design (the AMD host reports 0x2FFFF with its MM bit,
    // micro86 0xFFFF; the unit tests check ours), so the instance overwrites that field afterwards.
    add_custom(v, "sse.fxsave/fxsave64 m512", true, Lanes::Random, [](G& g, Picker& p, State& st) {
        x87_inputs(p, st);
        st.mxcsr = random_mxcsr(p, true);
        int b = p.gpr();
        int32_t disp = int32_t(p.rng() % 512) - 256;
        uint64_t off = area_offset(p, 512, 16);
        st.gpr[b] = kDataAddr + off - uint64_t(int64_t(disp));
        emit_0fae(g, 0, b, disp, p.rng() % 2);
        g.mov(Xbyak::util::dword[p.r64(b) + disp + 28], 0xffff);
    });
    // FXRSTOR / FXRSTOR64 from a well-formed random image; MXCSR with a reserved bit now and then.
    add_custom(v, "sse.fxrstor/fxrstor64 m512", true, Lanes::Random, [](G& g, Picker& p, State& st) {
        State img;
        x87_inputs(p, img);
        uint64_t off = area_offset(p, 512, 16);
        if (off + 512 <= kDataSize) {
            uint8_t* m = st.data + off;
            std::memset(m, 0, 32);
            std::memcpy(m, &img.fcw, 2);
            std::memcpy(m + 2, &img.fsw, 2);
            m[4] = uint8_t(p.rng());
            uint32_t mx = random_mxcsr(p, true);
            if (p.rng() % 10 == 0) mx |= 1u << (18 + p.rng() % 14);
            std::memcpy(m + 24, &mx, 4);
            for (int i = 0; i < 8; i++) {
                std::memcpy(m + 32 + 16 * i, &img.st[i].mant, 8);
                std::memcpy(m + 40 + 16 * i, &img.st[i].se, 2);
            }
        }
        int b = p.gpr();
        st.gpr[b] = kDataAddr + off;
        emit_0fae(g, 1, b, 0, p.rng() % 2);
    });

    // XSAVE / XSAVE64 / XSAVEOPT / XSAVEOPT64 with RFBM in 0..3 (the host's XCR0 has AVX and AVX-512 on
    // top; micro86's XCR0 is x87|SSE, so higher RFBM bits would differ by design).
    add_custom(v, "sse.xsave/xsaveopt(64) m", true, Lanes::Random, [](G& g, Picker& p, State& st) {
        x87_inputs(p, st);
        st.mxcsr = random_mxcsr(p, true);
        st.gpr[cpu::RAX] = p.rng() % 4 | (p.rng() % 2 ? 0 : 0xff00000000ull);
        st.gpr[cpu::RDX] = p.rng() % 4 ? 0 : p.u64();  // XCR0[63:32] is zero on both: masked out
        int b = p.gpr({cpu::RAX, cpu::RDX});
        uint64_t off = area_offset(p, 576, 64);
        st.gpr[b] = kDataAddr + off;
        emit_0fae(g, p.rng() % 2 ? 4 : 6, b, 0, p.rng() % 2);
        g.mov(Xbyak::util::dword[p.r64(b) + 28], 0xffff);  // MXCSR_MASK: see the FXSAVE form
    });
    // XRSTOR / XRSTOR64 (standard form) from a random image and header.
    add_custom(v, "sse.xrstor(64) m", true, Lanes::Random, [](G& g, Picker& p, State& st) {
        State img;
        x87_inputs(p, img);
        x87_inputs(p, st);
        st.mxcsr = random_mxcsr(p, true);
        uint64_t off = area_offset(p, 576, 64);
        if (off + 576 <= kDataSize) {
            uint8_t* m = st.data + off;
            std::memset(m, 0, 32);
            std::memcpy(m, &img.fcw, 2);
            std::memcpy(m + 2, &img.fsw, 2);
            m[4] = uint8_t(p.rng());
            uint32_t mx = random_mxcsr(p, true);
            if (p.rng() % 10 == 0) mx |= 1u << (18 + p.rng() % 14);
            std::memcpy(m + 24, &mx, 4);
            for (int i = 0; i < 8; i++) {
                std::memcpy(m + 32 + 16 * i, &img.st[i].mant, 8);
                std::memcpy(m + 40 + 16 * i, &img.st[i].se, 2);
            }
            std::memset(m + 512, 0, 64);
            uint64_t bv = p.rng() % 4;
            std::memcpy(m + 512, &bv, 8);
            switch (p.rng() % 12) {
                case 0: m[520 + p.rng() % 8] = uint8_t(1 + p.rng() % 255); break;  // XCOMP_BV != 0: #GP
                case 1: m[528 + p.rng() % 8] = uint8_t(1 + p.rng() % 255); break;  // header bytes 16-23
                case 2: m[536 + p.rng() % 40] = uint8_t(1 + p.rng() % 255); break;  // header bytes 24-63
                default: break;
            }
        }
        st.gpr[cpu::RAX] = p.rng() % 4;
        st.gpr[cpu::RDX] = 0;
        int b = p.gpr({cpu::RAX, cpu::RDX});
        st.gpr[b] = kDataAddr + off;
        emit_0fae(g, 5, b, 0, p.rng() % 2);
    });
}
}  // namespace

void forms_sse(std::vector<Form>& forms) {
    integer_forms(forms);
    move_forms(forms);
    float_forms(forms);
    state_forms(forms);
}

}  // namespace m86::difftest
