// Instruction class "system": privileged and mode-related instructions (SDM Vol. 2 instruction
// pages; Vol. 3 chapters 2-6).
//
//   segment registers  MOV to/from Sreg, PUSH/POP Sreg, LDS/LES/LFS/LGS/LSS
//   far transfers      JMP/CALL far (direct and m16:16/32/64), RET far, IRET/IRETD/IRETQ
//   interrupts         INT n, INT3, INTO, INT1, CLI, STI, STAC, CLAC
//   control state      MOV CRn/DRn, CLTS, LMSW, SMSW, LGDT/LIDT/SGDT/SIDT, LLDT/SLDT, LTR/STR,
//                      LAR/LSL/VERR/VERW, INVLPG, INVPCID, WBINVD/INVD
//   fast calls         SYSCALL/SYSRET, SYSENTER/SYSEXIT, SWAPGS, RD/WR FS/GS BASE
//   MSRs and ports     RDMSR/WRMSR (ops/msr.cpp), IN/OUT/INS/OUTS (ops/io.cpp)
//
// The descriptor and far-transfer machinery is in cpu/segment.cpp, delivery in cpu/exceptions.cpp;
// helpers are declared in cpu/sys.h. Handlers that change the mode, paging or IF end the block
// (exit_request) so the next instruction is decoded and checked under the new state.
#include "cpu/decode.h"
#include "cpu/sys.h"

namespace m86::cpu {

namespace sys {
void register_msr(Registry& r);
void register_io(Registry& r);
void write_cr0(Cpu& c, uint64_t v);
void write_cr3(Cpu& c, uint64_t v);
void write_cr4(Cpu& c, uint64_t v);
}  // namespace sys

namespace {

using namespace sys;

void require_cpl0(Cpu& c) {
    if (cpl(c) != 0) c.raise_gp(0);
}
// Instructions not recognised in real-address or virtual-8086 mode (LLDT, LTR, LAR, ...).
void require_protected(Cpu& c) {
    if (!protected_mode(c)) c.raise_ud();
}
// CR4.UMIP: SGDT, SIDT, SLDT, SMSW, STR at CPL > 0 raise #GP(0) (SDM Vol. 3, 2.5).
void check_umip(Cpu& c) {
    if ((c.s.cr4 & cr4::UMIP) && cpl(c) > 0) c.raise_gp(0);
}

uint16_t load16(Cpu& c, const Insn& i, int n) {
    return i.kind[n] == kOpReg ? uint16_t(c.s.gpr[i.reg[n]]) : read<uint16_t>(c, lin(c, i));
}
// Store a selector-sized value: memory gets 16 bits, a register the operand size (zero-extended).
void store_sel(Cpu& c, const Insn& i, uint64_t v) {
    if (i.kind[0] == kOpMem) {
        write<uint16_t>(c, lin(c, i), uint16_t(v));
        return;
    }
    switch (i.osz) {
        case 2: c.set_reg<2>(i.reg[0], uint16_t(v)); break;
        case 4: c.set_reg<4>(i.reg[0], uint32_t(v)); break;
        default: c.set_reg<8>(i.reg[0], v); break;
    }
}

// ---- segment registers ---------------------------------------------------------------------------

void mov_to_sreg(Cpu& c, const Insn& i) {
    uint8_t seg = i.reg[0];
    if (seg == CS) c.raise_ud();
    uint16_t sel = load16(c, i, 1);
    SegReg r = check_seg_load(c, seg, sel);
    commit_seg(c, seg, r);
    if (seg == SS) c.set_interrupt_shadow();
}

void mov_from_sreg(Cpu& c, const Insn& i) { store_sel(c, i, c.s.seg[i.reg[1]].sel); }

// PUSH Sreg: the stack pointer moves by the operand size. A 64-bit push stores the zero-extended
// selector; with a 32-bit operand size current processors write only the 16-bit selector (SDM
// Vol. 2, PUSH: "a 16-bit move, leaving the upper portion of the stack location unmodified").
void push_sreg(Cpu& c, const Insn& i) {
    Stack st = current_stack(c);
    uint64_t nsp = (st.sp - i.osz) & st.mask();
    uint16_t sel = c.s.seg[i.reg[0]].sel;
    if (i.osz == 8) write<uint64_t>(c, st.at(nsp), sel);
    else write<uint16_t>(c, st.at(nsp), sel);
    set_sp(c, nsp, st.asz);
}

void pop_sreg(Cpu& c, const Insn& i) {
    uint8_t seg = i.reg[0];
    Stack st = current_stack(c);
    uint16_t sel = uint16_t(st.pop(c, i.osz));
    SegReg r = check_seg_load(c, seg, sel);
    set_sp(c, st.sp, st.asz);  // with the old SS's stack width
    commit_seg(c, seg, r);
    if (seg == SS) c.set_interrupt_shadow();
}

// LDS/LES/LFS/LGS/LSS r, m16:16/32/64 (aux = segment).
void load_far_ptr(Cpu& c, const Insn& i) {
    uint64_t off_ea = ea(c, i);
    uint64_t sel_ea = off_ea + i.osz;
    if (i.asz == 2) sel_ea = uint16_t(sel_ea);
    else if (i.asz == 4) sel_ea = uint32_t(sel_ea);
    uint64_t off;
    uint64_t a = lin_of(c, i.seg, off_ea);
    switch (i.osz) {
        case 2: off = read<uint16_t>(c, a); break;
        case 4: off = read<uint32_t>(c, a); break;
        default: off = read<uint64_t>(c, a); break;
    }
    uint16_t sel = read<uint16_t>(c, lin_of(c, i.seg, sel_ea));
    SegReg r = check_seg_load(c, uint8_t(i.aux), sel);
    commit_seg(c, uint8_t(i.aux), r);
    switch (i.osz) {
        case 2: c.set_reg<2>(i.reg[0], uint16_t(off)); break;
        case 4: c.set_reg<4>(i.reg[0], uint32_t(off)); break;
        default: c.set_reg<8>(i.reg[0], off); break;
    }
}

// ---- far transfers -------------------------------------------------------------------------------

// Far pointer in memory: offset (operand size) then selector.
void read_far_ptr(Cpu& c, const Insn& i, uint16_t& sel, uint64_t& off) {
    uint64_t e = ea(c, i);
    uint64_t se = e + i.osz;
    if (i.asz == 2) se = uint16_t(se);
    else if (i.asz == 4) se = uint32_t(se);
    uint64_t a = lin_of(c, i.seg, e);
    switch (i.osz) {
        case 2: off = read<uint16_t>(c, a); break;
        case 4: off = read<uint32_t>(c, a); break;
        default: off = read<uint64_t>(c, a); break;
    }
    sel = read<uint16_t>(c, lin_of(c, i.seg, se));
}

void jmp_far_ptr(Cpu& c, const Insn& i) { far_jmp(c, i.aux, i.imm, i.osz); }
void call_far_ptr(Cpu& c, const Insn& i) { far_call(c, i.aux, i.imm, i.osz); }
void jmp_far_mem(Cpu& c, const Insn& i) {
    uint16_t sel;
    uint64_t off;
    read_far_ptr(c, i, sel, off);
    far_jmp(c, sel, off, i.osz);
}
void call_far_mem(Cpu& c, const Insn& i) {
    uint16_t sel;
    uint64_t off;
    read_far_ptr(c, i, sel, off);
    far_call(c, sel, off, i.osz);
}
void ret_far(Cpu& c, const Insn& i) { far_ret(c, i.osz, i.kind[0] == kOpImm ? uint16_t(i.imm) : 0); }
void iret_insn(Cpu& c, const Insn& i) { iret(c, i.osz); }

// ---- interrupts ----------------------------------------------------------------------------------

void int_n(Cpu& c, const Insn& i) { c.deliver(uint8_t(i.imm), Event::SoftInt, kNoErrorCode, c.next_rip); }
void int3(Cpu& c, const Insn&) { c.deliver(kBP, Event::SoftException, kNoErrorCode, c.next_rip); }
void into(Cpu& c, const Insn&) {
    if (c.of()) c.deliver(kOF, Event::SoftException, kNoErrorCode, c.next_rip);
}
void int1(Cpu& c, const Insn&) { c.deliver(kDB, Event::Icebp, kNoErrorCode, c.next_rip); }

// CLI/STI: protected mode needs CPL <= IOPL (no VME/PVI: #GP otherwise), SDM Vol. 2 CLI/STI.
bool if_allowed(Cpu& c) { return !protected_mode(c) || cpl(c) <= ((c.s.rflags & fl::IOPL) >> 12); }
void cli(Cpu& c, const Insn&) {
    if (!if_allowed(c)) c.raise_gp(0);
    c.s.rflags &= ~fl::IF;
}
void sti(Cpu& c, const Insn&) {
    if (!if_allowed(c)) c.raise_gp(0);
    if (!(c.s.rflags & fl::IF)) {
        c.s.rflags |= fl::IF;
        c.set_interrupt_shadow();  // interrupts only after the next instruction
    }
}

// STAC/CLAC: CPL 0 only (#UD otherwise); AC selects the SMAP-override TLB context.
void stac(Cpu& c, const Insn&) {
    if (cpl(c) != 0) c.raise_ud();
    c.s.rflags |= fl::AC;
    c.update_mode();
}
void clac(Cpu& c, const Insn&) {
    if (cpl(c) != 0) c.raise_ud();
    c.s.rflags &= ~fl::AC;
    c.update_mode();
}

// ---- control and debug registers -----------------------------------------------------------------

void mov_from_cr(Cpu& c, const Insn& i) {
    require_cpl0(c);
    uint64_t v;
    switch (i.reg[1]) {
        case 0: v = c.s.cr0; break;
        case 2: v = c.s.cr2; break;
        case 3: v = c.s.cr3; break;
        case 4: v = c.s.cr4; break;
        case 8: v = c.s.cr8; break;
        default: c.raise_ud();
    }
    if (c.mode() == Mode::Long64) c.s.gpr[i.reg[0]] = v;
    else c.s.gpr[i.reg[0]] = uint32_t(v);
}

void mov_to_cr(Cpu& c, const Insn& i) {
    require_cpl0(c);
    uint64_t v = c.s.gpr[i.reg[1]];
    if (c.mode() != Mode::Long64) v = uint32_t(v);
    switch (i.reg[0]) {
        case 0: write_cr0(c, v); break;
        case 2: c.s.cr2 = v; break;
        case 3: write_cr3(c, v); break;
        case 4: write_cr4(c, v); break;
        case 8:
            // CR8 = TPR[7:4] (SDM Vol. 3, 10.8.6.1); reserved bits 63:4.
            if (v >> 4) c.raise_gp(0);
            c.s.cr8 = v;
            if (c.platform) c.side_effect(), c.platform->tpr_written(uint8_t(v));
            break;
        default: c.raise_ud();
    }
    c.exit_request = true;
}

// DR4/DR5 alias DR6/DR7 unless CR4.DE (then #UD), SDM Vol. 3, 18.2.2.
unsigned dr_index(Cpu& c, unsigned n) {
    if (n == 4 || n == 5) {
        if (c.s.cr4 & cr4::DE) c.raise_ud();
        n += 2;
    }
    if (n > 7) c.raise_ud();
    return n;
}

// General detect (SDM Vol. 3, 18.2.4): with DR7.GD set, any MOV to or from a debug register raises
// #DB as a fault with DR6.BD set; GD is cleared so the handler can use the debug registers.
void general_detect(Cpu& c) {
    if (!(c.s.dr[7] & (1u << 13))) return;
    c.s.dr[6] |= 1u << 13;
    c.s.dr[7] &= ~uint64_t(1u << 13);
    if (!c.stop_on_exception) c.s.rflags |= fl::RF;  // a fault: RF = 1 in the pushed image
    c.raise_fault(kDB);
}

void mov_from_dr(Cpu& c, const Insn& i) {
    require_cpl0(c);
    dr_index(c, i.reg[1]);
    general_detect(c);
    uint64_t v = c.s.dr[dr_index(c, i.reg[1])];
    if (c.mode() == Mode::Long64) c.s.gpr[i.reg[0]] = v;
    else c.s.gpr[i.reg[0]] = uint32_t(v);
}

void mov_to_dr(Cpu& c, const Insn& i) {
    require_cpl0(c);
    unsigned n = dr_index(c, i.reg[0]);
    general_detect(c);
    uint64_t v = c.s.gpr[i.reg[1]];
    if (c.mode() != Mode::Long64) v = uint32_t(v);
    if (n >= 6 && (v >> 32)) c.raise_gp(0);
    // DR6: B0-B3, BD, BS, BT writable; the rest reads as 1 except bit 12 (SDM Vol. 3, 18.2.3).
    // DR7: bit 10 reads as 1, bits 11, 12, 14, 15 as 0 (18.2.4).
    if (n == 6) v = (v & 0xe00f) | 0xffff0ff0;
    else if (n == 7) v = (v & 0xffff23ff) | 0x400;
    c.s.dr[n] = v;
    if (n != 6) {
        c.debug_regs_changed();
        c.exit_request = true;  // the next instruction is checked against the new breakpoints
    }
}

void clts(Cpu& c, const Insn&) {
    require_cpl0(c);
    c.s.cr0 &= ~cr0::TS;
}

// LMSW: loads CR0[3:0] but cannot clear PE (SDM Vol. 2, LMSW).
void lmsw(Cpu& c, const Insn& i) {
    require_cpl0(c);
    uint16_t v = load16(c, i, 0);
    write_cr0(c, (c.s.cr0 & ~0xeull) | (v & 0xf) | (c.s.cr0 & cr0::PE));
    c.exit_request = true;
}

void smsw(Cpu& c, const Insn& i) {
    check_umip(c);
    store_sel(c, i, c.s.cr0);
}

// ---- descriptor tables ---------------------------------------------------------------------------

// LGDT/LIDT m16&32 (m16&64 in 64-bit mode); a 16-bit operand size keeps 24 bits of the base.
template <bool kIdt> void lgdt(Cpu& c, const Insn& i) {
    require_cpl0(c);
    uint64_t e = ea(c, i);
    uint16_t limit = read<uint16_t>(c, lin_of(c, i.seg, e));
    uint64_t base;
    uint64_t a2 = lin_of(c, i.seg, i.asz == 2 ? uint16_t(e + 2) : i.asz == 4 ? uint32_t(e + 2) : e + 2);
    if (c.mode() == Mode::Long64) {
        base = read<uint64_t>(c, a2);
        if (!canonical(c, base)) c.raise_gp(0);
    } else {
        base = read<uint32_t>(c, a2);
        if (i.osz == 2) base &= 0xffffff;
    }
    TableReg& t = kIdt ? c.s.idtr : c.s.gdtr;
    t.base = base;
    t.limit = limit;
}

template <bool kIdt> void sgdt(Cpu& c, const Insn& i) {
    check_umip(c);
    const TableReg& t = kIdt ? c.s.idtr : c.s.gdtr;
    uint64_t e = ea(c, i);
    uint64_t a = lin_of_w(c, i.seg, e);
    uint64_t a2 = lin_of_w(c, i.seg, i.asz == 2 ? uint16_t(e + 2) : i.asz == 4 ? uint32_t(e + 2) : e + 2);
    unsigned n = c.mode() == Mode::Long64 ? 10 : 6;
    c.probe_write(a, 2);
    c.probe_write(a2, n - 2);
    write<uint16_t>(c, a, t.limit);
    if (n == 10) write<uint64_t>(c, a2, t.base);
    else write<uint32_t>(c, a2, uint32_t(t.base));  // full 32-bit base for either operand size
}

void sldt(Cpu& c, const Insn& i) {
    require_protected(c);
    check_umip(c);
    store_sel(c, i, c.s.ldtr.sel);
}

void str(Cpu& c, const Insn& i) {
    require_protected(c);
    check_umip(c);
    store_sel(c, i, c.s.tr.sel);
}

// LLDT (SDM Vol. 2, LLDT): a null selector makes the LDT unusable.
void lldt(Cpu& c, const Insn& i) {
    require_protected(c);
    require_cpl0(c);
    uint16_t sel = load16(c, i, 0);
    uint32_t e = sel & 0xfffc;
    if (e == 0) {
        c.s.ldtr = SegReg{sel, 0, 0, 0};
        return;
    }
    if (sel & 4) c.raise_gp(e);
    Desc d;
    bool lm = long_mode(c);
    if (!read_desc(c, sel, d, lm)) c.raise_gp(e);
    if (d.s() || d.type() != dt::kLdt) c.raise_gp(e);
    if (!d.present()) c.raise_fault(kNP, e);
    uint64_t base = lm ? d.base64() : d.base();
    if (lm && !canonical(c, base)) c.raise_gp(e);
    c.s.ldtr = SegReg{sel, base, d.limit(), d.attr()};
}

// LTR (SDM Vol. 2, LTR): the descriptor must be an available TSS; it is marked busy.
void ltr(Cpu& c, const Insn& i) {
    require_protected(c);
    require_cpl0(c);
    uint16_t sel = load16(c, i, 0);
    uint32_t e = sel & 0xfffc;
    if (e == 0) c.raise_gp(0);
    if (sel & 4) c.raise_gp(e);
    Desc d;
    bool lm = long_mode(c);
    if (!read_desc(c, sel, d, lm)) c.raise_gp(e);
    bool avail = d.type() == dt::kTss32Avail || (!lm && d.type() == dt::kTss16Avail);
    if (d.s() || !avail) c.raise_gp(e);
    if (!d.present()) c.raise_fault(kNP, e);
    uint64_t base = lm ? d.base64() : d.base();
    if (lm && !canonical(c, base)) c.raise_gp(e);
    d.lo |= 2ull << 40;  // busy
    sys_write<uint8_t>(c, c.s.gdtr.base + (sel & 0xfff8) + 5, uint8_t(d.lo >> 40));
    c.s.tr = SegReg{sel, base, d.limit(), d.attr()};
}

// LAR/LSL/VERR/VERW: the checks that decide ZF (SDM Vol. 2 LAR "Operation").
enum class Probe { Lar, Lsl, Verr, Verw };
bool probe_ok(Cpu& c, uint16_t sel, Desc& d, Probe what) {
    if ((sel & 0xfffc) == 0) return false;
    if (!read_desc(c, sel, d)) return false;
    if (!d.s()) {
        if (what == Probe::Verr || what == Probe::Verw) return false;
        unsigned t = d.type();
        bool lm = long_mode(c);
        bool ok;
        if (lm)
            ok = t == dt::kLdt || t == dt::kTss32Avail || t == dt::kTss32Busy || (what == Probe::Lar && t == dt::kCallGate32);
        else if (what == Probe::Lsl)
            ok = t == 1 || t == 2 || t == 3 || t == 9 || t == 11;
        else
            ok = t == 1 || t == 2 || t == 3 || t == 4 || t == 5 || t == 9 || t == 11 || t == 12;
        if (!ok) return false;
    }
    if (what == Probe::Verr && !d.readable()) return false;
    if (what == Probe::Verw && !d.writable()) return false;
    if (!d.conforming() && (d.dpl() < cpl(c) || d.dpl() < (sel & 3u))) return false;
    return true;
}

template <Probe kWhat> void lar_lsl_ver(Cpu& c, const Insn& i) {
    require_protected(c);
    uint16_t sel = load16(c, i, (kWhat == Probe::Lar || kWhat == Probe::Lsl) ? 1 : 0);
    Desc d;
    bool ok = probe_ok(c, sel, d, kWhat);
    if (ok && (kWhat == Probe::Lar || kWhat == Probe::Lsl)) {
        uint64_t v = kWhat == Probe::Lar ? ((d.lo >> 32) & 0x00ffff00) : d.limit();
        if (i.osz == 2) c.set_reg<2>(i.reg[0], uint16_t(v));
        else c.set_reg<4>(i.reg[0], uint32_t(v));
    }
    c.set_flags(fl::ZF, ok ? fl::ZF : 0);
}

// ---- TLB and caches ------------------------------------------------------------------------------

void invlpg(Cpu& c, const Insn& i) {
    require_cpl0(c);
    uint64_t a = lin(c, i);
    if (c.mode() != Mode::Long64 || canonical(c, a)) c.tlb_flush_page(a);
    c.exit_request = true;
}

// INVPCID r, m128 (SDM Vol. 2, INVPCID): the software TLB holds only the current PCID's entries
// and global ones, so type 0 is a flush of the named page, types 1 and 3 of every non-global entry,
// type 2 of everything.
void invpcid(Cpu& c, const Insn& i) {
    require_cpl0(c);
    uint64_t type = c.mode() == Mode::Long64 ? c.s.gpr[i.reg[0]] : uint32_t(c.s.gpr[i.reg[0]]);
    uint64_t a = lin(c, i);
    uint64_t pcid = read<uint64_t>(c, a);
    uint64_t addr = read<uint64_t>(c, c.mode() == Mode::Long64 ? a + 8 : uint32_t(a + 8));
    if (type > 3 || (pcid >> 12)) c.raise_gp(0);
    if (type == 0) {
        if (!canonical(c, addr)) c.raise_gp(0);
        if (pcid && !(c.s.cr4 & cr4::PCIDE)) c.raise_gp(0);
        c.tlb_flush_page(addr);
    } else {
        if (type == 1 && pcid && !(c.s.cr4 & cr4::PCIDE)) c.raise_gp(0);
        c.tlb_flush(type != 2);
    }
    c.exit_request = true;
}

void wbinvd(Cpu& c, const Insn&) { require_cpl0(c); }

// ---- SYSCALL/SYSRET, SYSENTER/SYSEXIT, SWAPGS, FS/GS base ----------------------------------------

constexpr uint16_t kAttrCode64 = SegReg::kP | SegReg::kS | 0xb | SegReg::kL | SegReg::kG;
constexpr uint16_t kAttrCode32 = SegReg::kP | SegReg::kS | 0xb | SegReg::kDB | SegReg::kG;
constexpr uint16_t kAttrData = SegReg::kP | SegReg::kS | 0x3 | SegReg::kDB | SegReg::kG;
constexpr uint16_t kDpl3 = 3u << 5;

// SYSCALL (SDM Vol. 2): Intel raises #UD outside 64-bit mode.
void syscall(Cpu& c, const Insn&) {
    if (!(c.s.efer & efer::SCE) || c.mode() != Mode::Long64) c.raise_ud();
    uint16_t sel = uint16_t(c.s.star >> 32) & 0xfffc;
    c.s.gpr[RCX] = c.next_rip;
    c.s.gpr[R11] = c.rflags();
    c.s.rflags = (c.s.rflags & ~(c.s.sfmask | fl::RF)) | fl::kFixed1;
    c.s.seg[CS] = SegReg{sel, 0, 0xffffffff, kAttrCode64};
    c.s.seg[SS] = SegReg{uint16_t(sel + 8), 0, 0xffffffff, kAttrData};
    c.next_rip = c.s.lstar;
    c.update_mode();
    c.exit_request = true;
}

void sysret(Cpu& c, const Insn& i) {
    if (!(c.s.efer & efer::SCE) || c.mode() != Mode::Long64) c.raise_ud();
    require_cpl0(c);
    uint16_t base = uint16_t(c.s.star >> 48);
    bool to64 = i.has(pfx::kRexW);
    if (to64 && !canonical(c, c.s.gpr[RCX])) c.raise_gp(0);
    c.sync_flags();
    c.s.rflags = (c.s.gpr[R11] & 0x3c7fd7) | fl::kFixed1;
    if (to64) {
        c.s.seg[CS] = SegReg{uint16_t((base + 16) | 3), 0, 0xffffffff, uint16_t(kAttrCode64 | kDpl3)};
        c.next_rip = c.s.gpr[RCX];
    } else {
        c.s.seg[CS] = SegReg{uint16_t(base | 3), 0, 0xffffffff, uint16_t(kAttrCode32 | kDpl3)};
        c.next_rip = uint32_t(c.s.gpr[RCX]);
    }
    c.s.seg[SS] = SegReg{uint16_t((base + 8) | 3), 0, 0xffffffff, uint16_t(kAttrData | kDpl3)};
    c.update_mode();
    c.exit_request = true;
}

void sysenter(Cpu& c, const Insn&) {
    uint16_t sel = uint16_t(c.s.sysenter_cs) & 0xfffc;
    if (!(c.s.cr0 & cr0::PE) || sel == 0) c.raise_gp(0);
    bool lm = long_mode(c);
    c.sync_flags();
    c.s.rflags &= ~(fl::VM | fl::IF | fl::RF);
    c.s.seg[CS] = SegReg{sel, 0, 0xffffffff, lm ? kAttrCode64 : kAttrCode32};
    c.s.seg[SS] = SegReg{uint16_t(sel + 8), 0, 0xffffffff, kAttrData};
    c.s.gpr[RSP] = lm ? c.s.sysenter_esp : uint32_t(c.s.sysenter_esp);
    c.next_rip = lm ? c.s.sysenter_eip : uint32_t(c.s.sysenter_eip);
    c.update_mode();
    c.exit_request = true;
}

void sysexit(Cpu& c, const Insn& i) {
    uint16_t sel = uint16_t(c.s.sysenter_cs) & 0xfffc;
    if (!(c.s.cr0 & cr0::PE) || sel == 0 || cpl(c) != 0) c.raise_gp(0);
    bool to64 = i.has(pfx::kRexW);
    if (to64 && (!canonical(c, c.s.gpr[RDX]) || !canonical(c, c.s.gpr[RCX]))) c.raise_gp(0);
    if (to64) {
        c.s.seg[CS] = SegReg{uint16_t((sel + 32) | 3), 0, 0xffffffff, uint16_t(kAttrCode64 | kDpl3)};
        c.s.seg[SS] = SegReg{uint16_t((sel + 40) | 3), 0, 0xffffffff, uint16_t(kAttrData | kDpl3)};
        c.next_rip = c.s.gpr[RDX];
        c.s.gpr[RSP] = c.s.gpr[RCX];
    } else {
        c.s.seg[CS] = SegReg{uint16_t((sel + 16) | 3), 0, 0xffffffff, uint16_t(kAttrCode32 | kDpl3)};
        c.s.seg[SS] = SegReg{uint16_t((sel + 24) | 3), 0, 0xffffffff, uint16_t(kAttrData | kDpl3)};
        c.next_rip = uint32_t(c.s.gpr[RDX]);
        c.s.gpr[RSP] = uint32_t(c.s.gpr[RCX]);
    }
    c.update_mode();
    c.exit_request = true;
}

void swapgs(Cpu& c, const Insn&) {
    if (c.mode() != Mode::Long64) c.raise_ud();
    require_cpl0(c);
    uint64_t t = c.s.seg[GS].base;
    c.s.seg[GS].base = c.s.kernel_gs_base;
    c.s.kernel_gs_base = t;
}

// RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE: 64-bit mode with CR4.FSGSBASE (#UD otherwise); aux = FS/GS.
void check_fsgsbase(Cpu& c) {
    if (c.mode() != Mode::Long64 || !(c.s.cr4 & cr4::FSGSBASE)) c.raise_ud();
}
void rdfsbase(Cpu& c, const Insn& i) {
    check_fsgsbase(c);
    uint64_t v = c.s.seg[i.aux].base;
    c.s.gpr[i.reg[0]] = i.osz == 8 ? v : uint32_t(v);
}
void wrfsbase(Cpu& c, const Insn& i) {
    check_fsgsbase(c);
    uint64_t v = i.osz == 8 ? c.s.gpr[i.reg[0]] : uint32_t(c.s.gpr[i.reg[0]]);
    if (!canonical(c, v)) c.raise_gp(0);
    c.s.seg[i.aux].base = v;
}

// ---- selectors -----------------------------------------------------------------------------------

ZydisRegisterClass reg_class(const DecodeCtx& d, int n) {
    if (n >= d.zi.operand_count || d.ops[n].type != ZYDIS_OPERAND_TYPE_REGISTER) return ZYDIS_REGCLASS_INVALID;
    return ZydisRegisterGetClass(d.ops[n].reg.value);
}

Handler select_mov(const DecodeCtx& d) {
    ZydisRegisterClass c0 = reg_class(d, 0), c1 = reg_class(d, 1);
    if (c0 == ZYDIS_REGCLASS_SEGMENT) return mov_to_sreg;
    if (c1 == ZYDIS_REGCLASS_SEGMENT) return mov_from_sreg;
    if (c0 == ZYDIS_REGCLASS_CONTROL) return mov_to_cr;
    if (c1 == ZYDIS_REGCLASS_CONTROL) return mov_from_cr;
    if (c0 == ZYDIS_REGCLASS_DEBUG) return mov_to_dr;
    if (c1 == ZYDIS_REGCLASS_DEBUG) return mov_from_dr;
    return nullptr;
}

bool is_far(const DecodeCtx& d) { return d.zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR; }

template <uint8_t kSeg> Handler select_lxs(const DecodeCtx& d) {
    if (d.insn.kind[1] != kOpMem) return nullptr;
    d.insn.aux = kSeg;
    return load_far_ptr;
}

}  // namespace

void register_system(Registry& r) {
    r.add(ZYDIS_MNEMONIC_MOV, select_mov);
    r.add(ZYDIS_MNEMONIC_PUSH, [](const DecodeCtx& d) -> Handler {
        return reg_class(d, 0) == ZYDIS_REGCLASS_SEGMENT ? push_sreg : nullptr;
    });
    r.add(ZYDIS_MNEMONIC_POP, [](const DecodeCtx& d) -> Handler {
        return reg_class(d, 0) == ZYDIS_REGCLASS_SEGMENT ? pop_sreg : nullptr;
    });
    r.add(ZYDIS_MNEMONIC_LDS, select_lxs<DS>);
    r.add(ZYDIS_MNEMONIC_LES, select_lxs<ES>);
    r.add(ZYDIS_MNEMONIC_LFS, select_lxs<FS>);
    r.add(ZYDIS_MNEMONIC_LGS, select_lxs<GS>);
    r.add(ZYDIS_MNEMONIC_LSS, select_lxs<SS>);

    r.add(ZYDIS_MNEMONIC_JMP, [](const DecodeCtx& d) -> Handler {
        if (!is_far(d)) return nullptr;
        return d.insn.kind[0] == kOpMem ? jmp_far_mem : jmp_far_ptr;
    });
    r.add(ZYDIS_MNEMONIC_CALL, [](const DecodeCtx& d) -> Handler {
        if (!is_far(d)) return nullptr;
        return d.insn.kind[0] == kOpMem ? call_far_mem : call_far_ptr;
    });
    r.add(ZYDIS_MNEMONIC_RET, [](const DecodeCtx& d) -> Handler { return is_far(d) ? ret_far : nullptr; });
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_IRET, ZYDIS_MNEMONIC_IRETD, ZYDIS_MNEMONIC_IRETQ})
        r.add(m, [](const DecodeCtx&) -> Handler { return iret_insn; });

    r.add(ZYDIS_MNEMONIC_INT, [](const DecodeCtx&) -> Handler { return int_n; });
    r.add(ZYDIS_MNEMONIC_INT3, [](const DecodeCtx&) -> Handler { return int3; });
    r.add(ZYDIS_MNEMONIC_INTO, [](const DecodeCtx&) -> Handler { return into; });
    r.add(ZYDIS_MNEMONIC_INT1, [](const DecodeCtx&) -> Handler { return int1; });
    r.add(ZYDIS_MNEMONIC_CLI, [](const DecodeCtx&) -> Handler { return cli; });
    r.add(ZYDIS_MNEMONIC_STI, [](const DecodeCtx&) -> Handler { return sti; });
    r.add(ZYDIS_MNEMONIC_STAC, [](const DecodeCtx&) -> Handler { return stac; });
    r.add(ZYDIS_MNEMONIC_CLAC, [](const DecodeCtx&) -> Handler { return clac; });

    r.add(ZYDIS_MNEMONIC_CLTS, [](const DecodeCtx&) -> Handler { return clts; });
    r.add(ZYDIS_MNEMONIC_LMSW, [](const DecodeCtx&) -> Handler { return lmsw; });
    r.add(ZYDIS_MNEMONIC_SMSW, [](const DecodeCtx&) -> Handler { return smsw; });
    r.add(ZYDIS_MNEMONIC_LGDT, [](const DecodeCtx&) -> Handler { return lgdt<false>; });
    r.add(ZYDIS_MNEMONIC_LIDT, [](const DecodeCtx&) -> Handler { return lgdt<true>; });
    r.add(ZYDIS_MNEMONIC_SGDT, [](const DecodeCtx&) -> Handler { return sgdt<false>; });
    r.add(ZYDIS_MNEMONIC_SIDT, [](const DecodeCtx&) -> Handler { return sgdt<true>; });
    r.add(ZYDIS_MNEMONIC_SLDT, [](const DecodeCtx&) -> Handler { return sldt; });
    r.add(ZYDIS_MNEMONIC_STR, [](const DecodeCtx&) -> Handler { return str; });
    r.add(ZYDIS_MNEMONIC_LLDT, [](const DecodeCtx&) -> Handler { return lldt; });
    r.add(ZYDIS_MNEMONIC_LTR, [](const DecodeCtx&) -> Handler { return ltr; });
    r.add(ZYDIS_MNEMONIC_LAR, [](const DecodeCtx&) -> Handler { return lar_lsl_ver<Probe::Lar>; });
    r.add(ZYDIS_MNEMONIC_LSL, [](const DecodeCtx&) -> Handler { return lar_lsl_ver<Probe::Lsl>; });
    r.add(ZYDIS_MNEMONIC_VERR, [](const DecodeCtx&) -> Handler { return lar_lsl_ver<Probe::Verr>; });
    r.add(ZYDIS_MNEMONIC_VERW, [](const DecodeCtx&) -> Handler { return lar_lsl_ver<Probe::Verw>; });
    r.add(ZYDIS_MNEMONIC_INVLPG, [](const DecodeCtx&) -> Handler { return invlpg; });
    r.add(ZYDIS_MNEMONIC_INVPCID, [](const DecodeCtx&) -> Handler { return invpcid; });
    r.add(ZYDIS_MNEMONIC_WBINVD, [](const DecodeCtx&) -> Handler { return wbinvd; });
    r.add(ZYDIS_MNEMONIC_INVD, [](const DecodeCtx&) -> Handler { return wbinvd; });

    r.add(ZYDIS_MNEMONIC_SYSCALL, [](const DecodeCtx&) -> Handler { return syscall; });
    r.add(ZYDIS_MNEMONIC_SYSRET, [](const DecodeCtx&) -> Handler { return sysret; });
    r.add(ZYDIS_MNEMONIC_SYSENTER, [](const DecodeCtx&) -> Handler { return sysenter; });
    r.add(ZYDIS_MNEMONIC_SYSEXIT, [](const DecodeCtx&) -> Handler { return sysexit; });
    r.add(ZYDIS_MNEMONIC_SWAPGS, [](const DecodeCtx&) -> Handler { return swapgs; });
    r.add(ZYDIS_MNEMONIC_RDFSBASE, [](const DecodeCtx& d) -> Handler { return d.insn.aux = FS, rdfsbase; });
    r.add(ZYDIS_MNEMONIC_RDGSBASE, [](const DecodeCtx& d) -> Handler { return d.insn.aux = GS, rdfsbase; });
    r.add(ZYDIS_MNEMONIC_WRFSBASE, [](const DecodeCtx& d) -> Handler { return d.insn.aux = FS, wrfsbase; });
    r.add(ZYDIS_MNEMONIC_WRGSBASE, [](const DecodeCtx& d) -> Handler { return d.insn.aux = GS, wrfsbase; });

    register_msr(r);
    register_io(r);
}

}  // namespace m86::cpu
