// Stack instructions: PUSH/POP (register, memory, immediate), PUSHF/POPF (16/32/64), PUSHA/POPA
// (legacy modes), ENTER, LEAVE. PUSH/POP of segment registers belong to the system class (the
// selectors return nullptr for them).
//
// The operand size W (2/4/8 bytes) is the size of each stack slot; the stack-pointer width follows
// the mode and SS.B (stack.h). Handlers are instantiated per W and per "64-bit mode" (L64).
// Every handler does its last faulting access before it commits RSP or any register, so a fault
// leaves the registers as at the instruction's start (PUSHA probes its slots first; ENTER, like the
// hardware, may leave earlier pushes in memory below RSP).
// SDM Vol. 2: "PUSH", "POP", "PUSHF", "POPF", "ENTER", "LEAVE"; AMD APM Vol. 3 for ENTER's details.
#include "cpu/decode.h"
#include "cpu/mem.h"
#include "cpu/ops/stack.h"

namespace m86::cpu {
namespace {

using stack::lin_at;
using stack::peek;
using stack::push;
using stack::set_sp;
using stack::sread;
using stack::swrite;
using stack::sp;
using stack::sp_mask;

// ---- PUSH, POP -----------------------------------------------------------------------------------

// PUSH r/m/imm. "push rsp" pushes the old value and "push [rsp+n]" addresses with the old RSP:
// the operand is read before the stack pointer moves. Immediates are already sign-extended.
template <int W, uint8_t K, bool L64> void push_op(Cpu& c, const Insn& i) { push<W, L64>(c, get<W, K>(c, i, 0)); }

// POP r: RSP is incremented before the register is written, so "pop rsp" loads the popped value.
template <int W, bool L64> void pop_r(Cpu& c, const Insn& i) {
    U<W> v = peek<W, L64>(c);
    set_sp<L64>(c, sp<L64>(c) + W);
    c.set_reg<W>(i.reg[0], v);
}

// POP m: an address based on RSP uses the value after the increment (SDM Vol. 2, "POP": "If the
// destination operand uses ESP as base register, the address is computed after ESP is incremented").
template <int W, bool L64> void pop_m(Cpu& c, const Insn& i) {
    U<W> v = peek<W, L64>(c);
    uint64_t off = ea(c, i);
    if (i.base == RSP) {
        off += W;
        if (i.asz == 4) off = uint32_t(off);
        if (i.asz == 2) off = uint16_t(off);
    }
    write<U<W>>(c, lin_of_w(c, i.seg, off), v);
    set_sp<L64>(c, sp<L64>(c) + W);
}

bool is_sreg(const DecodeCtx& d) {
    return d.ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
           ZydisRegisterGetClass(d.ops[0].reg.value) == ZYDIS_REGCLASS_SEGMENT;
}

template <uint8_t K, bool L64> Handler push_w(unsigned w) {
    return w == 2 ? &push_op<2, K, L64> : w == 4 ? &push_op<4, K, L64> : &push_op<8, K, L64>;
}

template <bool L64> Handler select_push_l(const DecodeCtx& d) {
    unsigned w = d.insn.osz;
    switch (d.insn.kind[0]) {
        case kOpReg: return push_w<kOpReg, L64>(w);
        case kOpMem: return push_w<kOpMem, L64>(w);
        default: return push_w<kOpImm, L64>(w);
    }
}

Handler select_push(const DecodeCtx& d) {
    if (is_sreg(d)) return nullptr;
    return d.mode == Mode::Long64 ? select_push_l<true>(d) : select_push_l<false>(d);
}

template <bool L64> Handler select_pop_l(const DecodeCtx& d) {
    unsigned w = d.insn.osz;
    if (d.insn.kind[0] == kOpReg) return w == 2 ? &pop_r<2, L64> : w == 4 ? &pop_r<4, L64> : &pop_r<8, L64>;
    return w == 2 ? &pop_m<2, L64> : w == 4 ? &pop_m<4, L64> : &pop_m<8, L64>;
}

Handler select_pop(const DecodeCtx& d) {
    if (is_sreg(d)) return nullptr;
    return d.mode == Mode::Long64 ? select_pop_l<true>(d) : select_pop_l<false>(d);
}

// ---- PUSHF, POPF ---------------------------------------------------------------------------------

// Effective privilege for the flag rules: real mode is CPL 0, virtual-8086 mode CPL 3.
unsigned cpl_of(const Cpu& c) {
    if (c.mode() == Mode::Real) return 0;
    if (c.s.rflags & fl::VM) return 3;
    return c.s.cpl();
}
unsigned iopl_of(const Cpu& c) { return unsigned(c.s.rflags >> 12) & 3; }

// PUSHF: the image has VM and RF cleared (SDM Vol. 2, "PUSHF"). In virtual-8086 mode with
// IOPL < 3 it is #GP(0) (VME's virtual-interrupt variant is not implemented).
template <int W, bool L64> void pushf(Cpu& c, const Insn&) {
    if (!L64 && (c.s.rflags & fl::VM) && iopl_of(c) < 3) c.raise_gp(0);
    push<W, L64>(c, U<W>(c.rflags() & ~(fl::RF | fl::VM)));
}

// POPF (SDM Vol. 2, "POPF"): the status flags, TF, DF, NT, AC and ID are always loaded; IF only if
// CPL <= IOPL; IOPL only at CPL 0. VM, VIP and VIF are never changed; RF is cleared; reserved bits
// keep their values (bit 1 stays set). A 16-bit POPF changes only the low 16 bits. No fault for
// insufficient privilege: the protected bits just keep their values. In virtual-8086 mode with
// IOPL < 3: #GP(0).
template <int W, bool L64> void popf(Cpu& c, const Insn&) {
    if (!L64 && (c.s.rflags & fl::VM) && iopl_of(c) < 3) c.raise_gp(0);
    uint64_t v = peek<W, L64>(c);
    unsigned cpl = cpl_of(c);
    uint64_t m = fl::kArith | fl::TF | fl::DF | fl::NT | fl::AC | fl::ID;
    if (cpl == 0) m |= fl::IOPL;
    if (cpl <= iopl_of(c)) m |= fl::IF;
    if constexpr (W == 2) m &= 0xffff;
    c.sync_flags();
    uint64_t old = c.s.rflags;
    c.s.rflags = (((old & ~m) | (v & m)) & ~fl::RF) | fl::kFixed1;
    set_sp<L64>(c, sp<L64>(c) + W);
    // IF/TF/AC changes matter to the run loop (interrupt window, single-step): end the block.
    if ((old ^ c.s.rflags) & (fl::IF | fl::TF | fl::AC)) c.exit_request = true;
}

template <template <int, bool> class H> Handler by_w_mode(const DecodeCtx& d) {
    unsigned w = d.insn.osz;
    if (d.mode == Mode::Long64) return w == 2 ? H<2, true>::fn : H<8, true>::fn;
    return w == 2 ? H<2, false>::fn : H<4, false>::fn;
}
template <int W, bool L64> struct PushfH { static constexpr Handler fn = &pushf<W, L64>; };
template <int W, bool L64> struct PopfH { static constexpr Handler fn = &popf<W, L64>; };

// ---- PUSHA, POPA (not valid in 64-bit mode; Zydis rejects them there) -----------------------------

// PUSHA: push AX, CX, DX, BX, the original SP, BP, SI, DI. All eight slots are probed first.
template <int W> void pusha(Cpu& c, const Insn&) {
    uint64_t s0 = sp<false>(c);
    for (unsigned k = 1; k <= 8; k++) c.probe_write(lin_at<false>(c, s0 - k * W, W), W);
    for (unsigned k = 0; k < 8; k++) {
        U<W> v = k == RSP ? U<W>(s0) : c.get_reg<W>(k);
        write<U<W>>(c, lin_at<false>(c, s0 - (k + 1) * W, W), v);
    }
    set_sp<false>(c, s0 - 8 * W);
}

// POPA: pop DI, SI, BP, (skip SP), BX, DX, CX, AX. All reads happen before any register changes.
template <int W> void popa(Cpu& c, const Insn&) {
    uint64_t s0 = sp<false>(c);
    U<W> v[8];
    for (unsigned k = 0; k < 8; k++) v[k] = read<U<W>>(c, lin_at<false>(c, s0 + (7 - k) * W, W));
    for (unsigned k = 0; k < 8; k++)
        if (k != RSP) c.set_reg<W>(k, v[k]);
    set_sp<false>(c, s0 + 8 * W);
}

// ---- ENTER, LEAVE --------------------------------------------------------------------------------

// ENTER imm16, imm8 (AMD APM Vol. 3, "ENTER"; SDM Vol. 2, "ENTER"):
//   push rBP; frame = rSP; for i in 1..level-1: push [SS: rBP - i*W]; if level > 0: push frame;
//   rSP -= imm16; a write check (no write) at the final [SS: rSP]; rBP.W = frame.
// The nesting level is taken modulo 32. RSP and RBP are committed only at the end, but the stores
// below RSP happen in order: when a later access faults (a display read, a push, or the final write
// check) the earlier pushes are already in memory, exactly as on the host (an AMD EPYC).
template <int W, bool L64> void enter(Cpu& c, const Insn& i) {
    unsigned level = i.imm2 & 31;
    uint64_t alloc = uint16_t(i.imm);
    uint64_t s0 = sp<L64>(c), fp = c.s.gpr[RBP];
    uint64_t frame = s0 - W, at = s0 - W;
    swrite<U<W>>(c, lin_at<L64>(c, at, W), c.get_reg<W>(RBP));
    if (level) {
        for (unsigned k = 1; k < level; k++) {
            at -= W;
            swrite<U<W>>(c, lin_at<L64>(c, at, W), sread<U<W>>(c, lin_at<L64>(c, fp - k * W, W)));
        }
        at -= W;
        swrite<U<W>>(c, lin_at<L64>(c, at, W), U<W>(frame));
    }
    uint64_t s_final = at - alloc;
    uint64_t l_final = lin_at<L64>(c, s_final, W);
    c.stack_canonical(l_final, W);
    c.probe_write(l_final, W);
    set_sp<L64>(c, s_final);
    c.set_reg<W>(RBP, U<W>(frame));
}

// LEAVE: rSP = rBP (stack-pointer width), then pop rBP at the operand size (a 16-bit LEAVE in 64-bit
// mode sets RSP = RBP + 2 and merges BP: SDM pseudocode, checked on the host).
template <int W, bool L64> void leave(Cpu& c, const Insn&) {
    uint64_t fp = c.s.gpr[RBP] & sp_mask<L64>(c);
    U<W> v = sread<U<W>>(c, lin_at<L64>(c, fp, W));
    set_sp<L64>(c, fp + W);
    c.set_reg<W>(RBP, v);
}

template <int W, bool L64> struct EnterH { static constexpr Handler fn = &enter<W, L64>; };
template <int W, bool L64> struct LeaveH { static constexpr Handler fn = &leave<W, L64>; };

}  // namespace

void register_stack(Registry& r) {
    r.add(ZYDIS_MNEMONIC_PUSH, select_push);
    r.add(ZYDIS_MNEMONIC_POP, select_pop);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_PUSHF, ZYDIS_MNEMONIC_PUSHFD, ZYDIS_MNEMONIC_PUSHFQ})
        r.add(m, by_w_mode<PushfH>);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_POPF, ZYDIS_MNEMONIC_POPFD, ZYDIS_MNEMONIC_POPFQ})
        r.add(m, by_w_mode<PopfH>);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_PUSHA, ZYDIS_MNEMONIC_PUSHAD})
        r.add(m, [](const DecodeCtx& d) -> Handler { return d.insn.osz == 2 ? &pusha<2> : &pusha<4>; });
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_POPA, ZYDIS_MNEMONIC_POPAD})
        r.add(m, [](const DecodeCtx& d) -> Handler { return d.insn.osz == 2 ? &popa<2> : &popa<4>; });
    r.add(ZYDIS_MNEMONIC_ENTER, by_w_mode<EnterH>);
    r.add(ZYDIS_MNEMONIC_LEAVE, by_w_mode<LeaveH>);
}

}  // namespace m86::cpu
