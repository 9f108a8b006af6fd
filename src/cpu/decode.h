// Decoding: guest bytes -> Zydis -> Insn records, grouped into cached basic blocks.
//
// Handlers are chosen per ZydisMnemonic through a registry that each instruction-class file fills
// (ops/alu.cpp registers ADD, SUB...; ops/x87.cpp registers FADD...). A registered Selector looks at
// the decoded instruction (operand kinds, width) and returns the specialised handler, or nullptr
// for a form it does not implement (the guest then gets #UD and the emulator logs it once).
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cpu/cpu.h"
#include "cpu/insn.h"

namespace m86::cpu {

// What a Selector sees: the Zydis view and the Insn already filled with the generic fields.
struct DecodeCtx {
    const ZydisDecodedInstruction& zi;
    const ZydisDecodedOperand* ops;  // all operands (explicit first), zi.operand_count of them
    Insn& insn;
    Mode mode;
};
using Selector = Handler (*)(const DecodeCtx&);

// Mnemonic -> selectors. Filled once, at first use, by the register_* functions below. Several
// classes may register the same mnemonic (near JMP in control.cpp, far JMP in system.cpp): their
// selectors are tried in registration order and the first non-null handler wins.
class Registry {
public:
    void add(ZydisMnemonic m, Selector s);
    // nullptr if nothing is registered for m; otherwise the first non-null handler (may be nullptr
    // if no selector implements this form). *known tells whether any selector was registered.
    Handler select(const DecodeCtx& d, bool* known) const;
    static const Registry& get();

private:
    std::vector<std::vector<Selector>> table_;
};

// One per instruction-class file (src/cpu/ops/*.cpp). Each registers the mnemonics it implements.
void register_alu(Registry&);
void register_shift(Registry&);
void register_muldiv(Registry&);
void register_bit(Registry&);
void register_data(Registry&);
void register_control(Registry&);
void register_stack(Registry&);
void register_string(Registry&);
void register_misc(Registry&);
void register_x87(Registry&);
void register_sse_int(Registry&);
void register_sse_fp(Registry&);
void register_fpstate(Registry&);
void register_system(Registry&);

// Pick a width-specialised instance of a handler template: BY_WIDTH(add_rr, 4) -> &add_rr<4>.
#define M86_BY_WIDTH(fn, w) \
    ((w) == 1 ? &fn<1> : (w) == 2 ? &fn<2> : (w) == 4 ? &fn<4> : &fn<8>)

// Decode one instruction from `bytes` (up to `avail` bytes) in `mode` into `out`. Returns false if
// the bytes are not a valid instruction (out is then a #UD-raising Insn of length 0..15).
bool decode_one(const uint8_t* bytes, size_t avail, Mode mode, Insn& out);

// Disassemble one instruction at `rip` in Intel syntax (for traces and test failure reports).
std::string disassemble(const uint8_t* bytes, size_t avail, Mode mode, uint64_t rip);

// A basic block: straight-line decoded instructions starting at linear address `lin`.
struct Block {
    uint64_t lin = 0;     // linear address of the first instruction
    uint64_t phys = 0;    // physical address of the first instruction
    uint64_t page2 = 1;   // second physical page touched (last instruction crosses a page), or 1
    Mode mode = Mode::Long64;
    bool valid = true;
    std::vector<Insn> insns;
};

// All decoded blocks of one machine, indexed by physical address, with the per-page bookkeeping
// that self-modifying-code detection needs.
class CodeCache {
public:
    static constexpr unsigned kJumpBits = 12;

    // Fast lookup by linear address (valid until the next flush_jump_cache()).
    Block* jump_lookup(unsigned ctx, uint64_t lin, Mode mode) const {
        Block* b = jump_[ctx][(lin >> 1) & ((1u << kJumpBits) - 1)];
        return (b && b->lin == lin && b->mode == mode) ? b : nullptr;
    }
    void jump_insert(unsigned ctx, Block* b) { jump_[ctx][(b->lin >> 1) & ((1u << kJumpBits) - 1)] = b; }
    void flush_jump_cache();

    Block* find(uint64_t phys, Mode mode) const;
    Block* insert(std::unique_ptr<Block> b);
    bool page_has_code(uint64_t page) const { return pages_.count(page) != 0; }
    // Drop every block that uses physical page `page`. Blocks are retired, not freed, until
    // collect() (the run loop may be executing one of them).
    void invalidate_page(uint64_t page);
    void invalidate_all();
    void collect() { graveyard_.clear(); }
    size_t size() const { return by_phys_.size(); }

private:
    static uint64_t key(uint64_t phys, Mode mode) { return phys * 8 + uint64_t(mode); }
    Block* jump_[kTlbContexts][1u << kJumpBits] = {};
    std::unordered_map<uint64_t, std::unique_ptr<Block>> by_phys_;
    std::unordered_map<uint64_t, std::vector<Block*>> pages_;
    std::vector<std::unique_ptr<Block>> graveyard_;
};

}  // namespace m86::cpu
