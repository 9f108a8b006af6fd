// Near control transfers: JMP, Jcc, CALL, RET (more: LOOPcc, JrCXZ, indirect forms...).
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {
namespace {

// Outside 64-bit mode the instruction pointer is EIP or IP (operand size of the branch).
inline uint64_t ip_mask(const Cpu& c, const Insn& i, uint64_t v) {
    if (c.mode() == Mode::Long64) return v;
    return i.osz == 2 ? uint16_t(v) : uint32_t(v);
}

void jmp_rel(Cpu& c, const Insn& i) { c.next_rip = ip_mask(c, i, c.next_rip + i.imm); }

void jcc_rel(Cpu& c, const Insn& i) {
    if (c.cond(i.aux)) c.next_rip = ip_mask(c, i, c.next_rip + i.imm);
}

Handler select_jcc(const DecodeCtx& d) {
    // The condition is the low nibble of the opcode (70+cc, 0F 80+cc).
    d.insn.aux = d.zi.opcode & 0xf;
    return jcc_rel;
}

}  // namespace

void register_control(Registry& r) {
    r.add(ZYDIS_MNEMONIC_JMP, [](const DecodeCtx& d) -> Handler {
        return d.insn.kind[0] == kOpImm ? jmp_rel : nullptr;
    });
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_JO, ZYDIS_MNEMONIC_JNO, ZYDIS_MNEMONIC_JB, ZYDIS_MNEMONIC_JNB,
                            ZYDIS_MNEMONIC_JZ, ZYDIS_MNEMONIC_JNZ, ZYDIS_MNEMONIC_JBE, ZYDIS_MNEMONIC_JNBE,
                            ZYDIS_MNEMONIC_JS, ZYDIS_MNEMONIC_JNS, ZYDIS_MNEMONIC_JP, ZYDIS_MNEMONIC_JNP,
                            ZYDIS_MNEMONIC_JL, ZYDIS_MNEMONIC_JNL, ZYDIS_MNEMONIC_JLE, ZYDIS_MNEMONIC_JNLE})
        r.add(m, select_jcc);
}

}  // namespace m86::cpu
