// The asmjit translator (jit.h).
//
// Host code for a block, register use: rbx = the Cpu, r12 = the guest RIP at block entry (both
// callee-saved, so they survive handler calls); rax, rcx, rdx scratch.
//
// Two kinds of guest instructions:
//   - native: register-only forms emitted as host instructions (MOV, LEA, ADD/SUB/CMP/AND/OR/XOR/
//     TEST on 32/64-bit GPRs). They cannot fault and read nothing but registers, so between them
//     RIP and the retired count are not kept up to date in memory: the translator knows both.
//   - called: every other instruction runs its interpreter handler, exactly as the run loop does:
//
//         rip = entry + offset; icount += native ones since the last sync   (state a handler sees)
//         next_rip = rip + len; handler(cpu, insn); rip = next_rip; icount += 1
//         if (exit_request) return k + 1                                    (not after the last)
//
// A fault leaves host code by longjmp from the handler, with RIP and the retired count exactly as
// the interpreter would have them. The block's Insn records are addressed directly: they never move
// once the block is in the code cache, and its host code is freed with it (Block::~Block).
#include <Zydis/Zydis.h>
#include <asmjit/x86.h>

#include <vector>

#include "cpu/cpu.h"
#include "cpu/flags.h"
#include "jit/jit.h"

namespace m86::jit {

namespace {

namespace x86 = asmjit::x86;
using cpu::Insn;

// Offsets of the Cpu fields host code touches, read from a live Cpu (the layout is the same for
// every Cpu; offsetof is not defined for a class like Cpu).
struct Layout {
    int32_t rip, next_rip, icount, exit_request, gpr, lf_res, lf_a, lf_b, lf_meta;
    explicit Layout(cpu::Cpu& c) {
        auto off = [&c](const void* field) {
            return int32_t(static_cast<const char*>(field) - reinterpret_cast<const char*>(&c));
        };
        rip = off(&c.s.rip);
        next_rip = off(&c.next_rip);
        icount = off(&c.icount);
        exit_request = off(&c.exit_request);
        gpr = off(&c.s.gpr[0]);
        lf_res = off(&c.lf.res);
        lf_a = off(&c.lf.a);
        lf_b = off(&c.lf.b);
        lf_meta = off(&c.lf.op);  // op, width, carry_in, pad: one 32-bit word (LazyFlags::set_meta)
    }
};

class Emitter {
public:
    Emitter(x86::Assembler& a, const Layout& l) : a_(a), l_(l) {}

    // Emit instruction `i` at byte offset `off` from the block's start natively; false if it has
    // no native form (nothing emitted then).
    bool native(const Insn& i, uint32_t off) {
        if (!(i.info & cpu::info::kGpr32or64) || (i.prefix & cpu::pfx::kLock) || (i.osz != 4 && i.osz != 8))
            return false;
        const bool w8 = i.osz == 8;
        const bool rr = i.kind[0] == cpu::kOpReg && i.kind[1] == cpu::kOpReg && i.kind[2] == cpu::kOpNone;
        const bool ri = i.kind[0] == cpu::kOpReg && i.kind[1] == cpu::kOpImm && i.kind[2] == cpu::kOpNone;
        switch (i.mnemonic) {
            case ZYDIS_MNEMONIC_MOV:
                if (rr) {
                    load(x86::rax, i.reg[1], w8);
                } else if (ri) {
                    a_.mov(x86::rax, w8 ? i.imm : uint32_t(i.imm));
                } else {
                    return false;
                }
                a_.mov(gpr(i.reg[0]), x86::rax);
                return true;
            case ZYDIS_MNEMONIC_LEA: {
                if (i.kind[0] != cpu::kOpReg || i.kind[1] != cpu::kOpMem || i.asz == 2) return false;
                // rax = disp + base + (index << scale), truncated to the address size, then to the
                // operand size (mem.h ea(); RIP-relative: from the next instruction's address).
                a_.mov(x86::rax, uint64_t(i.disp));
                if (i.base == cpu::kRipReg) {
                    a_.add(x86::rax, x86::r12);
                    a_.add(x86::rax, int32_t(off + i.len));
                } else if (i.base != cpu::kNoReg) {
                    a_.add(x86::rax, gpr(i.base));
                }
                if (i.index != cpu::kNoReg) {
                    a_.mov(x86::rcx, gpr(i.index));
                    if (i.scale) a_.shl(x86::rcx, i.scale);
                    a_.add(x86::rax, x86::rcx);
                }
                if (i.asz == 4 || !w8) a_.mov(x86::eax, x86::eax);
                a_.mov(gpr(i.reg[0]), x86::rax);
                return true;
            }
            default: break;
        }
        // ALU: lazy flags as the interpreter leaves them (flags.h): a, b, res masked to the width.
        cpu::FlagOp op;
        bool write = true;
        switch (i.mnemonic) {
            case ZYDIS_MNEMONIC_ADD: op = cpu::FlagOp::Add; break;
            case ZYDIS_MNEMONIC_SUB: op = cpu::FlagOp::Sub; break;
            case ZYDIS_MNEMONIC_CMP: op = cpu::FlagOp::Sub, write = false; break;
            case ZYDIS_MNEMONIC_AND:
            case ZYDIS_MNEMONIC_OR:
            case ZYDIS_MNEMONIC_XOR: op = cpu::FlagOp::Logic; break;
            case ZYDIS_MNEMONIC_TEST: op = cpu::FlagOp::Logic, write = false; break;
            default: return false;
        }
        if (!rr && !ri) return false;
        load(x86::rax, i.reg[0], w8);
        if (rr)
            load(x86::rcx, i.reg[1], w8);
        else
            a_.mov(x86::rcx, w8 ? i.imm : uint32_t(i.imm));
        const x86::Gp res = w8 ? x86::Gp(x86::rdx) : x86::Gp(x86::edx), b = w8 ? x86::Gp(x86::rcx) : x86::Gp(x86::ecx);
        a_.mov(x86::rdx, x86::rax);
        switch (i.mnemonic) {
            case ZYDIS_MNEMONIC_ADD: a_.add(res, b); break;
            case ZYDIS_MNEMONIC_SUB:
            case ZYDIS_MNEMONIC_CMP: a_.sub(res, b); break;
            case ZYDIS_MNEMONIC_AND:
            case ZYDIS_MNEMONIC_TEST: a_.and_(res, b); break;
            case ZYDIS_MNEMONIC_OR: a_.or_(res, b); break;
            default: a_.xor_(res, b); break;
        }
        // (32-bit host operations zero-extend: res is masked to the width already.)
        a_.mov(x86::qword_ptr(x86::rbx, l_.lf_a), x86::rax);
        a_.mov(x86::qword_ptr(x86::rbx, l_.lf_b), x86::rcx);
        a_.mov(x86::qword_ptr(x86::rbx, l_.lf_res), x86::rdx);
        a_.mov(x86::dword_ptr(x86::rbx, l_.lf_meta), uint32_t(op) | uint32_t(i.osz) << 8);
        if (write) a_.mov(gpr(i.reg[0]), x86::rdx);
        return true;
    }

private:
    x86::Mem gpr(unsigned r) const { return x86::qword_ptr(x86::rbx, l_.gpr + int32_t(r) * 8); }
    // dst = GPR r, zero-extended from 32 bits when !w8.
    void load(const x86::Gp& dst, unsigned r, bool w8) {
        if (w8)
            a_.mov(dst, gpr(r));
        else
            a_.mov(dst.r32(), x86::dword_ptr(x86::rbx, l_.gpr + int32_t(r) * 8));
    }

    x86::Assembler& a_;
    const Layout& l_;
};

class Translator final : public cpu::BlockTranslator {
public:
    cpu::HostCode translate(cpu::Cpu& c, const cpu::Block& b) override {
        const Layout l(c);
        asmjit::CodeHolder code;
        code.init(rt_.environment());
        x86::Assembler a(&code);
        Emitter em(a, l);
        auto field = [&](int32_t off) { return x86::qword_ptr(x86::rbx, off); };

        a.push(x86::rbx);
        a.push(x86::r12);
        a.sub(x86::rsp, 8);  // 16-byte alignment at the calls
        a.mov(x86::rbx, x86::rdi);
        a.mov(x86::r12, field(l.rip));

        struct Exit {
            asmjit::Label at;
            uint32_t count;  // instructions run
        };
        std::vector<Exit> exits;
        asmjit::Label done = a.newLabel();
        uint32_t off = 0, pending = 0;  // byte offset of insn k; native insns not yet in icount
        bool rip_stale = false;         // s.rip is behind (native instructions ran)
        for (uint32_t k = 0; k < b.n; k++) {
            const Insn& insn = b.insns[k];
            if (em.native(insn, off)) {
                pending++;
                rip_stale = true;
                off += insn.len;
                continue;
            }
            if (pending) a.add(field(l.icount), pending);
            pending = 0;
            if (rip_stale) {
                a.lea(x86::rax, x86::ptr(x86::r12, int32_t(off)));
                a.mov(field(l.rip), x86::rax);
            }
            a.lea(x86::rax, x86::ptr(x86::r12, int32_t(off + insn.len)));
            a.mov(field(l.next_rip), x86::rax);
            a.mov(x86::rdi, x86::rbx);
            a.mov(x86::rsi, reinterpret_cast<uint64_t>(&insn));
            a.mov(x86::rax, reinterpret_cast<uint64_t>(insn.fn));
            a.call(x86::rax);
            a.mov(x86::rax, field(l.next_rip));
            a.mov(field(l.rip), x86::rax);
            a.add(field(l.icount), 1);
            rip_stale = false;
            off += insn.len;
            if (k + 1 < b.n) {
                Exit e{a.newLabel(), k + 1};
                a.cmp(x86::byte_ptr(x86::rbx, l.exit_request), 0);
                a.jne(e.at);
                exits.push_back(e);
            }
        }
        if (pending) a.add(field(l.icount), pending);
        if (rip_stale) {
            a.lea(x86::rax, x86::ptr(x86::r12, int32_t(off)));
            a.mov(field(l.rip), x86::rax);
        }
        a.mov(x86::eax, b.n);
        a.bind(done);
        a.add(x86::rsp, 8);
        a.pop(x86::r12);
        a.pop(x86::rbx);
        a.ret();
        for (const Exit& e : exits) {
            a.bind(e.at);
            a.mov(x86::eax, e.count);
            a.jmp(done);
        }

        cpu::HostCode fn = nullptr;
        if (rt_.add(&fn, &code) != asmjit::kErrorOk) return nullptr;  // out of memory: interpret
        return fn;
    }

    void release(cpu::HostCode fn) override { rt_.release(fn); }

private:
    asmjit::JitRuntime rt_;
};

}  // namespace

bool available() { return true; }

std::unique_ptr<cpu::BlockTranslator> make_translator() { return std::make_unique<Translator>(); }

}  // namespace m86::jit
