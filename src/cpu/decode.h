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

#include "cpu/block_index.h"
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

// A direct link from a block to the block that followed it (Cpu::run_blocks), so the next block is
// found without the jump cache. Valid when the next instruction's jump-cache tag is `tag` and either
// gen is 0 (a successor on the same linear page: its translation is the one the block itself was
// just reached through, and the two blocks can only be retired together) or gen is the running
// CPU's link epoch | TLB context (a successor on another page: valid until that CPU's next TLB or
// jump-cache flush, which draws a new epoch; epochs are unique across the CPUs of a cache).
struct BlockLink {
    uint64_t tag = ~0ull;
    uint64_t gen = ~0ull;
    Block* to = nullptr;
};

// Host code a BlockTranslator (src/jit) made from a block: runs the block's instructions from its
// first, exactly as the run loop's interpreter path does, and returns how many it ran (all of them,
// or fewer when one set Cpu::exit_request). Faults leave it by longjmp like any handler.
using HostCode = uint32_t (*)(Cpu&);

// Makes host code from hot blocks. The interface keeps src/cpu free of any host-code dependency:
// the board installs a translator in the code cache when micro86 is built with the JIT.
class BlockTranslator {
public:
    virtual ~BlockTranslator() = default;
    // Host code for `b` (nullptr: leave it to the interpreter). `c` is any CPU of the machine (the
    // translator reads the layout of Cpu from it, never its state).
    virtual HostCode translate(Cpu& c, const Block& b) = 0;
    virtual void release(HostCode code) = 0;
};

// A basic block: straight-line decoded instructions starting at linear address `lin`.
struct Block {
    Block() = default;
    Block(const Block&) = delete;
    Block& operator=(const Block&) = delete;
    ~Block() {
        if (host) translator->release(host);
    }

    uint64_t lin = 0;     // linear address of the first instruction
    uint64_t phys = 0;    // physical address of the first instruction
    uint64_t page2 = 1;   // second physical page touched (last instruction crosses a page), or 1
    Mode mode = Mode::Long64;
    bool valid = true;
    // The block ends with a near branch or runs into the next block: when it ran to its end without
    // an exit request, its successor may be linked (CS, the mode and the privilege are unchanged).
    bool chains = false;
    uint8_t link_victim = 0;  // the link slot replaced next
    uint32_t n = 0;           // insns.size()
    BlockLink link[2];        // the last successors (a Jcc has two; a RET alternates)
    uint32_t heat = 0;        // runs so far, until the translator is asked for host code
    uint32_t checks = 0;      // host-code runs seen by the JIT checker (Cpu::jit_check_every)
    HostCode host = nullptr;  // host code (JIT), or nullptr: the interpreter runs the block
    BlockTranslator* translator = nullptr;  // made `host` (and frees it)
    std::vector<Insn> insns;  // never changes once the block is in the cache (host code points in)
};

// All decoded blocks of one machine, indexed by physical address and decode mode, with the
// per-page bookkeeping that self-modifying-code detection needs.
//
// One CodeCache is shared by every vCPU of a machine (the board creates it with make_code_cache()
// and passes it to each Cpu; a Cpu built without one gets a private cache: snippet environment,
// tests). Each Cpu keeps its own linear-address jump cache in front of it (cpu.h).
//
// Coherency invariants (SMP: Linux patches its text at run time: alternatives, static keys, jump
// labels, ftrace, and one CPU's patch must reach the blocks every other CPU runs):
//   - a physical page that holds a block is write-protected in the write TLB of EVERY attached CPU
//     (insert() does it), so any CPU's write to it takes the write slow path;
//   - the slow path calls invalidate_page(), which retires the page's blocks and bumps
//     generation(); every CPU compares the generation with the one its jump cache was filled under
//     before each lookup (Cpu::find_block) and flushes on a mismatch, so no CPU reaches a retired
//     block through its jump cache;
//   - retired blocks stay allocated until collect(), which a CPU calls between blocks when it sees
//     a new generation: with all vCPUs interleaved on one host thread no other CPU is inside a
//     block then, and every CPU compares the generation before it uses a jump-cache entry or link.
//
// One host thread per vCPU, later: everything here would take a lock (a mutex around
// find/insert/invalidate; the generation becomes an atomic read with acquire ordering). Two steps
// need more than a lock: (1) insert() write-protects pages in other CPUs' TLBs, which their threads
// read without locks; that needs either a per-page "has code" bit tested on the write fast path, or
// a request to each CPU that it applies at its next block boundary, acknowledged before the new
// block runs (a write by a CPU that has not yet applied it is then a write that happened before the
// code was decoded, which is allowed); (2) collect() may free a block only once every CPU has passed
// a block boundary after its retirement (epoch-based reclamation: each CPU publishes the generation
// it last synchronised with; a block retired at generation g is freed when every running CPU has
// published a generation > g). Block links (BlockLink) are written by the CPU that runs the block;
// with threads a link would be published as one atomic 16-byte store (or be per CPU).
// What the code cache did (--stats).
struct CodeCacheStats {
    uint64_t lookups = 0;        // find() calls (jump-cache misses)
    uint64_t decoded = 0;        // blocks inserted
    uint64_t invalidations = 0;  // generation changes: pages written or blocks replaced
};

class CodeCache {
public:
    mutable CodeCacheStats stats;

    CodeCache() = default;
    CodeCache(const CodeCache&) = delete;
    CodeCache& operator=(const CodeCache&) = delete;

    // The CPUs whose TLBs insert() write-protects (Cpu's constructor and destructor call these).
    void attach(Cpu* c) { cpus_.push_back(c); }
    void detach(Cpu* c) { std::erase(cpus_, c); }

    Block* find(uint64_t phys, Mode mode) const;
    // The JIT: blocks that run `threshold` times get host code from `t` (nullptr: interpret all).
    // Install it before the first block is decoded; it outlives every block.
    void set_translator(std::unique_ptr<BlockTranslator> t, uint32_t threshold) {
        translator_ = std::move(t);
        threshold_ = threshold;
    }
    BlockTranslator* translator() const { return translator_.get(); }
    uint32_t threshold() const { return threshold_; }
    // Store a new block and write-protect its page(s) in every attached CPU's write TLB.
    Block* insert(std::unique_ptr<Block> b);
    bool page_has_code(uint64_t page) const { return pages_.count(page) != 0; }
    // Drop every block that uses physical page `page`. Blocks are retired, not freed, until
    // collect() (a CPU may be executing one of them).
    void invalidate_page(uint64_t page);
    // Retire one block (its pages may keep other blocks).
    void retire(Block* b);
    void invalidate_all();
    // Every attached CPU drops its jump-cache entries and links to retired blocks (call between
    // blocks, before collect()).
    void scrub_jump_caches() {
        for (Cpu* c : cpus_) c->scrub_jump_cache();
    }
    void collect() {
        if (!graveyard_.empty()) graveyard_.clear();
    }
    size_t size() const { return by_phys_.size(); }
    // Changes whenever a block is retired: a jump cache filled under another value may point at a
    // retired block.
    uint64_t generation() const { return generation_; }
    const uint64_t* generation_address() const { return &generation_; }  // (host code compares it)
    // A fresh link epoch (BlockLink) for a CPU that flushed its jump cache: multiples of 4, > 0.
    uint64_t new_epoch() { return epoch_ += 4; }

private:
    static uint64_t key(uint64_t phys, Mode mode) { return phys * 8 + uint64_t(mode); }
    void unlink(Block* b, uint64_t except_page);
    std::unique_ptr<BlockTranslator> translator_;  // first: blocks (below) free host code through it
    uint32_t threshold_ = 0;
    std::vector<Cpu*> cpus_;
    uint64_t generation_ = 1;
    uint64_t epoch_ = 0;
    BlockIndex by_phys_;
    std::unordered_map<uint64_t, std::vector<Block*>> pages_;
    std::vector<std::unique_ptr<Block>> graveyard_;
};

}  // namespace m86::cpu
