// Exception and interrupt delivery (SDM Vol. 3, chapter 6), external events, and the #DF rules.
//
// How events reach the guest:
//  - A handler detects a fault and calls Cpu::raise_fault (longjmp to Cpu::run). With
//    stop_on_exception (snippet/test environments) run() returns StopReason::Exception; otherwise
//    run() delivers it through the IVT (real mode) or IDT (protected/long mode) via deliver().
//  - Software interrupts (INT n, INT3, INTO, INT1) call deliver() from their handlers.
//  - Between blocks, service_events() takes the single-step trap of the previous instruction, INIT,
//    SIPI, NMI and the INTR pin (platform.h), honouring IF, the STI/MOV SS shadow and NMI blocking.
//  - A fault while delivering an event follows SDM Vol. 3, Table 6-5: benign first events let the
//    second be delivered serially; contributory + contributory or #PF + (#PF or contributory)
//    becomes #DF; a contributory fault or #PF while delivering #DF is a triple fault
//    (StopReason::Shutdown).
// deliver() commits the new CS/SS/RSP/RIP/RFLAGS only after the last access that can fault, so a
// fault during delivery leaves the interrupted state intact for the next attempt.
#include <fmt/format.h>

#include <algorithm>

#include "cpu/decode.h"
#include "cpu/sys.h"

namespace m86::cpu {

using namespace sys;

namespace {

constexpr uint64_t kDr6BS = 1u << 14;

// Exceptions that push an error code (SDM Vol. 3, Table 6-1; 21 = #CP).
bool has_error_code(uint8_t v) { return v == kDF || (v >= kTS && v <= kPF) || v == kAC || v == 21; }
// Contributory exceptions (SDM Vol. 3, Table 6-4).
bool contributory(uint8_t v) { return v == kDE || (v >= kTS && v <= kGP); }
// Fault-class exceptions: the pushed RFLAGS image has RF = 1 (SDM Vol. 3, 18.3.1.1). #DB here is
// only ever a trap (single step); #DF and #MC are aborts.
bool fault_class(uint8_t v) {
    switch (v) {
        case kDE: case kBR: case kUD: case kNM: case kTS: case kNP: case kSS: case kGP: case kPF:
        case kMF: case kAC: case kXM: case 20: case 21: return true;
        default: return false;
    }
}

}  // namespace

// ---- pins ----------------------------------------------------------------------------------------

void Cpu::set_intr(bool level) {
    if (level) {
        pending_.fetch_or(kPendIntr);
        exit_request = true;
    } else {
        pending_.fetch_and(~kPendIntr);
    }
}

void Cpu::raise_nmi() {
    pending_.fetch_or(kPendNmi);
    exit_request = true;
}

void Cpu::raise_init() {
    pending_.fetch_or(kPendInit);
    exit_request = true;
}

void Cpu::raise_sipi(uint8_t vector) {
    sipi_vector_ = vector;
    pending_.fetch_or(kPendSipi);
    exit_request = true;
}

// ---- the instruction boundary --------------------------------------------------------------------

void Cpu::service_events() {
    if (step_armed_) {
        // Single-step trap: TF was set at the start of the instruction that just completed
        // (SDM Vol. 3, 18.3.1.4). The pushed return address is the next instruction.
        step_armed_ = false;
        s.dr[6] |= kDr6BS;
        deliver(kDB, Event::Exception, kNoErrorCode, s.rip);
    }
    uint32_t p = pending_.load();
    if (p & kPendInit) {
        // INIT (SDM Vol. 3, 10.1): an AP then waits for a SIPI; the BSP restarts at the reset vector.
        pending_.fetch_and(~kPendInit);
        reset(true);
        return;
    }
    if (p & kPendSipi) {
        pending_.fetch_and(~kPendSipi);
        if (wait_for_sipi) {
            // Start-up: CS = VV00h, base VV000h, IP = 0 (SDM Vol. 3, 10.4.4.1).
            uint8_t v = sipi_vector_;
            s.seg[CS].sel = uint16_t(v << 8);
            s.seg[CS].base = uint64_t(v) << 12;
            s.rip = 0;
            wait_for_sipi = false;
            update_mode();
        }
    }
    if (wait_for_sipi || shutdown) return;
    if (icount < shadow_end_) {
        // Interrupt shadow: run the one shadowed instruction, then look again.
        slice_end_ = std::min(slice_end_, shadow_end_);
    } else if ((p & kPendNmi) && !nmi_blocked_) {
        pending_.fetch_and(~kPendNmi);
        deliver(kNMI, Event::Nmi, kNoErrorCode, s.rip);
        nmi_blocked_ = true;  // until the next IRET (SDM Vol. 3, 6.7.1)
    } else if ((p & kPendIntr) && (s.rflags & fl::IF)) {
        int v = platform ? platform->intr_acknowledge() : -1;
        if (v >= 0) deliver(uint8_t(v), Event::External, kNoErrorCode, s.rip);
    }
    if (s.rflags & fl::TF & trap_mask_) {
        // Trap after the next instruction: run exactly one.
        step_armed_ = true;
        slice_end_ = icount + 1;
    }
    if (p & kPendDebug) check_insn_breakpoints();
}

// ---- hardware breakpoints (SDM Vol. 3, 18.2 and 18.3) -------------------------------------------

namespace {
// DR7 enables instruction breakpoints: L/G bit of n set, R/W n = 00 (execution).
unsigned insn_bp_mask(uint64_t dr7) {
    unsigned m = 0;
    for (unsigned n = 0; n < 4; n++)
        if (((dr7 >> (2 * n)) & 3) && ((dr7 >> (16 + 4 * n)) & 3) == 0) m |= 1u << n;
    return m;
}
}  // namespace

void Cpu::debug_regs_changed() {
    if (insn_bp_mask(s.dr[7])) pending_.fetch_or(kPendDebug);
    else pending_.fetch_and(~kPendDebug);
}

// Before each instruction while instruction breakpoints are enabled: a match of the linear address
// of the next instruction (CS.base + RIP) with an enabled DRn raises #DB as a fault (DR6.Bn set;
// RF = 1 in the pushed RFLAGS so the handler's IRET can return to the instruction). RF = 1 suppresses
// the check for one instruction (18.3.1.1); the processor clears RF after that instruction, done
// here before it runs. Data breakpoints (R/W = 01, 11) and I/O breakpoints (10) are not implemented.
void Cpu::check_insn_breakpoints() {
    unsigned m = insn_bp_mask(s.dr[7]);
    if (!m) {
        pending_.fetch_and(~kPendDebug);  // e.g. after reset()
        return;
    }
    slice_end_ = std::min(slice_end_, icount + 1);
    if (s.rflags & fl::RF) {
        s.rflags &= ~fl::RF;
        return;
    }
    uint64_t lin = s.seg[CS].base + s.rip;
    if (mode_ != Mode::Long64) lin = uint32_t(lin);
    unsigned hit = 0;
    for (unsigned n = 0; n < 4; n++)
        if ((m >> n & 1) && (mode_ == Mode::Long64 ? s.dr[n] : uint32_t(s.dr[n])) == lin) hit |= 1u << n;
    if (!hit) return;
    s.dr[6] = (s.dr[6] & ~0xfull) | hit;
    if (stop_on_exception) raise_fault(kDB);
    s.rflags |= fl::RF;  // pushed image: RF = 1 (a fault); deliver() clears it in RFLAGS
    deliver(kDB, Event::Exception, kNoErrorCode, s.rip);
    // The handler's first instruction is checked too.
    check_insn_breakpoints();
}

bool Cpu::fault_during_delivery() {
    update_mode();  // a delivery or system access may have left tlb_ctx on the supervisor context
    Fault f = last_fault;
    int first = delivering_;
    Event kind = delivering_kind_;
    delivering_ = -1;
    if (first >= 0 && kind == Event::Exception) {
        // SDM Vol. 3, Table 6-5 "Conditions for Generating a Double Fault".
        uint8_t v1 = uint8_t(first), v2 = f.vector;
        bool bad2 = contributory(v2) || v2 == kPF;
        if (v1 == kDF && bad2) {
            shutdown = true;  // triple fault
            return false;
        }
        if ((contributory(v1) && contributory(v2)) || (v1 == kPF && bad2)) f = Fault{kDF, 0, 0};
    }
    pending_fault_ = f;
    fault_pending_ = true;
    return true;
}

// ---- delivery ------------------------------------------------------------------------------------

void Cpu::deliver(uint8_t vector, Event kind, uint32_t error_code, uint64_t return_rip) {
    // Snippet/test environments: an event stops the run like a fault (at the instruction).
    if (stop_on_exception) raise_fault(vector, kind == Event::Exception ? error_code : kNoErrorCode);
    sync_flags();
    delivering_ = vector;
    delivering_kind_ = kind;
    step_armed_ = false;
    if (mode_ == Mode::Real)
        deliver_real(vector, kind, return_rip);
    else
        deliver_protected(vector, kind, error_code, return_rip);
    delivering_ = -1;
    halted = false;
    next_rip = s.rip;  // from a handler (INT n): the run loop then keeps the handler's address
    exit_request = true;
}

// Real-address mode: the IVT (SDM Vol. 3, 21.1.4; INT n "Operation", REAL-ADDRESS-MODE).
void Cpu::deliver_real(uint8_t vector, Event, uint64_t return_rip) {
    uint32_t off = vector * 4u;
    if (off + 3 > s.idtr.limit) raise_fault(kGP, 0);
    uint16_t ip = sys_read<uint16_t>(*this, s.idtr.base + off);
    uint16_t cs = sys_read<uint16_t>(*this, s.idtr.base + off + 2);
    Stack st = current_stack(*this);
    st.push(*this, s.rflags & 0xffff, 2);
    st.push(*this, s.seg[CS].sel, 2);
    st.push(*this, return_rip & 0xffff, 2);
    set_sp(*this, st.sp, st.asz);
    s.rflags &= ~(fl::IF | fl::TF | fl::AC | fl::RF);
    s.seg[CS].sel = cs;
    s.seg[CS].base = uint64_t(cs) << 4;
    s.rip = ip;
    update_mode();
}

// Protected and IA-32e mode: interrupt and trap gates (SDM Vol. 3, 6.12 and 6.14; INT n
// "Operation"). Task gates (hardware task switching) are not implemented: #GP on the gate.
void Cpu::deliver_protected(uint8_t vector, Event kind, uint32_t err, uint64_t return_rip) {
    const bool lm = long_mode(*this);
    const bool soft = kind == Event::SoftInt || kind == Event::SoftException;
    const uint32_t ext = soft ? 0 : kErrExt;
    const uint32_t idt_err = vector * 8u | kErrIdt | ext;
    const unsigned cur = cpl(*this);

    // The gate.
    const unsigned gsize = lm ? 16 : 8;
    if (uint64_t(vector) * gsize + gsize - 1 > s.idtr.limit) raise_fault(kGP, idt_err);
    Desc g;
    g.lo = sys_read<uint64_t>(*this, s.idtr.base + vector * gsize);
    if (lm) g.hi = sys_read<uint64_t>(*this, s.idtr.base + vector * gsize + 8);
    unsigned type = g.type();
    bool type_ok = lm ? (type == dt::kIntGate32 || type == dt::kTrapGate32)
                      : (type == dt::kTaskGate || type == dt::kIntGate16 || type == dt::kTrapGate16 ||
                         type == dt::kIntGate32 || type == dt::kTrapGate32);
    if (g.s() || !type_ok) raise_fault(kGP, idt_err);
    if (soft && g.dpl() < cur) raise_fault(kGP, idt_err);
    if (!g.present()) raise_fault(kNP, idt_err);
    if (type == dt::kTaskGate) {
        log_unsupported("delivery through a task gate (hardware task switch)");
        raise_fault(kGP, idt_err);
    }
    const bool gate32 = lm || (type & 8);
    const bool trap_gate = type & 1;

    // The handler's code segment.
    uint16_t sel = g.gate_sel();
    uint32_t sel_err = (sel & 0xfffc) | ext;
    if ((sel & 0xfffc) == 0) raise_fault(kGP, ext);
    Desc cd;
    if (!read_desc(*this, sel, cd)) raise_fault(kGP, sel_err);
    if (!cd.is_code() || cd.dpl() > cur) raise_fault(kGP, sel_err);
    if (!cd.present()) raise_fault(kNP, sel_err);
    if (lm && !(cd.l() && !cd.db())) raise_fault(kGP, sel_err);
    uint64_t target = lm ? g.gate_off64() : gate32 ? g.gate_off32() : (g.gate_off32() & 0xffff);
    const unsigned new_cpl = cd.conforming() ? cur : cd.dpl();
    if (!lm && target > cd.limit()) raise_fault(kGP, ext);

    // The handler's stack.
    Stack st;
    SegReg new_ss = s.seg[SS];
    const bool switch_stack = new_cpl < cur;
    uint64_t old_rflags = s.rflags;
    if (kind == Event::Exception && fault_class(vector))
        old_rflags |= fl::RF;
    else if (soft)
        old_rflags &= ~fl::RF;
    if (lm) {
        // IA-32e: RSP from the TSS (RSPn on a privilege change, ISTn if the gate names one), aligned
        // to 16; SS becomes a null selector with RPL = new CPL (SDM Vol. 3, 6.14.2-6.14.5).
        uint64_t rsp = s.gpr[RSP];
        if (g.gate_ist())
            rsp = tss_read(*this, 0x24 + (g.gate_ist() - 1) * 8, 8, ext);
        else if (switch_stack)
            rsp = tss_read(*this, 4 + new_cpl * 8, 8, ext);
        // The whole frame must be canonical, not only RSP: #SS before anything is pushed.
        const bool with_err = kind == Event::Exception && has_error_code(vector);
        const uint64_t top = rsp & ~15ull, bottom = top - (with_err ? 48 : 40);
        if (!canonical(*this, rsp) || !canonical(*this, bottom)) raise_fault(kSS, ext);
        st = Stack{0, top, 8, new_cpl < 3};
        if (switch_stack)
            new_ss = SegReg{uint16_t(new_cpl), 0, 0xffffffff,
                            uint16_t(SegReg::kP | SegReg::kS | 0x3 | (new_cpl << 5) | SegReg::kDB | SegReg::kG)};
        st.push(*this, s.seg[SS].sel, 8);
        st.push(*this, s.gpr[RSP], 8);
        st.push(*this, old_rflags, 8);
        st.push(*this, s.seg[CS].sel, 8);
        st.push(*this, return_rip, 8);
        if (with_err) st.push(*this, err, 8);
    } else {
        const unsigned w = gate32 ? 4 : 2;
        if (switch_stack) {
            // Inner stack from the TSS (SDM Vol. 3, 7.2.1): 32-bit TSS ESPn at 4+8n, SSn at 8+8n;
            // 16-bit TSS SPn at 2+4n, SSn at 4+4n.
            bool tss32 = (s.tr.attr & 8) != 0;
            uint32_t nsp = tss32 ? uint32_t(tss_read(*this, 4 + new_cpl * 8, 4, ext))
                                 : uint32_t(tss_read(*this, 2 + new_cpl * 4, 2, ext));
            uint16_t nss = uint16_t(tss32 ? tss_read(*this, 8 + new_cpl * 8, 2, ext)
                                          : tss_read(*this, 4 + new_cpl * 4, 2, ext));
            uint32_t ss_err = (nss & 0xfffc) | ext;
            if ((nss & 0xfffc) == 0) raise_fault(kTS, ext);
            if ((nss & 3) != new_cpl) raise_fault(kTS, ss_err);
            Desc sd;
            if (!read_desc(*this, nss, sd)) raise_fault(kTS, ss_err);
            if (sd.dpl() != new_cpl || !sd.writable()) raise_fault(kTS, ss_err);
            if (!sd.present()) raise_fault(kSS, ss_err);
            set_accessed(*this, nss, sd);
            new_ss = seg_from_desc(nss, sd);
            st = Stack{new_ss.base, nsp, sd.db() ? 4u : 2u, new_cpl < 3};
            st.push(*this, s.seg[SS].sel, w);
            st.push(*this, s.gpr[RSP], w);
        } else {
            st = current_stack(*this);
            st.sup = new_cpl < 3;
        }
        st.push(*this, old_rflags, w);
        st.push(*this, s.seg[CS].sel, w);
        st.push(*this, return_rip, w);
        if (kind == Event::Exception && has_error_code(vector)) st.push(*this, err, w);
    }
    set_accessed(*this, sel, cd);

    // Commit.
    if (switch_stack) s.seg[SS] = new_ss;
    set_sp(*this, st.sp, st.asz);
    s.seg[CS] = seg_from_desc(uint16_t((sel & 0xfffc) | new_cpl), cd);
    s.rip = target;
    s.rflags &= ~(fl::TF | fl::NT | fl::RF | fl::VM);
    if (!trap_gate) s.rflags &= ~fl::IF;
    update_mode();
}

// ---- stack-segment faults for non-canonical addresses (SDM Vol. 3, 6.15 "Interrupt 12") ----------

namespace {
bool canonical_addr(const CpuState& s, uint64_t a) {
    unsigned sh = (s.cr4 & cr4::LA57) ? 7 : 16;
    return uint64_t(int64_t(a << sh) >> sh) == a;
}
}  // namespace

// An implicit stack access (PUSH/POP/CALL/RET/ENTER/LEAVE...) with a non-canonical address in
// 64-bit mode raises #SS(0). Only the memory slow paths call this (a non-canonical address never
// hits the TLB), so the fast path is unchanged. Outside 64-bit mode addresses are 32-bit: canonical.
void Cpu::stack_canonical(uint64_t lin, unsigned size) {
    if (mode_ != Mode::Long64) return;
    if (!canonical_addr(s, lin) || !canonical_addr(s, lin + size - 1)) raise_fault(kSS, 0);
}

// The page walk found a non-canonical data address. It is #SS(0) if the access came through a
// memory operand that references SS (base RSP/RBP or an SS override), else #GP(0) (SDM Vol. 3,
// 6.15 "Interrupt 12" and "Interrupt 13"). Which operand it was is not known on the memory path, so
// the current instruction is decoded again here (a fault path: cost does not matter).
void Cpu::raise_noncanonical(uint64_t lin) {
    uint8_t vec = kGP;
    if (mode_ == Mode::Long64 && delivering_ < 0 && !implicit_access && canonical_addr(s, s.rip)) {
        uint8_t buf[15];
        uint64_t page;
        const uint8_t* p = fetch_ptr(s.rip, &page);  // the instruction was just fetched from here
        size_t in_page = kPageSize - (s.rip & ~kPageMask), first = std::min<size_t>(in_page, 15);
        std::memcpy(buf, p + (s.rip & ~kPageMask), first);
        size_t avail = first;
        uint64_t next = (s.rip & kPageMask) + kPageSize;
        if (first < 15 && canonical_addr(s, next)) {
            const uint8_t* p2 = fetch_ptr(next, &page);
            std::memcpy(buf + first, p2, 15 - first);
            avail = 15;
        }
        Insn insn;
        if (decode_one(buf, avail, mode_, insn) && (insn.info & info::kSsMem)) {
            uint64_t op = ea(*this, insn);  // registers are still those at the instruction's start
            if (lin - op < kPageSize || op - lin < kPageSize) vec = kSS;
        }
    }
    raise_fault(vec, 0);
}

}  // namespace m86::cpu
