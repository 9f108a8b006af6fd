// String instructions: MOVS, CMPS, SCAS, LODS, STOS (byte/word/dword/qword), with REP, REPE, REPNE.
// (INS/OUTS are port I/O: the system class.)
//
// SDM Vol. 2, the instruction pages and "REP/REPE/REPZ/REPNE/REPNZ"; Vol. 1, 7.3.9.
//
// Operands are implicit: the source is seg:rSI (DS or an override prefix; in 64-bit mode flat unless
// FS/GS), the destination is always ES:rDI (no override possible). The address size (16/32/64)
// selects SI/ESI/RSI, DI/EDI/RDI and the counter CX/ECX/RCX; index arithmetic wraps at that width,
// and the 32-bit register writes zero-extend (like any 32-bit GPR write) while 16-bit writes merge.
// DF selects the direction. Handlers are templates over the element width W, the address size A
// and the repeat kind, so the inner loops carry no run-time width or prefix checks.
//
// Restartability: a repeated instruction commits RCX/RSI/RDI (and, for CMPS/SCAS, the flags) after
// every completed iteration. If iteration k faults, the state shows exactly k completed iterations
// with RIP still at the instruction, which is what the hardware reports (SDM Vol. 1, 7.3.9.2: the
// instruction can be restarted after the fault). The same property lets a repeat stop part-way on
// purpose (single-step: one iteration per #DB) by pointing next_rip back at itself.
//
// Speed: REP MOVS and REP STOS, in either direction, move whole runs of elements that lie within one
// page of source and destination through host pointers (Cpu::host_ptr, which walks the page tables
// and fills the TLB once per page). Everything else (MMIO, an element straddling a page, overlap
// closer than one element, CMPS/SCAS/LODS) takes the element-wise path through read<>/write<>.
#include <algorithm>
#include <cstring>

#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {
namespace {

enum class Op : uint8_t { Movs, Cmps, Scas, Lods, Stos };
// Repeat kinds. MOVS/LODS/STOS repeat with either F3 or F2 (the hardware treats F2 like F3 there;
// the differential tests check it on the host). CMPS/SCAS distinguish REPE (F3) and REPNE (F2).
enum class Rep : uint8_t { None, Rep, RepE, RepNE };

// Work a repeated instruction does before it lets the run loop look around (see string_op): about
// 1024 element-wise accesses (MMIO included) or 256 page-sized runs (1 MiB of RAM copied).
constexpr unsigned kRepBudget = 1024, kRunCost = 4;

// Index/counter register of address size A (2, 4, 8 bytes).
template <int A>
inline uint64_t areg(const Cpu& c, unsigned r) {
    return c.s.gpr[r] & kMask<A>;
}
template <int A>
inline void set_areg(Cpu& c, unsigned r, uint64_t v) {
    c.set_reg<A>(r, U<A>(v));
}

// +W or -W by DF, as a 64-bit two's-complement step (masked to A bits when written back).
template <int W>
inline uint64_t step(const Cpu& c) {
    return (c.s.rflags & fl::DF) ? uint64_t(-W) : uint64_t(W);
}

// Linear address of a W-byte element at seg:off. Outside 64-bit mode the whole element must lie
// within the segment limit (SDM Vol. 3, 5.3); lin_of checks the first byte, this adds the last.
// Wr: the element is written (the segment's write range, empty for read-only and code segments).
template <int W, bool Wr = false>
inline uint64_t elem_lin(const Cpu& c, uint8_t seg, uint64_t off) {
    uint64_t a = Wr ? lin_of_w(c, seg, off) : lin_of(c, seg, off);
    if constexpr (W > 1) {
        if (c.mode() != Mode::Long64 && off + (W - 1) > (Wr ? c.seg_whi[seg] : c.seg_hi[seg])) [[unlikely]]
            const_cast<Cpu&>(c).raise_seg_fault(seg);
    }
    return a;
}
// The destination segment is in Insn::aux (set by the selector): ES, or kSegFlat in 64-bit mode.
template <int W, bool Wr = false>
inline uint64_t dst_lin(const Cpu& c, const Insn& i, uint64_t di) {
    return elem_lin<W, Wr>(c, uint8_t(i.aux), di);
}
template <int W>
inline uint64_t src_lin(const Cpu& c, const Insn& i, uint64_t si) {
    return elem_lin<W>(c, i.seg, si);
}

// ---- one iteration of each operation -------------------------------------------------------------
// Each reads its operands first and commits (memory write last among the faulting accesses,
// registers and flags after it), so a fault leaves the state of the previous iteration.

template <int W, int A>
inline void movs1(Cpu& c, const Insn& i) {
    uint64_t si = areg<A>(c, RSI), di = areg<A>(c, RDI), d = step<W>(c);
    U<W> v = read<U<W>>(c, src_lin<W>(c, i, si));
    write<U<W>>(c, dst_lin<W, true>(c, i, di), v);
    set_areg<A>(c, RSI, si + d);
    set_areg<A>(c, RDI, di + d);
}

template <int W, int A>
inline void stos1(Cpu& c, const Insn& i) {
    uint64_t di = areg<A>(c, RDI);
    write<U<W>>(c, dst_lin<W, true>(c, i, di), c.get_reg<W>(RAX));
    set_areg<A>(c, RDI, di + step<W>(c));
}

template <int W, int A>
inline void lods1(Cpu& c, const Insn& i) {
    uint64_t si = areg<A>(c, RSI);
    U<W> v = read<U<W>>(c, src_lin<W>(c, i, si));
    c.set_reg<W>(RAX, v);  // LODSD zero-extends into RAX like any 32-bit register write
    set_areg<A>(c, RSI, si + step<W>(c));
}

// CMPS: flags as CMP [rSI], [rDI] (source minus destination; SDM Vol. 2, "CMPS"). Returns ZF.
template <int W, int A>
inline bool cmps1(Cpu& c, const Insn& i) {
    uint64_t si = areg<A>(c, RSI), di = areg<A>(c, RDI), d = step<W>(c);
    U<W> a = read<U<W>>(c, src_lin<W>(c, i, si));
    U<W> b = read<U<W>>(c, dst_lin<W>(c, i, di));
    U<W> r = U<W>(a - b);
    c.set_lazy(FlagOp::Sub, W, r, a, b);
    set_areg<A>(c, RSI, si + d);
    set_areg<A>(c, RDI, di + d);
    return r == 0;
}

// SCAS: flags as CMP rAX, [rDI]. Returns ZF.
template <int W, int A>
inline bool scas1(Cpu& c, const Insn& i) {
    uint64_t di = areg<A>(c, RDI);
    U<W> a = c.get_reg<W>(RAX);
    U<W> b = read<U<W>>(c, dst_lin<W>(c, i, di));
    U<W> r = U<W>(a - b);
    c.set_lazy(FlagOp::Sub, W, r, a, b);
    set_areg<A>(c, RDI, di + step<W>(c));
    return r == 0;
}

// ---- bulk paths ----------------------------------------------------------------------------------

// How many whole W-byte elements, at most n, a run starting with the element at offset `off`
// (address size A) and linear address `la` can take before it leaves the page or the A-bit offset
// wraps. Forward runs go up from `la`; backward runs go down from it (the first element is the
// highest). 0 when the first element itself straddles a page or the offset wrap.
template <int W, int A, bool Down>
inline uint64_t run_len(uint64_t off, uint64_t la, uint64_t n) {
    uint64_t po = la & ~kPageMask;
    uint64_t k;
    if constexpr (!Down) {
        k = (kPageSize - po) / W;
        if constexpr (A < 8) k = std::min<uint64_t>(k, ((kMask<A> - off) + 1) / W);
    } else {
        if (po + W > kPageSize) return 0;
        k = po / W + 1;
        if constexpr (A < 8) {
            if (off > kMask<A> - (W - 1)) return 0;
            k = std::min<uint64_t>(k, off / W + 1);
        }
    }
    return std::min(k, n);
}

// Outside 64-bit mode a run must also stay within the segment limits (SDM Vol. 3, 5.3): cut it to
// the elements wholly inside [seg_lo, seg_hi] (Cpu, kept by update_mode), starting with the one at
// `off`. 0 when that first element is not inside: the element-wise path then raises the fault.
template <int W, bool Down, bool Wr = false>
inline uint64_t seg_room(const Cpu& c, uint8_t seg, uint64_t off, uint64_t k) {
    if (c.mode() == Mode::Long64) [[likely]]
        return k;
    uint64_t lo = Wr ? c.seg_wlo[seg] : c.seg_lo[seg], hi = Wr ? c.seg_whi[seg] : c.seg_hi[seg];
    if (off < lo || off > hi || hi - off < W - 1) return 0;
    return std::min(k, Down ? (off - lo) / W + 1 : (hi - off + 1) / W);
}

// REP MOVS: copy the next run of elements that lies within one source page and one destination
// page. Returns the number of elements done (0: take the element-wise path once).
template <int W, int A, bool Down>
uint64_t movs_run(Cpu& c, const Insn& i, uint64_t n) {
    uint64_t si = areg<A>(c, RSI), di = areg<A>(c, RDI);
    uint64_t sl = src_lin<W>(c, i, si), dl = dst_lin<W, true>(c, i, di);
    uint64_t k = std::min(run_len<W, A, Down>(si, sl, n), run_len<W, A, Down>(di, dl, n));
    k = seg_room<W, Down>(c, i.seg, si, seg_room<W, Down, true>(c, uint8_t(i.aux), di, k));
    if (k < 2) return 0;
    uint64_t back = Down ? (k - 1) * W : 0;  // from the first element to the lowest one
    // Translate at the first element (a #PF must report its address in CR2), source before
    // destination as the element-wise order does. Both may fault; nothing has been written yet.
    // Each run lies in one page, so the pointers to its lowest bytes follow from the first's.
    const uint8_t* s = c.host_ptr(sl, Access::Read);
    if (!s) return 0;  // MMIO
    uint8_t* d = c.host_ptr(dl, Access::Write);
    if (!d) return 0;
    s -= back;
    d -= back;
    size_t bytes = size_t(k * W);
    // s and d now point to the lowest bytes of the runs. (Host addresses also catch physical
    // aliasing: every RAM page is in the same host mapping.)
    // Overlap where the destination lies ahead of the source in the direction of travel: the
    // element-wise order replicates the data with period |d - s|. Copy in slices of whole elements
    // no longer than that period, in the direction of travel, so each slice reads only bytes that
    // are already final. Closer than one element: element-wise path.
    if (!Down && d > s && d < s + bytes) {
        size_t period = size_t(d - s) / W * W;
        if (period == 0) return 0;
        for (size_t off = 0; off < bytes; off += period)
            std::memcpy(d + off, s + off, std::min(period, bytes - off));
    } else if (Down && d < s && s < d + bytes) {
        size_t period = size_t(s - d) / W * W;
        if (period == 0) return 0;
        for (size_t off = bytes; off > 0;) {
            size_t len = std::min(period, off);
            off -= len;
            std::memcpy(d + off, s + off, len);
        }
    } else {
        std::memmove(d, s, bytes);  // disjoint, or the destination trails: reads see old data
    }
    set_areg<A>(c, RSI, Down ? si - bytes : si + bytes);
    set_areg<A>(c, RDI, Down ? di - bytes : di + bytes);
    set_areg<A>(c, RCX, n - k);
    return k;
}

// REP STOS: fill the next run of elements within one destination page.
template <int W, int A, bool Down>
uint64_t stos_run(Cpu& c, const Insn& i, uint64_t n) {
    uint64_t di = areg<A>(c, RDI), dl = dst_lin<W, true>(c, i, di);
    uint64_t k = seg_room<W, Down, true>(c, uint8_t(i.aux), di, run_len<W, A, Down>(di, dl, n));
    if (k < 2) return 0;
    uint64_t back = Down ? (k - 1) * W : 0;
    uint8_t* d = c.host_ptr(dl, Access::Write);  // at the first element: CR2 on a #PF
    if (!d) return 0;
    d -= back;
    U<W> v = c.get_reg<W>(RAX);
    if constexpr (W == 1) {
        std::memset(d, v, size_t(k));
    } else {
        for (uint64_t j = 0; j < k; j++) std::memcpy(d + j * W, &v, W);
    }
    set_areg<A>(c, RDI, Down ? di - k * W : di + k * W);
    set_areg<A>(c, RCX, n - k);
    return k;
}

// ---- handlers ------------------------------------------------------------------------------------

template <Op O, int W, int A, Rep R>
void string_op(Cpu& c, const Insn& i) {
    if constexpr (R == Rep::None) {
        if constexpr (O == Op::Movs)
            movs1<W, A>(c, i);
        else if constexpr (O == Op::Stos)
            stos1<W, A>(c, i);
        else if constexpr (O == Op::Lods)
            lods1<W, A>(c, i);
        else if constexpr (O == Op::Cmps)
            cmps1<W, A>(c, i);
        else
            scas1<W, A>(c, i);
    } else {
        // SDM Vol. 2, "REP/REPE/REPZ/REPNE/REPNZ" operation: while the count is not zero, do one
        // iteration, decrement the count, and for CMPS/SCAS stop when ZF says so.
        //
        // The whole repeat runs inside this handler. Re-executing the instruction is how it gives
        // up control part-way: leave the count/indices committed, set next_rip back to the
        // instruction and end the block. Single-stepping does that after every iteration (TF set:
        // one iteration, then the #DB trap with RIP at the instruction while iterations remain, as
        // the host does, checked there: SDM Vol. 3, 18.3.1.4 and the REP page).
        //
        // A long repeat gives up control the same way after kRepBudget units of work (an element
        // done one by one costs 1, a page-sized run kRunCost): REP string instructions are
        // interruptible between iterations (SDM Vol. 1, 7.3.9.2), so interrupts, timers and host
        // input are served while a guest copies gigabytes or writes MMIO 2^32 times. It also
        // asks the CPU to end its slice (Cpu::yield), so the board's loop turns.
        uint64_t n = areg<A>(c, RCX);
        unsigned budget = kRepBudget;
        while (n != 0) {
            if (budget == 0) [[unlikely]] {
                c.restart_later();
                break;
            }
            bool step = c.s.rflags & fl::TF;
            if constexpr (O == Op::Movs || O == Op::Stos) {
                if (!step) [[likely]] {
                    uint64_t k;
                    if (!(c.s.rflags & fl::DF))
                        k = O == Op::Movs ? movs_run<W, A, false>(c, i, n) : stos_run<W, A, false>(c, i, n);
                    else
                        k = O == Op::Movs ? movs_run<W, A, true>(c, i, n) : stos_run<W, A, true>(c, i, n);
                    if (k) {
                        n -= k;
                        budget -= std::min(budget, kRunCost);
                        continue;
                    }
                }
            }
            bool zf = false;
            if constexpr (O == Op::Movs)
                movs1<W, A>(c, i);
            else if constexpr (O == Op::Stos)
                stos1<W, A>(c, i);
            else if constexpr (O == Op::Lods)
                lods1<W, A>(c, i);
            else if constexpr (O == Op::Cmps)
                zf = cmps1<W, A>(c, i);
            else
                zf = scas1<W, A>(c, i);
            set_areg<A>(c, RCX, --n);
            budget--;
            if constexpr (R == Rep::RepE) {
                if (!zf) break;
            } else if constexpr (R == Rep::RepNE) {
                if (zf) break;
            }
            (void)zf;
            if (step) [[unlikely]] {
                if (n != 0) {
                    c.next_rip = c.s.rip;  // more to do: restart here after the trap
                    c.exit_request = true;
                }
                break;
            }
        }
    }
}

// ---- selectors -----------------------------------------------------------------------------------

template <Op O, int W, Rep R>
Handler by_asz(unsigned a) {
    return a == 2 ? &string_op<O, W, 2, R> : a == 4 ? &string_op<O, W, 4, R> : &string_op<O, W, 8, R>;
}

template <Op O, Rep R>
Handler by_width(unsigned w, unsigned a) {
    switch (w) {
        case 1: return by_asz<O, 1, R>(a);
        case 2: return by_asz<O, 2, R>(a);
        case 4: return by_asz<O, 4, R>(a);
        default: return by_asz<O, 8, R>(a);
    }
}

// The source segment: the segment of the hidden rSI-based memory operand (DS or the override).
uint8_t source_seg(const DecodeCtx& d) {
    for (unsigned k = 0; k < d.zi.operand_count; k++) {
        const ZydisDecodedOperand& op = d.ops[k];
        if (op.type != ZYDIS_OPERAND_TYPE_MEMORY) continue;
        ZydisRegister b = op.mem.base;
        if (b != ZYDIS_REGISTER_RSI && b != ZYDIS_REGISTER_ESI && b != ZYDIS_REGISTER_SI) continue;
        uint8_t s = (op.mem.segment >= ZYDIS_REGISTER_ES && op.mem.segment <= ZYDIS_REGISTER_GS)
                        ? uint8_t(op.mem.segment - ZYDIS_REGISTER_ES)
                        : uint8_t(DS);
        if (d.mode == Mode::Long64 && s != FS && s != GS) return kSegFlat;
        return s;
    }
    return d.insn.seg;
}

template <Op O>
Handler select_string(const DecodeCtx& d) {
    // MOVSD and CMPSD share their mnemonic with the SSE2 scalar-double instructions (F2 0F 10,
    // F2 0F C2): only the one-byte-opcode forms (A4..AF) are string instructions.
    if (d.zi.opcode_map != ZYDIS_OPCODE_MAP_DEFAULT || d.zi.opcode < 0xa4 || d.zi.opcode > 0xaf)
        return nullptr;
    Insn& i = d.insn;
    i.seg = source_seg(d);
    i.aux = d.mode == Mode::Long64 ? kSegFlat : uint8_t(ES);
    unsigned w = i.osz, a = i.asz;
    if constexpr (O == Op::Cmps || O == Op::Scas) {
        if (i.has(pfx::kRepne)) return by_width<O, Rep::RepNE>(w, a);
        if (i.has(pfx::kRep)) return by_width<O, Rep::RepE>(w, a);
    } else {
        if (i.has(pfx::kRep | pfx::kRepne)) return by_width<O, Rep::Rep>(w, a);
    }
    return by_width<O, Rep::None>(w, a);
}

}  // namespace

void register_string(Registry& r) {
    for (ZydisMnemonic m :
         {ZYDIS_MNEMONIC_MOVSB, ZYDIS_MNEMONIC_MOVSW, ZYDIS_MNEMONIC_MOVSD, ZYDIS_MNEMONIC_MOVSQ})
        r.add(m, select_string<Op::Movs>);
    for (ZydisMnemonic m :
         {ZYDIS_MNEMONIC_CMPSB, ZYDIS_MNEMONIC_CMPSW, ZYDIS_MNEMONIC_CMPSD, ZYDIS_MNEMONIC_CMPSQ})
        r.add(m, select_string<Op::Cmps>);
    for (ZydisMnemonic m :
         {ZYDIS_MNEMONIC_SCASB, ZYDIS_MNEMONIC_SCASW, ZYDIS_MNEMONIC_SCASD, ZYDIS_MNEMONIC_SCASQ})
        r.add(m, select_string<Op::Scas>);
    for (ZydisMnemonic m :
         {ZYDIS_MNEMONIC_LODSB, ZYDIS_MNEMONIC_LODSW, ZYDIS_MNEMONIC_LODSD, ZYDIS_MNEMONIC_LODSQ})
        r.add(m, select_string<Op::Lods>);
    for (ZydisMnemonic m :
         {ZYDIS_MNEMONIC_STOSB, ZYDIS_MNEMONIC_STOSW, ZYDIS_MNEMONIC_STOSD, ZYDIS_MNEMONIC_STOSQ})
        r.add(m, select_string<Op::Stos>);
}

}  // namespace m86::cpu
