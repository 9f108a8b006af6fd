// CPU architectural state: everything a guest can observe about one logical processor.
//
// This is a plain struct on purpose: it can be copied, compared (differential tests), saved and
// restored, and its field offsets are what JIT-generated code addresses directly. Behaviour lives
// elsewhere (cpu.h, flags.h, the ops/ handlers); only tiny accessors sit here.
//
// Register numbering follows the encoding (Intel SDM Vol. 2, Table 2-2): RAX=0 ... R15=15.
#pragma once

#include <cstdint>
#include <cstring>

namespace m86::cpu {

enum Gpr : uint8_t {
    RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15,
};

// Segment registers in encoding order (SDM Vol. 2, 3.1.1.1 "sreg").
enum Seg : uint8_t { ES, CS, SS, DS, FS, GS, kNumSegs, kSegNone = 0xff };

// RFLAGS bits (SDM Vol. 1, 3.4.3).
namespace fl {
constexpr uint64_t CF = 1u << 0, PF = 1u << 2, AF = 1u << 4, ZF = 1u << 6, SF = 1u << 7, TF = 1u << 8,
                   IF = 1u << 9, DF = 1u << 10, OF = 1u << 11, IOPL = 3u << 12, NT = 1u << 14,
                   RF = 1u << 16, VM = 1u << 17, AC = 1u << 18, VIF = 1u << 19, VIP = 1u << 20,
                   ID = 1u << 21;
constexpr uint64_t kArith = CF | PF | AF | ZF | SF | OF;  // the six status flags
constexpr uint64_t kFixed1 = 1u << 1;                     // bit 1 always reads as 1
}  // namespace fl

// Control register and EFER bits used across the tree (SDM Vol. 3, 2.5).
namespace cr0 {
constexpr uint64_t PE = 1u << 0, MP = 1u << 1, EM = 1u << 2, TS = 1u << 3, ET = 1u << 4, NE = 1u << 5,
                   WP = 1u << 16, AM = 1u << 18, NW = 1u << 29, CD = 1u << 30, PG = 1ull << 31;
}
namespace cr4 {
constexpr uint64_t VME = 1u << 0, PVI = 1u << 1, TSD = 1u << 2, DE = 1u << 3, PSE = 1u << 4,
                   PAE = 1u << 5, MCE = 1u << 6, PGE = 1u << 7, PCE = 1u << 8, OSFXSR = 1u << 9,
                   OSXMMEXCPT = 1u << 10, UMIP = 1u << 11, LA57 = 1u << 12, FSGSBASE = 1u << 16,
                   PCIDE = 1u << 17, OSXSAVE = 1u << 18, SMEP = 1u << 20, SMAP = 1u << 21;
}
namespace efer {
constexpr uint64_t SCE = 1u << 0, LME = 1u << 8, LMA = 1u << 10, NXE = 1u << 11;
}

// A segment register with its hidden descriptor cache (SDM Vol. 3, 3.4.3).
struct SegReg {
    uint16_t sel = 0;
    uint64_t base = 0;
    uint32_t limit = 0xffff;
    // Descriptor attribute bits as in the descriptor's bytes 5..6: type(4) S DPL(2) P | AVL L D/B G.
    uint16_t attr = 0;

    static constexpr uint16_t kType = 0x0f, kS = 1u << 4, kDpl = 3u << 5, kP = 1u << 7, kAvl = 1u << 12,
                              kL = 1u << 13, kDB = 1u << 14, kG = 1u << 15;
    unsigned dpl() const { return (attr >> 5) & 3; }
    bool present() const { return attr & kP; }
    bool operator==(const SegReg&) const = default;  // field by field: padding bytes never count
};

struct TableReg {  // GDTR/IDTR
    uint64_t base = 0;
    uint16_t limit = 0xffff;
    bool operator==(const TableReg&) const = default;
};

// An 80-bit x87 register value: 64-bit significand with explicit integer bit, 15-bit exponent + sign.
struct F80 {
    uint64_t mant = 0;
    uint16_t se = 0;  // bit 15 = sign, bits 0..14 = biased exponent
    bool operator==(const F80&) const = default;
};

struct alignas(16) Xmm {
    union {
        uint8_t b[16];
        uint16_t w[8];
        uint32_t d[4];
        uint64_t q[2];
    };
    Xmm() { q[0] = q[1] = 0; }
    bool operator==(const Xmm& o) const { return q[0] == o.q[0] && q[1] == o.q[1]; }
};

struct X87State {
    F80 st[8];          // physical registers R0..R7 (ST(i) = st[(top + i) & 7])
    uint16_t fcw = 0x037f;
    uint16_t fsw = 0;   // TOP lives in bits 11..13 of fsw; see top()/set_top()
    uint16_t ftw = 0xffff;  // full 2-bit tag word: 00 valid, 01 zero, 10 special, 11 empty
    uint16_t fop = 0;
    uint64_t fip = 0, fdp = 0;
    uint16_t fcs = 0, fds = 0;

    unsigned top() const { return (fsw >> 11) & 7; }
    void set_top(unsigned t) { fsw = uint16_t((fsw & ~0x3800) | ((t & 7) << 11)); }
    bool operator==(const X87State&) const = default;
};

// Architectural state of one logical CPU. Lazy arithmetic flags live in Cpu (flags.h), not here:
// rflags here is only authoritative after Cpu::sync_flags().
struct CpuState {
    uint64_t gpr[16] = {};
    uint64_t rip = 0;
    uint64_t rflags = fl::kFixed1;

    SegReg seg[kNumSegs];
    SegReg ldtr, tr;
    TableReg gdtr, idtr;

    uint64_t cr0 = cr0::ET | cr0::CD | cr0::NW;  // reset value 0x60000010 (SDM Vol. 3, 10.1.1)
    uint64_t cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0;
    uint64_t efer = 0;
    uint64_t xcr0 = 1;  // x87 always enabled
    uint64_t dr[8] = {0, 0, 0, 0, 0xffff0ff0, 0x400, 0xffff0ff0, 0x400};

    // MSRs that are plain storage; MSRs with behaviour are handled in the system ops.
    uint64_t star = 0, lstar = 0, cstar = 0, sfmask = 0;
    uint64_t kernel_gs_base = 0;
    uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
    uint64_t tsc_aux = 0, pat = 0x0007040600070406ull;
    uint64_t apic_base = 0xfee00900;
    uint64_t tsc_offset = 0;   // guest TSC = bus TSC + tsc_offset (WRMSR IA32_TSC / TSC_ADJUST)
    uint64_t tsc_adjust = 0;
    uint64_t misc_enable = 1;  // IA32_MISC_ENABLE: fast strings
    uint64_t mtrr_def_type = 0;
    uint64_t mtrr_fixed[11] = {};  // 64K_00000, 16K_80000, 16K_A0000, 4K_C0000 .. 4K_F8000
    uint64_t mtrr_var[16] = {};    // PHYSBASE0, PHYSMASK0, ... PHYSMASK7

    X87State x87;
    Xmm xmm[16];
    uint32_t mxcsr = 0x1f80;

    unsigned cpl() const { return seg[CS].sel & 3; }
    // Field by field (the struct has padding, so memcmp would compare garbage).
    bool operator==(const CpuState&) const = default;
};

// Width helpers used by every handler: W is the operand size in bytes.
template <int W> struct UintOf;
template <> struct UintOf<1> { using T = uint8_t; using S = int8_t; };
template <> struct UintOf<2> { using T = uint16_t; using S = int16_t; };
template <> struct UintOf<4> { using T = uint32_t; using S = int32_t; };
template <> struct UintOf<8> { using T = uint64_t; using S = int64_t; };
template <int W> using U = typename UintOf<W>::T;
template <int W> using S = typename UintOf<W>::S;
template <int W> constexpr uint64_t kMask = W == 8 ? ~0ull : (1ull << (8 * W)) - 1;
template <int W> constexpr uint64_t kSign = 1ull << (8 * W - 1);

}  // namespace m86::cpu
