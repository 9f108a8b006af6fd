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

#include <atomic>
#include <csetjmp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu/bus.h"
#include "cpu/flags.h"
#include "cpu/insn.h"
#include "cpu/platform.h"
#include "cpu/state.h"

namespace m86::jit {
struct Layout;  // src/jit/translator.cpp: where host code finds the Cpu's fields
}

namespace m86::cpu {

class CodeCache;
struct Block;
// A code cache for the CPUs of one machine (decode.h); pass it to each Cpu's constructor.
std::shared_ptr<CodeCache> make_code_cache();

// Exception vectors (SDM Vol. 3, Table 6-1).
enum Vector : uint8_t {
    kDE = 0, kDB = 1, kNMI = 2, kBP = 3, kOF = 4, kBR = 5, kUD = 6, kNM = 7, kDF = 8, kTS = 10, kNP = 11,
    kSS = 12, kGP = 13, kPF = 14, kMF = 16, kAC = 17, kMC = 18, kXM = 19,
};
// Selector error codes (SDM Vol. 3, 6.13): EXT = event external to the program, IDT = the index
// names an IDT gate, TI = the index names an LDT descriptor.
constexpr uint32_t kErrExt = 1, kErrIdt = 2, kErrTi = 4;

// What is being delivered through the IDT (SDM Vol. 3, 6.4 and 6.12): the kind decides the gate
// DPL check (software interrupts only), error-code pushing (exceptions only), and the EXT bit.
enum class Event : uint8_t {
    Exception,     // fault/trap/abort detected by the processor
    SoftInt,       // INT n: gate DPL checked against CPL, no error code
    SoftException, // INT3, INTO: like INT n for the DPL check
    Icebp,         // INT1 (F1): no DPL check, no error code
    External,      // INTR (acknowledged vector)
    Nmi,           // NMI (vector 2)
};
constexpr uint32_t kNoErrorCode = ~0u;

// Decoding/execution mode: which default operand/address sizes the code segment implies.
enum class Mode : uint8_t { Real, Prot16, Prot32, Compat16, Compat32, Long64 };

// Shutdown: triple fault (the board resets the machine or exits, SDM Vol. 3, 6.15 "Interrupt 8").
enum class StopReason { Limit, Halt, Exception, ExitRequest, Shutdown };

struct Fault {
    uint8_t vector = 0;
    uint32_t error_code = kNoErrorCode;
    uint64_t cr2 = 0;  // for #PF
};

// Software TLB: direct-mapped arrays per access context (privilege), one for reads and one for
// writes, so a copy loop whose source and destination pages share an index does not thrash. An
// entry caches a linear page's host mapping. A tag is the page-aligned linear address; an invalid
// tag has bit 0 set, so it can never match. Instruction fetch needs no TLB: the jump cache (below)
// maps linear RIPs to decoded blocks directly.
struct TlbEntry {
    uint64_t tag = 1;
    intptr_t addend = 0;  // host address = linear address + addend
    uint64_t phys = 1;    // physical page address | kTlbGlobal (1 = none)
};
constexpr uint64_t kTlbGlobal = 2;  // TlbEntry::phys: a global translation (kept by MOV CR3)
constexpr unsigned kTlbBits = 8, kTlbSize = 1u << kTlbBits;
// Access contexts: supervisor (SMAP enforced when CR4.SMAP; also every implicit supervisor access:
// descriptor tables, IDT, TSS, delivery stacks), user (CPL 3), and supervisor with RFLAGS.AC = 1
// under SMAP (explicit accesses may touch user pages, SDM Vol. 3, 4.6.1).
constexpr unsigned kTlbContexts = 3;
constexpr unsigned kCtxSup = 0, kCtxUser = 1, kCtxSupAC = 2;

enum class Access : uint8_t { Read, Write, Exec };

// Jump cache: per CPU and TLB context, a direct-mapped map from the linear address of a block's
// first instruction (and the decode mode) to the block in the shared code cache. An entry means
// "fetching from this linear address in this context was allowed and led to this block", so it is
// flushed with the TLB, and when the code cache retires blocks (CodeCache::generation()).
// tag = lin << 3 | mode: unique, because linear addresses are canonical (the three bits shifted out
// copy bit 47/56) or 32-bit outside 64-bit mode; an invalid tag has all low bits set (no mode 7).
struct JumpEntry {
    uint64_t tag = ~0ull;
    Block* block = nullptr;
};
constexpr unsigned kJumpBits = 12, kJumpSize = 1u << kJumpBits;

class Cpu {
public:
    // `code` is the machine's shared code cache (make_code_cache()); without one the CPU gets a
    // private cache (single-CPU environments).
    explicit Cpu(Bus& bus, std::shared_ptr<CodeCache> code = nullptr);
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
    uint32_t apic_id = 0;   // initial APIC ID (CPUID leaves 1 and 0xB); the board numbers CPUs 0..N-1
    uint32_t num_cpus = 1;  // logical CPUs in the machine (CPUID topology leaves 1, 4, 0xB)

    // ---- run control -------------------------------------------------------------------------
    uint64_t icount = 0;       // instructions retired
    uint64_t host_entries = 0; // times the run loop entered host code (JIT; chained blocks do not count)
    bool exit_request = false;  // set by handlers/devices: leave the block after this instruction
    // A handler that stops a long instruction part-way (REP string operations) asks run() to end
    // the slice after it, so a board's loop (timers, host I/O) turns. Boards set return_on_yield;
    // without it (tests, the snippet environment) run() just goes on.
    bool return_on_yield = false;
    void yield() { yield_ = true; }
    // From a handler of a repeated instruction with iterations left: run it again (its registers
    // hold the progress) once the run loop has looked at interrupts, and end the slice.
    void restart_later() {
        next_rip = s.rip;
        exit_request = true;
        yield();
    }
    bool halted = false;
    Fault last_fault;          // the exception that stopped run() (StopReason::Exception)

    StopReason run(uint64_t max_instructions);

    // ---- system level: reset, external events, delivery (cpu.cpp, exceptions.cpp) ----------
    Platform* platform = nullptr;  // the board's interrupt controller and MSRs (platform.h)
    bool is_bsp = true;            // INIT: the BSP restarts at the reset vector, an AP waits for SIPI
    bool wait_for_sipi = false;    // an AP after INIT: runs nothing until raise_sipi()
    bool shutdown = false;         // after a triple fault: runs nothing until reset()/INIT
    // Power-up/RESET state (SDM Vol. 3, Table 10-1). INIT (init_only) keeps x87/SSE state, the
    // MSRs and the caches (same table, column "INIT").
    void reset(bool init_only = false);
    // Pins and inter-processor messages; safe to call from another thread.
    void set_intr(bool level);
    void raise_nmi();
    void raise_init();
    void raise_sipi(uint8_t vector);
    // Make run() return StopReason::ExitRequest at the next instruction boundary (board/devices).
    void request_stop() {
        pending_.fetch_or(kPendStop);
        exit_request = true;
    }
    // For the board's idle loop after run() returned Halt: would run() make progress now (an
    // event that wakes a halted CPU, starts a waiting AP, or resets it is pending)?
    bool wake_pending() const {
        uint32_t p = pending_.load();
        if (p & (kPendInit | kPendStop)) return true;
        if (shutdown) return false;
        if (wait_for_sipi) return p & kPendSipi;
        if (!halted) return true;
        return ((p & kPendNmi) && !nmi_blocked_) || ((p & kPendIntr) && (s.rflags & fl::IF));
    }
    // Deliver an interrupt or exception through the IVT/IDT now (from a handler: INT n, INT3...).
    // return_rip is the address pushed (the next instruction for traps and software interrupts).
    // Commits everything or faults (longjmp) leaving the state untouched.
    void deliver(uint8_t vector, Event kind, uint32_t error_code, uint64_t return_rip);
    // Call after writing RFLAGS.IF/TF/AC/IOPL outside the system ops (POPF): updates the TLB
    // context (SMAP) and ends the block so a newly enabled interrupt or single step is seen.
    void rflags_changed() {
        update_mode();
        exit_request = true;
    }
    // IRET ends NMI blocking (SDM Vol. 3, 6.7.1).
    void nmi_unblock() { nmi_blocked_ = false; }
    // Interrupt shadow (STI, MOV SS, POP SS): no interrupt before the next instruction completes.
    void set_interrupt_shadow() {
        shadow_end_ = icount + 2;
        exit_request = true;
    }
    // Time-stamp counter as RDTSC sees it (the bus's clock plus the guest's IA32_TSC writes).
    uint64_t tsc() { return (side_effect(), bus.tsc(icount)) + s.tsc_offset; }
    // An implicit supervisor access is in progress (descriptor tables, IDT, TSS, delivery stacks:
    // sys.h): SMAP applies whatever RFLAGS.AC says. Cleared by update_mode().
    bool implicit_access = false;
    // Alignment checking is on (CR0.AM, RFLAGS.AC, CPL 3): user accesses take the slow path,
    // which raises #AC for misaligned ones (mmu.cpp). Maintained by update_mode().
    bool ac_check = false;
    // PAE paging's PDPTE registers, loaded by MOV CR3 / MOV CR0 / MOV CR4 (SDM Vol. 3, 4.4.1).
    // When not loaded (state set from outside), the page walk reads them from memory.
    uint64_t pae_pdpte[4] = {};
    bool pae_pdpte_loaded = false;
    // Legacy-mode segment checks for memory operands (lin_of in mem.h): an offset is valid if
    // seg_lo[seg] <= off <= seg_hi[seg] (an unusable segment has lo > hi). Index kSegFlat = flat.
    // Recomputed by update_mode(); unused in 64-bit mode.
    uint64_t seg_lo[8] = {}, seg_hi[8] = {};
    // The same for writes (lin_of_w): empty for read-only data and code segments in protected mode
    // (SDM Vol. 3, 5.5); seg_lo/seg_hi is empty for execute-only code segments.
    uint64_t seg_wlo[8] = {}, seg_whi[8] = {};
    [[noreturn]] void raise_seg_fault(uint8_t seg);
    // Implicit stack accesses in 64-bit mode: #SS(0) if [lin, lin+size) is not canonical (SDM
    // Vol. 3, 6.15 "Interrupt 12"); called from the memory slow paths only (exceptions.cpp).
    void stack_canonical(uint64_t lin, unsigned size);
    // The fault for a non-canonical data address (the page walk): #SS(0) when the current
    // instruction's memory operand is SS-relative and holds that address, else #GP(0).
    [[noreturn]] void raise_noncanonical(uint64_t lin);
    // Call after writing DR0-DR3/DR7 (exceptions.cpp): while DR7 enables an instruction breakpoint,
    // the run loop takes one-instruction slices and service_events() checks each instruction's
    // address first (SDM Vol. 3, 18.3.1.1). Costs nothing while DR7 enables none.
    void debug_regs_changed();

    // Recompute the decode mode and TLB context after CS, CR0, EFER changes.
    void update_mode();
    Mode mode() const { return mode_; }

    // ---- faults ------------------------------------------------------------------------------
    [[noreturn]] void raise_fault(uint8_t vector, uint32_t error_code = kNoErrorCode, uint64_t cr2 = 0);
    [[noreturn]] void raise_ud() { raise_fault(kUD); }
    [[noreturn]] void raise_gp(uint32_t err = 0) { raise_fault(kGP, err); }

    // ---- flags -------------------------------------------------------------------------------
    void set_lazy(FlagOp op, unsigned width, uint64_t res, uint64_t a, uint64_t b, uint8_t carry = 0) {
        lf.set_meta(op, width, carry);
        lf.res = res;
        lf.a = a;
        lf.b = b;
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
            lf.set_none();
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
    // Condition code cc (flags.h Cond) true? cond<CC>() for a condition known at compile time
    // (the Jcc handlers are specialised per condition).
    bool cond(unsigned cc) const;
    template <unsigned CC> bool cond() const {
        constexpr unsigned k = CC >> 1;
        bool r;
        if constexpr (k != 0 && k != 4 && k != 5) {
            // Flags from SUB/CMP without carry: compare the recorded operands directly.
            if (lf.op == FlagOp::Sub && !lf.carry_in) {
                if constexpr (k == 1) r = lf.a < lf.b;         // B
                else if constexpr (k == 2) r = lf.a == lf.b;   // E
                else if constexpr (k == 3) r = lf.a <= lf.b;   // BE
                else {
                    unsigned sh = 64 - lf.width * 8;
                    int64_t sa = int64_t(lf.a << sh) >> sh, sb = int64_t(lf.b << sh) >> sh;
                    if constexpr (k == 6) r = sa < sb;          // L
                    else r = sa <= sb;                          // LE
                }
                return r ^ (CC & 1);
            }
        }
        if (lf.op == FlagOp::Logic) {
            // AND/OR/XOR/TEST: CF = OF = 0, so only ZF, SF, PF of the result matter.
            bool z = lf.res == 0, sg = lf.res >> (lf.width * 8 - 1) & 1;
            if constexpr (k == 0 || k == 1) r = false;       // O, B
            else if constexpr (k == 2 || k == 3) r = z;      // E, BE
            else if constexpr (k == 4 || k == 6) r = sg;     // S, L
            else if constexpr (k == 5) r = parity_even(lf.res);
            else r = z || sg;                                // LE
            return r ^ (CC & 1);
        }
        if constexpr (k == 0) r = of();
        else if constexpr (k == 1) r = cf();
        else if constexpr (k == 2) r = zf();
        else if constexpr (k == 3) r = cf() || zf();
        else if constexpr (k == 4) r = sf();
        else if constexpr (k == 5) r = pf();
        else if constexpr (k == 6) r = sf() != of();
        else r = zf() || (sf() != of());
        return r ^ (CC & 1);
    }

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
    // Every flush costs O(entries filled since the last one), not O(TLB size): a Linux context
    // switch writes CR3 (see the fill logs below). keep_global (MOV CR3, INVPCID of one or all
    // contexts): global translations (G with CR4.PGE) and the jump-cache entries reached through
    // them stay (SDM Vol. 3, 4.10.4.1), so kernel code and data survive a context switch.
    void tlb_flush(bool keep_global = false);
    void tlb_flush_page(uint64_t lin);
    void tlb_flush_writes();  // drop every write translation (the JIT checker's interpreter run)
    // Fill the TLB entry of `lin` in the current context (read or write side) with host page `host`
    // (physical page `page`).
    void tlb_fill(bool write, uint64_t lin, uint8_t* host, uint64_t page);
    // Slow paths: translate, fill the TLB, handle MMIO and page-crossing accesses. May fault.
    void read_slow(uint64_t lin, void* dst, unsigned size, Access acc = Access::Read);
    void write_slow(uint64_t lin, const void* src, unsigned size);
    // Make sure [lin, lin+size) is writable now (faulting if not), so a following read-modify-write
    // cannot fault half-way.
    void probe_write(uint64_t lin, unsigned size);
    // Linear -> physical translation (paging). Faults with #PF (or #GP for non-canonical).
    uint64_t translate(uint64_t lin, Access acc, bool user);
    bool xlat_global = false;  // the last translate() went through a global leaf (G, CR4.PGE)
    // Host pointer to the byte at linear `lin` for an access of `acc` (filling the TLB), or nullptr
    // when the page is MMIO. May fault. The pointer stays valid up to the end of the page until the
    // next guest memory access (bulk paths: REP MOVS/STOS, FXSAVE...).
    uint8_t* host_ptr(uint64_t lin, Access acc);
    // Invalidate write-TLB entries that map physical page `page` (it now holds code). The code cache
    // calls it on every CPU that shares it.
    void tlb_protect_code(uint64_t page);
    // Host pointer for an instruction fetch from linear `lin`, with the physical page it maps.
    const uint8_t* fetch_ptr(uint64_t lin, uint64_t* phys_page);

    // ---- JIT lockstep checker (jit_check.cpp) ----------------------------------------------
    // With jit_check set, runs of host code are checked: the block runs first through the
    // interpreter (its memory writes logged and then undone), then through its host code from the
    // same state, and the two results must agree in every register, flag, the retired count, the
    // fault raised, and the bytes the interpreter wrote. Blocks that touch MMIO, ports, board MSRs
    // or the TSC cannot run twice: the interpreter's run stops before the access and the block runs
    // unchecked (jit_unchecked counts them). A mismatch calls on_jit_mismatch (default: print the
    // report to stderr and abort). jit_check_every = N > 1 samples: each block's first
    // kJitCheckFirst runs are checked, then one run in N.
    bool jit_check = false;
    uint32_t jit_check_every = 1;
    static constexpr uint32_t kJitCheckFirst = 16;
    uint64_t jit_checked = 0, jit_unchecked = 0;
    void (*on_jit_mismatch)(const std::string& report) = nullptr;
    // The interpreter's memory writes during a check: where, and the bytes they replaced (in one
    // flat buffer, kept for its capacity).
    struct WriteRecord {
        uint8_t* host;
        size_t at, len;  // the old bytes: check_bytes_[at, at + len)
    };
    bool check_log = false;  // while the checker's interpreter runs
    void log_write(uint8_t* host, size_t n) {
        check_writes_.push_back(WriteRecord{host, check_bytes_.size(), n});
        check_bytes_.insert(check_bytes_.end(), host, host + n);
    }
    // Before an access with effects outside the CPU and RAM (MMIO, ports, board MSRs, time).
    void side_effect() {
        if (check_abort_) [[unlikely]]
            std::longjmp(*check_abort_, 1);
    }

    // ---- code cache --------------------------------------------------------------------------
    CodeCache& code() { return *code_; }
    const CodeCache& code() const { return *code_; }
    // Notification from the write slow path: physical page `page` was written.
    void code_page_written(uint64_t page);
    // Forget the jump-cache entries (TLB flushes; retired blocks); keep_global: not those reached
    // through global translations.
    void flush_jump_cache(bool keep_global = false);
    // Forget only the jump-cache entries of retired blocks (a retirement changes no translation,
    // so the others stay valid) and void the cross-page block links; CodeCache::scrub_jump_caches
    // does it for every CPU before retired blocks are freed.
    void scrub_jump_cache();

private:
    // The block at linear address `lin` (tag = its jump-cache tag) through the jump cache, else the
    // code cache, else decoded now.
    Block* find_block(uint64_t lin, uint64_t tag);
    Block* find_block_slow(uint64_t lin, JumpEntry& e);
    void link_block(Block* from, uint64_t from_page, uint64_t lin, uint64_t tag, Block* to);
    StopReason run_blocks(uint64_t limit);
    uint32_t run_host_checked(Block* b);  // jit_check.cpp
    std::jmp_buf* check_abort_ = nullptr;  // the checker's interpreter run stops there at side_effect()
    std::vector<WriteRecord> check_writes_;
    std::vector<uint8_t> check_bytes_, check_after_;
    // Write-TLB entries filled since the checker last emptied them (so that emptying costs what
    // was filled, not the whole TLB); overflow: empty them all.
    uint16_t check_wfill_[64];
    unsigned check_wfills_ = 0;
    bool check_wfill_overflow_ = true;
    void handle_fault();
    // Exception/interrupt plumbing (exceptions.cpp).
    void service_events();           // at an instruction boundary, with attention_ or TF set
    void check_insn_breakpoints();   // before an instruction, while kPendDebug is set
    bool fault_during_delivery();    // classify a nested fault (#DF / triple fault rules)
    void deliver_real(uint8_t vector, Event kind, uint64_t return_rip);
    void deliver_protected(uint8_t vector, Event kind, uint32_t err, uint64_t return_rip);

    // External events (bits of pending_) and the delivery bookkeeping.
    static constexpr uint32_t kPendIntr = 1, kPendNmi = 2, kPendInit = 4, kPendSipi = 8, kPendStop = 16;
    static constexpr uint32_t kPendDebug = 32;  // instruction breakpoints enabled (debug_regs_changed)
    std::atomic<uint32_t> pending_{0};
    std::atomic<uint8_t> sipi_vector_{0};
    bool nmi_blocked_ = false;       // between NMI delivery and the next IRET (SDM Vol. 3, 6.7.1)
    uint64_t shadow_end_ = 0;        // interrupts are inhibited while icount < shadow_end_
    bool yield_ = false;             // yield() was called: run_blocks returns between blocks
    uint64_t slice_end_ = 0;         // run_blocks executes at most up to this icount before re-checking
    bool step_armed_ = false;        // TF was set at the start of the instruction just run
    uint64_t trap_mask_ = 0;         // fl::TF when single-stepping is on (!stop_on_exception)
    int delivering_ = -1;            // vector of the exception/interrupt being delivered, or -1
    Event delivering_kind_ = Event::Exception;
    bool fault_pending_ = false;     // deliver pending_fault_ at the next run-loop iteration
    Fault pending_fault_;

    Mode mode_ = Mode::Real;
    std::shared_ptr<CodeCache> code_;
    uint32_t jit_threshold_ = 0;  // runs after which a block gets host code (0: no JIT)
    // Host code that chains to the next block's host code (src/jit) leaves here the block it
    // entered last and that block's linear address: the run loop links from them.
    Block* jit_block_ = nullptr;
    uint64_t jit_lin_ = 0;
    friend struct jit::Layout;  // host code reads and writes the run loop's fields above
    uint64_t code_gen_ = 0;  // the code cache's generation() the jump cache is valid for
    uint64_t link_epoch_ = 0;  // cross-page block links made under this value are valid (BlockLink)
    JumpEntry jump_[kTlbContexts][kJumpSize];

    // Fill logs: which TLB / jump-cache entries were filled since the last flush, in two classes:
    // [0] entries MOV CR3 drops, [1] entries of global translations. Every valid entry is in the log
    // of its class (an entry invalidated one by one stays in it; a refilled entry may be listed
    // twice, or in both logs: a flush may drop more than needed, never less), unless that log
    // overflowed, after which the structure is treated as full. A flush clears only the logged
    // entries; INVLPG and code write-protection look only at them.
    // TLB entry ids: write << 10 | ctx << 8 | index; jump-cache ids: ctx << 12 | index.
    template <unsigned N> struct FillLog {
        uint16_t id[N];
        unsigned n = 0;
        bool full = true;  // (the arrays start empty, but reset() flushes them whole once)
        void add(unsigned x) {
            if (full) return;
            if (n == N) full = true;
            else id[n++] = uint16_t(x);
        }
        void clear() { n = 0, full = false; }
    };
    TlbEntry& tlb_entry(unsigned id) {
        TlbEntry(&arr)[kTlbContexts][kTlbSize] = id >> 10 ? tlb_w : tlb_r;
        return arr[(id >> 8) & 3][id & (kTlbSize - 1)];
    }
    FillLog<256> tlb_log_[2];
    FillLog<512> jump_log_[2];
    std::jmp_buf* fault_jmp_ = nullptr;
};

// Log an unimplemented instruction once per mnemonic (then #UD is raised in the guest).
void log_unimplemented(uint16_t mnemonic, const char* why);

}  // namespace m86::cpu
