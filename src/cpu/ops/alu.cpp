// Integer arithmetic and logic: ADD ADC SUB SBB AND OR XOR CMP TEST, INC DEC NEG NOT.
//
// Each operation is written once, as a width-templated semantic function that computes the result
// and records the lazy flags (flags.h). A generic handler template instantiates it per operand
// form (reg/mem destination x reg/mem/imm source), so the hot register forms do no kind checks.
// SDM Vol. 2: the individual instruction pages; flags as in Appendix A "EFLAGS Cross-Reference".
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {
namespace {

// ---- semantics -----------------------------------------------------------------------------------
// Op<W>::apply(cpu, a, b) returns the result and sets the flags; kWrites says whether the
// destination is written (CMP and TEST only set flags).

template <int W> struct Add {
    static constexpr bool kWrites = true;
    static U<W> apply(Cpu& c, U<W> a, U<W> b) {
        U<W> r = U<W>(a + b);
        c.set_lazy(FlagOp::Add, W, r, a, b);
        return r;
    }
};
template <int W> struct Adc {
    static constexpr bool kWrites = true;
    static U<W> apply(Cpu& c, U<W> a, U<W> b) {
        uint8_t carry = c.cf();
        U<W> r = U<W>(a + b + carry);
        c.set_lazy(FlagOp::Add, W, r, a, b, carry);
        return r;
    }
};
template <int W> struct Sub {
    static constexpr bool kWrites = true;
    static U<W> apply(Cpu& c, U<W> a, U<W> b) {
        U<W> r = U<W>(a - b);
        c.set_lazy(FlagOp::Sub, W, r, a, b);
        return r;
    }
};
template <int W> struct Sbb {
    static constexpr bool kWrites = true;
    static U<W> apply(Cpu& c, U<W> a, U<W> b) {
        uint8_t carry = c.cf();
        U<W> r = U<W>(a - b - carry);
        c.set_lazy(FlagOp::Sub, W, r, a, b, carry);
        return r;
    }
};
template <int W> struct Cmp : Sub<W> { static constexpr bool kWrites = false; };
template <int W> struct And {
    static constexpr bool kWrites = true;
    static U<W> apply(Cpu& c, U<W> a, U<W> b) {
        U<W> r = a & b;
        c.set_lazy(FlagOp::Logic, W, r, a, b);
        return r;
    }
};
template <int W> struct Test : And<W> { static constexpr bool kWrites = false; };
template <int W> struct Or {
    static constexpr bool kWrites = true;
    static U<W> apply(Cpu& c, U<W> a, U<W> b) {
        U<W> r = a | b;
        c.set_lazy(FlagOp::Logic, W, r, a, b);
        return r;
    }
};
template <int W> struct Xor {
    static constexpr bool kWrites = true;
    static U<W> apply(Cpu& c, U<W> a, U<W> b) {
        U<W> r = a ^ b;
        c.set_lazy(FlagOp::Logic, W, r, a, b);
        return r;
    }
};

// Unary operations: Op<W>::apply(cpu, a) -> result.
template <int W> struct Inc {
    static U<W> apply(Cpu& c, U<W> a) {
        uint8_t carry = c.cf();
        U<W> r = U<W>(a + 1);
        c.set_lazy(FlagOp::Inc, W, r, a, 1, carry);
        return r;
    }
};
template <int W> struct Dec {
    static U<W> apply(Cpu& c, U<W> a) {
        uint8_t carry = c.cf();
        U<W> r = U<W>(a - 1);
        c.set_lazy(FlagOp::Dec, W, r, a, 1, carry);
        return r;
    }
};
template <int W> struct Neg {  // flags as 0 - a (SDM: CF = (a != 0))
    static U<W> apply(Cpu& c, U<W> a) {
        U<W> r = U<W>(U<W>(0) - a);
        c.set_lazy(FlagOp::Sub, W, r, 0, a);
        return r;
    }
};
template <int W> struct Not {  // no flags
    static U<W> apply(Cpu&, U<W> a) { return U<W>(~a); }
};

// ---- operand-form handlers -----------------------------------------------------------------------

template <int W, template <int> class Op, uint8_t DK, uint8_t SK> void binop(Cpu& c, const Insn& i) {
    if constexpr (DK == kOpReg) {
        U<W> r = Op<W>::apply(c, c.get_reg<W>(i.reg[0]), get<W, SK>(c, i, 1));
        if constexpr (Op<W>::kWrites) c.set_reg<W>(i.reg[0], r);
    } else if constexpr (Op<W>::kWrites) {
        U<W> b = get<W, SK>(c, i, 1);
        rmw<U<W>>(c, lin(c, i), [&](U<W> a) { return Op<W>::apply(c, a, b); });
    } else {
        Op<W>::apply(c, read<U<W>>(c, lin(c, i)), get<W, SK>(c, i, 1));
    }
}

template <int W, template <int> class Op, uint8_t DK> void unop(Cpu& c, const Insn& i) {
    if constexpr (DK == kOpReg)
        c.set_reg<W>(i.reg[0], Op<W>::apply(c, c.get_reg<W>(i.reg[0])));
    else
        rmw<U<W>>(c, lin(c, i), [&](U<W> a) { return Op<W>::apply(c, a); });
}

template <template <int> class Op, uint8_t DK, uint8_t SK> Handler binop_w(unsigned w) {
    switch (w) {
        case 1: return &binop<1, Op, DK, SK>;
        case 2: return &binop<2, Op, DK, SK>;
        case 4: return &binop<4, Op, DK, SK>;
        default: return &binop<8, Op, DK, SK>;
    }
}

template <template <int> class Op> Handler select_binop(const DecodeCtx& d) {
    const Insn& i = d.insn;
    unsigned w = i.osz;
    if (i.kind[0] == kOpReg) {
        if (i.kind[1] == kOpReg) return binop_w<Op, kOpReg, kOpReg>(w);
        if (i.kind[1] == kOpMem) return binop_w<Op, kOpReg, kOpMem>(w);
        return binop_w<Op, kOpReg, kOpImm>(w);
    }
    if (i.kind[1] == kOpReg) return binop_w<Op, kOpMem, kOpReg>(w);
    return binop_w<Op, kOpMem, kOpImm>(w);
}

template <template <int> class Op> Handler select_unop(const DecodeCtx& d) {
    const Insn& i = d.insn;
    if (i.kind[0] == kOpReg) {
        switch (i.osz) {
            case 1: return &unop<1, Op, kOpReg>;
            case 2: return &unop<2, Op, kOpReg>;
            case 4: return &unop<4, Op, kOpReg>;
            default: return &unop<8, Op, kOpReg>;
        }
    }
    switch (i.osz) {
        case 1: return &unop<1, Op, kOpMem>;
        case 2: return &unop<2, Op, kOpMem>;
        case 4: return &unop<4, Op, kOpMem>;
        default: return &unop<8, Op, kOpMem>;
    }
}

}  // namespace

void register_alu(Registry& r) {
    r.add(ZYDIS_MNEMONIC_ADD, select_binop<Add>);
    r.add(ZYDIS_MNEMONIC_ADC, select_binop<Adc>);
    r.add(ZYDIS_MNEMONIC_SUB, select_binop<Sub>);
    r.add(ZYDIS_MNEMONIC_SBB, select_binop<Sbb>);
    r.add(ZYDIS_MNEMONIC_CMP, select_binop<Cmp>);
    r.add(ZYDIS_MNEMONIC_AND, select_binop<And>);
    r.add(ZYDIS_MNEMONIC_OR, select_binop<Or>);
    r.add(ZYDIS_MNEMONIC_XOR, select_binop<Xor>);
    r.add(ZYDIS_MNEMONIC_TEST, select_binop<Test>);
    r.add(ZYDIS_MNEMONIC_INC, select_unop<Inc>);
    r.add(ZYDIS_MNEMONIC_DEC, select_unop<Dec>);
    r.add(ZYDIS_MNEMONIC_NEG, select_unop<Neg>);
    r.add(ZYDIS_MNEMONIC_NOT, select_unop<Not>);
}

}  // namespace m86::cpu
