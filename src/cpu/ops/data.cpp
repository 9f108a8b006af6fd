// Data movement: MOV, LEA, NOP (more of this class: MOVSX/MOVZX, XCHG, CMPXCHG, CMOVcc, SETcc...).
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {
namespace {

template <int W, uint8_t DK, uint8_t SK> void mov(Cpu& c, const Insn& i) {
    U<W> v = get<W, SK>(c, i, 1);
    if constexpr (DK == kOpReg)
        c.set_reg<W>(i.reg[0], v);
    else
        write<U<W>>(c, lin(c, i), v);
}

template <uint8_t DK, uint8_t SK> Handler mov_w(unsigned w) {
    switch (w) {
        case 1: return &mov<1, DK, SK>;
        case 2: return &mov<2, DK, SK>;
        case 4: return &mov<4, DK, SK>;
        default: return &mov<8, DK, SK>;
    }
}

Handler select_mov(const DecodeCtx& d) {
    const Insn& i = d.insn;
    // MOV to/from segment and control/debug registers belong to the system class (issue #3).
    if (d.ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
        ZydisRegisterGetClass(d.ops[0].reg.value) != ZYDIS_REGCLASS_GPR8 &&
        ZydisRegisterGetClass(d.ops[0].reg.value) != ZYDIS_REGCLASS_GPR16 &&
        ZydisRegisterGetClass(d.ops[0].reg.value) != ZYDIS_REGCLASS_GPR32 &&
        ZydisRegisterGetClass(d.ops[0].reg.value) != ZYDIS_REGCLASS_GPR64)
        return nullptr;
    if (d.ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER &&
        ZydisRegisterGetClass(d.ops[1].reg.value) != ZYDIS_REGCLASS_GPR8 &&
        ZydisRegisterGetClass(d.ops[1].reg.value) != ZYDIS_REGCLASS_GPR16 &&
        ZydisRegisterGetClass(d.ops[1].reg.value) != ZYDIS_REGCLASS_GPR32 &&
        ZydisRegisterGetClass(d.ops[1].reg.value) != ZYDIS_REGCLASS_GPR64)
        return nullptr;
    unsigned w = i.osz;
    if (i.kind[0] == kOpReg) {
        if (i.kind[1] == kOpReg) return mov_w<kOpReg, kOpReg>(w);
        if (i.kind[1] == kOpMem) return mov_w<kOpReg, kOpMem>(w);
        return mov_w<kOpReg, kOpImm>(w);
    }
    if (i.kind[1] == kOpReg) return mov_w<kOpMem, kOpReg>(w);
    return mov_w<kOpMem, kOpImm>(w);
}

template <int W> void lea(Cpu& c, const Insn& i) { c.set_reg<W>(i.reg[0], U<W>(ea(c, i))); }

void nop(Cpu&, const Insn&) {}

}  // namespace

void register_data(Registry& r) {
    r.add(ZYDIS_MNEMONIC_MOV, select_mov);
    r.add(ZYDIS_MNEMONIC_LEA, [](const DecodeCtx& d) -> Handler { return M86_BY_WIDTH(lea, d.insn.osz); });
    r.add(ZYDIS_MNEMONIC_NOP, [](const DecodeCtx&) -> Handler { return nop; });
}

}  // namespace m86::cpu
