// A small hand encoder for ModRM instruction forms, for differential-test generators that need an
// exact encoding (xbyak picks the shortest form itself: imm8 vs imm32, the short AL/eAX forms, the
// direction bit). It also builds random memory operands of every addressing form (SIB with scale,
// disp8/disp32, no base, RIP-relative, 32-bit address size) that resolve into the data area.
//
// Register numbers follow the encoding; for 8-bit operands 16..19 mean AH, CH, DH, BH (no REX
// allowed) and 4..7 mean SPL..DIL (REX forced). SDM Vol. 2, 2.1-2.2 (ModRM, SIB, REX).
#pragma once

#include <cstdint>
#include <vector>

#include "diff/harness.h"

namespace m86::difftest::enc {

struct Mem {
    int base = -1;   // -1: no base
    int index = -1;  // -1: no index (never 4 = RSP)
    int scale = 1;   // 1, 2, 4, 8
    int64_t disp = 0;
    int disp_size = 0;   // 0, 1 or 4 bytes (forced 1 for RBP/R13 bases without displacement)
    bool rip = false;    // RIP-relative: disp is patched so the address is `target`
    uint64_t target = 0; // the intended effective address (RIP-relative forms)
    bool a32 = false;    // 0x67 address-size prefix
};

// An r/m operand: a register or memory.
struct RM {
    bool mem = false;
    int reg = 0;
    Mem m;
};

struct Insn {
    std::vector<uint8_t> prefixes;  // legacy prefixes in order (F0, 66, F2/F3 ...), emitted before REX
    bool rex_w = false;
    bool byte_regs = false;         // 8-bit register operands (REX forced for SPL..DIL, forbidden for AH..BH)
    std::vector<uint8_t> opcode;
    int reg = 0;                    // ModRM.reg field: a register number or an opcode extension
    bool reg_is_opext = false;      // reg is an opcode extension (/digit), not a register
    bool has_modrm = true;
    int opreg = -1;                 // without ModRM: register in the opcode's low 3 bits (B0+r, B8+r)
    RM rm;
    uint64_t imm = 0;
    int imm_size = 0;               // 0, 1, 2, 4, 8
};

// Encodes into g. Returns false if the combination cannot be encoded (AH..BH with a REX prefix).
bool emit(Xbyak::CodeGenerator& g, const Insn& in);

// A random memory operand for an access of `size` bytes, whose address is kDataAddr +
// p.data_offset(size); sets the base/index registers in st. Registers in `avoid` are not used as
// base/index. `a32` may be forced (1), forbidden (0) or random (-1).
Mem random_mem(Picker& p, State& st, unsigned size, std::initializer_list<int> avoid = {}, int a32 = 0);
// A random addressing form with random register values (LEA: no access is made).
Mem random_lea(Picker& p, State& st, bool a32);

// Random register for an operand of `width` bytes: for width 1 sometimes AH..BH (16..19) when
// `allow_high`, never RSP (4) for the wider widths, avoiding the numbers in `avoid`.
int random_reg(Picker& p, unsigned width, bool allow_high, std::initializer_list<int> avoid = {});

}  // namespace m86::difftest::enc
