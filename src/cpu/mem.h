// Guest memory access from handlers: the software-TLB fast path, inline.
//
// read<T>(cpu, lin) / write<T>(cpu, lin, v) take a *linear* address (segment base already added).
// The hit path is: index the TLB, compare the tag, check the access stays inside the page, memcpy.
// Everything else (miss, MMIO, code page, page crossing, fault) goes to the Cpu's slow path.
//
// operand helpers: ea()/lin() compute the memory operand's address from an Insn; load<W>/store<W>
// read and write operand i of an instruction whatever its kind (register, memory, immediate).
#pragma once

#include <cstring>

#include "cpu/cpu.h"

namespace m86::cpu {

// Stack = an implicit stack access (ops/stack.h): a non-canonical address raises #SS(0), not #GP(0).
// Non-canonical addresses never hit the TLB, so that check lives on the slow path only.
template <class T, bool Stack = false> inline T read(Cpu& c, uint64_t lin) {
    const TlbEntry& e = c.tlb_r[c.tlb_ctx][(lin >> 12) & (kTlbSize - 1)];
    T v;
    if (e.tag == (lin & kPageMask) && (lin & ~kPageMask) <= kPageSize - sizeof(T)) [[likely]] {
        std::memcpy(&v, reinterpret_cast<const void*>(lin + e.addend), sizeof(T));
    } else {
        if constexpr (Stack) c.stack_canonical(lin, sizeof(T));
        c.read_slow(lin, &v, sizeof(T));
    }
    return v;
}

template <class T, bool Stack = false> inline void write(Cpu& c, uint64_t lin, T v) {
    const TlbEntry& e = c.tlb_w[c.tlb_ctx][(lin >> 12) & (kTlbSize - 1)];
    if (e.tag == (lin & kPageMask) && (lin & ~kPageMask) <= kPageSize - sizeof(T)) [[likely]] {
        std::memcpy(reinterpret_cast<void*>(lin + e.addend), &v, sizeof(T));
    } else {
        if constexpr (Stack) c.stack_canonical(lin, sizeof(T));
        c.write_slow(lin, &v, sizeof(T));
    }
}

// Read-modify-write of a T at linear `lin`: f(old) -> new. f runs only once the location is known to
// be writable, so a fault can never leave f's side effects (flags) behind. (LOCK is implied on a
// single host thread; one host thread per vCPU will need host atomics here.)
template <class T, class F> inline void rmw(Cpu& c, uint64_t lin, F&& f) {
    const TlbEntry& e = c.tlb_w[c.tlb_ctx][(lin >> 12) & (kTlbSize - 1)];
    if (e.tag == (lin & kPageMask) && (lin & ~kPageMask) <= kPageSize - sizeof(T)) [[likely]] {
        void* p = reinterpret_cast<void*>(lin + e.addend);
        T v;
        std::memcpy(&v, p, sizeof(T));
        v = f(v);
        std::memcpy(p, &v, sizeof(T));
        return;
    }
    c.probe_write(lin, sizeof(T));
    T v = read<T>(c, lin);
    write<T>(c, lin, T(f(v)));
}

// Effective address of the memory operand (SDM Vol. 1, 3.7.5), truncated to the address size.
inline uint64_t ea(const Cpu& c, const Insn& i) {
    uint64_t a = uint64_t(int64_t(i.disp));
    if (i.base != kNoReg) a += i.base == kRipReg ? c.next_rip : c.s.gpr[i.base];
    if (i.index != kNoReg) a += c.s.gpr[i.index] << i.scale;
    if (i.asz == 4) return uint32_t(a);
    if (i.asz == 2) return uint16_t(a);
    return a;
}

inline uint64_t seg_base(const Cpu& c, uint8_t seg) { return seg == kSegFlat ? 0 : c.s.seg[seg].base; }

// Linear address of segment:offset. Outside 64-bit mode linear addresses wrap at 4 GiB, and the
// offset is checked against the segment's limit (expand-down aware; an unusable segment always
// fails): #GP(0), or #SS(0) for SS (SDM Vol. 3, 5.3). The check covers the first byte only.
inline uint64_t lin_of(const Cpu& c, uint8_t seg, uint64_t off) {
    if (c.mode() == Mode::Long64) [[likely]]
        return seg_base(c, seg) + off;
    if (off < c.seg_lo[seg] || off > c.seg_hi[seg]) [[unlikely]]
        const_cast<Cpu&>(c).raise_seg_fault(seg);
    return uint32_t(seg_base(c, seg) + off);
}
// The same for a write: outside 64-bit mode the offset is checked against the segment's write
// range, which is empty for code and read-only data segments (SDM Vol. 3, 5.5).
inline uint64_t lin_of_w(const Cpu& c, uint8_t seg, uint64_t off) {
    if (c.mode() == Mode::Long64) [[likely]]
        return seg_base(c, seg) + off;
    if (off < c.seg_wlo[seg] || off > c.seg_whi[seg]) [[unlikely]]
        const_cast<Cpu&>(c).raise_seg_fault(seg);
    return uint32_t(seg_base(c, seg) + off);
}
// Linear address of offset `off` in the memory operand's segment, checked for the operand's access
// (written or only read: Insn::info kMemWrite) outside 64-bit mode.
inline uint64_t lin_op(const Cpu& c, const Insn& i, uint64_t off) {
    if (c.mode() == Mode::Long64) [[likely]]
        return seg_base(c, i.seg) + off;
    return (i.info & info::kMemWrite) ? lin_of_w(c, i.seg, off) : lin_of(c, i.seg, off);
}
// Linear address of the memory operand.
inline uint64_t lin(const Cpu& c, const Insn& i) { return lin_op(c, i, ea(c, i)); }

// Operand i with its kind known at compile time (handlers specialised per operand form).
template <int W, uint8_t K> inline U<W> get(Cpu& c, const Insn& i, int n) {
    if constexpr (K == kOpReg) return c.get_reg<W>(i.reg[n]);
    else if constexpr (K == kOpMem) return read<U<W>>(c, lin(c, i));
    else return U<W>(i.imm);
}

// Operand i as a W-byte value: register, memory or immediate.
template <int W> inline U<W> load(Cpu& c, const Insn& i, int n) {
    switch (i.kind[n]) {
        case kOpReg: return c.get_reg<W>(i.reg[n]);
        case kOpMem: return read<U<W>>(c, lin(c, i));
        default: return U<W>(i.imm);
    }
}

// Store to operand i (register or memory).
template <int W> inline void store(Cpu& c, const Insn& i, int n, U<W> v) {
    if (i.kind[n] == kOpReg)
        c.set_reg<W>(i.reg[n], v);
    else
        write<U<W>>(c, lin(c, i), v);
}

// Stack helpers: the stack width follows the operand size; SS-relative (flat in 64-bit mode).
inline uint64_t stack_base(const Cpu& c) { return c.mode() == Mode::Long64 ? 0 : c.s.seg[SS].base; }

}  // namespace m86::cpu
