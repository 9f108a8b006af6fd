// Near control transfers: JMP, Jcc, CALL, RET (near, and RET imm16), LOOP/LOOPE/LOOPNE,
// JCXZ/JECXZ/JRCXZ. Far forms (far JMP/CALL/RET, IRET, INT n) belong to the system class: the
// selectors here return nullptr for them so the registry tries the next selector.
//
// Handlers are templates over BW, the branch operand size in bytes, which is the width of the
// instruction pointer the branch produces and of the return address it pushes or pops:
//   - outside 64-bit mode BW is the operand size (2 or 4) and the new IP is truncated to it;
//   - in 64-bit mode BW is 8, except that a 66h prefix (without REX.W) makes it 2. That is AMD's
//     behaviour (APM Vol. 3, "JMP (Near)", "CALL (Near)", "RET (Near)", "Jcc", "LOOPcc": the
//     operand size of near branches can be overridden to 16 bits; RIP is truncated to 16 bits and a
//     16-bit return address is pushed/popped). Intel ignores 66h on near branches in 64-bit mode
//     (SDM Vol. 2, JMP/CALL/RET/Jcc). We follow AMD because the host that serves as the oracle of the
//     differential tests is an AMD EPYC (Zen 4), verified there; the decoder runs Zydis in its
//     AMD-branches mode so that 66 E8/E9/0F 8x take a rel16 immediate (decode.cpp).
// A 64-bit target must be canonical: a branch to a non-canonical address raises #GP(0) at the
// branch itself with no state changed (SDM Vol. 2, JMP "64-bit mode exceptions"; also what the
// host does).
// (Not yet: CS segment-limit checks on the target outside 64-bit mode: issue #3.)
#include "cpu/decode.h"
#include "cpu/mem.h"
#include "cpu/ops/stack.h"

namespace m86::cpu {
namespace {

inline bool canonical(const Cpu& c, uint64_t v) {
    unsigned sh = (c.s.cr4 & cr4::LA57) ? 7 : 16;
    return uint64_t(int64_t(v << sh) >> sh) == v;
}

// The instruction pointer a branch of operand size BW produces from `v`.
template <int BW> inline uint64_t target(Cpu& c, uint64_t v) {
    if constexpr (BW == 8) {
        if (!canonical(c, v)) [[unlikely]] c.raise_gp(0);
        return v;
    } else {
        return U<BW>(v);
    }
}

// ---- handlers ------------------------------------------------------------------------------------

template <int BW> void jmp_rel(Cpu& c, const Insn& i) { c.next_rip = target<BW>(c, c.next_rip + i.imm); }

// Specialised per condition code CC (the low nibble of the opcode), so the flag test is inline.
template <int BW, unsigned CC> void jcc_rel(Cpu& c, const Insn& i) {
    if (c.cond<CC>()) c.next_rip = target<BW>(c, c.next_rip + i.imm);
}

// JMP r/m: the target is read at the branch operand size and zero-extended.
template <int BW, uint8_t K> void jmp_ind(Cpu& c, const Insn& i) { c.next_rip = target<BW>(c, get<BW, K>(c, i, 0)); }

template <int BW, bool L64> void call_rel(Cpu& c, const Insn& i) {
    uint64_t t = target<BW>(c, c.next_rip + i.imm);
    stack::push<BW, L64>(c, U<BW>(c.next_rip));
    c.next_rip = t;
}

// CALL r/m: the target is read (with the old RSP, for "call [rsp+n]") before the push.
template <int BW, uint8_t K, bool L64> void call_ind(Cpu& c, const Insn& i) {
    uint64_t t = target<BW>(c, get<BW, K>(c, i, 0));
    stack::push<BW, L64>(c, U<BW>(c.next_rip));
    c.next_rip = t;
}

// RET / RET imm16: pop the return address, then release imm16 more bytes. RSP is committed only
// after the target passed its checks.
template <int BW, bool L64> void ret_near(Cpu& c, const Insn& i) {
    uint64_t t = target<BW>(c, stack::peek<BW, L64>(c));
    stack::set_sp<L64>(c, stack::sp<L64>(c) + BW + uint16_t(i.imm));
    c.next_rip = t;
}

// LOOP/LOOPE/LOOPNE (SDM Vol. 2, "LOOP/LOOPcc"): the address size selects the counter (CX, ECX,
// RCX); writing ECX zero-extends into RCX like any 32-bit register write (checked on the host).
// Flags are read (LOOPE/LOOPNE) but never written.
enum LoopKind { kLoop, kLoopE, kLoopNE };
template <int AW, int K, int BW> void loop(Cpu& c, const Insn& i) {
    U<AW> n = U<AW>(c.get_reg<AW>(RCX) - 1);
    bool taken = n != 0;
    if constexpr (K == kLoopE) taken = taken && c.zf();
    if constexpr (K == kLoopNE) taken = taken && !c.zf();
    uint64_t t = taken ? target<BW>(c, c.next_rip + i.imm) : c.next_rip;
    c.set_reg<AW>(RCX, n);
    c.next_rip = t;
}

// JCXZ/JECXZ/JRCXZ: the address size selects the register tested.
template <int AW, int BW> void jrcxz(Cpu& c, const Insn& i) {
    if (c.get_reg<AW>(RCX) == 0) c.next_rip = target<BW>(c, c.next_rip + i.imm);
}

// ---- selectors -----------------------------------------------------------------------------------

// Branch operand size in bytes (see the file comment).
unsigned branch_width(const DecodeCtx& d) {
    const Insn& i = d.insn;
    if (d.mode == Mode::Long64) return (i.has(pfx::kOpsize) && !i.has(pfx::kRexW)) ? 2 : 8;
    return i.osz == 2 ? 2 : 4;
}

bool is_far(const DecodeCtx& d) { return d.zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR; }

template <template <int> class H> Handler by_bw(unsigned bw) {
    return bw == 2 ? H<2>::fn : bw == 4 ? H<4>::fn : H<8>::fn;
}

template <int BW> struct JmpRel { static constexpr Handler fn = &jmp_rel<BW>; };
template <int BW, unsigned... CC> constexpr Handler kJcc[16] = {&jcc_rel<BW, CC>...};
template <int BW> constexpr const Handler* jcc_table() {
    return kJcc<BW, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15>;
}
template <int BW> struct JmpIndR { static constexpr Handler fn = &jmp_ind<BW, kOpReg>; };
template <int BW> struct JmpIndM { static constexpr Handler fn = &jmp_ind<BW, kOpMem>; };
template <bool L64> struct Call {
    template <int BW> struct Rel { static constexpr Handler fn = &call_rel<BW, L64>; };
    template <int BW> struct IndR { static constexpr Handler fn = &call_ind<BW, kOpReg, L64>; };
    template <int BW> struct IndM { static constexpr Handler fn = &call_ind<BW, kOpMem, L64>; };
    template <int BW> struct Ret { static constexpr Handler fn = &ret_near<BW, L64>; };
};

Handler select_jmp(const DecodeCtx& d) {
    if (is_far(d)) return nullptr;
    unsigned bw = branch_width(d);
    switch (d.insn.kind[0]) {
        case kOpImm: return by_bw<JmpRel>(bw);
        case kOpReg: return by_bw<JmpIndR>(bw);
        case kOpMem: return by_bw<JmpIndM>(bw);
        default: return nullptr;
    }
}

Handler select_jcc(const DecodeCtx& d) {
    // The condition is the low nibble of the opcode (70+cc, 0F 80+cc).
    unsigned cc = d.zi.opcode & 0xf;
    d.insn.aux = uint16_t(cc);
    unsigned bw = branch_width(d);
    return (bw == 2 ? jcc_table<2>() : bw == 4 ? jcc_table<4>() : jcc_table<8>())[cc];
}

template <bool L64> Handler select_call_l(const DecodeCtx& d) {
    unsigned bw = branch_width(d);
    switch (d.insn.kind[0]) {
        case kOpImm: return by_bw<Call<L64>::template Rel>(bw);
        case kOpReg: return by_bw<Call<L64>::template IndR>(bw);
        case kOpMem: return by_bw<Call<L64>::template IndM>(bw);
        default: return nullptr;
    }
}

Handler select_call(const DecodeCtx& d) {
    if (is_far(d)) return nullptr;
    return d.mode == Mode::Long64 ? select_call_l<true>(d) : select_call_l<false>(d);
}

Handler select_ret(const DecodeCtx& d) {
    if (is_far(d)) return nullptr;
    if (d.insn.kind[0] != kOpImm) d.insn.imm = 0;  // plain RET releases nothing extra
    unsigned bw = branch_width(d);
    return d.mode == Mode::Long64 ? by_bw<Call<true>::template Ret>(bw) : by_bw<Call<false>::template Ret>(bw);
}

template <int AW, int K> Handler loop_bw(unsigned bw) {
    return bw == 2 ? &loop<AW, K, 2> : bw == 4 ? &loop<AW, K, 4> : &loop<AW, K, 8>;
}

template <int K> Handler select_loop(const DecodeCtx& d) {
    unsigned bw = branch_width(d);
    switch (d.insn.asz) {
        case 2: return loop_bw<2, K>(bw);
        case 4: return loop_bw<4, K>(bw);
        default: return loop_bw<8, K>(bw);
    }
}

template <int AW> Handler jrcxz_bw(unsigned bw) {
    return bw == 2 ? &jrcxz<AW, 2> : bw == 4 ? &jrcxz<AW, 4> : &jrcxz<AW, 8>;
}

Handler select_jrcxz(const DecodeCtx& d) {
    unsigned bw = branch_width(d);
    switch (d.insn.asz) {
        case 2: return jrcxz_bw<2>(bw);
        case 4: return jrcxz_bw<4>(bw);
        default: return jrcxz_bw<8>(bw);
    }
}

}  // namespace

void register_control(Registry& r) {
    r.add(ZYDIS_MNEMONIC_JMP, select_jmp);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_JO, ZYDIS_MNEMONIC_JNO, ZYDIS_MNEMONIC_JB, ZYDIS_MNEMONIC_JNB,
                            ZYDIS_MNEMONIC_JZ, ZYDIS_MNEMONIC_JNZ, ZYDIS_MNEMONIC_JBE, ZYDIS_MNEMONIC_JNBE,
                            ZYDIS_MNEMONIC_JS, ZYDIS_MNEMONIC_JNS, ZYDIS_MNEMONIC_JP, ZYDIS_MNEMONIC_JNP,
                            ZYDIS_MNEMONIC_JL, ZYDIS_MNEMONIC_JNL, ZYDIS_MNEMONIC_JLE, ZYDIS_MNEMONIC_JNLE})
        r.add(m, select_jcc);
    r.add(ZYDIS_MNEMONIC_CALL, select_call);
    r.add(ZYDIS_MNEMONIC_RET, select_ret);
    r.add(ZYDIS_MNEMONIC_LOOP, select_loop<kLoop>);
    r.add(ZYDIS_MNEMONIC_LOOPE, select_loop<kLoopE>);
    r.add(ZYDIS_MNEMONIC_LOOPNE, select_loop<kLoopNE>);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_JCXZ, ZYDIS_MNEMONIC_JECXZ, ZYDIS_MNEMONIC_JRCXZ})
        r.add(m, select_jrcxz);
}

}  // namespace m86::cpu
