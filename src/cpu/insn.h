// The compact decoded-instruction record.
//
// Zydis decodes each guest instruction once; decode.cpp converts its output into an Insn, which the
// code cache keeps per basic block. The interpreter then only calls insn.fn(cpu, insn). Everything a
// handler needs is in these ~48 bytes, laid out in a fixed, documented way so handlers (and the
// JIT, which calls the same handlers) never look at Zydis structures.
//
// Operands are in Intel order (destination first), only the explicit ones: operand i has kind[i]
// and, for registers, reg[i]. At most one operand is a memory operand; its address parts are
// base/index/scale/disp/seg. Immediates go to imm (the first) and imm2 (the second: ENTER).
#pragma once

#include <cstdint>

namespace m86::cpu {

class Cpu;
struct Insn;
using Handler = void (*)(Cpu&, const Insn&);

enum OpKind : uint8_t { kOpNone, kOpReg, kOpMem, kOpImm };

// Register numbering inside Insn::reg, by register class:
//  - GPRs: 0..15 in encoding order; for 8-bit operands 16..19 are AH, CH, DH, BH.
//  - XMM/MMX/ST(i)/CRn/DRn: their number. Segment registers: the Seg enum.
constexpr uint8_t kRegAH = 16;
constexpr uint8_t kNoReg = 0xff;   // base/index absent
constexpr uint8_t kRipReg = 0xfe;  // base = RIP (RIP-relative addressing)

// Segment of the memory operand. In 64-bit mode the decoder maps ES/CS/SS/DS to kSegFlat (base 0,
// no limit: SDM Vol. 1, 3.4.2.1), so the hot path does not need to know the mode.
constexpr uint8_t kSegFlat = 6;

// Insn::prefix bits.
namespace pfx {
constexpr uint8_t kRep = 1, kRepne = 2, kLock = 4, kOpsize = 8, kAdsize = 16, kRex = 32, kRexW = 64;
}

// Insn::info bits: facts the run loop and the code cache need.
namespace info {
constexpr uint8_t kEndsBlock = 1;  // control transfer or state change: the block ends here
constexpr uint8_t kMemWrite = 2;   // the memory operand is written (or read and written): outside
                                   // 64-bit mode lin() checks it against the segment's write range
constexpr uint8_t kSsMem = 4;      // the memory operand is SS-relative (also in 64-bit mode, where
                                   // a non-canonical address then raises #SS(0), not #GP(0))
constexpr uint8_t kNearBranch = 8; // near JMP/Jcc/CALL/RET/LOOP/JrCXZ: changes only RIP (and RSP), never
                                   // CS, the mode or the privilege, so the run loop may chain blocks
constexpr uint8_t kGprOnly = 16;   // every explicit register operand is a general-purpose register
                                   // (8-64 bits; the JIT keys native code on it: reg[] are then GPR
                                   // numbers, 16..19 = AH..BH for byte operands)
}

struct Insn {
    Handler fn = nullptr;
    uint64_t imm = 0;   // first immediate, sign- or zero-extended as the instruction defines it
    int64_t disp = 0;   // displacement, sign-extended; 64 bits wide for MOV moffs64 (A0-A3 with an
                        // 8-byte absolute address)
    uint16_t aux = 0;   // handler-specific: condition code, sub-operation, raw opcode bits...
    uint16_t mnemonic = 0;  // ZydisMnemonic, for traces and unimplemented-instruction logs
    uint8_t len = 0;    // instruction length in bytes
    uint8_t osz = 4;    // operand size in bytes (1, 2, 4, 8; 16 for XMM-sized)
    uint8_t asz = 8;    // address size in bytes (2, 4, 8)
    uint8_t seg = 0;    // segment of the memory operand (Seg or kSegFlat)
    uint8_t base = kNoReg, index = kNoReg, scale = 0;  // scale as a shift count 0..3
    uint8_t kind[3] = {};
    uint8_t reg[3] = {};
    uint8_t msz = 0;    // size of the memory operand in bytes (0: none, or a size Zydis does not give)
    uint8_t imm2 = 0;
    uint8_t prefix = 0;
    uint8_t info = 0;

    bool has(uint8_t p) const { return prefix & p; }
    bool is_mem(int i) const { return kind[i] == kOpMem; }
};

}  // namespace m86::cpu
