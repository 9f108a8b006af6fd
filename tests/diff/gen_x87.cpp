// Differential-test forms: the x87 FPU.
//
// Form names start with "x87." so M86_DIFF_FILTER=x87. runs them all. Every instance is encoded by
// hand (opcode + ModRM, memory operands as [base + disp8]) so that alias encodings (FSTP1, FCOMP5,
// FXCH4...) are covered like the primary ones, and is followed by FWAIT: an exception left pending
// by the instruction (unmasked in FCW) then surfaces natively as #MF (SIGFPE) and must surface in
// the emulator the same way.
//
// Inputs: a random TOP; a random number of valid registers (sometimes too few: stack underflow,
// sometimes all eight: overflow on push) holding edge values (zeros, denormals, pseudo-denormals,
// infinities, QNaN/SNaN, unnormals, pseudo-NaN/infinity, extreme exponents, integers, values at
// rounding boundaries); random rounding and precision control; masks mostly all set, sometimes some
// cleared; random C0-C3 and sticky flags; rarely an exception already pending (#MF at the
// instruction). Memory operands hold edge values of their own format and sometimes cross into the
// guard page (#PF: nothing may change).
#include <cstring>
#include <functional>

#include "diff/harness.h"

namespace m86::difftest {
namespace {

using G = Xbyak::CodeGenerator;
using cpu::F80;

// ---- values ---------------------------------------------------------------------------------------

F80 f80_edge(Picker& p) {
    auto& r = p.rng;
    uint16_t s = uint16_t((r() & 1) << 15);
    uint64_t m = r() | (1ull << 63);
    auto e = [&](int64_t x) { return uint16_t(s | (uint64_t(x) & 0x7fff)); };
    switch (r() % 26) {
        case 0: case 1: return {0, e(0)};
        case 2: return {(m & ~(1ull << 63)) >> (r() % 63), e(0)};      // denormal
        case 3: return {m, e(0)};                                        // pseudo-denormal
        case 4: return {1ull << 63, e(0x7fff)};                          // infinity
        case 5: return {m | (1ull << 62), e(0x7fff)};                   // QNaN
        case 6: return {(m & ~(1ull << 62)) | (1 + r() % 0xffff), e(0x7fff)};  // SNaN
        case 7: return {m & ~(1ull << 63), e(int64_t(1 + r() % 0x7ffe))};  // unnormal
        case 8: return {(m & ~(1ull << 63)) >> (r() % 2 ? 0 : 62), e(0x7fff)};  // pseudo-NaN/inf
        case 9: return {m, e(int64_t(1 + r() % 70))};                    // tiny
        case 10: return {m, e(int64_t(0x7ffe - r() % 70))};              // huge
        case 11: return {1ull << 63 | (r() % 4), e(0x3fff - 1 + int64_t(r() % 3))};  // ~1
        case 12: {                                                        // integers
            unsigned n = unsigned(r() % 64);
            return {(m >> (63 - n)) << (63 - n), e(0x3fff + n)};
        }
        case 13: return {m & ~0x7ffull, e(0x3fff - 60 + int64_t(r() % 120))};     // exact in double
        case 14: return {m & ~((1ull << 40) - 1), e(0x3fff - 60 + int64_t(r() % 120))};  // exact in float
        case 15: {  // around the float/double exponent limits (store overflow/underflow, denormals)
            static const int64_t kLim[] = {0x3fff + 127, 0x3fff - 126, 0x3fff - 149, 0x3fff + 1023,
                                           0x3fff - 1022, 0x3fff - 1074, 0x3fff + 15, 0x3fff + 31, 0x3fff + 63};
            return {m, e(kLim[r() % 9] - 2 + int64_t(r() % 5))};
        }
        case 16: {  // rounding boundaries: a tie / just above / just below at bit 11 or 40 or 0
            unsigned b = r() % 3 == 0 ? 11 : r() % 2 ? 40 : 1;
            uint64_t v = (m >> b << b) | (1ull << (b - 1));
            if (r() % 3 == 0) v += r() % 2 ? 1 : uint64_t(-1);
            return {v | (1ull << 63), e(0x3fff - 20 + int64_t(r() % 40))};
        }
        case 17: return {~0ull - (r() % 4), e(int64_t(r() % 0x7fff))};  // all-ones significands
        case 18: return {m, e(0x3fff + 64 + int64_t(r() % 8) - 4)};     // ~2^63..2^64 (FIST, FSIN range)
        default: return {m, e(0x3fff - 64 + int64_t(r() % 128))};       // ordinary
    }
}

uint32_t f32_edge(Picker& p) {
    auto& r = p.rng;
    uint32_t s = uint32_t(r() & 1) << 31;
    switch (r() % 12) {
        case 0: return s;
        case 1: return s | uint32_t(1 + r() % 0x7fffff);
        case 2: return s | 0x7f800000;
        case 3: return s | 0x7fc00000 | uint32_t(r() % 0x400000);
        case 4: return s | 0x7f800000 | uint32_t(1 + r() % 0x3fffff);
        case 5: return s | uint32_t(0x3f800000 + r() % 4);
        default: return s | uint32_t(0x30000000 + r() % 0x1f000000);
    }
}
uint64_t f64_edge(Picker& p) {
    auto& r = p.rng;
    uint64_t s = (r() & 1) << 63;
    const uint64_t frac = (1ull << 52) - 1;
    switch (r() % 12) {
        case 0: return s;
        case 1: return s | (1 + r() % frac);
        case 2: return s | 0x7ff0000000000000ull;
        case 3: return s | 0x7ff8000000000000ull | (r() & (frac >> 1));
        case 4: return s | 0x7ff0000000000000ull | (1 + r() % (frac >> 1));
        case 5: return s | (0x3ff0000000000000ull + r() % 4);
        default: return s | (0x3800000000000000ull + r() % 0x0fe0000000000000ull);
    }
}

// ---- state ----------------------------------------------------------------------------------------

struct Setup {
    int need = 1;          // stack operands read: ST(0) .. ST(need - 1)
    bool full = false;     // the instruction pushes: make the stack full sometimes
    bool unmask = true;    // sometimes clear exception masks
    bool args_small = false;  // transcendental range: moderate magnitudes
};

// Fill the x87 part of `st`: random TOP, `depth` valid registers from ST(0), edge values.
void x87_inputs(Picker& p, State& st, const Setup& s) {
    auto& r = p.rng;
    unsigned top = unsigned(r() % 8);
    int depth;
    unsigned k = unsigned(r() % 100);
    if (k < 6) depth = s.need > 0 ? s.need - 1 - int(r() % s.need) : 0;  // underflow
    else if (s.full && k < 16) depth = 8;                                   // overflow on push
    else depth = s.need + int(r() % unsigned(8 - s.need + (s.full ? 0 : 1)));
    if (depth > 8) depth = 8;
    if (depth < 0) depth = 0;
    for (auto& v : st.st) v = f80_edge(p);
    if (s.args_small)
        for (auto& v : st.st)
            if (r() % 4 != 0 && (v.se & 0x7fff) > 0x3fff + 8 && (v.se & 0x7fff) != 0x7fff)
                v.se = uint16_t((v.se & 0x8000) | (0x3fff - 8 + r() % 16));
    // Sometimes two operands are equal or nearly so (exact zero results, equal compares).
    if (r() % 8 == 0) {
        F80& a = st.st[top];
        F80& b = st.st[(top + 1) & 7];
        b = a;
        if (r() & 1) b.mant ^= r() % 4;
        if (r() & 1) b.se ^= 0x8000;
    }
    uint16_t ftw = 0xffff;
    for (int i = 0; i < depth; i++) {
        unsigned ph = (top + unsigned(i)) & 7;
        ftw = uint16_t(ftw & ~(3u << (2 * ph)));  // non-empty (the harness derives the tag)
    }
    st.ftw = ftw;
    uint16_t fcw = 0x0040 | 0x3f;
    fcw |= uint16_t(r() % 4) << 10;  // RC
    static const uint16_t kPc[] = {0, 2, 3, 3, 3, 1};
    fcw |= uint16_t(kPc[r() % 6]) << 8;
    if (s.unmask && r() % 4 == 0) fcw &= uint16_t(~(r() & 0x3f));
    st.fcw = fcw;
    uint16_t fsw = uint16_t(top << 11);
    fsw |= uint16_t(r() & (0x4700));  // random C0-C3
    if (r() % 4 == 0) fsw |= uint16_t(r() & 0x3f & fcw);  // masked sticky flags already set
    if (r() % 40 == 0) {  // a pending unmasked exception: the next waiting instruction gets #MF
        st.fcw &= uint16_t(~1u);
        fsw |= 0x8081;
    }
    st.fsw = fsw;
}

// ---- encoding ----------------------------------------------------------------------------------------

void reg_form(G& g, uint8_t opc, unsigned reg, unsigned i) {
    g.db(opc);
    g.db(uint8_t(0xc0 | reg << 3 | (i & 7)));
}

// `opc /reg` with a memory operand [base + disp8] pointing at data offset `off`.
void mem_form(G& g, Picker& p, State& st, uint8_t opc, unsigned reg, uint64_t off, bool p66 = false) {
    int b = p.gpr({cpu::RDI, cpu::RSI});  // RSI/RDI are kept for the images of the pointer forms
    int8_t disp = int8_t(p.rng() % 256);
    st.gpr[b] = kDataAddr + off - uint64_t(int64_t(disp));
    if (p66) g.db(0x66);
    if (b >= 8) g.db(0x41);
    g.db(opc);
    g.db(uint8_t(0x40 | reg << 3 | (b & 7)));
    if ((b & 7) == 4) g.db(0x24);
    g.db(uint8_t(disp));
}

// Store a memory operand value of `size` bytes at `off` (only the part inside the data area).
void put_data(State& st, uint64_t off, const void* v, unsigned size) {
    for (unsigned k = 0; k < size; k++)
        if (off + k < kDataSize) st.data[off + k] = static_cast<const uint8_t*>(v)[k];
}

// Memory operand kinds and their values.
enum class M { F32, F64, F80, I16, I32, I64, Bcd, None };
unsigned msize(M m) {
    switch (m) {
        case M::F32: case M::I32: return 4;
        case M::F64: case M::I64: return 8;
        case M::F80: case M::Bcd: return 10;
        case M::I16: return 2;
        default: return 0;
    }
}
void mem_value(Picker& p, State& st, uint64_t off, M m) {
    auto& r = p.rng;
    uint8_t b[10];
    switch (m) {
        case M::F32: {
            uint32_t v = f32_edge(p);
            std::memcpy(b, &v, 4);
            break;
        }
        case M::F64: {
            uint64_t v = f64_edge(p);
            std::memcpy(b, &v, 8);
            break;
        }
        case M::F80: {
            F80 v = f80_edge(p);
            std::memcpy(b, &v.mant, 8);
            std::memcpy(b + 8, &v.se, 2);
            break;
        }
        case M::I16: case M::I32: case M::I64: {
            uint64_t v = p.edge(msize(m));
            std::memcpy(b, &v, 8);
            break;
        }
        case M::Bcd:
            for (int k = 0; k < 9; k++) b[k] = uint8_t((r() % 10) << 4 | (r() % 10));
            if (r() % 3 == 0)
                for (int k = int(r() % 9); k < 9; k++) b[k] = 0;
            b[9] = (r() & 1) ? 0x80 : 0;
            break;
        default: return;
    }
    put_data(st, off, b, msize(m));
}

// ---- form builders ---------------------------------------------------------------------------------

void add(std::vector<Form>& forms, std::string name, Setup s, std::function<void(G&, Picker&, State&)> body,
         unsigned ulps = 0, uint64_t undefined_flags = 0) {
    Form f;
    f.name = "x87." + name;
    f.x87 = true;
    f.x87_ulps = ulps;
    f.undefined_flags = undefined_flags;
    f.emit = [s, body](G& g, Picker& p, State& st) {
        x87_inputs(p, st, s);
        body(g, p, st);
        g.db(0x9b);  // FWAIT: a pending exception becomes #MF here
    };
    forms.push_back(std::move(f));
}

// A memory form `opc /reg` with an operand of kind m.
void add_mem(std::vector<Form>& forms, const std::string& name, Setup s, uint8_t opc, unsigned reg, M m,
             bool p66 = false, unsigned size_override = 0) {
    add(forms, name, s, [=](G& g, Picker& p, State& st) {
        unsigned size = size_override ? size_override : msize(m);
        p.fault_percent = 3;
        uint64_t off = p.data_offset(size);
        mem_value(p, st, off, m);
        mem_form(g, p, st, opc, reg, off, p66);
    });
}

// A register form `opc /reg` on ST(i) (i random, or fixed when i >= 0).
void add_reg(std::vector<Form>& forms, const std::string& name, Setup s, uint8_t opc, unsigned reg, int i = -1,
             unsigned ulps = 0, uint64_t undefined_flags = 0) {
    add(forms, name, s, [=](G& g, Picker& p, State&) {
        reg_form(g, opc, reg, i >= 0 ? unsigned(i) : unsigned(p.rng() % 8));
    }, ulps, undefined_flags);
}

}  // namespace

void forms_x87(std::vector<Form>& forms) {
    const Setup one{1, false}, two{2, false}, push{0, true}, push1{1, true};

    // Loads.
    add_mem(forms, "fld m32", push, 0xd9, 0, M::F32);
    add_mem(forms, "fld m64", push, 0xdd, 0, M::F64);
    add_mem(forms, "fld m80", push, 0xdb, 5, M::F80);
    add_reg(forms, "fld st(i)", Setup{1, true}, 0xd9, 0);
    add_mem(forms, "fild m16", push, 0xdf, 0, M::I16);
    add_mem(forms, "fild m32", push, 0xdb, 0, M::I32);
    add_mem(forms, "fild m64", push, 0xdf, 5, M::I64);
    add_mem(forms, "fbld m80", push, 0xdf, 4, M::Bcd);
    static const char* const kConst[] = {"fld1", "fldl2t", "fldl2e", "fldpi", "fldlg2", "fldln2", "fldz"};
    for (int k = 0; k < 7; k++) add_reg(forms, kConst[k], push, 0xd9, 5, k);

    // Stores.
    add_mem(forms, "fst m32", one, 0xd9, 2, M::None, false, 4);
    add_mem(forms, "fstp m32", one, 0xd9, 3, M::None, false, 4);
    add_mem(forms, "fst m64", one, 0xdd, 2, M::None, false, 8);
    add_mem(forms, "fstp m64", one, 0xdd, 3, M::None, false, 8);
    add_mem(forms, "fstp m80", one, 0xdb, 7, M::None, false, 10);
    add_mem(forms, "fist m16", one, 0xdf, 2, M::None, false, 2);
    add_mem(forms, "fistp m16", one, 0xdf, 3, M::None, false, 2);
    add_mem(forms, "fist m32", one, 0xdb, 2, M::None, false, 4);
    add_mem(forms, "fistp m32", one, 0xdb, 3, M::None, false, 4);
    add_mem(forms, "fistp m64", one, 0xdf, 7, M::None, false, 8);
    add_mem(forms, "fisttp m16", one, 0xdf, 1, M::None, false, 2);
    add_mem(forms, "fisttp m32", one, 0xdb, 1, M::None, false, 4);
    add_mem(forms, "fisttp m64", one, 0xdd, 1, M::None, false, 8);
    add_mem(forms, "fbstp m80", one, 0xdf, 6, M::None, false, 10);
    add_reg(forms, "fst st(i)", one, 0xdd, 2);
    add_reg(forms, "fstp st(i)", one, 0xdd, 3);
    add_reg(forms, "fstp1 st(i) (d9 d8+i)", one, 0xd9, 3);
    add_reg(forms, "fstp8 st(i) (df d0+i)", one, 0xdf, 2);
    add_reg(forms, "fstp9 st(i) (df d8+i)", one, 0xdf, 3);

    // Arithmetic: D8 /r (m32 and ST(0),ST(i)), DC /r (m64 and ST(i),ST(0)), DA (m32int), DE (m16int
    // and the popping forms).
    static const char* const kArith[8] = {"fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"};
    static const char* const kIArith[8] = {"fiadd", "fimul", "ficom", "ficomp", "fisub", "fisubr", "fidiv", "fidivr"};
    for (unsigned r = 0; r < 8; r++) {
        add_mem(forms, std::string(kArith[r]) + " m32", one, 0xd8, r, M::F32);
        add_mem(forms, std::string(kArith[r]) + " m64", one, 0xdc, r, M::F64);
        add_mem(forms, std::string(kIArith[r]) + " m32", one, 0xda, r, M::I32);
        add_mem(forms, std::string(kIArith[r]) + " m16", one, 0xde, r, M::I16);
        add_reg(forms, std::string(kArith[r]) + " (d8 /" + std::to_string(r) + ") st(0),st(i)", two, 0xd8, r);
        // DC and DE register forms: reg 4..7 are FSUBR FSUB FDIVR FDIV (ST(i), ST(0)); DC /2 /3 are
        // the FCOM2/FCOMP3 aliases, DE /2 FCOMP5, DE /3 only FCOMPP (DE D9).
        add_reg(forms, "dc /" + std::to_string(r) + " st(i),st(0)", two, 0xdc, r);
        if (r != 3) add_reg(forms, "de /" + std::to_string(r) + " st(i),st(0) (pop)", two, 0xde, r);
    }
    add_reg(forms, "fcompp", two, 0xde, 3, 1);
    add_reg(forms, "fucom st(i)", two, 0xdd, 4);
    add_reg(forms, "fucomp st(i)", two, 0xdd, 5);
    add_reg(forms, "fucompp", two, 0xda, 5, 1);
    add_reg(forms, "fcomi", two, 0xdb, 6, -1, 0, 0);
    add_reg(forms, "fucomi", two, 0xdb, 5, -1, 0, 0);
    add_reg(forms, "fcomip", two, 0xdf, 6, -1, 0, 0);
    add_reg(forms, "fucomip", two, 0xdf, 5, -1, 0, 0);
    add_reg(forms, "ftst", one, 0xd9, 4, 4);
    add_reg(forms, "fxam", Setup{0, false}, 0xd9, 4, 5);

    // One- and two-operand operations on the stack top.
    add_reg(forms, "fchs", one, 0xd9, 4, 0);
    add_reg(forms, "fabs", one, 0xd9, 4, 1);
    add_reg(forms, "fsqrt", one, 0xd9, 7, 2);
    add_reg(forms, "frndint", one, 0xd9, 7, 4);
    add(forms, "fscale", two, [](G& g, Picker& p, State& st) {
        // Mostly moderate integer scale factors in ST(1).
        if (p.rng() % 3 != 0) {
            unsigned t = (st.fsw >> 11) & 7;
            int64_t n = int64_t(p.rng() % 2 ? p.rng() % 64 : p.rng() % 40000) - (p.rng() % 2 ? 0 : 20000);
            uint64_t mag = uint64_t(n < 0 ? -n : n);
            F80 v{0, 0};
            if (mag) {
                int lz = __builtin_clzll(mag);
                v = F80{mag << lz, uint16_t((n < 0 ? 0x8000 : 0) | (0x3fff + 63 - lz))};
                if (p.rng() % 4 == 0) v.mant |= 1ull << (p.rng() % 64) >> 1;  // a fraction
            }
            st.st[(t + 1) & 7] = v;
        }
        reg_form(g, 0xd9, 7, 5);
    });
    add_reg(forms, "fxtract", Setup{1, true}, 0xd9, 6, 4);
    add(forms, "fprem", two, [](G& g, Picker&, State&) { reg_form(g, 0xd9, 7, 0); });
    add(forms, "fprem1", two, [](G& g, Picker&, State&) { reg_form(g, 0xd9, 6, 5); });
    // Exponent differences near and beyond 64 (partial remainders).
    add(forms, "fprem (large quotient)", two, [](G& g, Picker& p, State& st) {
        unsigned t = (st.fsw >> 11) & 7;
        F80& a = st.st[t];
        F80& b = st.st[(t + 1) & 7];
        a.mant |= 1ull << 63;
        b.mant |= 1ull << 63;
        unsigned eb = unsigned(0x3fff - 100 + p.rng() % 200);
        b.se = uint16_t((b.se & 0x8000) | eb);
        a.se = uint16_t((a.se & 0x8000) | (eb + p.rng() % 140));
        if (p.rng() % 2) reg_form(g, 0xd9, 7, 0);  // FPREM
        else reg_form(g, 0xd9, 6, 5);              // FPREM1
    });

    // Register moves and stack control.
    add_reg(forms, "fxch st(i)", two, 0xd9, 1);
    add_reg(forms, "fxch4 st(i) (dd c8+i)", two, 0xdd, 1);
    add_reg(forms, "fxch7 st(i) (df c8+i)", two, 0xdf, 1);
    static const char* const kCmov[8] = {"fcmovb", "fcmove", "fcmovbe", "fcmovu",
                                         "fcmovnb", "fcmovne", "fcmovnbe", "fcmovnu"};
    for (unsigned k = 0; k < 8; k++) add_reg(forms, kCmov[k], two, k < 4 ? 0xda : 0xdb, k & 3);
    add_reg(forms, "ffree st(i)", Setup{0, false}, 0xdd, 0);
    add_reg(forms, "ffreep st(i)", Setup{0, false}, 0xdf, 0);
    add_reg(forms, "fdecstp", Setup{0, false}, 0xd9, 6, 6);
    add_reg(forms, "fincstp", Setup{0, false}, 0xd9, 6, 7);
    add_reg(forms, "fnop", Setup{0, false}, 0xd9, 2, 0);
    add_reg(forms, "feni (nop)", Setup{0, false}, 0xdb, 4, 0);
    add_reg(forms, "fdisi (nop)", Setup{0, false}, 0xdb, 4, 1);
    add_reg(forms, "fsetpm (nop)", Setup{0, false}, 0xdb, 4, 4);
    add_reg(forms, "fninit", Setup{0, false}, 0xdb, 4, 3);
    add_reg(forms, "fnclex", Setup{0, false}, 0xdb, 4, 2);
    add(forms, "fwait", Setup{0, false}, [](G&, Picker&, State&) {});

    // Control and status words, environment and state images.
    add(forms, "fldcw m16", Setup{0, false}, [](G& g, Picker& p, State& st) {
        uint64_t off = p.data_offset(2);
        uint16_t cw = uint16_t(p.rng());
        if (p.rng() % 2) cw |= 0x3f;
        put_data(st, off, &cw, 2);
        mem_form(g, p, st, 0xd9, 5, off);
    });
    add_mem(forms, "fnstcw m16", Setup{0, false}, 0xd9, 7, M::None, false, 2);
    add_mem(forms, "fnstsw m16", Setup{0, false}, 0xdd, 7, M::None, false, 2);
    add(forms, "fnstsw ax", Setup{0, false}, [](G& g, Picker&, State&) {
        g.db(0xdf);
        g.db(0xe0);
    });
    // The images include FIP/FDP/FOP: the instance is the first x87 instruction after the harness's
    // FXRSTOR, so they hold what that loaded (on both sides).
    add_mem(forms, "fnstenv m28", Setup{0, false}, 0xd9, 6, M::None, false, 28);
    add_mem(forms, "fnstenv m14 (66h)", Setup{0, false}, 0xd9, 6, M::None, true, 14);
    add_mem(forms, "fnsave m108", Setup{0, false}, 0xdd, 6, M::None, false, 108);
    add_mem(forms, "fnsave m94 (66h)", Setup{0, false}, 0xdd, 6, M::None, true, 94);
    auto env_image = [](Picker& p, State& st, uint64_t off, bool o16, bool regs) {
        auto& r = p.rng;
        uint16_t fcw = uint16_t(0x0040 | 0x3f | (r() % 4) << 10 | (r() % 4) << 8);
        if (r() % 4 == 0) fcw &= uint16_t(~(r() & 0x3f));
        uint16_t fsw = uint16_t(r() & 0x7f7f);  // no ES/B in the image: recomputed on load
        if (r() % 2) fsw &= 0x7f40;
        uint16_t ftw = uint16_t(r());
        uint8_t b[108];
        for (auto& x : b) x = uint8_t(r());
        unsigned n;
        if (o16) {
            std::memcpy(b + 0, &fcw, 2);
            std::memcpy(b + 2, &fsw, 2);
            std::memcpy(b + 4, &ftw, 2);
            n = 14;
        } else {
            uint32_t v;
            v = 0xffff0000u | fcw, std::memcpy(b + 0, &v, 4);
            v = 0xffff0000u | fsw, std::memcpy(b + 4, &v, 4);
            v = 0xffff0000u | ftw, std::memcpy(b + 8, &v, 4);
            n = 28;
        }
        if (regs)
            for (int k = 0; k < 8; k++) {
                F80 v = f80_edge(p);
                std::memcpy(b + n + 10 * k, &v.mant, 8);
                std::memcpy(b + n + 10 * k + 8, &v.se, 2);
            }
        put_data(st, off, b, n + (regs ? 80 : 0));
    };
    add(forms, "fldenv m28", Setup{0, false}, [=](G& g, Picker& p, State& st) {
        uint64_t off = p.data_offset(28);
        env_image(p, st, off, false, false);
        mem_form(g, p, st, 0xd9, 4, off);
    });
    add(forms, "fldenv m14 (66h)", Setup{0, false}, [=](G& g, Picker& p, State& st) {
        uint64_t off = p.data_offset(14);
        env_image(p, st, off, true, false);
        mem_form(g, p, st, 0xd9, 4, off, true);
    });
    add(forms, "frstor m108", Setup{0, false}, [=](G& g, Picker& p, State& st) {
        uint64_t off = p.data_offset(108);
        env_image(p, st, off, false, true);
        mem_form(g, p, st, 0xdd, 4, off);
    });
    add(forms, "frstor m94 (66h)", Setup{0, false}, [=](G& g, Picker& p, State& st) {
        uint64_t off = p.data_offset(94);
        env_image(p, st, off, true, true);
        mem_form(g, p, st, 0xdd, 4, off, true);
    });

    // FIP/FOP/FDP: FLD1 (a non-control instruction), the instruction under test, then FNSTENV into
    // the data area, whose image holds the last non-control instruction's pointers and opcode
    // (SDM Vol. 1, 8.1.8-8.1.10). The selector fields (FCS, FDS) are cleared afterwards: the code and
    // data selectors of the native process differ from the emulator's flat test environment.
    // AMD hosts do not keep FIP/FDP/FOP across a context switch when no exception is pending (the
    // kernel's XSAVE does not save them, they come back as zeros), which happens between two
    // instructions now and then: the sequence therefore runs from an FNSAVE snapshot and is
    // repeated (FRSTOR) while the stored FIP is 0, which it never is for code at 0x100000.
    struct Ptr {
        const char* name;
        std::vector<uint8_t> bytes;  // register forms; memory forms use mem_opc /mem_reg
        int mem_opc = -1, mem_reg = 0;
    };
    const Ptr kPtrForms[] = {
        {"fadd m64", {}, 0xdc, 0},       {"fstp m32", {}, 0xd9, 3},      {"fist m16", {}, 0xdf, 2},
        {"fldcw m16", {}, 0xd9, 5},      {"fadd st0,st2", {0xd8, 0xc2}}, {"fld st1", {0xd9, 0xc1}},
        {"fcom st1", {0xd8, 0xd1}},      {"fxch st3", {0xd9, 0xcb}},     {"fchs", {0xd9, 0xe0}},
        {"fincstp", {0xd9, 0xf7}},       {"fdecstp", {0xd9, 0xf6}},      {"ffree st2", {0xdd, 0xc2}},
        {"fnop", {0xd9, 0xd0}},          {"fwait", {0x9b}},              {"fnclex", {0xdb, 0xe2}},
        {"fsin", {0xd9, 0xfe}},          {"fsqrt", {0xd9, 0xfa}},        {"fnstsw ax", {0xdf, 0xe0}},
    };
    for (const Ptr& pf : kPtrForms) {
        add(forms, std::string("pointers after ") + pf.name, Setup{2, false, false}, [pf](G& g, Picker& p, State& st) {
            p.fault_percent = 0;
            st.fsw &= uint16_t(~((st.fsw & ~st.fcw & 0x3f) | 0x8080));  // nothing pending: all of it runs
            const uint64_t snap_off = 0x1800, env_off = 0x1880;         // fixed, on the second page
            st.gpr[cpu::RSI] = kDataAddr + snap_off;
            st.gpr[cpu::RDI] = kDataAddr + env_off;
            g.db(0xdd), g.db(0x36);  // fnsave [rsi]
            Xbyak::Label retry;
            g.L(retry);
            g.db(0xdd), g.db(0x26);  // frstor [rsi]
            g.db(0xd9), g.db(0xe8);  // fld1
            if (pf.mem_opc >= 0) {
                uint64_t off;
                do off = p.data_offset(8);
                while (off + 8 > snap_off && off < env_off + 28);
                if (pf.mem_opc == 0xd9 && pf.mem_reg == 5) {
                    uint16_t cw = uint16_t(st.fcw | 0x3f);
                    put_data(st, off, &cw, 2);
                } else {
                    mem_value(p, st, off, M::F64);
                }
                mem_form(g, p, st, uint8_t(pf.mem_opc), unsigned(pf.mem_reg), off);
            } else {
                for (uint8_t b : pf.bytes) g.db(b);
            }
            g.db(0xd9), g.db(0x37);                              // fnstenv [rdi]
            g.db(0x83), g.db(0x7f), g.db(12), g.db(0);           // cmp dword [rdi+12], 0
            g.jz(retry, G::T_NEAR);
            for (uint8_t d : {16, 24}) {                         // FCS, FDS of the image and snapshot
                g.db(0x66), g.db(0xc7), g.db(0x47), g.db(d), g.dw(0);
                g.db(0x66), g.db(0xc7), g.db(0x46), g.db(d), g.dw(0);
            }
        });
    }

    // ES/B are derived from the flags and masks: a state with an unmasked flag set but ES clear
    // still has an exception pending, and ES set with nothing unmasked has none.
    add(forms, "pending exception from the flags alone", Setup{1, false, false}, [](G& g, Picker& p, State& st) {
        uint16_t f = uint16_t(1u << (p.rng() % 6));
        if (p.rng() % 2) {
            st.fcw = uint16_t(st.fcw & ~f);
            st.fsw = uint16_t((st.fsw & ~0x8080) | f);  // unmasked flag, ES clear
        } else {
            st.fcw |= 0x3f;
            st.fsw |= 0x8080 | f;  // ES set, everything masked
        }
        static const uint8_t kInsns[][2] = {{0xd9, 0xe8}, {0xdf, 0xe0}, {0xd9, 0xd0}, {0xdb, 0xe2}, {0xd9, 0xf7}};
        const uint8_t* b = kInsns[p.rng() % 5];
        g.db(b[0]), g.db(b[1]);
    });

    // Transcendentals: real CPUs are not correctly rounded here (and Intel and AMD differ), so a
    // small tolerance in the last significand bits applies (x87_ulps), for these forms only. For
    // the same reason C1 ("rounded up") cannot be compared: FDECSTP + FINCSTP after the instruction
    // clear it and change nothing else. OE/UE/PE stay masked (an unmasked one would leave the
    // instruction's C1 visible at the #MF). Inputs are kept inside each instruction's defined
    // domain (the SDM leaves F2XM1 outside [-1, 1] and FYL2XP1 outside |x| < 1 - sqrt(2)/2
    // undefined) most of the time.
    constexpr unsigned kTransUlps = 1;
    auto trans = [&](const std::string& name, int need, bool pushes, unsigned reg, unsigned rm,
                     std::function<void(Picker&, F80&, F80&)> shape) {
        Setup s{need, pushes, true, true};
        add(forms, name, s, [=](G& g, Picker& p, State& st) {
            st.fcw |= 0x38;  // OE, UE, PE masked
            unsigned t = (st.fsw >> 11) & 7;
            if (shape && p.rng() % 8 != 0) shape(p, st.st[t], st.st[(t + 1) & 7]);
            reg_form(g, 0xd9, reg, rm);
            reg_form(g, 0xd9, 6, 6);  // FDECSTP
            reg_form(g, 0xd9, 6, 7);  // FINCSTP
        }, kTransUlps);
    };
    auto finite = [](Picker& p, F80& v, int lo, int hi) {  // a normal value with exponent in [lo, hi]
        v.mant |= 1ull << 63;
        v.se = uint16_t((v.se & 0x8000) | (0x3fff + lo + int(p.rng() % unsigned(hi - lo + 1))));
    };
    trans("fsin", 1, false, 7, 6, [=](Picker& p, F80& a, F80&) { finite(p, a, -70, 70); });
    trans("fcos", 1, false, 7, 7, [=](Picker& p, F80& a, F80&) { finite(p, a, -70, 70); });
    trans("fsincos", 1, true, 7, 3, [=](Picker& p, F80& a, F80&) { finite(p, a, -70, 70); });
    trans("fptan", 1, true, 6, 2, [=](Picker& p, F80& a, F80&) { finite(p, a, -70, 70); });
    trans("fpatan", 2, false, 6, 3, [=](Picker& p, F80& a, F80& b) {
        finite(p, a, -40, 40);
        finite(p, b, -40, 40);
    });
    trans("f2xm1", 1, false, 6, 0, [=](Picker& p, F80& a, F80&) {
        finite(p, a, -80, -1);
        if (p.rng() % 16 == 0) a.mant = 1ull << 63, a.se = uint16_t((a.se & 0x8000) | 0x3fff);  // +-1
    });
    trans("fyl2x", 2, false, 6, 1, [=](Picker& p, F80& a, F80& b) {
        finite(p, a, -300, 300);
        if (p.rng() % 8) a.se &= 0x7fff;  // x > 0
        if (p.rng() % 8 == 0) a.mant = 1ull << 63;  // a power of two
        finite(p, b, -30, 30);
    });
    trans("fyl2xp1", 2, false, 7, 1, [=](Picker& p, F80& a, F80& b) {
        finite(p, a, -70, -3);
        finite(p, b, -30, 30);
    });
    (void)push1;
}

}  // namespace m86::difftest
