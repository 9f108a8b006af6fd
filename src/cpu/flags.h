// Lazy arithmetic flags.
//
// Most instructions that write CF/PF/AF/ZF/SF/OF are followed by one that reads at most one or two
// of them (a Jcc after a CMP), or by one that overwrites them all. So instead of computing six bits
// after every ADD, the interpreter records the operation, its width, its operands and its result,
// and derives a flag only when something asks for it (the technique QEMU, Bochs and blink use).
//
// Invariant: when lf.op == FlagOp::None the six status bits in CpuState::rflags are authoritative;
// otherwise they are stale and the LazyFlags record defines them. Cpu::sync_flags() folds the lazy
// record back into rflags (PUSHF, LAHF, interrupts, the end of a run).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/state.h"

namespace m86::cpu {

enum class FlagOp : uint8_t {
    None,   // rflags holds the status flags
    Add,    // res = a + b + carry_in
    Sub,    // res = a - b - carry_in   (CMP, NEG as 0 - b, SBB)
    Logic,  // res = a op b; CF = OF = 0, AF = 0
    Inc,    // res = a + 1, CF preserved in carry_in
    Dec,    // res = a - 1, CF preserved in carry_in
};

struct LazyFlags {
    uint64_t res = 0, a = 0, b = 0;  // width-masked values
    FlagOp op = FlagOp::None;
    uint8_t width = 8;     // operand width in bytes
    uint8_t carry_in = 0;  // ADC/SBB carry in; INC/DEC: the preserved CF
    uint8_t pad_ = 0;

    // op, width and carry_in are always written together, as one 32-bit store: a reader that loads
    // them as one word (the compiler merges the loads in Cpu::cond) would otherwise wait for three
    // byte stores to drain (a failed store-to-load forwarding costs more than the flag logic).
    void set_meta(FlagOp o, unsigned w, uint8_t carry) {
        uint32_t m = uint32_t(o) | uint32_t(w) << 8 | uint32_t(carry) << 16;
        static_assert(offsetof(LazyFlags, pad_) == offsetof(LazyFlags, op) + 3);
        std::memcpy(&op, &m, 4);
    }
    // rflags holds the status flags now.
    void set_none() { set_meta(FlagOp::None, width, carry_in); }
};

// PF: the low byte of the result has an even number of set bits.
inline bool parity_even(uint64_t v) { return !__builtin_parity(unsigned(v & 0xff)); }

// The individual flags, derived from a LazyFlags record (op != None).
inline bool lazy_cf(const LazyFlags& f) {
    switch (f.op) {
        case FlagOp::Add: return f.carry_in ? f.res <= f.a : f.res < f.a;
        case FlagOp::Sub: return f.carry_in ? f.a <= f.b : f.a < f.b;
        case FlagOp::Inc:
        case FlagOp::Dec: return f.carry_in;
        default: return false;
    }
}
inline uint64_t sign_bit(const LazyFlags& f) { return 1ull << (f.width * 8 - 1); }
inline bool lazy_zf(const LazyFlags& f) { return f.res == 0; }
inline bool lazy_sf(const LazyFlags& f) { return f.res & sign_bit(f); }
inline bool lazy_of(const LazyFlags& f) {
    switch (f.op) {
        case FlagOp::Add: return ((f.a ^ f.res) & (f.b ^ f.res)) & sign_bit(f);
        case FlagOp::Sub: return ((f.a ^ f.b) & (f.a ^ f.res)) & sign_bit(f);
        case FlagOp::Inc: return f.res == sign_bit(f);
        case FlagOp::Dec: return f.res == sign_bit(f) - 1;
        default: return false;
    }
}
inline bool lazy_af(const LazyFlags& f) {
    switch (f.op) {
        case FlagOp::Add:
        case FlagOp::Sub: return (f.a ^ f.b ^ f.res) & 0x10;
        case FlagOp::Inc: return (f.res & 0xf) == 0;
        case FlagOp::Dec: return (f.res & 0xf) == 0xf;
        default: return false;
    }
}

// All six status flags at once, with a single dispatch on the operation (PUSHF, interrupts, and
// every eager flag producer that keeps some flags: rotates, BT, ADCX...).
inline uint64_t lazy_all(const LazyFlags& f) {
    const unsigned top = f.width * 8 - 1;
    const uint64_t sb = 1ull << top;
    uint64_t r = (parity_even(f.res) ? fl::PF : 0) | (f.res == 0 ? fl::ZF : 0) | ((f.res >> top & 1) << 7);
    static_assert(fl::AF == 0x10 && fl::SF == 0x80 && fl::CF == 1 && fl::OF == 0x800);
    switch (f.op) {
        case FlagOp::Add:
            r |= (f.a ^ f.b ^ f.res) & fl::AF;
            r |= uint64_t(f.carry_in ? f.res <= f.a : f.res < f.a);
            r |= ((f.a ^ f.res) & (f.b ^ f.res) & sb) ? fl::OF : 0;
            break;
        case FlagOp::Sub:
            r |= (f.a ^ f.b ^ f.res) & fl::AF;
            r |= uint64_t(f.carry_in ? f.a <= f.b : f.a < f.b);
            r |= ((f.a ^ f.b) & (f.a ^ f.res) & sb) ? fl::OF : 0;
            break;
        case FlagOp::Inc:
            r |= uint64_t(f.carry_in & 1) | ((f.res & 0xf) == 0 ? fl::AF : 0) | (f.res == sb ? fl::OF : 0);
            break;
        case FlagOp::Dec:
            r |= uint64_t(f.carry_in & 1) | ((f.res & 0xf) == 0xf ? fl::AF : 0) | (f.res == sb - 1 ? fl::OF : 0);
            break;
        default: break;  // Logic: CF = OF = AF = 0
    }
    return r;
}

// Condition codes in encoding order (SDM Vol. 1, Appendix B): the low nibble of Jcc/SETcc/CMOVcc.
enum Cond : uint8_t {
    kCondO, kCondNO, kCondB, kCondAE, kCondE, kCondNE, kCondBE, kCondA,
    kCondS, kCondNS, kCondP, kCondNP, kCondL, kCondGE, kCondLE, kCondG,
};

}  // namespace m86::cpu
