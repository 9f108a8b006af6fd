// Segmentation: descriptor fetches, segment register loads with their protection checks, stacks
// with explicit widths, far JMP/CALL/RET (with call gates) and IRET (SDM Vol. 3, chapters 3 and 5;
// Vol. 2 instruction pages "Operation").
//
// Every function checks first and commits last (see sys.h). Not implemented: hardware task
// switches (JMP/CALL to a TSS or task gate, IRET with NT = 1 outside long mode) raise #GP with the
// selector (or 0) after logging once; virtual-8086 mode cannot be entered (IRET to VM = 1 raises
// #GP(0)).
#include <fmt/format.h>

#include <mutex>
#include <set>

#include "cpu/sys.h"

namespace m86::cpu::sys {

namespace {

constexpr uint64_t kDescAccessed = 1ull << 40;

uint64_t desc_addr(const Cpu& c, uint16_t sel) {
    uint64_t base = (sel & 4) ? c.s.ldtr.base : c.s.gdtr.base;
    return base + (sel & 0xfff8);
}

// The IP a far transfer loads: truncated to the operand size outside 64-bit targets.
uint64_t ip_of(uint64_t off, unsigned osz) { return osz == 2 ? off & 0xffff : osz == 4 ? uint32_t(off) : off; }

// The descriptor a far transfer's selector names: #GP(0) for a null selector, #GP(selector) when
// it lies outside its descriptor table.
Desc read_far_desc(Cpu& c, uint16_t sel) {
    const uint32_t e = sel & 0xfffc;
    if (e == 0) c.raise_fault(kGP, 0);
    Desc d;
    if (!read_desc(c, sel, d)) c.raise_fault(kGP, e);
    return d;
}

void check_ip(Cpu& c, const Desc& d, uint64_t ip) {
    if (!(long_mode(c) && d.l()) && ip > d.limit()) c.raise_fault(kGP, 0);
    if (long_mode(c) && d.l() && !canonical(c, ip)) c.raise_fault(kGP, 0);
}

// Code-segment checks shared by far JMP/CALL to a code segment, then the target offset `ip` (SDM
// Vol. 2, JMP "Operation").
void check_code_direct(Cpu& c, uint16_t sel, const Desc& d, unsigned cur, uint64_t ip) {
    uint32_t e = sel & 0xfffc;
    if (d.conforming()) {
        if (d.dpl() > cur) c.raise_fault(kGP, e);
    } else if ((sel & 3) > cur || d.dpl() != cur) {
        c.raise_fault(kGP, e);
    }
    if (!d.present()) c.raise_fault(kNP, e);
    if (long_mode(c) && d.l() && d.db()) c.raise_fault(kGP, e);
    check_ip(c, d, ip);
}

// The code segment a call gate names (SDM Vol. 2, CALL "Operation", CALL-GATE).
void check_gate_target(Cpu& c, uint16_t tsel, Desc& td, unsigned cur) {
    uint32_t e = tsel & 0xfffc;
    td = read_far_desc(c, tsel);
    if (!td.is_code() || td.dpl() > cur) c.raise_fault(kGP, e);
    if (!td.present()) c.raise_fault(kNP, e);
    if (long_mode(c) && !(td.l() && !td.db())) c.raise_fault(kGP, e);
}

// A call gate named by a far JMP or CALL (`d`, read through `sel`; SDM Vol. 2, JMP and CALL
// "Operation", CALL-GATE): in IA-32e mode it must be a 16-byte 64-bit gate (re-read into `d`;
// Vol. 3, 5.8.3.1); its DPL must admit CPL and RPL; it must be present; then the code segment it
// names. The target offset is not checked yet: JMP has a privilege check to make first.
struct GateTarget {
    uint16_t sel;    // the code segment selector in the gate
    Desc d;          // its descriptor
    uint64_t ip;     // the entry point
    unsigned width;  // the gate's size, 2, 4 or 8 bytes: also the width of what CALL pushes
};
GateTarget check_call_gate(Cpu& c, uint16_t sel, Desc& d, unsigned cur) {
    const uint32_t e = sel & 0xfffc;
    const bool lm = long_mode(c);
    if (lm) {
        if (d.type() != dt::kCallGate32 || !read_desc(c, sel, d, true)) c.raise_fault(kGP, e);
        if (((d.hi >> 40) & 0x1f) != 0) c.raise_fault(kGP, e);  // upper type field must be 0
    }
    if (d.dpl() < cur || d.dpl() < (sel & 3)) c.raise_fault(kGP, e);
    if (!d.present()) c.raise_fault(kNP, e);
    GateTarget t;
    t.sel = d.gate_sel();
    check_gate_target(c, t.sel, t.d, cur);
    t.width = lm ? 8 : d.type() == dt::kCallGate32 ? 4 : 2;
    t.ip = lm ? d.gate_off64() : t.width == 4 ? d.gate_off32() : d.gate_off32() & 0xffff;
    return t;
}

// Load CS for a transfer that stays in protected mode and commit next_rip.
void commit_cs(Cpu& c, uint16_t sel, const Desc& d, uint64_t ip) {
    c.s.seg[CS] = seg_from_desc(sel, d);
    c.next_rip = ip;
    c.update_mode();
    c.exit_request = true;
}

// The same in real-address mode: CS gets the selector and base selector * 16; its cached limit
// and attributes stay.
void commit_real_cs(Cpu& c, uint16_t sel, uint64_t ip) {
    c.s.seg[CS].sel = sel;
    c.s.seg[CS].base = uint64_t(sel) << 4;
    c.next_rip = ip;
    c.update_mode();
    c.exit_request = true;
}

// JMP/CALL to a TSS or task gate: #GP in IA-32e mode, which has no task switches (SDM Vol. 3,
// 7.7); elsewhere a hardware task switch, which micro86 does not implement.
[[noreturn]] void task_switch(Cpu& c, uint16_t sel, bool call) {
    if (!long_mode(c))
        log_unsupported(call ? "far CALL to a TSS or task gate (hardware task switch)"
                             : "far JMP to a TSS or task gate (hardware task switch)");
    c.raise_fault(kGP, sel & 0xfffc);
}

// After a return to an outer privilege level, the data segment registers the new CPL may not use
// are nulled (SDM Vol. 2, RET and IRET "Operation", RETURN-TO-OUTER-PRIVILEGE-LEVEL: for each of ES,
// FS, GS and DS, if it points to a data or non-conforming code segment whose DPL, "stored in the
// hidden part of the segment register", is below the new CPL, its selector becomes 0).
//
// A register that holds a null selector (any RPL: 0..3) is not skipped. micro86 reports
// GenuineIntel, and on Intel processors a register loaded with a null selector is unusable and
// counts as DPL 0 here, so the rule nulls it on every return to CPL 1..3: a null selector with RPL 3 that the
// kernel left in DS reads as 0 in user mode. Linux relies on this (commit ad546940b599, "x86/ia32:
// Leave NULL selector values 0~3 unchanged": "IRET zeros ES, FS, GS, and DS segment registers if
// any of them is found to have any nonzero NULL selector value"). Bochs models it the same way
// (load_null_selector() gives DPL 0, validate_seg_reg()). AMD's APM has the same rule in its IRET
// and RET pseudo-code, but AMD processors without "NullSelectorClearsBase" (CPUID 8000_0021h EAX
// bit 6) keep the previous hidden attributes when a null selector is loaded, so there the outcome
// depends on what the register held before: that behaviour is not modelled.
//
// Only the selector and the attributes change (the register becomes unusable); the base stays, as
// in Bochs and QEMU (the SDM only says the selector becomes 0). QEMU's TCG differs in one point: it
// leaves FS and GS alone when they hold a null selector (a comment there says it does not know what
// hardware does); micro86 follows the SDM and the Linux commit above, which name all four.
void null_inaccessible_segs(Cpu& c, unsigned new_cpl) {
    for (uint8_t sg : {ES, DS, FS, GS}) {
        SegReg& r = c.s.seg[sg];
        const bool usable = r.attr & SegReg::kP;  // null selectors (null_seg) have attributes 0
        const unsigned dpl = usable ? r.dpl() : 0;
        const bool conforming_code = usable && (r.attr & SegReg::kS) && (r.attr & 8) && (r.attr & 4);
        if (!conforming_code && dpl < new_cpl) {
            r.sel = 0;
            r.attr = 0;
        }
    }
}

// The SS a return to an outer level (or IRETQ) loads (SDM Vol. 2, IRET "Operation").
SegReg check_return_ss(Cpu& c, uint16_t ss, unsigned new_cpl, bool to_64bit) {
    uint32_t e = ss & 0xfffc;
    if (e == 0) {
        if (long_mode(c) && to_64bit && new_cpl != 3)
            return SegReg{ss, 0, 0xffffffff,
                          uint16_t(SegReg::kP | SegReg::kS | 0x3 | (new_cpl << 5) | SegReg::kDB | SegReg::kG)};
        c.raise_fault(kGP, 0);
    }
    if ((ss & 3) != new_cpl) c.raise_fault(kGP, e);
    Desc d;
    if (!read_desc(c, ss, d)) c.raise_fault(kGP, e);
    if (!d.writable() || d.dpl() != new_cpl) c.raise_fault(kGP, e);
    if (!d.present()) c.raise_fault(kSS, e);
    set_accessed(c, ss, d);
    return seg_from_desc(ss, d);
}

// The CS a far RET or IRET returns to (SDM Vol. 2, RET "Operation", protected mode).
void check_return_cs(Cpu& c, uint16_t sel, Desc& d, unsigned cur) {
    uint32_t e = sel & 0xfffc;
    d = read_far_desc(c, sel);
    if ((sel & 3) < cur || !d.is_code()) c.raise_fault(kGP, e);
    if (d.conforming() ? d.dpl() > (sel & 3) : d.dpl() != (sel & 3)) c.raise_fault(kGP, e);
    if (!d.present()) c.raise_fault(kNP, e);
    if (long_mode(c) && d.l() && d.db()) c.raise_fault(kGP, e);
}

}  // namespace

void log_unsupported(const char* what) {
    static std::mutex mu;
    static std::set<const char*> seen;
    std::lock_guard<std::mutex> lock(mu);
    if (seen.insert(what).second) fmt::print(stderr, "micro86: not implemented: {} (raising #GP)\n", what);
}

// ---- descriptors ---------------------------------------------------------------------------------

bool read_desc(Cpu& c, uint16_t sel, Desc& d, bool wide) {
    uint32_t limit;
    if (sel & 4) {
        if (!(c.s.ldtr.attr & SegReg::kP)) return false;
        limit = c.s.ldtr.limit;
    } else {
        limit = c.s.gdtr.limit;
    }
    uint32_t idx = sel & 0xfff8;
    if (uint64_t(idx) + (wide ? 15 : 7) > limit) return false;
    uint64_t a = desc_addr(c, sel);
    d.lo = sys_read<uint64_t>(c, a);
    d.hi = wide ? sys_read<uint64_t>(c, a + 8) : 0;
    return true;
}

void set_accessed(Cpu& c, uint16_t sel, Desc& d) {
    if (!d.s() || (d.lo & kDescAccessed)) return;
    d.lo |= kDescAccessed;
    sys_write<uint8_t>(c, desc_addr(c, sel) + 5, uint8_t(d.lo >> 40));
}

SegReg seg_from_desc(uint16_t sel, const Desc& d) { return SegReg{sel, d.base(), d.limit(), d.attr()}; }

SegReg check_seg_load(Cpu& c, uint8_t seg, uint16_t sel) {
    if (!protected_mode(c)) {
        // Real-address mode: only selector and base change; the cached limit and attributes stay
        // (which is what makes "unreal mode" work).
        SegReg r = c.s.seg[seg];
        r.sel = sel;
        r.base = uint64_t(sel) << 4;
        return r;
    }
    const unsigned cur = cpl(c);
    const unsigned rpl = sel & 3;
    const uint32_t e = sel & 0xfffc;
    Desc d;
    if (seg == SS) {
        if (e == 0) {
            // 64-bit mode allows a null SS at CPL < 3 when RPL = CPL (SDM Vol. 2, MOV "Operation").
            if (c.mode() == Mode::Long64 && cur != 3 && rpl == cur)
                return SegReg{sel, 0, 0xffffffff,
                              uint16_t(SegReg::kP | SegReg::kS | 0x3 | (cur << 5) | SegReg::kDB | SegReg::kG)};
            c.raise_fault(kGP, 0);
        }
        if (!read_desc(c, sel, d)) c.raise_fault(kGP, e);
        if (rpl != cur || !d.writable() || d.dpl() != cur) c.raise_fault(kGP, e);
        if (!d.present()) c.raise_fault(kSS, e);
    } else {
        if (e == 0) return null_seg(sel);
        if (!read_desc(c, sel, d)) c.raise_fault(kGP, e);
        if (!d.readable() || !d.s()) c.raise_fault(kGP, e);
        if ((d.is_data() || !d.conforming()) && (rpl > d.dpl() || cur > d.dpl())) c.raise_fault(kGP, e);
        if (!d.present()) c.raise_fault(kNP, e);
    }
    set_accessed(c, sel, d);
    return seg_from_desc(sel, d);
}

void commit_seg(Cpu& c, uint8_t seg, const SegReg& r) {
    c.s.seg[seg] = r;
    c.update_mode();
}

// ---- stacks --------------------------------------------------------------------------------------

void Stack::push(Cpu& c, uint64_t v, unsigned size) {
    uint64_t nsp = (sp - size) & mask();
    uint64_t a = at(nsp);
    switch (size) {
        case 2: sup ? sys_write<uint16_t>(c, a, uint16_t(v)) : write<uint16_t>(c, a, uint16_t(v)); break;
        case 4: sup ? sys_write<uint32_t>(c, a, uint32_t(v)) : write<uint32_t>(c, a, uint32_t(v)); break;
        default: sup ? sys_write<uint64_t>(c, a, v) : write<uint64_t>(c, a, v); break;
    }
    sp = nsp;
}

uint64_t Stack::pop(Cpu& c, unsigned size) {
    uint64_t a = at(sp);
    uint64_t v;
    switch (size) {
        case 2: v = sup ? sys_read<uint16_t>(c, a) : read<uint16_t>(c, a); break;
        case 4: v = sup ? sys_read<uint32_t>(c, a) : read<uint32_t>(c, a); break;
        default: v = sup ? sys_read<uint64_t>(c, a) : read<uint64_t>(c, a); break;
    }
    sp = (sp + size) & mask();
    return v;
}

Stack current_stack(const Cpu& c) {
    Stack st;
    if (c.mode() == Mode::Long64) {
        st.asz = 8;
        st.base = 0;
    } else {
        st.asz = (c.s.seg[SS].attr & SegReg::kDB) ? 4 : 2;
        st.base = c.s.seg[SS].base;
    }
    st.sp = c.s.gpr[RSP] & st.mask();
    return st;
}

void set_sp(Cpu& c, uint64_t sp, unsigned asz) {
    if (asz == 2)
        c.s.gpr[RSP] = (c.s.gpr[RSP] & ~0xffffull) | (sp & 0xffff);
    else if (asz == 4)
        c.s.gpr[RSP] = uint32_t(sp);
    else
        c.s.gpr[RSP] = sp;
}

uint64_t tss_read(Cpu& c, uint32_t off, unsigned size, uint32_t ext) {
    if (uint64_t(off) + size - 1 > c.s.tr.limit) c.raise_fault(kTS, (c.s.tr.sel & 0xfffc) | ext);
    uint64_t a = c.s.tr.base + off;
    switch (size) {
        case 2: return sys_read<uint16_t>(c, a);
        case 4: return sys_read<uint32_t>(c, a);
        default: return sys_read<uint64_t>(c, a);
    }
}

// ---- far transfers -------------------------------------------------------------------------------

void far_jmp(Cpu& c, uint16_t sel, uint64_t off, unsigned osz) {
    uint64_t ip = ip_of(off, osz);
    if (!protected_mode(c)) {
        if (ip > c.s.seg[CS].limit) c.raise_fault(kGP, 0);
        commit_real_cs(c, sel, ip);
        return;
    }
    const unsigned cur = cpl(c);
    const uint32_t e = sel & 0xfffc;
    Desc d = read_far_desc(c, sel);
    if (d.is_code()) {
        check_code_direct(c, sel, d, cur, ip);
        set_accessed(c, sel, d);
        commit_cs(c, uint16_t(e | cur), d, ip);
        return;
    }
    if (d.s()) c.raise_fault(kGP, e);
    switch (d.type()) {
        case dt::kCallGate16:
        case dt::kCallGate32: {
            GateTarget t = check_call_gate(c, sel, d, cur);
            // JMP through a call gate cannot change the privilege level.
            if (t.d.conforming() ? t.d.dpl() > cur : t.d.dpl() != cur) c.raise_fault(kGP, t.sel & 0xfffc);
            check_ip(c, t.d, t.ip);
            set_accessed(c, t.sel, t.d);
            commit_cs(c, uint16_t((t.sel & 0xfffc) | cur), t.d, t.ip);
            return;
        }
        case dt::kTaskGate:
        case dt::kTss16Avail:
        case dt::kTss32Avail: task_switch(c, sel, false);
        default: c.raise_fault(kGP, e);
    }
}

void far_call(Cpu& c, uint16_t sel, uint64_t off, unsigned osz) {
    const uint64_t ret = c.next_rip;
    uint64_t ip = ip_of(off, osz);
    Stack st = current_stack(c);
    if (!protected_mode(c)) {
        if (ip > c.s.seg[CS].limit) c.raise_fault(kGP, 0);
        st.push(c, c.s.seg[CS].sel, osz);
        st.push(c, ret, osz);
        set_sp(c, st.sp, st.asz);
        commit_real_cs(c, sel, ip);
        return;
    }
    const unsigned cur = cpl(c);
    const uint32_t e = sel & 0xfffc;
    Desc d = read_far_desc(c, sel);
    if (d.is_code()) {
        check_code_direct(c, sel, d, cur, ip);
        st.push(c, c.s.seg[CS].sel, osz);
        st.push(c, ret, osz);
        set_accessed(c, sel, d);
        set_sp(c, st.sp, st.asz);
        commit_cs(c, uint16_t(e | cur), d, ip);
        return;
    }
    if (d.s()) c.raise_fault(kGP, e);
    switch (d.type()) {
        case dt::kCallGate16:
        case dt::kCallGate32: break;
        case dt::kTaskGate:
        case dt::kTss16Avail:
        case dt::kTss32Avail: task_switch(c, sel, true);
        default: c.raise_fault(kGP, e);
    }
    // Call gate (SDM Vol. 3, 5.8.3-5.8.6; Vol. 2 CALL "Operation").
    const bool lm = long_mode(c);
    GateTarget t = check_call_gate(c, sel, d, cur);
    const unsigned gw = t.width;
    check_ip(c, t.d, t.ip);
    const unsigned new_cpl = t.d.conforming() ? cur : t.d.dpl();
    if (new_cpl == cur) {
        st.push(c, c.s.seg[CS].sel, gw);
        st.push(c, ret, gw);
        set_accessed(c, t.sel, t.d);
        set_sp(c, st.sp, st.asz);
        commit_cs(c, uint16_t((t.sel & 0xfffc) | cur), t.d, t.ip);
        return;
    }
    // More privileged: switch to the inner stack from the TSS and copy the parameters.
    Stack ns;
    SegReg new_ss;
    if (lm) {
        uint64_t rsp = tss_read(c, 4 + new_cpl * 8, 8, 0);
        if (!canonical(c, rsp)) c.raise_fault(kSS, 0);
        ns = Stack{0, rsp, 8, true};
        new_ss = SegReg{uint16_t(new_cpl), 0, 0xffffffff,
                        uint16_t(SegReg::kP | SegReg::kS | 0x3 | (new_cpl << 5) | SegReg::kDB | SegReg::kG)};
    } else {
        bool tss32 = (c.s.tr.attr & 8) != 0;
        uint32_t nsp = tss32 ? uint32_t(tss_read(c, 4 + new_cpl * 8, 4, 0)) : uint32_t(tss_read(c, 2 + new_cpl * 4, 2, 0));
        uint16_t nss = uint16_t(tss32 ? tss_read(c, 8 + new_cpl * 8, 2, 0) : tss_read(c, 4 + new_cpl * 4, 2, 0));
        uint32_t se = nss & 0xfffc;
        if (se == 0) c.raise_fault(kTS, 0);
        if ((nss & 3) != new_cpl) c.raise_fault(kTS, se);
        Desc sd;
        if (!read_desc(c, nss, sd)) c.raise_fault(kTS, se);
        if (sd.dpl() != new_cpl || !sd.writable()) c.raise_fault(kTS, se);
        if (!sd.present()) c.raise_fault(kSS, se);
        set_accessed(c, nss, sd);
        new_ss = seg_from_desc(nss, sd);
        ns = Stack{new_ss.base, nsp, sd.db() ? 4u : 2u, true};
    }
    ns.push(c, c.s.seg[SS].sel, gw);
    ns.push(c, st.sp, gw);
    if (!lm) {
        unsigned n = d.gate_params();
        for (unsigned k = n; k-- > 0;) {
            Stack src = st;
            src.sp = (st.sp + k * gw) & st.mask();
            ns.push(c, src.pop(c, gw), gw);
        }
    }
    ns.push(c, c.s.seg[CS].sel, gw);
    ns.push(c, ret, gw);
    set_accessed(c, t.sel, t.d);
    c.s.seg[SS] = new_ss;
    set_sp(c, ns.sp, ns.asz);
    commit_cs(c, uint16_t((t.sel & 0xfffc) | new_cpl), t.d, t.ip);
}

void far_ret(Cpu& c, unsigned osz, uint16_t imm) {
    Stack st = current_stack(c);
    uint64_t ip = ip_of(st.pop(c, osz), osz);
    uint16_t sel = uint16_t(st.pop(c, osz));
    if (!protected_mode(c)) {
        if (ip > c.s.seg[CS].limit) c.raise_fault(kGP, 0);
        st.sp = (st.sp + imm) & st.mask();
        set_sp(c, st.sp, st.asz);
        commit_real_cs(c, sel, ip);
        return;
    }
    const unsigned cur = cpl(c);
    Desc d;
    check_return_cs(c, sel, d, cur);
    const unsigned rpl = sel & 3;
    check_ip(c, d, ip);
    st.sp = (st.sp + imm) & st.mask();
    if (rpl == cur) {
        set_accessed(c, sel, d);
        set_sp(c, st.sp, st.asz);
        commit_cs(c, sel, d, ip);
        return;
    }
    // Return to an outer privilege level: the outer SS:SP follows on the stack.
    uint64_t nsp = st.pop(c, osz);
    uint16_t nss = uint16_t(st.pop(c, osz));
    SegReg ss = check_return_ss(c, nss, rpl, d.l());
    set_accessed(c, sel, d);
    unsigned nasz = (long_mode(c) && d.l()) ? 8 : (ss.attr & SegReg::kDB) ? 4 : 2;
    c.s.seg[SS] = ss;
    set_sp(c, nsp + imm, nasz);
    null_inaccessible_segs(c, rpl);
    commit_cs(c, sel, d, ip);
}

uint64_t merge_flags(const Cpu& c, uint64_t cur, uint64_t img, unsigned osz, unsigned cpl_now) {
    (void)c;
    // SDM Vol. 2, IRET "Operation" and POPF: IOPL changes only at CPL 0, IF only at CPL <= IOPL,
    // VIF/VIP only at CPL 0; VM is handled by the caller; RF is dropped unless instruction
    // breakpoints are enabled (it would be cleared after the next instruction anyway).
    uint64_t m = fl::kArith | fl::TF | fl::DF | fl::NT;
    if (osz >= 4) m |= fl::AC | fl::ID;
    // RF from the image only while instruction breakpoints are enabled: a #DB handler returns with
    // RF = 1 to re-execute the instruction without the breakpoint firing again (SDM Vol. 3, 18.3.1.1).
    if (osz >= 4 && (c.s.dr[7] & 0xff)) m |= fl::RF;
    if (cpl_now == 0) m |= fl::IOPL | (osz >= 4 ? (fl::VIF | fl::VIP) : 0);
    if (cpl_now <= ((cur & fl::IOPL) >> 12)) m |= fl::IF;
    return (cur & ~m) | (img & m) | fl::kFixed1;
}

void iret(Cpu& c, unsigned osz) {
    c.sync_flags();
    const uint64_t flags_now = c.s.rflags;
    Stack st = current_stack(c);
    if (!protected_mode(c)) {
        // Real-address mode: pop IP, CS, FLAGS; IRETD keeps VM, VIF, VIP.
        uint64_t ip = ip_of(st.pop(c, osz), osz);
        uint16_t sel = uint16_t(st.pop(c, osz));
        uint64_t img = st.pop(c, osz);
        if (ip > c.s.seg[CS].limit) c.raise_fault(kGP, 0);
        uint64_t nf = merge_flags(c, flags_now, osz == 2 ? (flags_now & ~0xffffull) | img : img, osz, 0);
        nf = (nf & ~(fl::VIF | fl::VIP)) | (flags_now & (fl::VIF | fl::VIP));
        set_sp(c, st.sp, st.asz);
        c.s.rflags = nf;
        c.nmi_unblock();
        commit_real_cs(c, sel, ip);
        return;
    }
    const bool lm = long_mode(c);
    if (flags_now & fl::NT) {
        if (lm) c.raise_fault(kGP, 0);
        log_unsupported("IRET with NT = 1 (task return)");
        c.raise_fault(kGP, 0);
    }
    const unsigned cur = cpl(c);
    uint64_t ip = st.pop(c, osz);
    uint16_t sel = uint16_t(st.pop(c, osz));
    uint64_t img = st.pop(c, osz);
    if (osz == 2) img = (flags_now & ~0xffffull) | (img & 0xffff);
    if ((img & fl::VM) && osz >= 4 && !lm && cur == 0) {
        log_unsupported("IRET to virtual-8086 mode");
        c.raise_fault(kGP, 0);
    }
    Desc d;
    check_return_cs(c, sel, d, cur);
    const unsigned rpl = sel & 3;
    const bool to64 = lm && d.l();
    if (!to64) ip = ip_of(ip, osz == 8 ? 4 : osz);
    check_ip(c, d, ip);
    uint64_t nf = merge_flags(c, flags_now, img, osz, cur) & ~fl::VM;
    if (c.mode() == Mode::Long64 || rpl > cur) {
        uint64_t nsp = st.pop(c, osz);
        uint16_t nss = uint16_t(st.pop(c, osz));
        SegReg ss = check_return_ss(c, nss, rpl, to64);
        set_accessed(c, sel, d);
        unsigned nasz = to64 ? 8 : (ss.attr & SegReg::kDB) ? 4 : 2;
        c.s.seg[SS] = ss;
        set_sp(c, nsp, nasz);
        if (rpl > cur) null_inaccessible_segs(c, rpl);
    } else {
        set_accessed(c, sel, d);
        set_sp(c, st.sp, st.asz);
    }
    c.s.rflags = nf;
    c.nmi_unblock();
    commit_cs(c, sel, d, ip);
}

}  // namespace m86::cpu::sys
