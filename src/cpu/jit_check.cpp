// The JIT lockstep checker (Cpu::jit_check, micro86 --jit-check): host code must do exactly what
// the interpreter does. Each time a block would run its host code, it runs twice from one state:
//
//   1. through the interpreter's handlers, as run_blocks' interpreter path does. Every memory write
//      takes the slow path (the write TLB is emptied for the run and not refilled) and is logged with
//      the bytes it replaced; an access with effects outside the CPU and RAM (MMIO, a port, a board
//      MSR, the TSC) stops the run before it happens (Cpu::side_effect);
//   2. the logged writes are undone, the CPU state and the TLBs put back as they were;
//   3. through its host code, with chaining off (the slice ends after the block).
//
// Then both results must agree: registers, flags (materialised), every other architectural field
// (CpuState field by field), the retired count, how many instructions ran, the fault raised if any,
// and the bytes at every place the interpreter wrote. A block stopped at a side effect runs from the
// restored state through its host code unchecked (jit_unchecked counts those).
//
// Page-table accessed/dirty bits the interpreter's page walks set are not undone: the host code's
// run sets the same bits, so both end the same. Faults raised by the host code's run go on to
// Cpu::run as usual once compared.
#include <fmt/format.h>

#include <csetjmp>
#include <cstdlib>
#include <algorithm>
#include <cstring>

#include "cpu/cpu.h"
#include "cpu/decode.h"

namespace m86::cpu {

namespace {

// What a run of a block may change in the CPU (besides RAM): restored between the two runs and
// compared after them.
struct RunState {
    CpuState s;
    LazyFlags lf;
    uint64_t icount, next_rip;
    bool exit_request, halted;
};

const char* const kModeNames[] = {"real", "16-bit protected", "32-bit protected", "16-bit compatibility",
                                   "32-bit compatibility", "64-bit"};
const char* const kGprNames[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                   "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
const char* const kSelNames[kNumSegs] = {"es.sel", "cs.sel", "ss.sel", "ds.sel", "fs.sel", "gs.sel"};
const char* const kBaseNames[kNumSegs] = {"es.base", "cs.base", "ss.base", "ds.base", "fs.base", "gs.base"};

}  // namespace

uint32_t Cpu::run_host_checked(Block* b) {
    // Sampling: a block's first runs, then one in jit_check_every.
    if (jit_check_every > 1 && b->checks++ >= kJitCheckFirst && b->checks % jit_check_every != 0) return b->host(*this);
    // (RunState is over 1 KiB: copied field by field into place, never through a temporary.)
    auto take = [this](RunState& r) {
        sync_flags();
        r.s = s, r.lf = lf, r.icount = icount, r.next_rip = next_rip, r.exit_request = exit_request, r.halted = halted;
    };
    RunState start;
    start.s = s, start.lf = lf, start.icount = icount, start.next_rip = next_rip;
    start.exit_request = exit_request, start.halted = halted;
    std::jmp_buf* const outer = fault_jmp_;

    // 1. The interpreter, writes logged, side effects refused. Its writes must all take the slow
    // path, where they are logged: the write TLB is emptied (dropping translations is always
    // allowed) and not refilled while the log is on.
    check_writes_.clear();
    check_bytes_.clear();
    tlb_flush_writes();
    // (Changed between setjmp and longjmp: volatile, so kept in memory.)
    volatile uint32_t int_ran_v = 0;
    volatile bool int_faulted_v = false, aborted_v = false;
    std::jmp_buf abort_jb, fault_jb;
    check_log = true;
    if (setjmp(abort_jb) != 0) {
        aborted_v = true;
    } else {
        check_abort_ = &abort_jb;
        fault_jmp_ = &fault_jb;
        if (setjmp(fault_jb) != 0) {
            int_faulted_v = true;
        } else {
            for (const Insn *i = b->insns.data(), *end = i + b->n; i != end;) {
                next_rip = s.rip + i->len;
                i->fn(*this, *i);
                s.rip = next_rip;
                ++icount;
                int_ran_v = int_ran_v + 1;
                if (++i == end || exit_request) break;
            }
        }
    }
    check_abort_ = nullptr;
    check_log = false;
    fault_jmp_ = outer;
    const bool aborted = aborted_v, int_faulted = int_faulted_v;
    const uint32_t int_ran = int_ran_v;
    const Fault int_fault = last_fault;
    RunState after_interp;
    take(after_interp);
    check_after_.resize(check_bytes_.size());
    for (const WriteRecord& w : check_writes_) std::memcpy(&check_after_[w.at], w.host, w.len);

    // 2. Back to the state before the block (the oldest bytes last).
    for (auto it = check_writes_.rbegin(); it != check_writes_.rend(); ++it) std::memcpy(it->host, &check_bytes_[it->at], it->len);
    s = start.s;
    lf = start.lf;
    icount = start.icount;
    next_rip = start.next_rip;
    exit_request = start.exit_request;
    halted = start.halted;
    update_mode();
    if (aborted) {
        jit_unchecked++;
        return b->host(*this);
    }

    // 3. The host code, alone: the slice ends with the block, so it does not chain.
    const uint64_t slice_end = slice_end_;
    slice_end_ = icount + b->n;
    volatile uint32_t jit_ran_v = 0;
    volatile bool jit_faulted_v = false;
    std::jmp_buf jit_jb;
    fault_jmp_ = &jit_jb;
    if (setjmp(jit_jb) != 0) {
        jit_faulted_v = true;
    } else {
        jit_ran_v = b->host(*this);
    }
    fault_jmp_ = outer;
    slice_end_ = slice_end;
    const bool jit_faulted = jit_faulted_v;
    const uint32_t jit_ran = jit_ran_v;
    sync_flags();  // (the host code's results are compared where they are: s, icount, halted)
    jit_checked++;

    // 4. Compare.
    std::string diff;
    auto field = [&diff](const char* name, uint64_t interp_v, uint64_t jit_v) {
        if (interp_v != jit_v) diff += fmt::format("  {:<12} interpreter {:#018x}   host code {:#018x}\n", name, interp_v, jit_v);
    };
    field("faulted", int_faulted, jit_faulted);
    if (int_faulted && jit_faulted) {
        field("vector", int_fault.vector, last_fault.vector);
        field("error code", int_fault.error_code, last_fault.error_code);
        field("cr2", int_fault.cr2, last_fault.cr2);
    }
    if (!int_faulted && !jit_faulted) field("ran", int_ran, jit_ran);
    for (unsigned r = 0; r < 16; r++) field(kGprNames[r], after_interp.s.gpr[r], s.gpr[r]);
    field("rip", after_interp.s.rip, s.rip);
    field("rflags", after_interp.s.rflags, s.rflags);
    field("icount", after_interp.icount, icount);
    field("halted", after_interp.halted, halted);
    for (unsigned k = 0; k < kNumSegs; k++) {
        field(kSelNames[k], after_interp.s.seg[k].sel, s.seg[k].sel);
        field(kBaseNames[k], after_interp.s.seg[k].base, s.seg[k].base);
    }
    if (diff.empty() && !(after_interp.s == s)) {
        const CpuState &a = after_interp.s, &j = s;
        const char* what = !(a.ldtr == j.ldtr && a.tr == j.tr && a.gdtr == j.gdtr && a.idtr == j.idtr) ? "system segments"
                           : !std::equal(a.seg, a.seg + kNumSegs, j.seg)                             ? "segment caches"
                           : !(a.x87 == j.x87)                                                         ? "x87 state"
                           : !(std::equal(a.xmm, a.xmm + 16, j.xmm) && a.mxcsr == j.mxcsr)             ? "SSE state"
                                                         : "control registers, debug registers or MSRs";
        diff += fmt::format("  {} differ\n", what);
    }
    for (const WriteRecord& w : check_writes_) {
        const uint8_t* want = &check_after_[w.at];
        if (std::memcmp(w.host, want, w.len) == 0) continue;
        size_t k = 0;
        while (w.host[k] == want[k]) k++;
        diff += fmt::format("  memory at host {} + {}: interpreter wrote {:#04x}, host code left {:#04x}\n",
                            static_cast<const void*>(w.host), k, want[k], w.host[k]);
        break;
    }
    if (!diff.empty()) {
        std::string report = fmt::format("jit-check: block at {:#x} ({} instructions, {} mode) differs:\n{}", b->lin,
                                          b->n, kModeNames[int(b->mode)], diff);
        // The block's instructions, disassembled from its physical bytes (one or two pages).
        uint64_t at = start.s.rip, off = 0;
        const uint64_t first_room = kPageSize - (b->phys & ~kPageMask);
        for (const Insn& i : b->insns) {
            uint8_t bytes[16] = {};
            for (unsigned k = 0; k < i.len; k++, off++) {
                const uint64_t pa = off < first_room ? b->phys + off : b->page2 + (off - first_room);
                const uint8_t* page = bus.page_ptr(pa & kPageMask, false);
                bytes[k] = page ? page[pa & ~kPageMask] : 0;
            }
            report += fmt::format("  {:#x}: {}\n", at, disassemble(bytes, i.len, b->mode, at));
            at += i.len;
        }
        report += "  (M86_JIT_DUMP=1 prints the translation)\n";
        if (on_jit_mismatch) {
            on_jit_mismatch(report);
        } else {
            fmt::print(stderr, "micro86: {}", report);
            std::abort();
        }
    }
    if (jit_faulted) std::longjmp(*outer, 1);  // on to Cpu::run's delivery, as without the check
    return jit_ran;
}

}  // namespace m86::cpu
