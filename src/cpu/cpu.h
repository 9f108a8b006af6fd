// One emulated x86-64 logical processor: architectural state, lazy flags, software TLB, and the
// interpreter's run loop.
//
// How it is used: a board (or a test environment) creates a Cpu with a Bus, sets its state, and
// calls run(limit). run() executes basic blocks from the code cache until the limit, a HLT, an exit
// request or an exception that the configured policy says to stop on, and returns why it stopped.
//
// Guest faults: a handler that detects a fault calls raise_fault(), which unwinds to run() with
// longjmp (not a C++ exception: the JIT's generated frames have no unwind tables). Handlers
// therefore hold no objects with destructors, and commit guest-visible state only after their last
// access that can fault, so a fault always leaves the state at the faulting instruction's boundary.
#pragma once

#include <csetjmp>
#include <cstdint>
#include <memory>
#include <string>

#include "cpu/bus.h"
#include "cpu/flags.h"
#include "cpu/insn.h"
#include "cpu/state.h"

namespace m86::cpu {

class CodeCache;
struct Block;

// Exception vectors (SDM Vol. 3, Table 6-1).
enum Vector : uint8_t {
    kDE = 0, kDB = 1, kNMI = 2, kBP = 3, kOF = 4, kBR = 5, kUD = 6, kNM = 7, kDF = 8, kTS = 10, kNP = 11,
    kSS = 12, kGP = 13, kPF = 14, kMF = 16, kAC = 17, kMC = 18, kXM = 19,
};
constexpr uint32_t kNoErrorCode = ~0u;

// Decoding/execution mode: which default operand/address sizes the code segment implies.
enum class Mode : uint8_t { Real, Prot16, Prot32, Compat16, Compat32, Long64 };

enum class StopReason { Limit, Halt, Exception, ExitRequest };

struct Fault {
    uint8_t vector = 0;
    uint32_t error_code = kNoErrorCode;
    uint64_t cr2 = 0;  // for #PF
};

// Software TLB: direct-mapped arrays per access context (privilege), one for reads and one for
// writes, so a copy loop whose source and destination pages share an index does not thrash. An
// entry caches a linear page's host mapping. A tag is the page-aligned linear address; an invalid
// tag has bit 0 set, so it can never match. Instruction fetch needs no TLB: the code cache's jump
// cache maps linear RIPs to decoded blocks directly.
struct TlbEntry {
    uint64_t tag = 1;
    intptr_t addend = 0;  // host address = linear address + addend
    uint64_t phys = 1;    // physical page address (1 = none)
};
constexpr unsigned kTlbBits = 8, kTlbSize = 1u << kTlbBits;
// Access contexts: supervisor, user. (Issue #3 adds SMAP-aware contexts.)
constexpr unsigned kTlbContexts = 2;

enum class Access : uint8_t { Read, Write, Exec };

class Cpu {
public:
    explicit Cpu(Bus& bus);
    ~Cpu();
    Cpu(const Cpu&) = delete;
    Cpu& operator=(const Cpu&) = delete;

    // ---- state -------------------------------------------------------------------------------
    CpuState s;
    LazyFlags lf;
    uint64_t next_rip = 0;  // during a handler: the address of the next instruction
    Bus& bus;

    // ---- configuration -----------------------------------------------------------------------
    bool stop_on_exception = true;  // snippet/test environments: stop instead of delivering

    // ---- run control -------------------------------------------------------------------------
    uint64_t icount = 0;       // instructions retired
    bool exit_request = false;  // set by handlers/devices: leave the block after this instruction
    bool halted = false;
    Fault last_fault;          // the exception that stopped run() (StopReason::Exception)

    StopReason run(uint64_t max_instructions);

    // Recompute the decode mode and TLB context after CS, CR0, EFER changes.
    void update_mode();
    Mode mode() const { return mode_; }

    // ---- faults ------------------------------------------------------------------------------
    [[noreturn]] void raise_fault(uint8_t vector, uint32_t error_code = kNoErrorCode, uint64_t cr2 = 0);
    [[noreturn]] void raise_ud() { raise_fault(kUD); }
    [[noreturn]] void raise_gp(uint32_t err = 0) { raise_fault(kGP, err); }

    // ---- flags -------------------------------------------------------------------------------
    void set_lazy(FlagOp op, unsigned width, uint64_t res, uint64_t a, uint64_t b, uint8_t carry = 0) {
        lf.op = op;
        lf.width = uint8_t(width);
        lf.res = res;
        lf.a = a;
        lf.b = b;
        lf.carry_in = carry;
    }
    bool cf() const { return lf.op == FlagOp::None ? (s.rflags & fl::CF) : lazy_cf(lf); }
    bool zf() const { return lf.op == FlagOp::None ? (s.rflags & fl::ZF) : lazy_zf(lf); }
    bool sf() const { return lf.op == FlagOp::None ? (s.rflags & fl::SF) : lazy_sf(lf); }
    bool of() const { return lf.op == FlagOp::None ? (s.rflags & fl::OF) : lazy_of(lf); }
    bool pf() const { return lf.op == FlagOp::None ? (s.rflags & fl::PF) : parity_even(lf.res); }
    bool af() const { return lf.op == FlagOp::None ? (s.rflags & fl::AF) : lazy_af(lf); }
    // Fold lazy flags into s.rflags (after this, s.rflags is authoritative).
    void sync_flags() {
        if (lf.op != FlagOp::None) {
            s.rflags = (s.rflags & ~fl::kArith) | lazy_all(lf);
            lf.op = FlagOp::None;
        }
    }
    uint64_t rflags() {
        sync_flags();
        return s.rflags;
    }
    // Set the status flags selected by `mask` to `bits` (eager flag producers: shifts, MUL, BT...).
    void set_flags(uint64_t mask, uint64_t bits) {
        sync_flags();
        s.rflags = (s.rflags & ~mask) | (bits & mask);
    }
    bool cond(unsigned cc) const;

    // ---- registers ---------------------------------------------------------------------------
    // 8-bit register read/write honouring AH..BH (Insn register numbering).
    uint8_t get_r8(unsigned r) const { return r < 16 ? uint8_t(s.gpr[r]) : uint8_t(s.gpr[r - 16] >> 8); }
    void set_r8(unsigned r, uint8_t v) {
        if (r < 16)
            s.gpr[r] = (s.gpr[r] & ~0xffull) | v;
        else
            s.gpr[r - 16] = (s.gpr[r - 16] & ~0xff00ull) | (uint64_t(v) << 8);
    }
    // Width-generic register access: 32-bit writes zero-extend (SDM Vol. 1, 3.4.1.1), 8/16 merge.
    template <int W> U<W> get_reg(unsigned r) const {
        if constexpr (W == 1) return get_r8(r);
        else return U<W>(s.gpr[r]);
    }
    template <int W> void set_reg(unsigned r, U<W> v) {
        if constexpr (W == 1) set_r8(r, v);
        else if constexpr (W == 2) s.gpr[r] = (s.gpr[r] & ~0xffffull) | v;
        else s.gpr[r] = uint64_t(v);
    }

    // ---- memory (linear addresses; see mem.h for the inline fast paths) ----------------------
    TlbEntry tlb_r[kTlbContexts][kTlbSize];
    TlbEntry tlb_w[kTlbContexts][kTlbSize];
    unsigned tlb_ctx = 0;  // index into tlb_r/tlb_w for the current privilege
    void tlb_flush();
    void tlb_flush_page(uint64_t lin);
    // Slow paths: translate, fill the TLB, handle MMIO and page-crossing accesses. May fault.
    void read_slow(uint64_t lin, void* dst, unsigned size, Access acc = Access::Read);
    void write_slow(uint64_t lin, const void* src, unsigned size);
    // Make sure [lin, lin+size) is writable now (faulting if not), so a following read-modify-write
    // cannot fault half-way.
    void probe_write(uint64_t lin, unsigned size);
    // Linear -> physical translation (paging). Faults with #PF (or #GP for non-canonical).
    uint64_t translate(uint64_t lin, Access acc, bool user);
    // Host pointer to the byte at linear `lin` for an access of `acc` (filling the TLB), or nullptr
    // when the page is MMIO. May fault. The pointer stays valid up to the end of the page until the
    // next guest memory access (bulk paths: REP MOVS/STOS, FXSAVE...).
    uint8_t* host_ptr(uint64_t lin, Access acc);
    // Invalidate write-TLB entries that map physical page `page` (it now holds code).
    void tlb_protect_code(uint64_t page);
    // Host pointer for an instruction fetch from linear `lin`, with the physical page it maps.
    const uint8_t* fetch_ptr(uint64_t lin, uint64_t* phys_page);

    // ---- code cache --------------------------------------------------------------------------
    CodeCache& code() { return *code_; }
    // Notification from the write slow path: physical page `page` was written.
    void code_page_written(uint64_t page);

private:
    Block* find_block();
    StopReason run_blocks(uint64_t limit);
    void handle_fault();

    Mode mode_ = Mode::Real;
    std::unique_ptr<CodeCache> code_;
    std::jmp_buf* fault_jmp_ = nullptr;
};

// Log an unimplemented instruction once per mnemonic (then #UD is raised in the guest).
void log_unimplemented(uint16_t mnemonic, const char* why);

}  // namespace m86::cpu
