// The interpreter's run loop, fault unwinding, mode tracking and condition evaluation.
#include "cpu/cpu.h"

#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "cpu/decode.h"

namespace m86::cpu {

Cpu::Cpu(Bus& b) : bus(b), code_(std::make_unique<CodeCache>()) {
    // Reset state of the segment registers (SDM Vol. 3, Table 10-1): present, read/write data,
    // CS = F000 with base FFFF0000.
    for (auto& sr : s.seg) {
        sr.sel = 0;
        sr.base = 0;
        sr.limit = 0xffff;
        sr.attr = SegReg::kP | SegReg::kS | 0x3;  // accessed read/write data
    }
    s.seg[CS].sel = 0xf000;
    s.seg[CS].base = 0xffff0000;
    s.seg[CS].attr = SegReg::kP | SegReg::kS | 0xb;  // accessed execute/read code
    s.rip = 0xfff0;
    s.ldtr.attr = SegReg::kP | 0x2;
    s.tr.attr = SegReg::kP | 0xb;
    s.gpr[RDX] = 0x00a00f11;  // family/model/stepping, as after RESET (matches CPUID leaf 1)
    update_mode();
}

Cpu::~Cpu() = default;

void log_unimplemented(uint16_t mnemonic, const char* why) {
    static std::mutex mu;
    static std::set<uint16_t> seen;
    std::lock_guard<std::mutex> lock(mu);
    if (!seen.insert(mnemonic).second) return;
    fmt::print(stderr, "micro86: {} {} (raising #UD)\n",
               ZydisMnemonicGetString(ZydisMnemonic(mnemonic)) ?: "?", why);
}

void Cpu::update_mode() {
    const SegReg& cs = s.seg[CS];
    if (!(s.cr0 & cr0::PE))
        mode_ = Mode::Real;
    else if (s.efer & efer::LMA)
        mode_ = (cs.attr & SegReg::kL) ? Mode::Long64 : (cs.attr & SegReg::kDB) ? Mode::Compat32 : Mode::Compat16;
    else
        mode_ = (cs.attr & SegReg::kDB) ? Mode::Prot32 : Mode::Prot16;
    unsigned cpl = mode_ == Mode::Real ? 0 : (s.rflags & fl::VM) ? 3 : (cs.sel & 3);
    tlb_ctx = cpl == 3 ? 1 : 0;
}

void Cpu::raise_fault(uint8_t vector, uint32_t error_code, uint64_t cr2) {
    last_fault = Fault{vector, error_code, cr2};
    if (vector == kPF) s.cr2 = cr2;
    if (!fault_jmp_) {
        // A fault outside run() (e.g. a test poking memory) is a programming error in the caller.
        fmt::print(stderr, "micro86: guest fault {} outside the run loop\n", vector);
        std::abort();
    }
    std::longjmp(*fault_jmp_, 1);
}

bool Cpu::cond(unsigned cc) const {
    bool r;
    // Fast path: the flags come from a SUB/CMP without carry; compare the operands directly.
    if (lf.op == FlagOp::Sub && !lf.carry_in && (cc >> 1) != 0 && (cc >> 1) != 5 && (cc >> 1) != 4) {
        unsigned sh = 64 - lf.width * 8;
        int64_t sa = int64_t(lf.a << sh) >> sh, sb = int64_t(lf.b << sh) >> sh;
        switch (cc >> 1) {
            case 1: r = lf.a < lf.b; break;               // B
            case 2: r = lf.a == lf.b; break;              // E
            case 3: r = lf.a <= lf.b; break;              // BE
            case 6: r = sa < sb; break;                   // L
            default: r = sa <= sb; break;                 // LE
        }
        return r ^ (cc & 1);
    }
    switch (cc >> 1) {
        case 0: r = of(); break;
        case 1: r = cf(); break;
        case 2: r = zf(); break;
        case 3: r = cf() || zf(); break;
        case 4: r = sf(); break;
        case 5: r = pf(); break;
        case 6: r = sf() != of(); break;
        default: r = zf() || (sf() != of()); break;
    }
    return r ^ (cc & 1);
}

// ---- block lookup --------------------------------------------------------------------------------

Block* Cpu::find_block() {
    uint64_t lin = s.seg[CS].base + s.rip;
    if (mode_ != Mode::Long64) lin = uint32_t(lin);
    if (Block* b = code_->jump_lookup(tlb_ctx, lin, mode_)) return b;

    uint64_t page;
    const uint8_t* p = fetch_ptr(lin, &page);
    uint64_t phys = page | (lin & ~kPageMask);
    Block* b = code_->find(phys, mode_);
    if (!b) {
        auto nb = std::make_unique<Block>();
        nb->lin = lin;
        nb->phys = phys;
        nb->mode = mode_;
        constexpr size_t kMaxInsns = 64;
        uint64_t at = lin;
        for (;;) {
            size_t in_page = kPageSize - (at & ~kPageMask);
            uint8_t buf[15];
            const uint8_t* bytes = p + (at & ~kPageMask);
            size_t avail = std::min<size_t>(in_page, 15);
            if (in_page < 15) {
                // The instruction may cross into the next page: fetch that page too. If that
                // faults, and this is not the block's first instruction, end the block before it
                // so the fault is raised when (and if) the instruction is reached.
                std::memcpy(buf, bytes, in_page);
                Insn probe;
                if (!decode_one(bytes, in_page, mode_, probe) || probe.len > in_page) {
                    if (!nb->insns.empty()) {
                        // try fetching the next page only from the block's first instruction
                        break;
                    }
                    uint64_t page2;
                    const uint8_t* p2 = fetch_ptr(at + in_page, &page2);
                    std::memcpy(buf + in_page, p2, 15 - in_page);
                    nb->page2 = page2;
                    bytes = buf;
                    avail = 15;
                }
            }
            Insn insn;
            decode_one(bytes, avail, mode_, insn);
            if (insn.len == 0) insn.len = 1;  // undecodable: #UD at this address
            nb->insns.push_back(insn);
            at += insn.len;
            if ((insn.info & info::kEndsBlock) || nb->insns.size() >= kMaxInsns || nb->page2 != 1 ||
                (at & ~kPageMask) == 0)
                break;
        }
        b = code_->insert(std::move(nb));
        // Pages holding code must take the write slow path so writes to them are seen.
        tlb_protect_code(phys & kPageMask);
        if (b->page2 != 1) tlb_protect_code(b->page2);
    }
    code_->jump_insert(tlb_ctx, b);
    return b;
}

void Cpu::code_page_written(uint64_t page) {
    code_->invalidate_page(page);
    exit_request = true;  // the running block may be stale now
}

// ---- run loop ------------------------------------------------------------------------------------

StopReason Cpu::run_blocks(uint64_t limit) {
    while (icount < limit) {
        if (halted) return StopReason::Halt;
        code_->collect();
        Block* b = find_block();
        const Insn* i = b->insns.data();
        const Insn* end = i + std::min<uint64_t>(b->insns.size(), limit - icount);
        exit_request = false;
        do {
            next_rip = s.rip + i->len;
            i->fn(*this, *i);
            s.rip = next_rip;
            ++icount;
        } while (++i != end && !exit_request);
    }
    return halted ? StopReason::Halt : StopReason::Limit;
}

StopReason Cpu::run(uint64_t max_instructions) {
    uint64_t limit = icount + max_instructions;
    for (;;) {
        std::jmp_buf jb;
        fault_jmp_ = &jb;
        if (setjmp(jb) == 0) {
            StopReason r = run_blocks(limit);
            fault_jmp_ = nullptr;
            sync_flags();
            return r;
        }
        fault_jmp_ = nullptr;
        sync_flags();
        if (stop_on_exception) return StopReason::Exception;
        // Exception delivery through the IDT arrives with the system-level work (issue #3).
        return StopReason::Exception;
    }
}

}  // namespace m86::cpu
