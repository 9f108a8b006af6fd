// The asmjit translator (jit.h).
//
// Host code for a block, register use: rbx = the Cpu, r12 = the guest RIP at block entry (both
// callee-saved, so they survive handler calls); rax, rcx, rdx scratch.
//
// Two kinds of guest instructions:
//   - native: forms emitted as host instructions. Register forms (MOV, LEA, ADD/SUB/CMP/AND/OR/XOR/
//     TEST on 32/64-bit GPRs) cannot fault; memory forms (MOV loads and stores, MOVZX/MOVSX/MOVSXD
//     loads, the ALU operations above with a memory operand, in 64-bit mode) take the software TLB's hit path inline, as mem.h's read/write do,
//     and on anything else (miss, MMIO, code page, page crossing, fault) run their interpreter
//     handler out of line. Between native instructions RIP and the retired count are not kept in
//     memory: the translator knows both, and writes them before anything that can look.
//   - called: every other instruction runs its interpreter handler, exactly as the run loop does:
//
//         rip = entry + offset; icount += native ones since the last sync   (state a handler sees)
//         next_rip = rip + len; handler(cpu, insn); rip = next_rip; icount += 1
//         if (exit_request) return k + 1                                    (not after the last)
//
// A fault leaves host code by longjmp from a handler, with RIP and the retired count exactly as the
// interpreter would have them. The block's Insn records are addressed directly: they never move
// once the block is in the code cache, and its host code is freed with it (Block::~Block).
#include <Zydis/Zydis.h>
#include <asmjit/x86.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cpu/cpu.h"
#include "cpu/flags.h"
#include "jit/jit.h"

namespace m86::jit {

namespace x86 = asmjit::x86;
using asmjit::Label;
using cpu::Insn;

// Offsets of the Cpu and Block fields host code touches, read from a live Cpu and Block (the layout
// is the same for every one; offsetof is not defined for classes like these). A friend of Cpu: host
// code chaining to the next block does the run loop's checks.
// Byte offset of `field` inside the object at `base`.
inline int32_t offset_in(const void* base, const void* field) {
    return int32_t(static_cast<const char*>(field) - static_cast<const char*>(base));
}

struct Layout {
    int32_t rip, next_rip, icount, exit_request, gpr, rflags, lf_res, lf_a, lf_b, lf_meta, tlb_r, tlb_w, tlb_ctx;
    int32_t seg_base[cpu::kNumSegs];
    // The run loop's (chaining): Cpu fields, then Block and BlockLink fields.
    int32_t pending, trap_mask, step_armed, code_gen, link_epoch, slice_end, jit_block, jit_lin;
    int32_t block_link, block_host, block_n, link_size, link_tag, link_gen, link_to;
    explicit Layout(cpu::Cpu& c, const cpu::Block& b) {
        auto off = [&c](const void* field) { return offset_in(&c, field); };
        rip = off(&c.s.rip);
        next_rip = off(&c.next_rip);
        icount = off(&c.icount);
        exit_request = off(&c.exit_request);
        gpr = off(&c.s.gpr[0]);
        rflags = off(&c.s.rflags);
        lf_res = off(&c.lf.res);
        lf_a = off(&c.lf.a);
        lf_b = off(&c.lf.b);
        lf_meta = off(&c.lf.op);  // op, width, carry_in, pad: one 32-bit word (LazyFlags::set_meta)
        tlb_r = off(&c.tlb_r[0][0]);
        tlb_w = off(&c.tlb_w[0][0]);
        tlb_ctx = off(&c.tlb_ctx);
        for (unsigned s = 0; s < cpu::kNumSegs; s++) seg_base[s] = off(&c.s.seg[s].base);
        pending = off(&c.pending_);
        trap_mask = off(&c.trap_mask_);
        step_armed = off(&c.step_armed_);
        code_gen = off(&c.code_gen_);
        link_epoch = off(&c.link_epoch_);
        slice_end = off(&c.slice_end_);
        jit_block = off(&c.jit_block_);
        jit_lin = off(&c.jit_lin_);
        block_link = offset_in(&b, &b.link[0]);
        block_host = offset_in(&b, &b.host);
        block_n = offset_in(&b, &b.n);
        link_size = int32_t(sizeof(cpu::BlockLink));
        link_tag = offset_in(&b.link[0], &b.link[0].tag);
        link_gen = offset_in(&b.link[0], &b.link[0].gen);
        link_to = offset_in(&b.link[0], &b.link[0].to);
    }
};
static_assert(sizeof(std::atomic<uint32_t>) == 4 && sizeof(bool) == 1);

namespace {

static_assert(sizeof(cpu::TlbEntry) == 24 && offsetof(cpu::TlbEntry, addend) == 8);
static_assert(sizeof(decltype(cpu::Cpu::tlb_ctx)) == 4);

// One block's host code.
class BlockEmitter {
public:
    // body_offset: where host code chained from another block enters a block's code, after the
    // prologue (the frame, rbx and r12 are set up the same way in every block's host code).
    BlockEmitter(x86::Assembler& a, const Layout& l, const cpu::Block& b, const uint64_t* generation,
                 uint64_t body_offset)
        : a_(a), l_(l), b_(b), generation_(generation), body_offset_(body_offset) {}

    Label body() const { return body_; }

    void emit() {
        a_.push(x86::rbx);
        a_.push(x86::r12);
        a_.sub(x86::rsp, 8);  // 16-byte alignment at the calls
        a_.mov(x86::rbx, x86::rdi);
        a_.mov(x86::r12, field(l_.rip));
        body_ = a_.newLabel();
        a_.bind(body_);
        done_ = a_.newLabel();
        chain_ = a_.newLabel();
        for (k_ = 0; k_ < b_.n; k_++) {
            const Insn& i = b_.insns[k_];
            const bool flags_live = flags_live_;
            flags_live_before_ = flags_live;
            flags_live_ = false;
            if (k_ + 1 == b_.n && branch(i, flags_live)) break;  // returns from the block itself
            if (native(i)) {
                pending_++;
                rip_stale_ = true;
            } else {
                call(i);
                if (k_ + 1 < b_.n) exit_if_requested(k_ + 1);
            }
            off_ += i.len;
        }
        if (k_ == b_.n) {
            sync();
            if (b_.chains && chainable()) {
                a_.mov(x86::rax, field(l_.rip));
                a_.jmp(chain_);
            }
        }
        a_.mov(x86::eax, b_.n);
        a_.bind(done_);
        a_.add(x86::rsp, 8);
        a_.pop(x86::r12);
        a_.pop(x86::rbx);
        a_.ret();
        if (chainable()) chain();
        for (const Exit& e : exits_) {
            a_.bind(e.at);
            a_.mov(x86::eax, e.count);
            a_.jmp(done_);
        }
        for (const Overflow& o : overflows_) {
            // IMUL overflowed: rdx = the product (at its width); RFLAGS = CF OF and SF ZF PF of it.
            a_.bind(o.at);
            if (o.w == 2) a_.movzx(x86::edx, x86::dx);
            if (o.w == 4) a_.mov(x86::edx, x86::edx);
            a_.test(sized(x86::rdx, o.w), sized(x86::rdx, o.w));
            a_.lahf();  // AH = SF ZF 0 AF 0 PF 1 CF (after TEST: CF = AF = 0)
            a_.movzx(x86::ecx, x86::ah);
            a_.and_(x86::ecx, int32_t(cpu::fl::SF | cpu::fl::ZF | cpu::fl::PF));
            a_.or_(x86::ecx, int32_t(cpu::fl::CF | cpu::fl::OF));
            set_status();
            a_.jmp(o.after);
        }
        for (const Slow& s : slows_) {
            // The memory form missed the TLB's hit path: its handler does the access (or raises
            // the fault) with the state exactly as before the instruction. The handler retires it;
            // the icount adjustment afterwards leaves the count as the fast path would (pending).
            a_.bind(s.at);
            if (s.pending) a_.add(field(l_.icount), s.pending);
            set_rip(s.off);
            handler(*s.insn, s.off);
            if (s.k + 1 < b_.n) {
                a_.cmp(x86::byte_ptr(x86::rbx, l_.exit_request), 0);
                Label go_on = a_.newLabel();
                a_.je(go_on);
                a_.mov(x86::eax, s.k + 1);
                a_.jmp(done_);
                a_.bind(go_on);
            }
            a_.sub(field(l_.icount), s.pending + 1);
            a_.jmp(s.back);
        }
    }

private:
    struct Exit {
        Label at;
        uint32_t count;  // instructions run
    };
    struct Overflow {
        Label at, after;
        unsigned w;
    };
    struct Slow {
        Label at, back;
        const Insn* insn;
        uint32_t k, off, pending;
    };

    x86::Mem field(int32_t off) const { return x86::qword_ptr(x86::rbx, off); }
    x86::Mem gpr(unsigned r) const { return x86::qword_ptr(x86::rbx, l_.gpr + int32_t(r) * 8); }

    void set_rip(uint32_t off) {
        a_.lea(x86::rax, x86::ptr(x86::r12, int32_t(off)));
        a_.mov(field(l_.rip), x86::rax);
    }
    // Memory catches up with the native instructions run since the last sync.
    void sync() {
        if (pending_) a_.add(field(l_.icount), pending_);
        pending_ = 0;
        if (rip_stale_) set_rip(off_);
        rip_stale_ = false;
    }
    // next_rip; the handler; rip = next_rip; one more retired (RIP already at the instruction).
    void handler(const Insn& i, uint32_t off) {
        a_.lea(x86::rax, x86::ptr(x86::r12, int32_t(off + i.len)));
        a_.mov(field(l_.next_rip), x86::rax);
        a_.mov(x86::rdi, x86::rbx);
        a_.mov(x86::rsi, reinterpret_cast<uint64_t>(&i));
        call_host(reinterpret_cast<const void*>(i.fn));
        a_.mov(x86::rax, field(l_.next_rip));
        a_.mov(field(l_.rip), x86::rax);
        a_.add(field(l_.icount), 1);
    }
    void call(const Insn& i) {
        sync();
        handler(i, off_);
        called_.push_back(i.mnemonic);
    }

public:
    // The mnemonics of the instructions that call their handler (for the perf map).
    const std::vector<uint16_t>& called() const { return called_; }

private:
    void exit_if_requested(uint32_t count) {
        Exit e{a_.newLabel(), count};
        a_.cmp(x86::byte_ptr(x86::rbx, l_.exit_request), 0);
        a_.jne(e.at);
        exits_.push_back(e);
    }

    // rax = the memory operand's offset (mem.h ea(): RIP-relative from the next instruction),
    // truncated to the address size (2-byte addresses are not handled natively).
    void effective_address(const Insn& i) {
        a_.mov(x86::rax, uint64_t(i.disp));
        if (i.base == cpu::kRipReg) {
            a_.add(x86::rax, x86::r12);
            a_.add(x86::rax, int32_t(off_ + i.len));
        } else if (i.base != cpu::kNoReg) {
            a_.add(x86::rax, gpr(i.base));
        }
        if (i.index != cpu::kNoReg) {
            a_.mov(x86::rcx, gpr(i.index));
            if (i.scale) a_.shl(x86::rcx, i.scale);
            a_.add(x86::rax, x86::rcx);
        }
        if (i.asz == 4) a_.mov(x86::eax, x86::eax);
    }

    // A memory access of `size` bytes by instruction i (64-bit mode): rax = its host address on
    // the TLB's hit path (mem.h read/write); otherwise on to the handler, out of line. Returns the
    // label the slow path comes back to (bind it after the access).
    Label access(const Insn& i, bool write, unsigned size) {
        effective_address(i);
        if (i.seg != cpu::kSegFlat) a_.add(x86::rax, field(l_.seg_base[i.seg]));  // FS, GS
        return tlb(i, write, size);
    }
    // The same for the linear address already in rax (implicit stack accesses: 64-bit mode has no
    // SS base; a non-canonical stack address misses the TLB, and the handler raises #SS).
    Label tlb(const Insn& i, bool write, unsigned size) {
        Slow s{a_.newLabel(), a_.newLabel(), &i, k_, off_, pending_};
        a_.mov(x86::rcx, x86::rax);
        a_.shr(x86::rcx, 12);
        a_.and_(x86::ecx, cpu::kTlbSize - 1);
        a_.mov(x86::edx, x86::dword_ptr(x86::rbx, l_.tlb_ctx));
        a_.shl(x86::edx, cpu::kTlbBits);
        a_.add(x86::ecx, x86::edx);
        a_.lea(x86::rcx, x86::ptr(x86::rcx, x86::rcx, 1));  // * 3: 24-byte entries
        a_.lea(x86::rcx, x86::ptr(x86::rbx, x86::rcx, 3, write ? l_.tlb_w : l_.tlb_r));
        a_.mov(x86::rdx, x86::rax);
        a_.and_(x86::rdx, -int32_t(cpu::kPageSize));
        a_.cmp(x86::rdx, x86::qword_ptr(x86::rcx));
        a_.jne(s.at);
        a_.mov(x86::edx, x86::eax);
        a_.and_(x86::edx, int32_t(cpu::kPageSize - 1));
        a_.cmp(x86::edx, int32_t(cpu::kPageSize - size));
        a_.ja(s.at);
        a_.add(x86::rax, x86::qword_ptr(x86::rcx, 8));
        slows_.push_back(s);
        return s.back;
    }

    // Chaining: the whole block ran and RIP (also in rax) is the next instruction's. Instead of
    // returning to the run loop, do what its next iteration would (Cpu::run_blocks) and, when the
    // next block is linked from this one and has host code, jump into that code:
    //   - nothing to look at between blocks: no exit request, no event (an INTR masked by IF = 0
    //     excepted), no single-step;
    //   - the code cache's generation is the one the CPU's links were made under;
    //   - a link of this block matches the next instruction's tag (linear address << 3 | mode) and
    //     is valid (BlockLink: a same-page link, or a cross-page one of this epoch and TLB context);
    //   - the linked block has host code and the slice has room for all of it.
    // The block entered is left in Cpu::jit_block_/jit_lin_ for the run loop. Otherwise return.
    // 64-bit blocks only: there the linear address is CS.base + RIP with no limit check, and a
    // native branch or a called near branch keeps the mode.
    bool chainable() const { return b_.mode == cpu::Mode::Long64; }
    void chain() {
        Label ret = a_.newLabel(), found = a_.newLabel(), no_intr = a_.newLabel();
        a_.bind(chain_);
        a_.cmp(x86::byte_ptr(x86::rbx, l_.exit_request), 0);
        a_.jne(ret);
        a_.mov(x86::ecx, x86::dword_ptr(x86::rbx, l_.pending));
        a_.test(x86::dword_ptr(x86::rbx, l_.rflags), int32_t(cpu::fl::IF));
        a_.jnz(no_intr);
        a_.and_(x86::ecx, ~1u);  // Cpu::kPendIntr
        a_.bind(no_intr);
        a_.test(x86::ecx, x86::ecx);
        a_.jnz(ret);
        a_.mov(x86::rdx, field(l_.rflags));
        a_.and_(x86::rdx, field(l_.trap_mask));
        a_.jnz(ret);
        a_.cmp(x86::byte_ptr(x86::rbx, l_.step_armed), 0);
        a_.jne(ret);
        a_.mov(x86::rdx, reinterpret_cast<uint64_t>(generation_));
        a_.mov(x86::rdx, x86::qword_ptr(x86::rdx));
        a_.cmp(x86::rdx, field(l_.code_gen));
        a_.jne(ret);
        a_.mov(x86::rsi, field(l_.seg_base[cpu::CS]));  // rsi = the linear address
        a_.add(x86::rsi, x86::rax);
        a_.mov(x86::rdx, x86::rsi);  // the tag
        a_.shl(x86::rdx, 3);
        a_.or_(x86::rdx, int32_t(cpu::Mode::Long64));
        a_.mov(x86::r8, reinterpret_cast<uint64_t>(&b_.link[0]));
        for (int32_t j = 0; j < 2; j++) {
            Label next = a_.newLabel(), hit = a_.newLabel();
            const int32_t at = j * l_.link_size;
            a_.cmp(x86::rdx, x86::qword_ptr(x86::r8, at + l_.link_tag));
            a_.jne(next);
            a_.mov(x86::r9, x86::qword_ptr(x86::r8, at + l_.link_gen));
            a_.test(x86::r9, x86::r9);
            a_.jz(hit);
            a_.mov(x86::r10, field(l_.link_epoch));
            a_.mov(x86::r11d, x86::dword_ptr(x86::rbx, l_.tlb_ctx));
            a_.or_(x86::r10, x86::r11);
            a_.cmp(x86::r9, x86::r10);
            a_.jne(next);
            a_.bind(hit);
            a_.mov(x86::r8, x86::qword_ptr(x86::r8, at + l_.link_to));
            a_.jmp(found);
            a_.bind(next);
        }
        a_.jmp(ret);
        a_.bind(found);
        a_.mov(x86::r9, x86::qword_ptr(x86::r8, l_.block_host));
        a_.test(x86::r9, x86::r9);
        a_.jz(ret);
        a_.mov(x86::r10d, x86::dword_ptr(x86::r8, l_.block_n));
        a_.add(x86::r10, field(l_.icount));
        a_.cmp(x86::r10, field(l_.slice_end));
        a_.ja(ret);
        a_.mov(field(l_.jit_block), x86::r8);
        a_.mov(field(l_.jit_lin), x86::rsi);
        a_.mov(x86::r12, x86::rax);  // the next block's entry RIP
        a_.add(x86::r9, int32_t(body_offset_));
        a_.jmp(x86::r9);
        a_.bind(ret);
        a_.mov(x86::eax, b_.n);
        a_.jmp(done_);
    }

    // A near JMP/Jcc/CALL with an immediate target, or a near RET, ending the block, in 64-bit
    // mode: RIP becomes the target or the next instruction and the block returns. The condition
    // comes straight from the host flags when the instruction before was a native register ALU
    // operation (flags_live: its host operation set them exactly as the guest's), else from the
    // lazy flags (Cpu::cond). A non-canonical target (the handler raises #GP) goes to the handler.
    // False if not such a branch.
    bool branch(const Insn& i, bool flags_live) {
        // Near branches only, as the decoder classified them (info::kNearBranch, from Zydis' branch
        // type): the mnemonic does not tell near from far. RETF (CB/CA) is Zydis' RET, far JMP/CALL
        // (FF /5, FF /3, EA, 9A) are its JMP/CALL; they load CS, which may change the mode or the
        // privilege level (SDM Vol. 2, RET and JMP "Operation"), and IRET pops RFLAGS too. All of
        // those run their interpreter handler.
        if (!(i.info & cpu::info::kNearBranch)) return false;
        bool jcc = false;
        switch (i.mnemonic) {
            case ZYDIS_MNEMONIC_JO: case ZYDIS_MNEMONIC_JNO: case ZYDIS_MNEMONIC_JB: case ZYDIS_MNEMONIC_JNB:
            case ZYDIS_MNEMONIC_JZ: case ZYDIS_MNEMONIC_JNZ: case ZYDIS_MNEMONIC_JBE: case ZYDIS_MNEMONIC_JNBE:
            case ZYDIS_MNEMONIC_JS: case ZYDIS_MNEMONIC_JNS: case ZYDIS_MNEMONIC_JP: case ZYDIS_MNEMONIC_JNP:
            case ZYDIS_MNEMONIC_JL: case ZYDIS_MNEMONIC_JNL: case ZYDIS_MNEMONIC_JLE: case ZYDIS_MNEMONIC_JNLE:
                jcc = true;  // (the decoder put the condition code, the opcode's low nibble, in aux)
                break;
            default: break;
        }
        const bool jmp = i.mnemonic == ZYDIS_MNEMONIC_JMP;
        const bool is_call = i.mnemonic == ZYDIS_MNEMONIC_CALL, is_ret = i.mnemonic == ZYDIS_MNEMONIC_RET;
        if (b_.mode != cpu::Mode::Long64 || i.osz != 8 || (i.prefix & cpu::pfx::kOpsize)) return false;
        if (is_ret && i.kind[0] != cpu::kOpNone && i.kind[0] != cpu::kOpImm) return false;
        if ((jcc || jmp || is_call) && i.kind[0] != cpu::kOpImm) return false;
        if (!jcc && !jmp && !is_call && !is_ret) return false;
        const uint32_t next = off_ + i.len;
        Label taken = a_.newLabel(), slow = a_.newLabel(), out = a_.newLabel();
        if (is_ret) {
            // target = [RSP] (the handler on a TLB miss: it then did the whole RET); RSP += 8 + imm16
            // once the target is known to be canonical.
            a_.mov(x86::rax, gpr(cpu::RSP));
            Label done_by_handler = tlb(i, false, 8);
            a_.mov(x86::rax, x86::qword_ptr(x86::rax));
            canonical_or(slow);
            a_.add(gpr(cpu::RSP), int32_t(8 + uint16_t(i.imm)));
            a_.jmp(out);
            a_.bind(done_by_handler);
            a_.mov(x86::rax, field(l_.rip));
            a_.jmp(out);
        }
        if (jcc) {
            const unsigned cc = i.aux & 15;
            if (flags_live) {
                a_.j(x86::CondCode(cc), taken);  // guest and host condition codes are the same
            } else {
                call_cond(cc);
                a_.test(x86::al, x86::al);
                a_.jnz(taken);
            }
            a_.lea(x86::rax, x86::ptr(x86::r12, int32_t(next)));
            a_.jmp(out);
        }
        if (!is_ret) {
            a_.bind(taken);
            a_.mov(x86::rax, x86::r12);
            a_.add(x86::rax, int32_t(next));
            a_.add(x86::rax, int32_t(int64_t(i.imm)));
            canonical_or(slow);
        }
        if (is_call) {
            // Push the return address (the handler on a TLB miss: it then did the whole CALL).
            a_.mov(x86::r9, x86::rax);
            a_.mov(x86::rax, gpr(cpu::RSP));
            a_.sub(x86::rax, 8);
            Label done_by_handler = tlb(i, true, 8);
            a_.lea(x86::rcx, x86::ptr(x86::r12, int32_t(next)));
            a_.mov(x86::qword_ptr(x86::rax), x86::rcx);
            a_.sub(gpr(cpu::RSP), 8);
            a_.mov(x86::rax, x86::r9);
            a_.jmp(out);
            a_.bind(done_by_handler);
            a_.mov(x86::rax, field(l_.rip));
        }
        a_.bind(out);
        a_.mov(field(l_.rip), x86::rax);
        a_.add(field(l_.icount), pending_ + 1);
        if (chainable()) {
            a_.jmp(chain_);
        } else {
            a_.mov(x86::eax, b_.n);
            a_.jmp(done_);
        }
        a_.bind(slow);
        sync();
        handler(i, off_);  // (raises #GP: a non-canonical target)
        a_.mov(x86::eax, b_.n);
        a_.jmp(done_);
        return true;
    }
    static bool cond_thunk(const cpu::Cpu* c, unsigned cc) { return c->cond(cc); }
    // al = guest condition cc from the lazy flags (Cpu::cond). Clobbers the caller-saved registers.
    void call_cond(unsigned cc) {
        a_.mov(x86::rdi, x86::rbx);
        a_.mov(x86::esi, cc);
        call_host(reinterpret_cast<const void*>(&cond_thunk));
    }
    // Call a host function (arguments already in rdi, rsi): one call site with a fixed target.
    void call_host(const void* fn) {
        a_.mov(x86::rax, reinterpret_cast<uint64_t>(fn));
        a_.call(x86::rax);
    }
    // RFLAGS' status flags = ecx, the lazy flags none (ops/shift.cpp set_status: flags computed
    // eagerly replace whatever was pending).
    void set_status() {
        a_.mov(x86::rax, field(l_.rflags));
        a_.and_(x86::rax, int32_t(~uint32_t(cpu::fl::kArith)));
        a_.or_(x86::rax, x86::rcx);
        a_.mov(field(l_.rflags), x86::rax);
        a_.mov(x86::byte_ptr(x86::rbx, l_.lf_meta), uint32_t(cpu::FlagOp::None));
    }
    // Jump to `not_canonical` unless rax is canonical with 48-bit addresses (with LA57 the handler
    // then decides: it checks 57 bits).
    void canonical_or(Label not_canonical) {
        a_.mov(x86::rcx, x86::rax);
        a_.shl(x86::rcx, 16);
        a_.sar(x86::rcx, 16);
        a_.cmp(x86::rcx, x86::rax);
        a_.jne(not_canonical);
    }

    // Emit instruction i natively; false if it has no native form (nothing emitted then).
    bool native(const Insn& i) {
        const unsigned w = i.osz;
        if (!(i.info & cpu::info::kGprOnly) || (i.prefix & cpu::pfx::kLock) || (w != 1 && w != 2 && w != 4 && w != 8))
            return false;
        if ((i.mnemonic == ZYDIS_MNEMONIC_PUSH || i.mnemonic == ZYDIS_MNEMONIC_POP) && w == 8 &&
            b_.mode == cpu::Mode::Long64 && i.kind[1] == cpu::kOpNone)
            return push_pop(i);
        if (i.mnemonic == ZYDIS_MNEMONIC_IMUL && w >= 2) return imul(i);
        if (i.mnemonic >= ZYDIS_MNEMONIC_CMOVB && i.mnemonic <= ZYDIS_MNEMONIC_CMOVZ) return cmov(i);
        if (i.mnemonic >= ZYDIS_MNEMONIC_SETB && i.mnemonic <= ZYDIS_MNEMONIC_SETZ && i.mnemonic != ZYDIS_MNEMONIC_SETSSBSY)
            return setcc(i);
        const bool two = i.kind[0] != cpu::kOpNone && i.kind[1] != cpu::kOpNone && i.kind[2] == cpu::kOpNone;
        if (!two) return false;
        const bool rr = i.kind[0] == cpu::kOpReg && i.kind[1] == cpu::kOpReg;
        const bool ri = i.kind[0] == cpu::kOpReg && i.kind[1] == cpu::kOpImm;
        const bool rm = i.kind[0] == cpu::kOpReg && i.kind[1] == cpu::kOpMem;
        const bool mr = i.kind[0] == cpu::kOpMem && i.kind[1] == cpu::kOpReg;
        const bool mi = i.kind[0] == cpu::kOpMem && i.kind[1] == cpu::kOpImm;
        // Memory operands natively only in 64-bit mode (no segment limits), at the operand size.
        const bool mem_ok = b_.mode == cpu::Mode::Long64 && i.asz != 2;
        switch (i.mnemonic) {
            case ZYDIS_MNEMONIC_MOV: {
                if (rr || ri) {
                    if (rr)
                        load(x86::rax, i.reg[1], w);
                    else
                        a_.mov(x86::rax, masked(i.imm, w));
                    store(i.reg[0], x86::rax, w);
                    return true;
                }
                if (!mem_ok || i.msz != w) return false;
                if (rm) {
                    Label back = access(i, false, w);
                    load_mem(x86::rax, w);
                    store(i.reg[0], x86::rax, w);
                    a_.bind(back);
                    return true;
                }
                Label back = access(i, true, w);
                if (mr)
                    load(x86::rcx, i.reg[1], w);
                else
                    a_.mov(x86::rcx, masked(i.imm, w));
                a_.mov(x86::ptr(x86::rax, 0, w), sized(x86::rcx, w));
                a_.bind(back);
                return true;
            }
            case ZYDIS_MNEMONIC_MOVZX:
            case ZYDIS_MNEMONIC_MOVSX:
            case ZYDIS_MNEMONIC_MOVSXD: {
                if (rr && (i.aux == 1 || i.aux == 2 || i.aux == 4) && i.aux < w) {
                    // Register source of aux bytes (the selector's; AH..BH included).
                    const unsigned sw = i.aux;
                    const bool sx = i.mnemonic != ZYDIS_MNEMONIC_MOVZX;
                    load(x86::rax, i.reg[1], sw);
                    if (sx && sw == 4)
                        a_.movsxd(x86::rax, x86::eax);
                    else if (sx)
                        a_.movsx(x86::rax, sized(x86::rax, sw));
                    store(i.reg[0], x86::rax, w);
                    return true;
                }
                if (!rm || !mem_ok || (i.msz != 1 && i.msz != 2 && i.msz != 4) || i.msz >= w) return false;
                Label back = access(i, false, i.msz);
                const bool sx = i.mnemonic != ZYDIS_MNEMONIC_MOVZX;
                if (i.msz == 4)
                    a_.movsxd(x86::rax, x86::dword_ptr(x86::rax));
                else if (sx)
                    a_.movsx(x86::rax, i.msz == 1 ? x86::byte_ptr(x86::rax) : x86::word_ptr(x86::rax));
                else
                    a_.movzx(x86::eax, i.msz == 1 ? x86::byte_ptr(x86::rax) : x86::word_ptr(x86::rax));
                store(i.reg[0], x86::rax, w);
                a_.bind(back);
                return true;
            }
            case ZYDIS_MNEMONIC_LEA:
                if (!rm || i.asz == 2 || w < 4) return false;
                effective_address(i);
                store(i.reg[0], x86::rax, w);
                return true;
            case ZYDIS_MNEMONIC_SHL:
            case ZYDIS_MNEMONIC_SHR:
            case ZYDIS_MNEMONIC_SAR:
                return ri && shift(i);
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
        // Operands: a (the destination's old value) in rax, b in rcx, both zero-extended from the
        // width. A memory operand goes through the TLB (access(): its host address, kept in r8); a
        // memory destination that is written needs the write TLB (as mem.h rmw()).
        const bool mem = rm || mr || mi;
        if (mem && (!mem_ok || i.msz != w)) return false;
        Label back;
        if (mem) {
            back = access(i, !rm && write, w);
            a_.mov(x86::r8, x86::rax);
        }
        if (mr || mi)
            load_mem(x86::rax, w, x86::r8);
        else
            load(x86::rax, i.reg[0], w);
        if (rm)
            load_mem(x86::rcx, w, x86::r8);
        else if (rr || mr)
            load(x86::rcx, i.reg[1], w);
        else
            a_.mov(x86::rcx, masked(i.imm, w));
        // The host operation at the guest's width: the same result and flags. rdx's bits above
        // the width stay those of rax (zero), so res is masked too.
        a_.mov(x86::rdx, x86::rax);
        const x86::Gp res = sized(x86::rdx, w), b = sized(x86::rcx, w);
        switch (i.mnemonic) {
            case ZYDIS_MNEMONIC_ADD: a_.add(res, b); break;
            case ZYDIS_MNEMONIC_SUB:
            case ZYDIS_MNEMONIC_CMP: a_.sub(res, b); break;
            case ZYDIS_MNEMONIC_AND:
            case ZYDIS_MNEMONIC_TEST: a_.and_(res, b); break;
            case ZYDIS_MNEMONIC_OR: a_.or_(res, b); break;
            default: a_.xor_(res, b); break;
        }
        a_.mov(field(l_.lf_a), x86::rax);
        a_.mov(field(l_.lf_b), x86::rcx);
        a_.mov(field(l_.lf_res), x86::rdx);
        a_.mov(x86::dword_ptr(x86::rbx, l_.lf_meta), uint32_t(op) | uint32_t(w) << 8);
        flags_live_ = !mem;  // (a memory form's slow path comes back with other host flags)
        if (write && (mr || mi))
            a_.mov(x86::ptr(x86::r8, 0, w), res);
        else if (write)
            store(i.reg[0], x86::rdx, w);
        if (mem) a_.bind(back);
        return true;
    }

    // The guest condition cc into the host flags' form for a host jcc/cmovcc/setcc: with the host
    // flags live (the guest's, from the last instruction), nothing to do: returns the condition to
    // use; otherwise Cpu::cond is called and its result left in [rsp] (the frame's spare slot):
    // the condition to use is then "not equal" after comparing that byte with 0 (done by the caller
    // right before use, as loads in between may change the host flags).
    bool cond_in_slot(unsigned cc, bool flags_live) {
        if (flags_live) return false;
        call_cond(cc);
        a_.mov(x86::byte_ptr(x86::rsp), x86::al);
        return true;
    }

    // rcx = operand 1 of width w, zero-extended: a register, or memory through the TLB. For memory,
    // returns the label the slow path comes back to (bind it after the instruction).
    Label load_source(const Insn& i, unsigned w) {
        if (i.kind[1] != cpu::kOpMem) {
            load(x86::rcx, i.reg[1], w);
            return Label();
        }
        Label back = access(i, false, w);
        load_mem(x86::rcx, w);
        return back;
    }

    // CMOVcc r, r/m (ops/data.cpp): a memory source is read whatever the condition; a 32-bit
    // destination is zero-extended either way. Flags are not written (still live if they were).
    bool cmov(const Insn& i) {
        const unsigned w = i.osz;
        if (w < 2 || i.kind[0] != cpu::kOpReg || i.kind[2] != cpu::kOpNone) return false;
        const bool mem = i.kind[1] == cpu::kOpMem;
        if (!mem && i.kind[1] != cpu::kOpReg) return false;
        if (mem && (b_.mode != cpu::Mode::Long64 || i.asz == 2 || i.msz != w)) return false;
        // (A memory source's TLB check changes the host flags before the CMOV: the lazy flags then.)
        const bool live = flags_live_before_ && !mem;
        const bool slot = cond_in_slot(i.aux & 15, live);
        const Label back = load_source(i, w);
        load(x86::rax, i.reg[0], w);
        x86::CondCode cc = x86::CondCode(i.aux & 15);
        if (slot) {
            a_.cmp(x86::byte_ptr(x86::rsp), 0);
            cc = x86::CondCode::kNE;
        }
        a_.cmov(cc, sized(x86::rax, w < 4 ? 4 : w), sized(x86::rcx, w < 4 ? 4 : w));
        store(i.reg[0], x86::rax, w);
        if (mem) a_.bind(back);
        flags_live_ = live && !mem;
        return true;
    }

    // SETcc r8 (ops/data.cpp). Flags are not written (still live if they were).
    bool setcc(const Insn& i) {
        if (i.kind[0] != cpu::kOpReg || i.kind[1] != cpu::kOpNone) return false;
        const bool live = flags_live_before_;
        x86::CondCode cc = x86::CondCode(i.aux & 15);
        if (cond_in_slot(i.aux & 15, live)) {
            a_.cmp(x86::byte_ptr(x86::rsp), 0);
            cc = x86::CondCode::kNE;
        }
        a_.set(cc, x86::al);
        a_.mov(greg(i.reg[0], 1), x86::al);
        flags_live_ = live;
        return true;
    }

    // PUSH r64/imm and POP r64 in 64-bit mode (ops/stack.cpp): the access first, RSP after it (POP
    // RSP loads the popped value: RSP is written before the destination).
    bool push_pop(const Insn& i) {
        const bool push = i.mnemonic == ZYDIS_MNEMONIC_PUSH;
        if (push ? (i.kind[0] != cpu::kOpReg && i.kind[0] != cpu::kOpImm) : i.kind[0] != cpu::kOpReg) return false;
        a_.mov(x86::rax, gpr(cpu::RSP));
        if (push) {
            a_.sub(x86::rax, 8);
            Label back = tlb(i, true, 8);
            if (i.kind[0] == cpu::kOpReg)
                a_.mov(x86::rcx, gpr(i.reg[0]));  // (PUSH RSP pushes the old value)
            else
                a_.mov(x86::rcx, i.imm);
            a_.mov(x86::qword_ptr(x86::rax), x86::rcx);
            a_.sub(gpr(cpu::RSP), 8);
            a_.bind(back);
        } else {
            Label back = tlb(i, false, 8);
            a_.mov(x86::rcx, x86::qword_ptr(x86::rax));
            a_.add(gpr(cpu::RSP), 8);
            a_.mov(gpr(i.reg[0]), x86::rcx);
            a_.bind(back);
        }
        return true;
    }

    // IMUL r, r/m and IMUL r, r/m, imm (ops/muldiv.cpp): the truncated product. Without overflow the
    // flags are lazy Logic of the product, as the interpreter leaves them; with overflow (out of
    // line) CF = OF = 1 and SF/ZF/PF from the product, AF = 0, straight to RFLAGS.
    bool imul(const Insn& i) {
        const unsigned w = i.osz;
        const bool three = i.kind[2] == cpu::kOpImm;
        if (i.kind[0] != cpu::kOpReg || (i.kind[1] != cpu::kOpReg && i.kind[1] != cpu::kOpMem) ||
            (!three && i.kind[2] != cpu::kOpNone))
            return false;
        const bool mem = i.kind[1] == cpu::kOpMem;
        if (mem && (b_.mode != cpu::Mode::Long64 || i.asz == 2 || i.msz != w)) return false;
        const Label back = load_source(i, w);
        if (three)
            a_.mov(x86::rdx, masked(i.imm, w));
        else
            load(x86::rdx, i.reg[0], w);
        const x86::Gp res = sized(x86::rdx, w);
        a_.imul(res, sized(x86::rcx, w));
        Label overflow = a_.newLabel(), after = a_.newLabel();
        a_.jo(overflow);
        if (w == 2) a_.movzx(x86::edx, x86::dx);
        if (w == 4) a_.mov(x86::edx, x86::edx);
        a_.mov(field(l_.lf_a), x86::rdx);
        a_.mov(field(l_.lf_b), x86::rdx);
        a_.mov(field(l_.lf_res), x86::rdx);
        a_.mov(x86::dword_ptr(x86::rbx, l_.lf_meta), uint32_t(cpu::FlagOp::Logic) | uint32_t(w) << 8);
        a_.bind(after);
        store(i.reg[0], x86::rdx, w);
        if (mem) a_.bind(back);
        // The overflow path, out of line.
        Overflow o{overflow, after, w};
        overflows_.push_back(o);
        return true;
    }

    // SHL/SHR/SAR of a register by an immediate count (ops/shift.cpp): the host shift gives the
    // result, CF, PF, ZF and SF; OF is the interpreter's (SHL: MSB != CF; SHR: the result's two
    // top bits differ; SAR: 0) and AF is set, as the interpreter leaves the undefined flags.
    // Flags go straight to RFLAGS (the lazy flags become None). A count of 0 changes nothing but
    // is rare: left to the handler.
    bool shift(const Insn& i) {
        const unsigned w = i.osz;
        const unsigned n = unsigned(i.imm) & (w == 8 ? 63 : 31);
        // (Counts of the width or more, possible for 8- and 16-bit operands, leave CF undefined on
        // the host: those go to the handler too.)
        if (n == 0 || n >= w * 8) return false;
        load(x86::rdx, i.reg[0], w);
        const x86::Gp r = sized(x86::rdx, w);
        if (i.mnemonic == ZYDIS_MNEMONIC_SHL)
            a_.shl(r, n);
        else if (i.mnemonic == ZYDIS_MNEMONIC_SHR)
            a_.shr(r, n);
        else
            a_.sar(r, n);
        // rdx = the result, zero-extended (the bits above the width were zero and stay so).
        a_.lahf();  // AH = SF ZF 0 AF 0 PF 1 CF
        a_.movzx(x86::ecx, x86::ah);
        a_.and_(x86::ecx, int32_t(cpu::fl::SF | cpu::fl::ZF | cpu::fl::PF | cpu::fl::CF));
        a_.or_(x86::ecx, int32_t(cpu::fl::AF));
        const unsigned top = w * 8 - 1;
        if (i.mnemonic != ZYDIS_MNEMONIC_SAR) {
            // SHL: OF = MSB(result) XOR CF (ecx bit 0); SHR: OF = bit top XOR bit top-1.
            a_.mov(x86::rax, x86::rdx);
            if (i.mnemonic == ZYDIS_MNEMONIC_SHL) {
                a_.shr(x86::rax, top);
                a_.xor_(x86::eax, x86::ecx);
            } else {
                a_.shr(x86::rax, top - 1);
                a_.mov(x86::r8, x86::rax);
                a_.shr(x86::r8, 1);
                a_.xor_(x86::eax, x86::r8d);
            }
            a_.and_(x86::eax, 1);
            a_.shl(x86::eax, 11);  // fl::OF
            a_.or_(x86::ecx, x86::eax);
        }
        store(i.reg[0], x86::rdx, w);
        set_status();
        return true;
    }

    static uint64_t masked(uint64_t v, unsigned w) { return w == 8 ? v : v & ((1ull << (w * 8)) - 1); }
    static x86::Gp sized(const x86::Gp& r, unsigned w) {
        return w == 1 ? x86::Gp(r.r8()) : w == 2 ? x86::Gp(r.r16()) : w == 4 ? x86::Gp(r.r32()) : x86::Gp(r.r64());
    }
    // The guest register r of width w in the Cpu: a 64-bit slot, or its low part; AH..BH (16..19
    // for byte operands) are byte 1 of RAX..RBX.
    x86::Mem greg(unsigned r, unsigned w) const {
        if (w == 1 && r >= 16) return x86::byte_ptr(x86::rbx, l_.gpr + int32_t(r - 16) * 8 + 1);
        return x86::ptr(x86::rbx, l_.gpr + int32_t(r) * 8, w);
    }
    // dst (64-bit) = guest register r of width w, zero-extended.
    void load(const x86::Gp& dst, unsigned r, unsigned w) {
        if (w == 8)
            a_.mov(dst, greg(r, 8));
        else if (w == 4)
            a_.mov(dst.r32(), greg(r, 4));
        else
            a_.movzx(dst.r32(), greg(r, w));
    }
    // dst (64-bit) = w bytes at [base] (host address), zero-extended.
    void load_mem(const x86::Gp& dst, unsigned w, const x86::Gp& base = x86::rax) {
        if (w == 8)
            a_.mov(dst, x86::qword_ptr(base));
        else if (w == 4)
            a_.mov(dst.r32(), x86::dword_ptr(base));
        else
            a_.movzx(dst.r32(), x86::ptr(base, 0, w));
    }
    // Guest register r of width w = the low w bytes of src: a 32-bit write zero-extends to 64 bits
    // (src's upper half is zero there), 8- and 16-bit writes keep the rest of the register.
    void store(unsigned r, const x86::Gp& src, unsigned w) {
        if (w == 4) {
            a_.mov(src.r32(), src.r32());
            a_.mov(greg(r, 8), src.r64());
        } else {
            a_.mov(greg(r, w), sized(src, w));
        }
    }

    x86::Assembler& a_;
    const Layout& l_;
    const cpu::Block& b_;
    const uint64_t* generation_;
    uint64_t body_offset_;
    Label done_, chain_, body_;
    std::vector<Exit> exits_;
    std::vector<Slow> slows_;
    std::vector<Overflow> overflows_;
    std::vector<uint16_t> called_;
    uint32_t k_ = 0, off_ = 0;  // the instruction being emitted, its byte offset in the block
    uint32_t pending_ = 0;      // native instructions since icount was last written
    bool rip_stale_ = false;    // s.rip is behind (native instructions ran since it was written)
    bool flags_live_ = false;   // the host flags are the guest's (set by the last instruction)
    bool flags_live_before_ = false;  // flags_live_ before the instruction being emitted
};

class Translator final : public cpu::BlockTranslator {
public:
    cpu::HostCode translate(cpu::Cpu& c, const cpu::Block& b) override {
        const Layout l(c, b);
        asmjit::CodeHolder code;
        code.init(rt_.environment());
        x86::Assembler a(&code);
        BlockEmitter e(a, l, b, c.code().generation_address(), body_offset_);
        e.emit();
        // Chained entries jump body_offset_ bytes into a block's code: every prologue must be that
        // long (it is: the same instructions with the same operands).
        if (code.labelOffset(e.body()) != body_offset_) return nullptr;
        cpu::HostCode fn = nullptr;
        if (rt_.add(&fn, &code) != asmjit::kErrorOk) return nullptr;  // out of memory: interpret
        if (perf_map_) {
            // For `perf report`: the block's guest address, its length and the mnemonics it still
            // calls handlers for (what to make native next).
            std::string name = fmt::format("m86:{:#x}/{}", b.lin, b.n);
            for (uint16_t m : e.called()) name += fmt::format(" {}", ZydisMnemonicGetString(ZydisMnemonic(m)));
            fmt::print(perf_map_, "{:x} {:x} {}\n", reinterpret_cast<uintptr_t>(fn), code.codeSize(), name);
            std::fflush(perf_map_);
        }
        return fn;
    }

    Translator() {
        // M86_PERF_MAP=1: describe host code in /tmp/perf-PID.map, the file perf(1) reads symbols
        // of JIT code from.
        if (const char* v = std::getenv("M86_PERF_MAP"); v && *v && *v != '0')
            perf_map_ = std::fopen(fmt::format("/tmp/perf-{}.map", getpid()).c_str(), "a");
    }
    ~Translator() override {
        if (perf_map_) std::fclose(perf_map_);
    }
    Translator(const Translator&) = delete;
    Translator& operator=(const Translator&) = delete;

    void release(cpu::HostCode fn) override { rt_.release(fn); }

private:
    asmjit::JitRuntime rt_;
    std::FILE* perf_map_ = nullptr;
    // push rbx; push r12; sub rsp, 8; mov rbx, rdi; mov r12, [rbx + rip] (disp32, as rip's offset
    // in Cpu is beyond disp8's range; checked at each translation).
    static constexpr uint64_t body_offset_ = 1 + 2 + 4 + 3 + 7;
};

}  // namespace

bool available() { return true; }

std::unique_ptr<cpu::BlockTranslator> make_translator() { return std::make_unique<Translator>(); }

}  // namespace m86::jit
