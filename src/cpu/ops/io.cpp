// Port I/O: IN, OUT, INS, OUTS (with REP), through Bus::io_read/io_write.
//
// Protection (SDM Vol. 1, 19.5 "I/O Permission Bitmap"): in protected mode with CPL > IOPL, and in
// virtual-8086 mode, every port of the access must be allowed (bit = 0) by the TSS I/O permission
// bitmap; otherwise (or if the bitmap lies beyond the TSS limit) #GP(0). INS checks the store
// before reading the port, so a faulting store leaves the device untouched.
#include "cpu/decode.h"
#include "cpu/sys.h"

namespace m86::cpu::sys {

namespace {

void check_io(Cpu& c, uint16_t port, unsigned size) {
    if (c.mode() == Mode::Real) return;
    if (!(c.s.rflags & fl::VM) && cpl(c) <= ((c.s.rflags & fl::IOPL) >> 12)) return;
    unsigned type = c.s.tr.attr & 0xf;
    if ((type != dt::kTss32Avail && type != dt::kTss32Busy) || c.s.tr.limit < 103) c.raise_gp(0);
    uint32_t base = sys_read<uint16_t>(c, c.s.tr.base + 0x66);
    uint32_t byte = base + port / 8;
    if (uint64_t(byte) + 1 > c.s.tr.limit) c.raise_gp(0);
    uint32_t bits = sys_read<uint16_t>(c, c.s.tr.base + byte);
    if ((bits >> (port & 7)) & ((1u << size) - 1)) c.raise_gp(0);
}

// Write an index/count register with the address size: 16 merges, 32 zero-extends.
void set_index(Cpu& c, unsigned r, uint64_t v, unsigned asz) {
    if (asz == 2) c.s.gpr[r] = (c.s.gpr[r] & ~0xffffull) | (v & 0xffff);
    else if (asz == 4) c.s.gpr[r] = uint32_t(v);
    else c.s.gpr[r] = v;
}
// Port accesses a REP INS/OUTS makes before it lets the run loop look around (string.cpp).
constexpr unsigned kIoRepBudget = 1024;

uint64_t amask(unsigned asz) { return asz == 8 ? ~0ull : asz == 4 ? 0xffffffffull : 0xffffull; }

template <int W> void in(Cpu& c, const Insn& i) {
    uint16_t port = i.kind[1] == kOpImm ? uint16_t(i.imm & 0xff) : uint16_t(c.s.gpr[RDX]);
    check_io(c, port, W);
    c.set_reg<W>(RAX, U<W>((c.side_effect(), c.bus.io_read(port, W))));
}

template <int W> void out(Cpu& c, const Insn& i) {
    uint16_t port = i.kind[0] == kOpImm ? uint16_t(i.imm & 0xff) : uint16_t(c.s.gpr[RDX]);
    check_io(c, port, W);
    c.side_effect();
    c.bus.io_write(port, W, uint32_t(c.get_reg<W>(RAX)));
}

template <int W> void ins(Cpu& c, const Insn& i) {
    uint16_t port = uint16_t(c.s.gpr[RDX]);
    check_io(c, port, W);
    const uint8_t seg = c.mode() == Mode::Long64 ? kSegFlat : uint8_t(ES);  // no override for ES:DI
    const uint64_t m = amask(i.asz);
    const bool rep = i.has(pfx::kRep) || i.has(pfx::kRepne);
    const uint64_t step = (c.s.rflags & fl::DF) ? uint64_t(-W) : uint64_t(W);
    unsigned budget = kIoRepBudget;
    for (;;) {
        if (rep && (c.s.gpr[RCX] & m) == 0) break;
        if (rep && budget-- == 0) {  // interruptible between iterations, as string.cpp's
            c.restart_later();
            break;
        }
        uint64_t di = c.s.gpr[RDI] & m;
        uint64_t a = lin_of_w(c, seg, di);
        c.probe_write(a, W);
        write<U<W>>(c, a, U<W>((c.side_effect(), c.bus.io_read(port, W))));
        set_index(c, RDI, di + step, i.asz);
        if (!rep) break;
        set_index(c, RCX, (c.s.gpr[RCX] & m) - 1, i.asz);
    }
}

template <int W> void outs(Cpu& c, const Insn& i) {
    uint16_t port = uint16_t(c.s.gpr[RDX]);
    check_io(c, port, W);
    const uint64_t m = amask(i.asz);
    const bool rep = i.has(pfx::kRep) || i.has(pfx::kRepne);
    const uint64_t step = (c.s.rflags & fl::DF) ? uint64_t(-W) : uint64_t(W);
    unsigned budget = kIoRepBudget;
    for (;;) {
        if (rep && (c.s.gpr[RCX] & m) == 0) break;
        if (rep && budget-- == 0) {  // interruptible between iterations, as string.cpp's
            c.restart_later();
            break;
        }
        uint64_t si = c.s.gpr[RSI] & m;
        U<W> v = read<U<W>>(c, lin_of(c, i.seg, si));
        c.side_effect();
        c.bus.io_write(port, W, v);
        set_index(c, RSI, si + step, i.asz);
        if (!rep) break;
        set_index(c, RCX, (c.s.gpr[RCX] & m) - 1, i.asz);
    }
}

// Width of the accumulator operand (operand n), in bytes.
unsigned acc_width(const DecodeCtx& d, int n) { return d.ops[n].size / 8; }

Handler by_width(unsigned w, Handler h1, Handler h2, Handler h4) { return w == 1 ? h1 : w == 2 ? h2 : h4; }

}  // namespace

void register_io(Registry& r) {
    r.add(ZYDIS_MNEMONIC_IN, [](const DecodeCtx& d) -> Handler {
        return by_width(acc_width(d, 0), in<1>, in<2>, in<4>);
    });
    r.add(ZYDIS_MNEMONIC_OUT, [](const DecodeCtx& d) -> Handler {
        return by_width(acc_width(d, 1), out<1>, out<2>, out<4>);
    });
    r.add(ZYDIS_MNEMONIC_INSB, [](const DecodeCtx&) -> Handler { return ins<1>; });
    r.add(ZYDIS_MNEMONIC_INSW, [](const DecodeCtx&) -> Handler { return ins<2>; });
    r.add(ZYDIS_MNEMONIC_INSD, [](const DecodeCtx&) -> Handler { return ins<4>; });
    r.add(ZYDIS_MNEMONIC_OUTSB, [](const DecodeCtx&) -> Handler { return outs<1>; });
    r.add(ZYDIS_MNEMONIC_OUTSW, [](const DecodeCtx&) -> Handler { return outs<2>; });
    r.add(ZYDIS_MNEMONIC_OUTSD, [](const DecodeCtx&) -> Handler { return outs<4>; });
}

}  // namespace m86::cpu::sys
