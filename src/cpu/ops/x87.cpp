// Instruction class "x87": the x87 FPU (SDM Vol. 1, Chapter 8; Vol. 2, the F* instruction pages).
//
// The arithmetic itself is the portable softfloat core (cpu/softfloat.h); this file is the FPU
// around it: the register stack (TOP, physical registers, 2-bit tags), the status word (exception
// flags, C0-C3, SF, ES/B), exception masking and delivery, FIP/FDP/FOP bookkeeping, and the
// environment/state images of FSTENV/FSAVE.
//
// Exceptions (SDM Vol. 1, 8.5-8.7): every flag an operation raises is ORed into FSW. If one is
// unmasked, ES and B are set and the exception is *pending*: it is delivered as #MF (vector 16,
// CR0.NE=1 style) when the next waiting x87 instruction (anything but the FN* control instructions)
// starts, before it executes. Pre-computation exceptions (IE incl. stack faults, DE, ZE) leave the
// destination and the stack untouched when unmasked; OE/UE unmasked deliver the wrapped-exponent
// result to a register destination and nothing to memory.
//
// Decoding: one selector serves every x87 mnemonic and dispatches on the opcode byte and ModRM, as
// the hardware does (Vol. 2, Appendix A.5 "Escape Opcode Instructions"); Insn::aux holds the 11-bit
// FOP and Insn::imm2 the ST(i) operands (dest << 4 | src).
#include "cpu/decode.h"
#include "cpu/mem.h"
#include "cpu/softfloat.h"

namespace m86::cpu {
namespace {

using sf::Env;
using sf::Op80;
using sf::Relation;

// FSW bits (SDM Vol. 1, 8.1.3).
constexpr uint16_t kIE = 1, kDE = 2, kZE = 4, kOE = 8, kUE = 16, kPE = 32, kSF = 0x40, kES = 0x80, kC0 = 0x100,
                   kC1 = 0x200, kC2 = 0x400, kC3 = 0x4000, kB = 0x8000;
constexpr uint16_t kCC = kC0 | kC1 | kC2 | kC3;
// Tags (SDM Vol. 1, 8.1.7).
constexpr unsigned kTagValid = 0, kTagZero = 1, kTagSpecial = 2, kTagEmpty = 3;

constexpr F80 kIndefinite = sf::kF80DefaultNaN;

// ---- register stack ------------------------------------------------------------------------------

inline unsigned phys(const X87State& x, unsigned i) { return (x.top() + i) & 7; }
inline unsigned tag(const X87State& x, unsigned p) { return (x.ftw >> (2 * p)) & 3; }
inline void set_tag(X87State& x, unsigned p, unsigned t) {
    x.ftw = uint16_t((x.ftw & ~(3u << (2 * p))) | (t << (2 * p)));
}
inline bool empty(const X87State& x, unsigned i) { return tag(x, phys(x, i)) == kTagEmpty; }
inline F80& st(X87State& x, unsigned i) { return x.st[phys(x, i)]; }

// The tag a value gets when written (SDM Vol. 1, 8.1.7): zero, valid (normal), or
// special (NaN, infinity, denormal, unsupported).
inline unsigned tag_of(const F80& v) {
    unsigned e = v.se & 0x7fff;
    if (e == 0) return v.mant == 0 ? kTagZero : kTagSpecial;
    if (e == 0x7fff || !(v.mant >> 63)) return kTagSpecial;
    return kTagValid;
}
inline void put(X87State& x, unsigned i, const F80& v) {
    unsigned p = phys(x, i);
    x.st[p] = v;
    set_tag(x, p, tag_of(v));
}
inline void pop(X87State& x) {
    set_tag(x, x.top(), kTagEmpty);
    x.set_top(x.top() + 1);
}
inline void push(X87State& x, const F80& v) {
    unsigned t = (x.top() - 1) & 7;
    x.set_top(t);
    x.st[t] = v;
    set_tag(x, t, tag_of(v));
}
inline void set_c1(X87State& x, bool v) { x.fsw = uint16_t((x.fsw & ~kC1) | (v ? kC1 : 0)); }
inline void set_cc(X87State& x, uint16_t cc) { x.fsw = uint16_t((x.fsw & ~kCC) | cc); }

// ---- instruction frame ---------------------------------------------------------------------------

// ES and B are not state of their own: they reflect whether any exception flag is set whose mask
// is clear (measured: a state loaded with an unmasked flag but ES clear still raises #MF, and
// masking everything clears ES). Normalise them before an instruction looks at FSW.
inline void sync_es(X87State& x) {
    if (x.fsw & ~x.fcw & 0x3f) [[unlikely]]
        x.fsw |= kES | kB;
    else if (x.fsw & (kES | kB)) [[unlikely]]
        x.fsw &= uint16_t(~(kES | kB));
}

// Every x87 instruction: CR0.EM or CR0.TS -> #NM (SDM Vol. 3, 2.5, Table 2-2). A waiting instruction
// with a pending unmasked exception raises #MF before it executes (SDM Vol. 1, 8.6).
inline void enter(Cpu& c) {
    if (c.s.cr0 & (cr0::EM | cr0::TS)) [[unlikely]]
        c.raise_fault(kNM);
    sync_es(c.s.x87);
    if (c.s.x87.fsw & kES) [[unlikely]]
        c.raise_fault(kMF);
}
inline void enter_nowait(Cpu& c) {
    if (c.s.cr0 & (cr0::EM | cr0::TS)) [[unlikely]]
        c.raise_fault(kNM);
    sync_es(c.s.x87);
}


// FIP/FCS/FOP (and FDP/FDS for memory operands) of the last non-control instruction (SDM Vol. 1,
// 8.1.8, 8.1.9).
inline void note(Cpu& c, const Insn& i) {
    X87State& x = c.s.x87;
    x.fop = i.aux & 0x7ff;
    x.fip = c.next_rip - i.len;
    x.fcs = c.s.seg[CS].sel;
}
// FDS is the selector of the segment register the operand used, even in 64-bit mode where the
// decoder folds DS/SS/ES into a flat segment (Insn::imm keeps it for x87 memory forms; measured:
// an RSP-based operand stores SS).
inline void note_mem(Cpu& c, const Insn& i, uint64_t off) {
    note(c, i);
    c.s.x87.fdp = off;
    c.s.x87.fds = c.s.seg[i.imm & 7].sel;
}

inline Env env_of(const X87State& x) {
    Env e;
    e.round = sf::Round((x.fcw >> 10) & 3);
    e.masks = uint8_t(x.fcw & 0x3f);
    unsigned pc = (x.fcw >> 8) & 3;
    e.precision = pc == 0 ? 24 : pc == 2 ? 53 : 64;  // PC=01 is reserved: treated as 64 bits
    return e;
}

inline uint16_t unmasked(const X87State& x, unsigned flags) { return uint16_t(flags & ~x.fcw & 0x3f); }

// Merge an operation's exception flags into FSW. Returns false if an unmasked pre-computation
// exception (IE, DE, ZE) forbids writing the result.
inline bool post(X87State& x, unsigned flags) {
    x.fsw = uint16_t(x.fsw | flags);
    if (uint16_t u = unmasked(x, flags)) [[unlikely]] {
        x.fsw |= kES | kB;
        if (u & (kIE | kDE | kZE)) {
            x.fsw &= uint16_t(~kC1);
            return false;
        }
    }
    return true;
}
// As post(), for a memory destination: unmasked OE/UE store nothing either (SDM Vol. 1, 8.5.4).
inline bool post_mem(X87State& x, unsigned flags) {
    x.fsw = uint16_t(x.fsw | flags);
    if (uint16_t u = unmasked(x, flags)) [[unlikely]] {
        x.fsw |= kES | kB;
        return !(u & (kIE | kDE | kZE | kOE | kUE));
    }
    return true;
}
// Would these flags allow a memory store? (Checked before the store, which may fault.)
inline bool mem_ok(const X87State& x, unsigned flags) {
    return !(unmasked(x, flags) & (kIE | kDE | kZE | kOE | kUE));
}

// Stack overflow (C1=1) or underflow (C1=0): IE + SF (SDM Vol. 1, 8.5.1.1). Returns true if IE is
// masked: the caller then writes the QNaN indefinite as the result.
inline bool stack_fault(X87State& x, bool overflow) {
    x.fsw = uint16_t((x.fsw & ~kC1) | (overflow ? kC1 : 0) | kIE | kSF);
    if (!(x.fcw & kIE)) {
        x.fsw |= kES | kB;
        return false;
    }
    return true;
}

// Push with the overflow check (the register that becomes ST(0) must be empty).
inline void push_checked(X87State& x, const F80& v) {
    if (!empty(x, 7)) [[unlikely]] {
        if (stack_fault(x, true)) push(x, kIndefinite);
        return;
    }
    set_c1(x, false);
    push(x, v);
}

// Memory helpers: linear address of the memory operand at byte offset `off`.
inline uint64_t mem_off(const Insn& i, uint64_t e, uint64_t off) {
    uint64_t a = e + off;
    return i.asz == 8 ? a : i.asz == 4 ? uint32_t(a) : uint16_t(a);
}
inline uint64_t lin_at(Cpu& c, const Insn& i, uint64_t e, uint64_t off) { return lin_op(c, i, mem_off(i, e, off)); }

inline F80 read_f80(Cpu& c, const Insn& i, uint64_t e) {
    uint64_t m = read<uint64_t>(c, lin_at(c, i, e, 0));
    uint16_t se = read<uint16_t>(c, lin_at(c, i, e, 8));
    return F80{m, se};
}
// A multi-part store must not fault half-way: walk the page tables first only when it crosses a
// page (within one page the first part's success implies the second's).
inline void probe_span(Cpu& c, uint64_t l0, uint64_t l_last) {
    if ((l0 ^ l_last) & ~uint64_t(0xfff)) [[unlikely]] {
        if (l_last > l0) {
            c.probe_write(l0, unsigned(l_last - l0 + 1));  // a second-page fault reports its first byte
        } else {  // wrapped at 4 GiB (legacy modes)
            c.probe_write(l0, 1);
            c.probe_write(l_last, 1);
        }
    }
}

inline void write_f80(Cpu& c, const Insn& i, uint64_t e, const F80& v) {
    uint64_t l0 = lin_at(c, i, e, 0), l8 = lin_at(c, i, e, 8);
    probe_span(c, l0, l8 + 1);
    write<uint64_t>(c, l0, v.mant);
    write<uint16_t>(c, l8, v.se);
}

// ---- memory operand kinds --------------------------------------------------------------------------
enum MemKind : uint8_t { kM32, kM64, kI16, kI32, kI64 };

// ---- FLD / FILD / FBLD / constants -----------------------------------------------------------------

template <MemKind K> void fld_mem(Cpu& c, const Insn& i) {
    enter(c);
    uint64_t e = ea(c, i);
    X87State& x = c.s.x87;
    F80 v;
    Env env = env_of(x);
    if constexpr (K == kM32) v = sf::f32_to_f80(read<uint32_t>(c, lin_at(c, i, e, 0)), env);
    else if constexpr (K == kM64) v = sf::f64_to_f80(read<uint64_t>(c, lin_at(c, i, e, 0)), env);
    else if constexpr (K == kI16) v = sf::i64_to_f80(int16_t(read<uint16_t>(c, lin_at(c, i, e, 0))));
    else if constexpr (K == kI32) v = sf::i64_to_f80(int32_t(read<uint32_t>(c, lin_at(c, i, e, 0))));
    else v = sf::i64_to_f80(int64_t(read<uint64_t>(c, lin_at(c, i, e, 0))));
    note_mem(c, i, e);
    if (!empty(x, 7)) [[unlikely]] {
        if (stack_fault(x, true)) push(x, kIndefinite);
        return;
    }
    set_c1(x, false);
    // An unmasked DE does not stop FLD m32/m64 (measured: the value is loaded, the exception is
    // pending); an unmasked IE (SNaN) does.
    if (!post(x, env.flags) && (unmasked(x, env.flags) & (kIE | kZE))) return;
    push(x, v);
}

void fld_m80(Cpu& c, const Insn& i) {
    enter(c);
    uint64_t e = ea(c, i);
    F80 v = read_f80(c, i, e);  // loaded as is: no conversion, no exception (FLD page)
    note_mem(c, i, e);
    push_checked(c.s.x87, v);
}

void fbld(Cpu& c, const Insn& i) {
    enter(c);
    uint64_t e = ea(c, i);
    uint8_t b[10];
    uint64_t lo = read<uint64_t>(c, lin_at(c, i, e, 0));
    uint16_t hi = read<uint16_t>(c, lin_at(c, i, e, 8));
    std::memcpy(b, &lo, 8);
    std::memcpy(b + 8, &hi, 2);
    note_mem(c, i, e);
    push_checked(c.s.x87, sf::bcd_to_f80(b));
}

void fld_st(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    unsigned s = i.imm2 & 7;
    if (empty(x, s)) [[unlikely]] {
        // Underflow on the source; if masked, the indefinite is pushed (subject to overflow too).
        if (!stack_fault(x, false)) return;
        if (!empty(x, 7)) {
            stack_fault(x, true);
            push(x, kIndefinite);
            return;
        }
        push(x, kIndefinite);
        return;
    }
    push_checked(x, st(x, s));
}

// FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ (SDM Vol. 2 FLD1/FLDL2T...; Vol. 1, 8.3.8: the
// constants are held with extra precision and rounded per RC). Significands to 128 bits.
struct Const {
    uint64_t hi, lo;
    uint16_t se;
};
constexpr Const kConsts[7] = {
    {0x8000000000000000ull, 0, 0x3fff},                       // 1
    {0xd49a784bcd1b8afeull, 0x492bf6ff4dafdb4cull, 0x4000},  // log2(10)
    {0xb8aa3b295c17f0bbull, 0xbe87fed0691d3e88ull, 0x3fff},  // log2(e)
    {0xc90fdaa22168c234ull, 0xc4c6628b80dc1cd1ull, 0x4000},  // pi
    {0x9a209a84fbcff798ull, 0x8f8959ac0b7c9178ull, 0x3ffd},  // log10(2)
    {0xb17217f7d1cf79abull, 0xc9e3b39803f2f6afull, 0x3ffe},  // ln(2)
    {0, 0, 0},                                                 // +0
};

void fldconst(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    const Const& k = kConsts[i.imm2 & 7];
    F80 v{k.hi, k.se};
    unsigned rc = (x.fcw >> 10) & 3;
    bool up = false;
    if (k.lo) {
        if (rc == 0) up = k.lo >> 63;      // to nearest (no constant is a tie)
        else if (rc == 2) up = true;       // up (all constants are positive)
    }
    if (up) v.mant++;  // no constant's significand is all ones
    push_checked(x, v);
}

// ---- FST / FSTP / FIST / FISTP / FISTTP / FBSTP ------------------------------------------------------

template <MemKind K, bool Pop, bool Trunc = false> void fst_mem(Cpu& c, const Insn& i) {
    enter(c);
    uint64_t e = ea(c, i);
    X87State& x = c.s.x87;
    uint64_t l = lin_at(c, i, e, 0);
    constexpr unsigned kSize = K == kI16 ? 2 : K == kM32 || K == kI32 ? 4 : 8;
    Env env = env_of(x);
    uint64_t v;
    if (empty(x, 0)) [[unlikely]] {
        // The destination is checked (#PF/#GP) even when an exception then suppresses the store.
        c.probe_write(l, kSize);
        note_mem(c, i, e);
        if (!stack_fault(x, false)) return;
        // Masked stack underflow stores the indefinite of the destination format.
        v = K == kM32 ? sf::kF32DefaultNaN : K == kM64 ? sf::kF64DefaultNaN
            : K == kI16 ? 0x8000 : K == kI32 ? 0x80000000u : sf::kInt64Indefinite;
    } else {
        const F80& a = st(x, 0);
        if constexpr (K == kM32) v = sf::f80_to_f32(a, env);
        else if constexpr (K == kM64) v = sf::f80_to_f64(a, env);
        else v = uint64_t(sf::f80_to_int(a, K == kI16 ? 16 : K == kI32 ? 32 : 64, Trunc, env));
        if (!mem_ok(x, env.flags)) [[unlikely]] {
            // Unmasked: nothing stored (the destination is still checked), and (measured) no PE
            // alongside an unmasked OE/UE.
            c.probe_write(l, kSize);
            note_mem(c, i, e);
            set_c1(x, false);
            post_mem(x, (unmasked(x, env.flags) & (kOE | kUE)) ? env.flags & ~kPE : env.flags);
            return;
        }
        // The store comes first (it may fault), then the FPU state.
        if constexpr (K == kM32 || K == kI32) write<uint32_t>(c, l, uint32_t(v));
        else if constexpr (K == kI16) write<uint16_t>(c, l, uint16_t(v));
        else write<uint64_t>(c, l, v);
        note_mem(c, i, e);
        set_c1(x, env.rounded_up);
        post_mem(x, env.flags);
        if (Pop) pop(x);
        return;
    }
    if constexpr (K == kM32 || K == kI32) write<uint32_t>(c, l, uint32_t(v));
    else if constexpr (K == kI16) write<uint16_t>(c, l, uint16_t(v));
    else write<uint64_t>(c, l, v);
    if (Pop) pop(x);
}

void fstp_m80(Cpu& c, const Insn& i) {
    enter(c);
    uint64_t e = ea(c, i);
    X87State& x = c.s.x87;
    bool underflow = empty(x, 0);
    if (underflow && !(x.fcw & kIE)) {
        c.probe_write(lin_at(c, i, e, 0), 8);  // checked even though nothing is stored
        c.probe_write(lin_at(c, i, e, 8), 2);
        note_mem(c, i, e);
        stack_fault(x, false);
        return;
    }
    write_f80(c, i, e, underflow ? kIndefinite : st(x, 0));
    note_mem(c, i, e);
    if (underflow) stack_fault(x, false);
    else set_c1(x, false);
    pop(x);
}

void fbstp(Cpu& c, const Insn& i) {
    enter(c);
    uint64_t e = ea(c, i);
    X87State& x = c.s.x87;
    Env env = env_of(x);
    uint8_t b[10];
    bool underflow = empty(x, 0);
    uint64_t l0 = lin_at(c, i, e, 0), l8 = lin_at(c, i, e, 8);
    probe_span(c, l0, l8 + 1);
    if (underflow || !(x.fcw & kIE)) {
        c.probe_write(l0, 8);  // exceptions may suppress the store: check the destination first
        c.probe_write(l8, 2);
    }
    if (underflow) {
        if (!(x.fcw & kIE)) {
            note_mem(c, i, e);
            stack_fault(x, false);
            return;
        }
        F80 nan = kIndefinite;
        Env tmp;
        sf::f80_to_bcd(nan, b, tmp);
    } else {
        sf::f80_to_bcd(st(x, 0), b, env);
    }
    if (!underflow && !mem_ok(x, env.flags)) {
        note_mem(c, i, e);
        set_c1(x, false);
        post_mem(x, env.flags);
        return;
    }
    uint64_t lo;
    uint16_t hi;
    std::memcpy(&lo, b, 8);
    std::memcpy(&hi, b + 8, 2);
    write<uint64_t>(c, l0, lo);
    write<uint16_t>(c, l8, hi);
    note_mem(c, i, e);
    if (underflow) {
        stack_fault(x, false);
    } else {
        set_c1(x, env.rounded_up);
        post_mem(x, env.flags);
    }
    pop(x);
}

// FST/FSTP ST(i): a plain copy (no conversion, no exception other than underflow).
template <bool Pop> void fst_st(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    unsigned d = i.imm2 & 7;
    if (empty(x, 0)) [[unlikely]] {
        if (!stack_fault(x, false)) return;
        put(x, d, kIndefinite);
    } else {
        set_c1(x, false);
        put(x, d, st(x, 0));
    }
    if (Pop) pop(x);
}

// FSTPNCE ST(i) (D9 D8+i, the "FSTP1" alias): measured on the host, it copies ST(0) (contents and
// tag, so an empty ST(0) stays empty) and pops without any exception.
void fstpnce(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    unsigned p0 = phys(x, 0), pd = phys(x, i.imm2 & 7);
    x.st[pd] = x.st[p0];
    set_tag(x, pd, tag(x, p0));
    set_c1(x, false);
    pop(x);
}

// ---- arithmetic ----------------------------------------------------------------------------------------

// Register forms: dest = dest op src (imm2 = dest << 4 | src), optionally popping.
template <Op80 O, bool Pop> void farith_st(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    unsigned pd = phys(x, (i.imm2 >> 4) & 7), ps = phys(x, i.imm2 & 7);
    F80 r;
    if (tag(x, pd) == kTagEmpty || tag(x, ps) == kTagEmpty) [[unlikely]] {
        if (!stack_fault(x, false)) return;
        r = kIndefinite;
    } else {
        Env env = env_of(x);
        r = sf::f80_op(O, x.st[pd], x.st[ps], env);
        set_c1(x, env.rounded_up);
        if (!post(x, env.flags)) return;
    }
    x.st[pd] = r;
    set_tag(x, pd, tag_of(r));
    if (Pop) pop(x);
}

// Memory forms: ST(0) = ST(0) op m32fp/m64fp/m16int/m32int.
template <Op80 O, MemKind K> void farith_mem(Cpu& c, const Insn& i) {
    enter(c);
    uint64_t e = ea(c, i);
    uint64_t l = lin_at(c, i, e, 0);
    uint64_t raw;
    if constexpr (K == kM32 || K == kI32) raw = read<uint32_t>(c, l);
    else if constexpr (K == kI16) raw = read<uint16_t>(c, l);
    else raw = read<uint64_t>(c, l);
    X87State& x = c.s.x87;
    note_mem(c, i, e);
    unsigned p0 = phys(x, 0);
    F80 r;
    if (tag(x, p0) == kTagEmpty) [[unlikely]] {
        if (!stack_fault(x, false)) return;
        r = kIndefinite;
    } else {
        Env env = env_of(x);
        if constexpr (K == kM32) r = sf::f80_op_f32(O, x.st[p0], uint32_t(raw), env);
        else if constexpr (K == kM64) r = sf::f80_op_f64(O, x.st[p0], raw, env);
        else if constexpr (K == kI16) r = sf::f80_op(O, x.st[p0], sf::i64_to_f80(int16_t(raw)), env);
        else r = sf::f80_op(O, x.st[p0], sf::i64_to_f80(int32_t(raw)), env);
        set_c1(x, env.rounded_up);
        if (!post(x, env.flags)) return;
    }
    x.st[p0] = r;
    set_tag(x, p0, tag_of(r));
}

// One-operand operations on ST(0) that may round: FSQRT, FRNDINT.
template <F80 (*Fn)(F80, Env&)> void funary(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    unsigned p0 = phys(x, 0);
    F80 r;
    if (tag(x, p0) == kTagEmpty) [[unlikely]] {
        if (!stack_fault(x, false)) return;
        r = kIndefinite;
    } else {
        Env env = env_of(x);
        r = Fn(x.st[p0], env);
        set_c1(x, env.rounded_up);
        if (!post(x, env.flags)) return;
    }
    x.st[p0] = r;
    set_tag(x, p0, tag_of(r));
}

// FCHS / FABS: sign manipulation only, no exception for any operand (FCHS/FABS pages).
template <bool Abs> void fsign(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    if (empty(x, 0)) [[unlikely]] {
        if (stack_fault(x, false)) put(x, 0, kIndefinite);
        return;
    }
    set_c1(x, false);
    F80& v = st(x, 0);
    v.se = Abs ? uint16_t(v.se & 0x7fff) : uint16_t(v.se ^ 0x8000);
}

// FSCALE: ST(0) = ST(0) * 2^trunc(ST(1)).
void fscale(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    F80 r;
    if (empty(x, 0) || empty(x, 1)) [[unlikely]] {
        if (!stack_fault(x, false)) return;
        r = kIndefinite;
    } else {
        Env env = env_of(x);
        r = sf::f80_scale(st(x, 0), st(x, 1), env);
        set_c1(x, env.rounded_up);
        if (!post(x, env.flags)) return;
    }
    put(x, 0, r);
}

// FXTRACT: ST(0) = exponent, then push the significand.
void fxtract(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    if (empty(x, 0)) [[unlikely]] {
        if (!stack_fault(x, false)) return;
        put(x, 0, kIndefinite);
        push_checked(x, kIndefinite);
        return;
    }
    if (!empty(x, 7)) [[unlikely]] {
        if (!stack_fault(x, true)) return;
        put(x, 0, kIndefinite);
        push(x, kIndefinite);
        return;
    }
    Env env = env_of(x);
    F80 ex, sg;
    sf::f80_extract(st(x, 0), &ex, &sg, env);
    set_c1(x, false);
    if (!post(x, env.flags)) return;
    put(x, 0, ex);
    push(x, sg);
}

// FPREM / FPREM1 (SDM Vol. 2 FPREM, FPREM1): C2 = incomplete; when complete C0 = Q2, C3 = Q1,
// C1 = Q0.
template <bool Ieee> void fprem(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    if (empty(x, 0) || empty(x, 1)) [[unlikely]] {
        x.fsw &= uint16_t(~kC2);  // measured
        if (!stack_fault(x, false)) return;
        put(x, 0, kIndefinite);
        return;
    }
    Env env = env_of(x);
    unsigned q;
    bool incomplete;
    F80 r = sf::f80_rem(st(x, 0), st(x, 1), Ieee, env, &q, &incomplete);
    if ((env.flags & kIE) || sf::f80_is_nan(r) || !post(x, env.flags)) {
        // NaN operands or invalid ones (unsupported, 0 divisor, infinite dividend): C1 = C2 = 0,
        // C0 and C3 unchanged (measured).
        x.fsw &= uint16_t(~(kC1 | kC2));
        if (post(x, env.flags)) put(x, 0, r);
        return;
    }
    uint16_t cc = incomplete ? kC2 : uint16_t(((q & 4) ? kC0 : 0) | ((q & 2) ? kC3 : 0) | ((q & 1) ? kC1 : 0));
    set_cc(x, cc);
    put(x, 0, r);
}

// ---- compares -------------------------------------------------------------------------------------------

inline uint16_t cc_of(Relation r) {
    switch (r) {
        case sf::kLess: return kC0;
        case sf::kEqual: return kC3;
        case sf::kGreater: return 0;
        default: return kC0 | kC2 | kC3;
    }
}

// Compares set the condition codes even when the exception is unmasked (unordered for invalid
// operands and stack underflow; measured), but then do not pop.
// Returns true if the instruction may pop.
inline bool compare_done(X87State& x, Relation r, unsigned flags) {
    x.fsw = uint16_t(x.fsw | flags);
    set_cc(x, cc_of(r));
    if (unmasked(x, flags)) {
        x.fsw |= kES | kB;
        return false;
    }
    return true;
}
inline bool compare_underflow(X87State& x) {
    bool masked = stack_fault(x, false);
    set_cc(x, kC0 | kC2 | kC3);
    return masked;
}

// FCOM/FCOMP/FUCOM/FUCOMP ST(i), FCOMPP/FUCOMPP (src = ST(1), two pops).
template <bool Unordered, int Pops> void fcom_st(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    unsigned s = i.imm2 & 7;
    bool ok;
    if (empty(x, 0) || empty(x, s)) [[unlikely]] {
        ok = compare_underflow(x);
    } else {
        Env env;
        Relation r = sf::f80_compare(st(x, 0), st(x, s), !Unordered, env);
        ok = compare_done(x, r, env.flags);
    }
    if (ok)
        for (int k = 0; k < Pops; k++) pop(x);
}

// FTST: compare ST(0) with +0.0.
void ftst(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    if (empty(x, 0)) [[unlikely]] {
        compare_underflow(x);
        return;
    }
    Env env;
    Relation r = sf::f80_compare(st(x, 0), F80{0, 0}, true, env);
    compare_done(x, r, env.flags);
}

template <MemKind K, int Pops> void fcom_mem(Cpu& c, const Insn& i) {
    enter(c);
    uint64_t e = ea(c, i);
    uint64_t l = lin_at(c, i, e, 0);
    uint64_t raw;
    if constexpr (K == kM32 || K == kI32) raw = read<uint32_t>(c, l);
    else if constexpr (K == kI16) raw = read<uint16_t>(c, l);
    else raw = read<uint64_t>(c, l);
    X87State& x = c.s.x87;
    note_mem(c, i, e);
    bool ok;
    if (empty(x, 0)) [[unlikely]] {
        ok = compare_underflow(x);
    } else {
        Env env;
        Relation r;
        const F80& a = st(x, 0);
        if constexpr (K == kM32) r = sf::f80_compare_f32(a, uint32_t(raw), true, env);
        else if constexpr (K == kM64) r = sf::f80_compare_f64(a, raw, true, env);
        else if constexpr (K == kI16) r = sf::f80_compare(a, sf::i64_to_f80(int16_t(raw)), true, env);
        else r = sf::f80_compare(a, sf::i64_to_f80(int32_t(raw)), true, env);
        ok = compare_done(x, r, env.flags);
    }
    if (ok)
        for (int k = 0; k < Pops; k++) pop(x);
}

// FCOMI/FCOMIP/FUCOMI/FUCOMIP: ZF, PF, CF from the compare, OF/SF/AF cleared (SDM Vol. 2 FCOMI);
// C1 is left alone (measured).
template <bool Unordered, bool Pop> void fcomi(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    unsigned s = i.imm2 & 7;
    Relation r;
    bool ok;
    if (empty(x, 0) || empty(x, s)) [[unlikely]] {
        ok = stack_fault(x, false);
        r = sf::kUnordered;
    } else {
        Env env;
        r = sf::f80_compare(st(x, 0), st(x, s), !Unordered, env);
        x.fsw = uint16_t(x.fsw | env.flags);
        ok = !unmasked(x, env.flags);
        if (!ok) x.fsw |= kES | kB;
    }
    uint64_t fl = r == sf::kLess ? fl::CF : r == sf::kEqual ? fl::ZF : r == sf::kGreater ? 0 : (fl::ZF | fl::PF | fl::CF);
    c.set_flags(fl::kArith, fl);
    if (Pop && ok) pop(x);
}

// FXAM (SDM Vol. 2 FXAM, the classification table): C3 C2 C0 classify ST(0), C1 = its sign.
void fxam(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    const F80& v = st(x, 0);
    uint16_t cc = (v.se & 0x8000) ? kC1 : 0;
    if (empty(x, 0)) {
        cc |= kC3 | kC0;
    } else {
        switch (sf::f80_classify(v)) {
            case sf::F80Class::Unsupported: break;
            case sf::F80Class::QNaN:
            case sf::F80Class::SNaN: cc |= kC0; break;
            case sf::F80Class::Normal: cc |= kC2; break;
            case sf::F80Class::Infinity: cc |= kC2 | kC0; break;
            case sf::F80Class::Zero: cc |= kC3; break;
            case sf::F80Class::Denormal: cc |= kC3 | kC2; break;
        }
    }
    set_cc(x, cc);
}

// ---- data movement -----------------------------------------------------------------------------------

void fxch(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    unsigned s = i.imm2 & 7;
    unsigned p0 = phys(x, 0), ps = phys(x, s);
    if (tag(x, p0) == kTagEmpty || tag(x, ps) == kTagEmpty) [[unlikely]] {
        if (!stack_fault(x, false)) return;
        // Masked: an empty register is first loaded with the indefinite, then the swap happens.
        if (tag(x, p0) == kTagEmpty) x.st[p0] = kIndefinite, set_tag(x, p0, kTagSpecial);
        if (tag(x, ps) == kTagEmpty) x.st[ps] = kIndefinite, set_tag(x, ps, kTagSpecial);
    } else {
        set_c1(x, false);
    }
    F80 t = x.st[p0];
    x.st[p0] = x.st[ps];
    x.st[ps] = t;
    unsigned t0 = tag(x, p0), ts = tag(x, ps);
    set_tag(x, p0, ts);
    set_tag(x, ps, t0);
}

// FCMOVcc (SDM Vol. 2 FCMOVcc): condition codes B E BE U (+ negations), in aux bits 11..14.
void fcmov(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    unsigned s = i.imm2 & 7;
    if (empty(x, 0) || empty(x, s)) [[unlikely]] {
        if (stack_fault(x, false)) put(x, 0, kIndefinite);
        return;
    }
    unsigned k = (i.aux >> 11) & 7;
    bool cond;
    switch (k & 3) {
        case 0: cond = c.cf(); break;
        case 1: cond = c.zf(); break;
        case 2: cond = c.cf() || c.zf(); break;
        default: cond = c.pf(); break;
    }
    if (k & 4) cond = !cond;
    if (cond) put(x, 0, st(x, s));
}

// ---- stack and control --------------------------------------------------------------------------------

template <bool Pop> void ffree(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    set_c1(x, false);  // measured
    set_tag(x, phys(x, i.imm2 & 7), kTagEmpty);
    if (Pop) pop(x);
}

template <int Delta> void fincdec(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    set_c1(x, false);
    x.set_top(x.top() + Delta);
}

void fnop(Cpu& c, const Insn& i) {
    enter(c);
    note(c, i);
}

// FENI/FDISI/FSETPM: 8087/80287 instructions, no-ops since the 80387 (and, measured, they do not
// check for pending exceptions).
void fnop_legacy(Cpu& c, const Insn&) { enter_nowait(c); }

// WAIT/FWAIT: #NM if CR0.MP and CR0.TS, then pending exceptions (SDM Vol. 2 WAIT/FWAIT).
void fwait(Cpu& c, const Insn&) {
    if ((c.s.cr0 & (cr0::MP | cr0::TS)) == (cr0::MP | cr0::TS)) [[unlikely]]
        c.raise_fault(kNM);
    sync_es(c.s.x87);
    if (c.s.x87.fsw & kES) [[unlikely]]
        c.raise_fault(kMF);
}

void init_state(X87State& x) {
    x.fcw = 0x037f;
    x.fsw = 0;
    x.ftw = 0xffff;
    x.fop = 0;
    x.fip = x.fdp = 0;
    x.fcs = x.fds = 0;
}

void fninit(Cpu& c, const Insn&) {
    enter_nowait(c);
    init_state(c.s.x87);
}

void fnclex(Cpu& c, const Insn&) {
    enter_nowait(c);
    c.s.x87.fsw &= uint16_t(~(0x00ff | kB));
}

// Loaded FCW values keep only the defined bits (masks, PC, RC, X); reserved bit 6 reads as 1
// (measured; SDM Vol. 1, Figure 8-6).
inline uint16_t fcw_value(uint32_t v) { return uint16_t((v & 0x1f3f) | 0x40); }

// ES/B follow the exception flags and masks when FCW or FSW are loaded.
inline void recompute_es(X87State& x) { sync_es(x); }

void fldcw(Cpu& c, const Insn& i) {
    enter(c);
    uint16_t v = read<uint16_t>(c, lin(c, i));
    X87State& x = c.s.x87;
    x.fcw = fcw_value(v);
    recompute_es(x);
}

void fnstcw(Cpu& c, const Insn& i) {
    enter_nowait(c);
    write<uint16_t>(c, lin(c, i), c.s.x87.fcw);
}

void fnstsw_mem(Cpu& c, const Insn& i) {
    enter_nowait(c);
    write<uint16_t>(c, lin(c, i), c.s.x87.fsw);
}

void fnstsw_ax(Cpu& c, const Insn&) {
    enter_nowait(c);
    c.set_reg<2>(RAX, c.s.x87.fsw);
}

// ---- FSTENV / FLDENV / FSAVE / FRSTOR ------------------------------------------------------------------
// Layouts: SDM Vol. 1, 8.1.10, Figures 8-9..8-12. 32-bit operand size: 28 bytes; 16-bit: 14 bytes.
// Real mode (and virtual-8086) uses the real-mode layouts; protected and 64-bit mode the
// protected-mode ones (64-bit mode stores 32-bit pointers: only FXSAVE64 has 64-bit ones).

inline bool real_layout(const Cpu& c) { return c.mode() == Mode::Real || (c.s.rflags & fl::VM); }

// Build the environment image into b[0..27] (or [0..13] for 16-bit); returns its size.
unsigned store_env(Cpu& c, const Insn& i, uint8_t* b) {
    X87State& x = c.s.x87;
    auto w16 = [&](unsigned off, uint16_t v) { std::memcpy(b + off, &v, 2); };
    auto w32 = [&](unsigned off, uint32_t v) { std::memcpy(b + off, &v, 4); };
    uint32_t ip = uint32_t(x.fip), dp = uint32_t(x.fdp);
    if (i.osz == 2) {
        w16(0, x.fcw);
        w16(2, x.fsw);
        w16(4, x.ftw);
        if (real_layout(c)) {
            uint32_t lip = ip + (uint32_t(x.fcs) << 4), ldp = dp + (uint32_t(x.fds) << 4);
            w16(6, uint16_t(lip));
            w16(8, uint16_t(((lip >> 16) & 0xf) << 12 | (x.fop & 0x7ff)));
            w16(10, uint16_t(ldp));
            w16(12, uint16_t(((ldp >> 16) & 0xf) << 12));
        } else {
            w16(6, uint16_t(ip));
            w16(8, x.fcs);
            w16(10, uint16_t(dp));
            w16(12, x.fds);
        }
        return 14;
    }
    w32(0, 0xffff0000u | x.fcw);
    w32(4, 0xffff0000u | x.fsw);
    w32(8, 0xffff0000u | x.ftw);
    if (real_layout(c)) {
        uint32_t lip = ip + (uint32_t(x.fcs) << 4), ldp = dp + (uint32_t(x.fds) << 4);
        w32(12, 0xffff0000u | (lip & 0xffff));
        w32(16, ((lip >> 16) << 12) | (x.fop & 0x7ff));
        w32(20, 0xffff0000u | (ldp & 0xffff));
        w32(24, (ldp >> 16) << 12);
    } else {
        w32(12, ip);
        w32(16, uint32_t(x.fcs) | uint32_t(x.fop & 0x7ff) << 16);
        w32(20, dp);
        w32(24, 0xffff0000u | x.fds);
    }
    return 28;
}

void load_env(Cpu& c, const Insn& i, const uint8_t* b) {
    X87State& x = c.s.x87;
    auto r16 = [&](unsigned off) {
        uint16_t v;
        std::memcpy(&v, b + off, 2);
        return v;
    };
    auto r32 = [&](unsigned off) {
        uint32_t v;
        std::memcpy(&v, b + off, 4);
        return v;
    };
    uint16_t ftw;
    if (i.osz == 2) {
        x.fcw = fcw_value(r16(0));
        x.fsw = r16(2);
        ftw = r16(4);
        if (real_layout(c)) {
            x.fip = r16(6) | uint32_t(r16(8) >> 12) << 16;
            x.fop = r16(8) & 0x7ff;
            x.fdp = r16(10) | uint32_t(r16(12) >> 12) << 16;
            x.fcs = x.fds = 0;
        } else {
            x.fip = r16(6);
            x.fcs = r16(8);
            x.fdp = r16(10);
            x.fds = r16(12);
        }
    } else {
        x.fcw = fcw_value(r32(0));
        x.fsw = uint16_t(r32(4));
        ftw = uint16_t(r32(8));
        if (real_layout(c)) {
            x.fip = (r32(12) & 0xffff) | ((r32(16) >> 12) & 0xffff) << 16;
            x.fop = r32(16) & 0x7ff;
            x.fdp = (r32(20) & 0xffff) | ((r32(24) >> 12) & 0xffff) << 16;
            x.fcs = x.fds = 0;
        } else {
            x.fip = r32(12);
            x.fcs = uint16_t(r32(16));
            x.fop = (r32(16) >> 16) & 0x7ff;
            x.fdp = r32(20);
            x.fds = uint16_t(r32(24));
        }
    }
    // Only "empty" is taken from the image; other tags follow the register contents (SDM Vol. 1, 8.1.7).
    x.ftw = 0;
    for (unsigned p = 0; p < 8; p++) set_tag(x, p, ((ftw >> (2 * p)) & 3) == kTagEmpty ? kTagEmpty : tag_of(x.st[p]));
    recompute_es(x);
}

// Environment/state images: the first field (2 or 4 bytes), then the last byte, then the rest are
// checked, which gives the fault address the host reports when the image crosses into a bad page
// (measured). The whole destination is probed before anything is written.
void write_block(Cpu& c, const Insn& i, uint64_t e, const uint8_t* b, unsigned n) {
    c.probe_write(lin_at(c, i, e, 0), i.osz == 2 ? 2 : 4);
    c.probe_write(lin_at(c, i, e, n - 1), 1);
    for (unsigned off = 0; off < n; off += 8) c.probe_write(lin_at(c, i, e, off), std::min(8u, n - off));
    for (unsigned off = 0; off < n; off++) write<uint8_t>(c, lin_at(c, i, e, off), b[off]);
}
void read_block(Cpu& c, const Insn& i, uint64_t e, uint8_t* b, unsigned n) {
    if (i.osz == 2) read<uint16_t>(c, lin_at(c, i, e, 0));
    else read<uint32_t>(c, lin_at(c, i, e, 0));
    b[n - 1] = read<uint8_t>(c, lin_at(c, i, e, n - 1));
    for (unsigned off = 0; off < n; off++) b[off] = read<uint8_t>(c, lin_at(c, i, e, off));
}

void fnstenv(Cpu& c, const Insn& i) {
    enter_nowait(c);
    uint8_t b[28];
    uint64_t e = ea(c, i);
    unsigned n = store_env(c, i, b);
    write_block(c, i, e, b, n);
    c.s.x87.fcw |= 0x3f;  // all exceptions masked afterwards (SDM Vol. 2 FSTENV)
    recompute_es(c.s.x87);
}

void fldenv(Cpu& c, const Insn& i) {
    enter(c);
    uint8_t b[28];
    uint64_t e = ea(c, i);
    read_block(c, i, e, b, i.osz == 2 ? 14 : 28);
    load_env(c, i, b);
}

void fnsave(Cpu& c, const Insn& i) {
    enter_nowait(c);
    uint8_t b[108];
    uint64_t e = ea(c, i);
    unsigned n = store_env(c, i, b);
    X87State& x = c.s.x87;
    for (unsigned k = 0; k < 8; k++) {
        const F80& v = st(x, k);
        std::memcpy(b + n + 10 * k, &v.mant, 8);
        std::memcpy(b + n + 10 * k + 8, &v.se, 2);
    }
    write_block(c, i, e, b, n + 80);
    init_state(x);
}

void frstor(Cpu& c, const Insn& i) {
    enter(c);
    uint8_t b[108];
    uint64_t e = ea(c, i);
    unsigned n = i.osz == 2 ? 14 : 28;
    read_block(c, i, e, b, n + 80);
    X87State& x = c.s.x87;
    // The registers are in stack order: the TOP from the image decides where they go.
    uint16_t fsw;
    std::memcpy(&fsw, b + (i.osz == 2 ? 2 : 4), 2);
    unsigned top = (fsw >> 11) & 7;
    for (unsigned k = 0; k < 8; k++) {
        F80& v = x.st[(top + k) & 7];
        std::memcpy(&v.mant, b + n + 10 * k, 8);
        std::memcpy(&v.se, b + n + 10 * k + 8, 2);
    }
    load_env(c, i, b);
}

// ---- transcendentals ---------------------------------------------------------------------------------

// FSIN, FCOS, FSINCOS, FPTAN: |ST(0)| >= 2^63 leaves it unchanged with C2 = 1 (SDM Vol. 2 FSIN).
template <int Kind /*0 sin, 1 cos, 2 sincos, 3 tan*/> void ftrig(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    bool pushes = Kind >= 2;
    if (empty(x, 0)) [[unlikely]] {
        x.fsw &= uint16_t(~kC2);  // measured
        if (!stack_fault(x, false)) return;
        put(x, 0, kIndefinite);
        if (pushes) push_checked(x, kIndefinite), set_c1(x, false);
        return;
    }
    if (pushes && !empty(x, 7)) [[unlikely]] {
        x.fsw &= uint16_t(~kC2);  // measured
        if (!stack_fault(x, true)) return;
        put(x, 0, kIndefinite);
        push(x, kIndefinite);
        return;
    }
    Env env = env_of(x);
    F80 r0, r1;
    bool in_range;
    if constexpr (Kind == 0) in_range = sf::f80_sincos(st(x, 0), &r0, nullptr, env);
    else if constexpr (Kind == 1) in_range = sf::f80_sincos(st(x, 0), nullptr, &r0, env);
    else if constexpr (Kind == 2) in_range = sf::f80_sincos(st(x, 0), &r0, &r1, env);
    else in_range = sf::f80_tan(st(x, 0), &r0, env);
    if (!in_range) {
        x.fsw = uint16_t((x.fsw & ~kC1) | kC2);
        return;
    }
    set_c1(x, env.rounded_up);
    x.fsw &= uint16_t(~kC2);
    if (!post(x, env.flags)) return;
    if constexpr (Kind == 2) {  // ST(0) = sin, then push cos
        put(x, 0, r0);
        push(x, r1);
    } else if constexpr (Kind == 3) {  // ST(0) = tan, then push 1.0 (a NaN result: push it again)
        put(x, 0, r0);
        push(x, sf::f80_is_nan(r0) ? r0 : F80{1ull << 63, 0x3fff});
    } else {
        put(x, 0, r0);
    }
}

// Two-operand transcendentals writing ST(1) and popping: FPATAN, FYL2X, FYL2XP1.
template <F80 (*Fn)(F80, F80, Env&)> void ftrans2(Cpu& c, const Insn& i) {
    enter(c);
    X87State& x = c.s.x87;
    note(c, i);
    F80 r;
    if (empty(x, 0) || empty(x, 1)) [[unlikely]] {
        if (!stack_fault(x, false)) return;
        r = kIndefinite;
    } else {
        Env env = env_of(x);
        r = Fn(st(x, 0), st(x, 1), env);
        set_c1(x, env.rounded_up);
        if (!post(x, env.flags)) return;
    }
    put(x, 1, r);
    pop(x);
}

// ---- decoding ------------------------------------------------------------------------------------------

template <Op80 O> Handler arith_reg(unsigned form) {  // 0: st0,sti  1: sti,st0  2: sti,st0 + pop
    return form == 2 ? &farith_st<O, true> : &farith_st<O, false>;
}
template <Op80 O> Handler arith_mem(unsigned opc) {
    switch (opc) {
        case 0xd8: return &farith_mem<O, kM32>;
        case 0xdc: return &farith_mem<O, kM64>;
        case 0xda: return &farith_mem<O, kI32>;
        default: return &farith_mem<O, kI16>;
    }
}

Handler select_x87(const DecodeCtx& d) {
    Insn& in = d.insn;
    unsigned opc = d.zi.opcode;
    if (opc == 0x9b) return &fwait;
    if (opc < 0xd8 || opc > 0xdf) return nullptr;
    unsigned mod = d.zi.raw.modrm.mod, reg = d.zi.raw.modrm.reg, rm = d.zi.raw.modrm.rm;
    unsigned modrm = mod << 6 | reg << 3 | rm;
    in.aux = uint16_t(((opc & 7) << 8) | modrm);
    if (mod != 3) {
        in.imm = DS;
        for (unsigned k = 0; k < d.zi.operand_count; k++)
            if (d.ops[k].type == ZYDIS_OPERAND_TYPE_MEMORY && d.ops[k].mem.segment >= ZYDIS_REGISTER_ES &&
                d.ops[k].mem.segment <= ZYDIS_REGISTER_GS)
                in.imm = uint64_t(d.ops[k].mem.segment - ZYDIS_REGISTER_ES);
    }
    static constexpr Op80 kArith[8] = {Op80::Add, Op80::Mul, Op80::Add, Op80::Add,
                                       Op80::Sub, Op80::SubR, Op80::Div, Op80::DivR};
    if (mod != 3) {
        switch (opc) {
            case 0xd8: case 0xdc: case 0xda: case 0xde: {
                MemKind k = opc == 0xd8 ? kM32 : opc == 0xdc ? kM64 : opc == 0xda ? kI32 : kI16;
                if (reg == 2 || reg == 3) {
                    bool p = reg == 3;
                    switch (k) {
                        case kM32: return p ? &fcom_mem<kM32, 1> : &fcom_mem<kM32, 0>;
                        case kM64: return p ? &fcom_mem<kM64, 1> : &fcom_mem<kM64, 0>;
                        case kI32: return p ? &fcom_mem<kI32, 1> : &fcom_mem<kI32, 0>;
                        default: return p ? &fcom_mem<kI16, 1> : &fcom_mem<kI16, 0>;
                    }
                }
                switch (kArith[reg]) {
                    case Op80::Add: return arith_mem<Op80::Add>(opc);
                    case Op80::Mul: return arith_mem<Op80::Mul>(opc);
                    case Op80::Sub: return arith_mem<Op80::Sub>(opc);
                    case Op80::SubR: return arith_mem<Op80::SubR>(opc);
                    case Op80::Div: return arith_mem<Op80::Div>(opc);
                    default: return arith_mem<Op80::DivR>(opc);
                }
            }
            case 0xd9:
                switch (reg) {
                    case 0: return &fld_mem<kM32>;
                    case 2: return &fst_mem<kM32, false>;
                    case 3: return &fst_mem<kM32, true>;
                    case 4: return &fldenv;
                    case 5: return &fldcw;
                    case 6: return &fnstenv;
                    case 7: return &fnstcw;
                    default: return nullptr;
                }
            case 0xdb:
                switch (reg) {
                    case 0: return &fld_mem<kI32>;
                    case 1: return &fst_mem<kI32, true, true>;
                    case 2: return &fst_mem<kI32, false>;
                    case 3: return &fst_mem<kI32, true>;
                    case 5: return &fld_m80;
                    case 7: return &fstp_m80;
                    default: return nullptr;
                }
            case 0xdd:
                switch (reg) {
                    case 0: return &fld_mem<kM64>;
                    case 1: return &fst_mem<kI64, true, true>;
                    case 2: return &fst_mem<kM64, false>;
                    case 3: return &fst_mem<kM64, true>;
                    case 4: return &frstor;
                    case 6: return &fnsave;
                    case 7: return &fnstsw_mem;
                    default: return nullptr;
                }
            default:  // 0xdf
                switch (reg) {
                    case 0: return &fld_mem<kI16>;
                    case 1: return &fst_mem<kI16, true, true>;
                    case 2: return &fst_mem<kI16, false>;
                    case 3: return &fst_mem<kI16, true>;
                    case 4: return &fbld;
                    case 5: return &fld_mem<kI64>;
                    case 6: return &fbstp;
                    default: return &fst_mem<kI64, true>;
                }
        }
    }
    // Register forms.
    switch (opc) {
        case 0xd8:
            in.imm2 = uint8_t(rm);  // dest ST(0), src ST(i)
            switch (reg) {
                case 0: return arith_reg<Op80::Add>(0);
                case 1: return arith_reg<Op80::Mul>(0);
                case 2: return &fcom_st<false, 0>;
                case 3: return &fcom_st<false, 1>;
                case 4: return arith_reg<Op80::Sub>(0);
                case 5: return arith_reg<Op80::SubR>(0);
                case 6: return arith_reg<Op80::Div>(0);
                default: return arith_reg<Op80::DivR>(0);
            }
        case 0xdc:
        case 0xde: {
            // dest ST(i), src ST(0). Note the swapped SUB/SUBR and DIV/DIVR encodings (reg 4..7).
            in.imm2 = uint8_t(rm << 4);
            unsigned form = opc == 0xde ? 2 : 1;
            switch (reg) {
                case 0: return arith_reg<Op80::Add>(form);
                case 1: return arith_reg<Op80::Mul>(form);
                case 2: in.imm2 = uint8_t(rm); return opc == 0xdc ? &fcom_st<false, 0> : &fcom_st<false, 1>;
                case 3:
                    in.imm2 = uint8_t(rm);
                    if (opc == 0xdc) return &fcom_st<false, 1>;
                    return rm == 1 ? &fcom_st<false, 2> : nullptr;  // FCOMPP
                case 4: return arith_reg<Op80::SubR>(form);
                case 5: return arith_reg<Op80::Sub>(form);
                case 6: return arith_reg<Op80::DivR>(form);
                default: return arith_reg<Op80::Div>(form);
            }
        }
        case 0xd9:
            in.imm2 = uint8_t(rm);
            switch (reg) {
                case 0: return &fld_st;
                case 1: return &fxch;
                case 2: return rm == 0 ? &fnop : nullptr;
                case 3: return &fstpnce;
                case 4:
                    switch (rm) {
                        case 0: return &fsign<false>;
                        case 1: return &fsign<true>;
                        case 4: return &ftst;
                        case 5: return &fxam;
                        default: return nullptr;
                    }
                case 5: return rm < 7 ? &fldconst : nullptr;
                case 6:
                    switch (rm) {
                        case 0: return &funary<sf::f80_2xm1>;
                        case 1: return &ftrans2<sf::f80_yl2x>;
                        case 2: return &ftrig<3>;
                        case 3: return &ftrans2<sf::f80_atan>;
                        case 4: return &fxtract;
                        case 5: return &fprem<true>;
                        case 6: return &fincdec<-1>;
                        default: return &fincdec<1>;
                    }
                default:
                    switch (rm) {
                        case 0: return &fprem<false>;
                        case 1: return &ftrans2<sf::f80_yl2xp1>;
                        case 2: return &funary<sf::f80_sqrt>;
                        case 3: return &ftrig<2>;
                        case 4: return &funary<sf::f80_round_to_int>;
                        case 5: return &fscale;
                        case 6: return &ftrig<0>;
                        default: return &ftrig<1>;
                    }
            }
        case 0xda:
        case 0xdb:
            in.imm2 = uint8_t(rm);
            if (reg < 4) {
                in.aux |= uint16_t((reg | (opc == 0xdb ? 4 : 0)) << 11);
                return &fcmov;
            }
            if (opc == 0xda) return reg == 5 && rm == 1 ? &fcom_st<true, 2> : nullptr;  // FUCOMPP
            if (reg == 4) {
                switch (rm) {
                    case 0: case 1: case 4: return &fnop_legacy;  // FENI, FDISI, FSETPM
                    case 2: return &fnclex;
                    case 3: return &fninit;
                    default: return nullptr;
                }
            }
            if (reg == 5) return &fcomi<true, false>;
            if (reg == 6) return &fcomi<false, false>;
            return nullptr;
        case 0xdd:
            in.imm2 = uint8_t(rm);
            switch (reg) {
                case 0: return &ffree<false>;
                case 1: return &fxch;
                case 2: return &fst_st<false>;
                case 3: return &fst_st<true>;
                case 4: return &fcom_st<true, 0>;
                case 5: return &fcom_st<true, 1>;
                default: return nullptr;
            }
        default:  // 0xdf
            in.imm2 = uint8_t(rm);
            switch (reg) {
                case 0: return &ffree<true>;
                case 1: return &fxch;
                case 2: case 3: return &fst_st<true>;
                case 4: return rm == 0 ? &fnstsw_ax : nullptr;
                case 5: return &fcomi<true, true>;
                case 6: return &fcomi<false, true>;
                default: return nullptr;
            }
    }
}

}  // namespace

void register_x87(Registry& r) {
    static const ZydisMnemonic kMnemonics[] = {
        ZYDIS_MNEMONIC_F2XM1,   ZYDIS_MNEMONIC_FABS,     ZYDIS_MNEMONIC_FADD,     ZYDIS_MNEMONIC_FADDP,
        ZYDIS_MNEMONIC_FBLD,    ZYDIS_MNEMONIC_FBSTP,    ZYDIS_MNEMONIC_FCHS,     ZYDIS_MNEMONIC_FCMOVB,
        ZYDIS_MNEMONIC_FCMOVBE, ZYDIS_MNEMONIC_FCMOVE,   ZYDIS_MNEMONIC_FCMOVNB,  ZYDIS_MNEMONIC_FCMOVNBE,
        ZYDIS_MNEMONIC_FCMOVNE, ZYDIS_MNEMONIC_FCMOVNU,  ZYDIS_MNEMONIC_FCMOVU,   ZYDIS_MNEMONIC_FCOM,
        ZYDIS_MNEMONIC_FCOMI,   ZYDIS_MNEMONIC_FCOMIP,   ZYDIS_MNEMONIC_FCOMP,    ZYDIS_MNEMONIC_FCOMPP,
        ZYDIS_MNEMONIC_FCOS,    ZYDIS_MNEMONIC_FDECSTP,  ZYDIS_MNEMONIC_FDISI8087_NOP, ZYDIS_MNEMONIC_FDIV,
        ZYDIS_MNEMONIC_FDIVP,   ZYDIS_MNEMONIC_FDIVR,    ZYDIS_MNEMONIC_FDIVRP,   ZYDIS_MNEMONIC_FENI8087_NOP,
        ZYDIS_MNEMONIC_FFREE,   ZYDIS_MNEMONIC_FFREEP,   ZYDIS_MNEMONIC_FIADD,    ZYDIS_MNEMONIC_FICOM,
        ZYDIS_MNEMONIC_FICOMP,  ZYDIS_MNEMONIC_FIDIV,    ZYDIS_MNEMONIC_FIDIVR,   ZYDIS_MNEMONIC_FILD,
        ZYDIS_MNEMONIC_FIMUL,   ZYDIS_MNEMONIC_FINCSTP,  ZYDIS_MNEMONIC_FIST,     ZYDIS_MNEMONIC_FISTP,
        ZYDIS_MNEMONIC_FISTTP,  ZYDIS_MNEMONIC_FISUB,    ZYDIS_MNEMONIC_FISUBR,   ZYDIS_MNEMONIC_FLD,
        ZYDIS_MNEMONIC_FLD1,    ZYDIS_MNEMONIC_FLDCW,    ZYDIS_MNEMONIC_FLDENV,   ZYDIS_MNEMONIC_FLDL2E,
        ZYDIS_MNEMONIC_FLDL2T,  ZYDIS_MNEMONIC_FLDLG2,   ZYDIS_MNEMONIC_FLDLN2,   ZYDIS_MNEMONIC_FLDPI,
        ZYDIS_MNEMONIC_FLDZ,    ZYDIS_MNEMONIC_FMUL,     ZYDIS_MNEMONIC_FMULP,    ZYDIS_MNEMONIC_FNCLEX,
        ZYDIS_MNEMONIC_FNINIT,  ZYDIS_MNEMONIC_FNOP,     ZYDIS_MNEMONIC_FNSAVE,   ZYDIS_MNEMONIC_FNSTCW,
        ZYDIS_MNEMONIC_FNSTENV, ZYDIS_MNEMONIC_FNSTSW,   ZYDIS_MNEMONIC_FPATAN,   ZYDIS_MNEMONIC_FPREM,
        ZYDIS_MNEMONIC_FPREM1,  ZYDIS_MNEMONIC_FPTAN,    ZYDIS_MNEMONIC_FRNDINT,  ZYDIS_MNEMONIC_FRSTOR,
        ZYDIS_MNEMONIC_FSCALE,  ZYDIS_MNEMONIC_FSETPM287_NOP, ZYDIS_MNEMONIC_FSIN, ZYDIS_MNEMONIC_FSINCOS,
        ZYDIS_MNEMONIC_FSQRT,   ZYDIS_MNEMONIC_FST,      ZYDIS_MNEMONIC_FSTP,     ZYDIS_MNEMONIC_FSTPNCE,
        ZYDIS_MNEMONIC_FSUB,    ZYDIS_MNEMONIC_FSUBP,    ZYDIS_MNEMONIC_FSUBR,    ZYDIS_MNEMONIC_FSUBRP,
        ZYDIS_MNEMONIC_FTST,    ZYDIS_MNEMONIC_FUCOM,    ZYDIS_MNEMONIC_FUCOMI,   ZYDIS_MNEMONIC_FUCOMIP,
        ZYDIS_MNEMONIC_FUCOMP,  ZYDIS_MNEMONIC_FUCOMPP,  ZYDIS_MNEMONIC_FWAIT,    ZYDIS_MNEMONIC_FXAM,
        ZYDIS_MNEMONIC_FXCH,    ZYDIS_MNEMONIC_FXTRACT,  ZYDIS_MNEMONIC_FYL2X,    ZYDIS_MNEMONIC_FYL2XP1,
    };
    for (ZydisMnemonic m : kMnemonics) r.add(m, select_x87);
}

}  // namespace m86::cpu
