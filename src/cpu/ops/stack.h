// Stack access helpers shared by the stack and near-control-transfer classes (ops/stack.cpp,
// ops/control.cpp): push, pop, peek and stack-pointer arithmetic.
//
// The stack is SS-relative. In 64-bit mode it is flat and RSP is used whole (SDM Vol. 1, 3.4.2.1
// and 6.2.3); elsewhere SS.B selects a 32-bit (ESP) or 16-bit (SP) stack pointer, and a 16-bit one
// keeps the upper bits of RSP. Handlers are instantiated with L64 = "decoded in 64-bit mode" (the
// code cache keys blocks by mode), so the 64-bit path carries no mode or SS checks.
//
// Invariant: every helper commits RSP only after its memory access, so a push or pop that faults
// (#PF on the stack page) leaves RSP as it was at the instruction's start.
//
// Stack faults (SDM Vol. 3, 6.15 "Interrupt 12"): outside 64-bit mode every access is checked against
// SS's limit (expand-down aware, both ends of the access) and raises #SS(0); in 64-bit mode a
// non-canonical stack address raises #SS(0) (read/write<T, true>: checked on the TLB-miss path only).
#pragma once

#include "cpu/mem.h"

namespace m86::cpu::stack {

// Mask of the stack-pointer width.
template <bool L64> inline uint64_t sp_mask(const Cpu& c) {
    if constexpr (L64) return ~0ull;
    else return (c.s.seg[SS].attr & SegReg::kDB) ? 0xffffffffull : 0xffffull;
}

// Current stack offset (RSP, ESP or SP).
template <bool L64> inline uint64_t sp(const Cpu& c) { return c.s.gpr[RSP] & sp_mask<L64>(c); }

// Linear address of the n-byte stack access at offset `off`.
template <bool L64> inline uint64_t lin_at(const Cpu& c, uint64_t off, unsigned n) {
    if constexpr (L64) {
        return off;
    } else {
        off &= sp_mask<L64>(c);
        if (off < c.seg_lo[SS] || off + (n - 1) > c.seg_hi[SS]) [[unlikely]]
            const_cast<Cpu&>(c).raise_fault(kSS, 0);
        return uint32_t(c.s.seg[SS].base + off);
    }
}

// Implicit stack reads and writes (#SS for a non-canonical address in 64-bit mode).
template <class T> inline T sread(Cpu& c, uint64_t lin) { return read<T, true>(c, lin); }
template <class T> inline void swrite(Cpu& c, uint64_t lin, T v) { write<T, true>(c, lin, v); }

// Set the stack pointer to `off`, wrapped to the stack-pointer width.
template <bool L64> inline void set_sp(Cpu& c, uint64_t off) {
    if constexpr (L64) {
        c.s.gpr[RSP] = off;
    } else {
        uint64_t m = sp_mask<L64>(c);
        c.s.gpr[RSP] = (c.s.gpr[RSP] & ~m) | (off & m);
    }
}

// Push a W-byte value (W = operand size of the push).
template <int W, bool L64> inline void push(Cpu& c, U<W> v) {
    uint64_t off = sp<L64>(c) - W;
    swrite<U<W>>(c, lin_at<L64>(c, off, W), v);
    set_sp<L64>(c, off);
}

// Read the W-byte value `depth` bytes above the top of the stack, without popping.
template <int W, bool L64> inline U<W> peek(Cpu& c, uint64_t depth = 0) {
    return sread<U<W>>(c, lin_at<L64>(c, sp<L64>(c) + depth, W));
}

// Pop a W-byte value.
template <int W, bool L64> inline U<W> pop(Cpu& c) {
    U<W> v = peek<W, L64>(c);
    set_sp<L64>(c, sp<L64>(c) + W);
    return v;
}

}  // namespace m86::cpu::stack
