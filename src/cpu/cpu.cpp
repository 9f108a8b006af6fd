// The interpreter's run loop, fault unwinding, mode tracking and condition evaluation.
#include "cpu/cpu.h"

#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "cpu/decode.h"

namespace m86::cpu {

Cpu::Cpu(Bus& b, std::shared_ptr<CodeCache> code) : bus(b), code_(code ? std::move(code) : make_code_cache()) {
    code_->attach(this);
    if (code_->translator()) jit_threshold_ = code_->threshold();
    reset();
}

void Cpu::reset(bool init_only) {
    // SDM Vol. 3, Table 10-1 "IA-32 and Intel 64 Processor States Following Power-up, Reset, or
    // INIT". INIT keeps the x87/SSE state, CR0.CD/NW, the MSRs other than EFER, and the caches.
    CpuState keep = s;
    s = CpuState{};
    if (init_only) {
        s.x87 = keep.x87;
        for (int r = 0; r < 16; r++) s.xmm[r] = keep.xmm[r];
        s.mxcsr = keep.mxcsr;
        s.xcr0 = keep.xcr0;
        s.cr0 = (keep.cr0 & (cr0::CD | cr0::NW)) | cr0::ET;
        s.star = keep.star, s.lstar = keep.lstar, s.cstar = keep.cstar, s.sfmask = keep.sfmask;
        s.kernel_gs_base = keep.kernel_gs_base;
        s.sysenter_cs = keep.sysenter_cs, s.sysenter_esp = keep.sysenter_esp, s.sysenter_eip = keep.sysenter_eip;
        s.tsc_aux = keep.tsc_aux, s.pat = keep.pat, s.apic_base = keep.apic_base;
        s.tsc_offset = keep.tsc_offset, s.tsc_adjust = keep.tsc_adjust, s.misc_enable = keep.misc_enable;
        s.mtrr_def_type = keep.mtrr_def_type;
        for (int k = 0; k < 11; k++) s.mtrr_fixed[k] = keep.mtrr_fixed[k];
        for (int k = 0; k < 16; k++) s.mtrr_var[k] = keep.mtrr_var[k];
    } else {
        // Power-up x87 state: FCW 0040H, FSW 0, all registers +0.0 with tag "zero" (5555H).
        s.x87.fcw = 0x0040;
        s.x87.ftw = 0x5555;
    }
    lf = LazyFlags{};
    halted = false;
    shutdown = false;
    wait_for_sipi = !is_bsp;
    nmi_blocked_ = false;
    shadow_end_ = 0;
    step_armed_ = false;
    delivering_ = -1;
    fault_pending_ = false;
    pae_pdpte_loaded = false;
    // INIT keeps a SIPI that arrived with it (the board may post INIT and SIPI back to back).
    pending_.fetch_and(init_only ? ~kPendInit : ~(kPendInit | kPendSipi | kPendNmi | kPendStop));
    // Segment registers (SDM Vol. 3, Table 10-1): present, read/write data, accessed;
    // CS = F000 with base FFFF0000.
    for (auto& sr : s.seg) {
        sr.sel = 0;
        sr.base = 0;
        sr.limit = 0xffff;
        sr.attr = SegReg::kP | SegReg::kS | 0x3;  // accessed read/write data
    }
    s.seg[CS].sel = 0xf000;
    s.seg[CS].base = 0xffff0000;
    s.seg[CS].attr = SegReg::kP | SegReg::kS | 0xb;  // accessed execute/read code
    s.rip = 0xfff0;
    s.ldtr.attr = SegReg::kP | 0x2;
    s.tr.attr = SegReg::kP | 0xb;
    s.gpr[RDX] = 0x00a00f11;  // family/model/stepping, as after RESET (matches CPUID leaf 1)
    update_mode();
    tlb_flush();
}

Cpu::~Cpu() { code_->detach(this); }

void log_unimplemented(uint16_t mnemonic, const char* why) {
    static std::mutex mu;
    static std::set<uint16_t> seen;
    std::lock_guard<std::mutex> lock(mu);
    if (!seen.insert(mnemonic).second) return;
    fmt::print(stderr, "micro86: {} {} (raising #UD)\n",
               ZydisMnemonicGetString(ZydisMnemonic(mnemonic)) ?: "?", why);
}

void Cpu::update_mode() {
    const SegReg& cs = s.seg[CS];
    if (!(s.cr0 & cr0::PE))
        mode_ = Mode::Real;
    else if (s.efer & efer::LMA)
        mode_ = (cs.attr & SegReg::kL) ? Mode::Long64 : (cs.attr & SegReg::kDB) ? Mode::Compat32 : Mode::Compat16;
    else
        mode_ = (cs.attr & SegReg::kDB) ? Mode::Prot32 : Mode::Prot16;
    unsigned cpl = mode_ == Mode::Real ? 0 : (s.rflags & fl::VM) ? 3 : (cs.sel & 3);
    tlb_ctx = cpl == 3                                              ? kCtxUser
              : (s.cr4 & cr4::SMAP) && (s.rflags & fl::AC) ? kCtxSupAC
                                                                    : kCtxSup;
    implicit_access = false;
    bool ac = cpl == 3 && (s.cr0 & cr0::AM) && (s.rflags & fl::AC);
    if (ac && !ac_check) {
        // Entering alignment-checking mode: drop the user context's entries (they bypass the check).
        for (auto& e : tlb_r[kCtxUser]) e = TlbEntry{};
        for (auto& e : tlb_w[kCtxUser]) e = TlbEntry{};
    }
    ac_check = ac;
    if (mode_ == Mode::Long64) return;
    // Legacy-mode segment checks for lin_of (mem.h): valid offsets [seg_lo, seg_hi].
    bool pm = mode_ != Mode::Real && !(s.rflags & fl::VM);
    for (unsigned i = 0; i < kNumSegs; i++) {
        const SegReg& r = s.seg[i];
        if (pm && !(r.attr & SegReg::kP)) {
            seg_lo[i] = 1, seg_hi[i] = 0;  // unusable (null selector): every access faults
        } else if ((r.attr & SegReg::kS) && (r.attr & 0xc) == 0x4) {
            seg_lo[i] = uint64_t(r.limit) + 1;  // expand-down data (SDM Vol. 3, 3.4.5.1)
            seg_hi[i] = (r.attr & SegReg::kDB) ? 0xffffffffu : 0xffffu;
        } else {
            seg_lo[i] = 0, seg_hi[i] = r.limit;
        }
        seg_wlo[i] = seg_lo[i], seg_whi[i] = seg_hi[i];
        // Type checks on data accesses (SDM Vol. 3, 5.5 and 5.6): in protected mode a code segment
        // or a read-only data segment cannot be written, an execute-only code segment not read.
        if (pm && (r.attr & SegReg::kS)) {
            bool code = r.attr & 0x8, rw = r.attr & 0x2;
            if (code || !rw) seg_wlo[i] = 1, seg_whi[i] = 0;
            if (code && !rw) seg_lo[i] = 1, seg_hi[i] = 0;
        }
    }
    seg_lo[kSegFlat] = 0, seg_hi[kSegFlat] = ~0ull;
    seg_wlo[kSegFlat] = 0, seg_whi[kSegFlat] = ~0ull;
}

void Cpu::raise_seg_fault(uint8_t seg) { raise_fault(seg == SS ? kSS : kGP, 0); }

void Cpu::raise_fault(uint8_t vector, uint32_t error_code, uint64_t cr2) {
    last_fault = Fault{vector, error_code, cr2};
    if (vector == kPF) s.cr2 = cr2;
    if (!fault_jmp_) {
        // A fault outside run() (e.g. a test poking memory) is a programming error in the caller.
        fmt::print(stderr, "micro86: guest fault {} outside the run loop\n", vector);
        std::abort();
    }
    std::longjmp(*fault_jmp_, 1);
}

bool Cpu::cond(unsigned cc) const {
    switch (cc & 15) {
        case 0: return cond<0>();
        case 1: return cond<1>();
        case 2: return cond<2>();
        case 3: return cond<3>();
        case 4: return cond<4>();
        case 5: return cond<5>();
        case 6: return cond<6>();
        case 7: return cond<7>();
        case 8: return cond<8>();
        case 9: return cond<9>();
        case 10: return cond<10>();
        case 11: return cond<11>();
        case 12: return cond<12>();
        case 13: return cond<13>();
        case 14: return cond<14>();
        default: return cond<15>();
    }
}

// ---- block lookup --------------------------------------------------------------------------------

namespace {
inline unsigned jump_index(uint64_t lin) { return unsigned(lin ^ (lin >> kJumpBits)) & (kJumpSize - 1); }
}  // namespace

void Cpu::flush_jump_cache(bool keep_global) {
    auto clear = [this](FillLog<512>& log) {
        for (unsigned k = 0; k < log.n; k++) jump_[log.id[k] >> kJumpBits][log.id[k] & (kJumpSize - 1)] = JumpEntry{};
        log.clear();
    };
    if (keep_global && !jump_log_[0].full) {
        clear(jump_log_[0]);
    } else if (jump_log_[0].full || jump_log_[1].full) {
        for (auto& ctx : jump_)
            for (auto& e : ctx) e = JumpEntry{};
        jump_log_[0].clear();
        jump_log_[1].clear();
    } else {
        clear(jump_log_[0]);
        clear(jump_log_[1]);
    }
    code_gen_ = code_->generation();
    link_epoch_ = code_->new_epoch();  // cross-page links made before are void
}

void Cpu::scrub_jump_cache() {
    auto scrub = [](JumpEntry& e) {
        if (e.block && !e.block->valid) e = JumpEntry{};
    };
    if (jump_log_[0].full || jump_log_[1].full) {
        for (auto& ctx : jump_)
            for (auto& e : ctx) scrub(e);
    } else {
        for (auto& log : jump_log_)
            for (unsigned k = 0; k < log.n; k++) scrub(jump_[log.id[k] >> kJumpBits][log.id[k] & (kJumpSize - 1)]);
    }
    code_gen_ = code_->generation();
    link_epoch_ = code_->new_epoch();  // cross-page links may lead to retired blocks
}

Block* Cpu::find_block(uint64_t lin, uint64_t tag) {
    JumpEntry& e = jump_[tlb_ctx][jump_index(lin)];
    if (e.tag == tag) [[likely]]
        return e.block;
    return find_block_slow(lin, e);
}

// Remember `to` as a successor of `from` (which ran from linear page from_page), see BlockLink.
void Cpu::link_block(Block* from, uint64_t from_page, uint64_t lin, uint64_t tag, Block* to) {
    bool same_page = (lin & kPageMask) == from_page && to->page2 == 1;
    unsigned k = from->link[0].tag == tag ? 0 : from->link[1].tag == tag ? 1 : (from->link_victim ^= 1);
    from->link[k] = BlockLink{tag, same_page ? 0 : link_epoch_ | tlb_ctx, to};
}

Block* Cpu::find_block_slow(uint64_t lin, JumpEntry& e) {
    uint64_t page;
    const uint8_t* p = fetch_ptr(lin, &page);
    bool global = xlat_global;  // the entry may survive MOV CR3 (not for blocks that cross a page)
    uint64_t phys = page | (lin & ~kPageMask);
    Block* b = code_->find(phys, mode_);
    if (b && b->page2 != 1) {
        // A block whose (only) instruction continues on the next page was decoded where the next
        // linear page mapped b->page2; fetching the rest of the instruction must give the same page
        // (the same physical page may be mapped elsewhere, next to another page).
        uint64_t page2;
        fetch_ptr((lin & kPageMask) + kPageSize, &page2);
        if (page2 != b->page2) b = nullptr;  // decode again (insert() retires the old block)
    }
    if (!b) {
        auto nb = std::make_unique<Block>();
        nb->lin = lin;
        nb->phys = phys;
        nb->mode = mode_;
        constexpr size_t kMaxInsns = 64;
        uint64_t at = lin;
        for (;;) {
            size_t in_page = kPageSize - (at & ~kPageMask);
            uint8_t buf[15];
            const uint8_t* bytes = p + (at & ~kPageMask);
            size_t avail = std::min<size_t>(in_page, 15);
            if (in_page < 15) {
                // The instruction may cross into the next page: fetch that page too. If that
                // faults, and this is not the block's first instruction, end the block before it
                // so the fault is raised when (and if) the instruction is reached.
                std::memcpy(buf, bytes, in_page);
                Insn probe;
                if (!decode_one(bytes, in_page, mode_, probe) || probe.len > in_page) {
                    if (!nb->insns.empty()) {
                        // try fetching the next page only from the block's first instruction
                        break;
                    }
                    uint64_t page2;
                    const uint8_t* p2 = fetch_ptr(at + in_page, &page2);
                    std::memcpy(buf + in_page, p2, 15 - in_page);
                    nb->page2 = page2;
                    bytes = buf;
                    avail = 15;
                }
            }
            Insn insn;
            decode_one(bytes, avail, mode_, insn);
            if (insn.len == 0) insn.len = 1;  // undecodable: #UD at this address
            nb->insns.push_back(insn);
            nb->n++;
            at += insn.len;
            if ((insn.info & info::kEndsBlock) || nb->insns.size() >= kMaxInsns || nb->page2 != 1 ||
                (at & ~kPageMask) == 0)
                break;
        }
        const Insn& last = nb->insns.back();
        nb->chains = (last.info & info::kNearBranch) || !(last.info & info::kEndsBlock);
        // Stores the block and write-protects its page(s) in every CPU's write TLB.
        b = code_->insert(std::move(nb));
        if (code_->generation() != code_gen_) code_->scrub_jump_caches();  // insert() retired a block
    }
    // Logged at every fill (a replaced entry may be listed twice: a flush then drops more than
    // needed, which is allowed), in the class of its translation.
    jump_log_[global && b->page2 == 1].add(unsigned(&e - &jump_[0][0]));  // = ctx << kJumpBits | index
    e = JumpEntry{lin << 3 | uint64_t(mode_), b};
    return b;
}

void Cpu::code_page_written(uint64_t page) {
    side_effect();  // (the JIT checker cannot undo an invalidation: that block runs unchecked)
    code_->invalidate_page(page);
    exit_request = true;  // the running block may be stale now
}

// ---- run loop ------------------------------------------------------------------------------------

StopReason Cpu::run_blocks(uint64_t limit) {
    // The block run last, when its successor may be linked to it (it ran to its end, without an
    // exit request, and ends with a near branch or runs into the next block), and its linear page.
    Block* prev = nullptr;
    uint64_t prev_page = 0;
    while (icount < limit) {
        if (yield_) [[unlikely]] {
            yield_ = false;
            if (return_on_yield) return halted ? StopReason::Halt : StopReason::Limit;
        }
        slice_end_ = limit;
        // External events, single-step traps and interrupt shadows are looked at between blocks
        // (exceptions.cpp); service_events may shorten the next slice to one instruction.
        // (With stop_on_exception, the snippet/test environments, TF does not single-step.)
        // (An INTR the guest masks with IF = 0 waits without a look: a guest that runs long with
        // interrupts off, like the kernel's decompressor while the PIT's interrupt is pending,
        // keeps its block links.)
        uint32_t events = pending_.load(std::memory_order_relaxed);
        if (!(s.rflags & fl::IF)) events &= ~kPendIntr;
        if (events | (s.rflags & fl::TF & trap_mask_) | step_armed_) [[unlikely]] {
            if (pending_.load() & kPendStop) {
                pending_.fetch_and(~kPendStop);
                return StopReason::ExitRequest;
            }
            service_events();
            if (shutdown) return StopReason::Shutdown;
            prev = nullptr;
        }
        if (halted || wait_for_sipi) return StopReason::Halt;
        uint64_t lin = s.seg[CS].base + s.rip;
        if (mode_ != Mode::Long64) {
            if (s.rip > s.seg[CS].limit) raise_fault(kGP, 0);  // CS limit (SDM Vol. 3, 5.3)
            lin = uint32_t(lin);
        }
        // Blocks retired since the jump cache was filled (by any CPU sharing the code cache)? Then
        // every CPU forgets them, and the retired blocks are freed: no CPU is inside one between
        // blocks (all vCPUs share this host thread).
        if (code_->generation() != code_gen_) [[unlikely]] {
            code_->scrub_jump_caches();
            code_->collect();
            prev = nullptr;
        }
        const uint64_t tag = lin << 3 | uint64_t(mode_);
        Block* b;
        if (prev) {
            const uint64_t gen = link_epoch_ | tlb_ctx;
            const BlockLink* l = prev->link;
            if (l[0].tag == tag && (l[0].gen == 0 || l[0].gen == gen)) {
                b = l[0].to;
            } else if (l[1].tag == tag && (l[1].gen == 0 || l[1].gen == gen)) {
                b = l[1].to;
            } else {
                b = find_block(lin, tag);
                link_block(prev, prev_page, lin, tag, b);
            }
        } else {
            b = find_block(lin, tag);
        }
        const Insn* i = b->insns.data();
        const uint32_t n = b->n;
        const uint64_t room = slice_end_ - icount;
        exit_request = false;
        if (b->heat < jit_threshold_ && ++b->heat == jit_threshold_) [[unlikely]] {
            b->host = code_->translator()->translate(*this, *b);
            if (b->host) b->translator = code_->translator();
        }
        if (b->host && room >= n) {
            // Host code (src/jit): the same steps as the loop below, with the handlers called
            // directly. It may go on into the host code of linked blocks after this one (the
            // checks at the top of this loop and the link lookup done in host code): it reports
            // the block it ran last, and how many of that block's instructions ran.
            jit_block_ = b;
            jit_lin_ = lin;
            ++host_entries;
            const uint32_t ran = jit_check ? run_host_checked(b) : b->host(*this);
            b = jit_block_;
            lin = jit_lin_;
            i = b->insns.data() + ran;
        } else {
            const Insn* end = i + (room < n ? room : n);
            do {
                next_rip = s.rip + i->len;
                i->fn(*this, *i);
                s.rip = next_rip;
                ++icount;
            } while (++i != end && !exit_request);
        }
        prev = (b->chains && !exit_request && i == b->insns.data() + b->n) ? b : nullptr;
        prev_page = lin & kPageMask;
    }
    return halted ? StopReason::Halt : StopReason::Limit;
}

StopReason Cpu::run(uint64_t max_instructions) {
    if (shutdown) return StopReason::Shutdown;
    const uint64_t limit = icount + max_instructions;
    trap_mask_ = stop_on_exception ? 0 : fl::TF;
    for (;;) {
        std::jmp_buf jb;
        fault_jmp_ = &jb;
        if (setjmp(jb) == 0) {
            if (fault_pending_) {
                // A fault to deliver (or a #DF built from two of them): see fault_during_delivery.
                fault_pending_ = false;
                deliver(pending_fault_.vector, Event::Exception, pending_fault_.error_code, s.rip);
            }
            StopReason r = run_blocks(limit);
            fault_jmp_ = nullptr;
            sync_flags();
            return r;
        }
        fault_jmp_ = nullptr;
        sync_flags();
        step_armed_ = false;
        if (stop_on_exception) {
            delivering_ = -1;
            update_mode();
            return StopReason::Exception;
        }
        if (!fault_during_delivery()) return StopReason::Shutdown;
        // A delivered exception counts as a step, so a handler that faults at once cannot hang
        // run(); the pending fault is then delivered by the next run().
        if (++icount >= limit) return StopReason::Limit;
    }
}

}  // namespace m86::cpu
