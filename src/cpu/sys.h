// Internal helpers of the system level, shared by exceptions.cpp (IDT delivery), segment.cpp
// (descriptor loads, far transfers) and ops/system.cpp (the privileged instructions).
//
// Invariants: everything here either commits nothing (check_* functions return what to commit) or
// commits only after its last access that can fault, like every handler (cpu.h). Implicit
// supervisor accesses (descriptor tables, IDT, TSS, the stack of a more privileged level) go
// through sys_read/sys_write, which use the supervisor TLB context whatever the CPL; a fault inside
// them leaves tlb_ctx switched, and the run loop's fault path restores it (update_mode()).
#pragma once

#include "cpu/cpu.h"
#include "cpu/mem.h"

namespace m86::cpu::sys {

// A segment or gate descriptor (SDM Vol. 3, 3.4.5 and 6.11). `hi` is the second quadword of a
// 16-byte system descriptor (long mode TSS/LDT descriptors and gates).
struct Desc {
    uint64_t lo = 0, hi = 0;

    uint32_t base() const { return uint32_t(((lo >> 16) & 0xffffff) | ((lo >> 32) & 0xff000000)); }
    uint64_t base64() const { return base() | (uint64_t(uint32_t(hi)) << 32); }
    uint32_t limit() const {
        uint32_t l = uint32_t((lo & 0xffff) | ((lo >> 32) & 0xf0000));
        return (lo & (1ull << 55)) ? (l << 12) | 0xfff : l;
    }
    // Attribute bits in SegReg::attr layout (descriptor bytes 5..6 without the limit nibble).
    uint16_t attr() const { return uint16_t((lo >> 40) & 0xf0ff); }
    unsigned type() const { return unsigned(lo >> 40) & 0xf; }
    bool s() const { return lo & (1ull << 44); }
    unsigned dpl() const { return unsigned(lo >> 45) & 3; }
    bool present() const { return lo & (1ull << 47); }
    bool l() const { return lo & (1ull << 53); }
    bool db() const { return lo & (1ull << 54); }
    bool is_code() const { return s() && (type() & 8); }
    bool is_data() const { return s() && !(type() & 8); }
    bool conforming() const { return is_code() && (type() & 4); }
    bool readable() const { return is_data() || (type() & 2); }
    bool writable() const { return is_data() && (type() & 2); }
    // Gates.
    uint16_t gate_sel() const { return uint16_t(lo >> 16); }
    uint32_t gate_off32() const { return uint32_t((lo & 0xffff) | ((lo >> 32) & 0xffff0000)); }
    uint64_t gate_off64() const { return gate_off32() | (uint64_t(uint32_t(hi)) << 32); }
    unsigned gate_params() const { return unsigned(lo >> 32) & 0x1f; }
    unsigned gate_ist() const { return unsigned(lo >> 32) & 7; }
};

// System-descriptor types (SDM Vol. 3, Table 3-2; long mode: Table 3-2's IA-32e column).
namespace dt {
constexpr unsigned kTss16Avail = 1, kLdt = 2, kTss16Busy = 3, kCallGate16 = 4, kTaskGate = 5, kIntGate16 = 6,
                   kTrapGate16 = 7, kTss32Avail = 9, kTss32Busy = 11, kCallGate32 = 12, kIntGate32 = 14,
                   kTrapGate32 = 15;
}

inline bool long_mode(const Cpu& c) { return c.s.efer & efer::LMA; }
inline bool protected_mode(const Cpu& c) { return c.mode() != Mode::Real && !(c.s.rflags & fl::VM); }
inline unsigned cpl(const Cpu& c) {
    return c.mode() == Mode::Real ? 0 : (c.s.rflags & fl::VM) ? 3 : (c.s.seg[CS].sel & 3);
}
// Linear address of a system-table byte: wraps at 4 GiB outside long mode.
inline uint64_t sys_lin(const Cpu& c, uint64_t a) { return long_mode(c) ? a : uint32_t(a); }

template <class T> inline T sys_read(Cpu& c, uint64_t lin) {
    unsigned saved = c.tlb_ctx;
    c.tlb_ctx = kCtxSup;
    c.implicit_access = true;
    T v = read<T>(c, sys_lin(c, lin));
    c.implicit_access = false;
    c.tlb_ctx = saved;
    return v;
}
template <class T> inline void sys_write(Cpu& c, uint64_t lin, T v) {
    unsigned saved = c.tlb_ctx;
    c.tlb_ctx = kCtxSup;
    c.implicit_access = true;
    write<T>(c, sys_lin(c, lin), v);
    c.implicit_access = false;
    c.tlb_ctx = saved;
}

// The descriptor `sel` names in the GDT or LDT (8 bytes; 16 with `wide`, long-mode system
// descriptors). Returns false if it lies beyond the table's limit (or the LDT is unusable).
bool read_desc(Cpu& c, uint16_t sel, Desc& d, bool wide = false);
// Set the accessed bit of a code/data descriptor in memory (if not already set).
void set_accessed(Cpu& c, uint16_t sel, Desc& d);
// A segment register cache loaded from a descriptor.
SegReg seg_from_desc(uint16_t sel, const Desc& d);
// The cache of a null selector loaded in protected mode (unusable: P = 0).
inline SegReg null_seg(uint16_t sel) { return SegReg{sel, 0, 0, 0}; }

// Checks for loading a data segment register (DS/ES/FS/GS) or SS with `sel` in protected mode
// (SDM Vol. 2, MOV "Operation"), returning the cache to commit; real/VM86 mode: base = sel << 4.
// Faults with the architectural vector and error code; sets the accessed bit.
SegReg check_seg_load(Cpu& c, uint8_t seg, uint16_t sel);
// Commit a segment register load: cache, then mode/limits (update_mode).
void commit_seg(Cpu& c, uint8_t seg, const SegReg& r);

// A stack being built or unwound by a far transfer or an event delivery: pushes and pops are
// done with explicit widths against an explicit SS base and pointer, and only the caller commits
// the final pointer (set_sp), so a fault part-way leaves RSP unchanged.
struct Stack {
    uint64_t base = 0;  // SS base (0 in 64-bit mode)
    uint64_t sp = 0;
    unsigned asz = 8;   // stack address size: 2 (SS.B = 0), 4 (SS.B = 1), 8 (64-bit mode)
    bool sup = false;   // implicit supervisor accesses (a more privileged stack)

    uint64_t mask() const { return asz == 8 ? ~0ull : asz == 4 ? 0xffffffffull : 0xffffull; }
    uint64_t at(uint64_t off) const {
        uint64_t a = base + (off & mask());
        return asz == 8 ? a : uint32_t(a);
    }
    void push(Cpu& c, uint64_t v, unsigned size);
    uint64_t pop(Cpu& c, unsigned size);
};
// The current stack (SS:RSP with the width SS implies).
Stack current_stack(const Cpu& c);
// Commit a stack pointer of the given address size (16-bit: merges into RSP).
void set_sp(Cpu& c, uint64_t sp, unsigned asz);

// TSS reads used for stack switches (SDM Vol. 3, 7.2.1 and 7.7): limit-checked against TR,
// raising #TS(TR selector | ext) when outside.
uint64_t tss_read(Cpu& c, uint32_t off, unsigned size, uint32_t ext);

inline bool canonical(const Cpu& c, uint64_t a) {
    unsigned bits = (c.s.cr4 & cr4::LA57) ? 57 : 48;
    return uint64_t(int64_t(a << (64 - bits)) >> (64 - bits)) == a;
}

// Report an unsupported feature the guest used, once per feature (the caller raises #GP).
void log_unsupported(const char* what);

// Far transfers and returns (segment.cpp).
void far_jmp(Cpu& c, uint16_t sel, uint64_t off, unsigned osz);
void far_call(Cpu& c, uint16_t sel, uint64_t off, unsigned osz);
void far_ret(Cpu& c, unsigned osz, uint16_t imm);
void iret(Cpu& c, unsigned osz);

// RFLAGS bits a privileged image load may change (IRET, POPF-like), SDM Vol. 2 IRET "Operation".
uint64_t merge_flags(const Cpu& c, uint64_t cur, uint64_t img, unsigned osz, unsigned cpl_now);

}  // namespace m86::cpu::sys
