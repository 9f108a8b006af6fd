// Zydis -> Insn conversion, the handler registry, disassembly, and the code cache.
#include "cpu/decode.h"

#include <fmt/format.h>

#include <mutex>

namespace m86::cpu {

// ---- registry ------------------------------------------------------------------------------------

void Registry::add(ZydisMnemonic m, Selector s) {
    if (size_t(m) >= table_.size()) table_.resize(size_t(m) + 1);
    table_[m].push_back(s);
}

Handler Registry::select(const DecodeCtx& d, bool* known) const {
    size_t m = size_t(d.zi.mnemonic);
    *known = m < table_.size() && !table_[m].empty();
    if (!*known) return nullptr;
    for (Selector s : table_[m])
        if (Handler h = s(d)) return h;
    return nullptr;
}

const Registry& Registry::get() {
    static const Registry r = [] {
        Registry reg;
        register_alu(reg);
        register_shift(reg);
        register_muldiv(reg);
        register_bit(reg);
        register_data(reg);
        register_control(reg);
        register_stack(reg);
        register_string(reg);
        register_misc(reg);
        register_x87(reg);
        register_sse_int(reg);
        register_sse_fp(reg);
        register_fpstate(reg);
        register_system(reg);
        return reg;
    }();
    return r;
}

// ---- decoding ------------------------------------------------------------------------------------

namespace {

struct ZydisMode {
    ZydisMachineMode mm;
    ZydisStackWidth sw;
};

ZydisMode zydis_mode(Mode m) {
    switch (m) {
        case Mode::Real: return {ZYDIS_MACHINE_MODE_REAL_16, ZYDIS_STACK_WIDTH_16};
        case Mode::Prot16: return {ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16};
        case Mode::Prot32: return {ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32};
        case Mode::Compat16: return {ZYDIS_MACHINE_MODE_LONG_COMPAT_16, ZYDIS_STACK_WIDTH_16};
        case Mode::Compat32: return {ZYDIS_MACHINE_MODE_LONG_COMPAT_32, ZYDIS_STACK_WIDTH_32};
        case Mode::Long64: break;
    }
    return {ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64};
}

const ZydisDecoder& decoder_for(Mode m) {
    static ZydisDecoder decoders[6];
    static std::once_flag once;
    std::call_once(once, [] {
        for (int i = 0; i < 6; i++) {
            ZydisMode zm = zydis_mode(Mode(i));
            ZydisDecoderInit(&decoders[i], zm.mm, zm.sw);
            // 66h-prefixed near branches in 64-bit mode follow AMD (APM Vol. 3, "JMP (Near)"): the
            // operand size is 16 bits, so E8/E9/0F 8x take a rel16 (Intel ignores 66h there). The
            // handlers in ops/control.cpp apply the 16-bit IP truncation to every near branch.
            ZydisDecoderEnableMode(&decoders[i], ZYDIS_DECODER_MODE_AMD_BRANCHES, ZYAN_TRUE);
            // MPX, CLDEMOTE and CET are not emulated (nor advertised): their opcodes in the hint-NOP
            // space 0F 18..1F (BNDxx, CLDEMOTE, ENDBR32/64, RDSSP...) execute as the NOPs they are on
            // CPUs without those features (SDM Vol. 2, "NOP"), so Zydis decodes them as NOP.
            ZydisDecoderEnableMode(&decoders[i], ZYDIS_DECODER_MODE_MPX, ZYAN_FALSE);
            ZydisDecoderEnableMode(&decoders[i], ZYDIS_DECODER_MODE_CLDEMOTE, ZYAN_FALSE);
            ZydisDecoderEnableMode(&decoders[i], ZYDIS_DECODER_MODE_CET, ZYAN_FALSE);
        }
    });
    return decoders[int(m)];
}

// Map a Zydis register to Insn numbering (see insn.h). Returns kNoReg for registers that have no
// number in our scheme (flags, IP...).
uint8_t reg_number(ZydisRegister r) {
    if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_R15B) {
        unsigned n = r - ZYDIS_REGISTER_AL;  // AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8B..R15B
        if (n < 4) return uint8_t(n);
        if (n < 8) return uint8_t(kRegAH + n - 4);
        return uint8_t(n - 4);
    }
    if (r >= ZYDIS_REGISTER_AX && r <= ZYDIS_REGISTER_R15W) return uint8_t(r - ZYDIS_REGISTER_AX);
    if (r >= ZYDIS_REGISTER_EAX && r <= ZYDIS_REGISTER_R15D) return uint8_t(r - ZYDIS_REGISTER_EAX);
    if (r >= ZYDIS_REGISTER_RAX && r <= ZYDIS_REGISTER_R15) return uint8_t(r - ZYDIS_REGISTER_RAX);
    if (r >= ZYDIS_REGISTER_ST0 && r <= ZYDIS_REGISTER_ST7) return uint8_t(r - ZYDIS_REGISTER_ST0);
    if (r >= ZYDIS_REGISTER_MM0 && r <= ZYDIS_REGISTER_MM7) return uint8_t(r - ZYDIS_REGISTER_MM0);
    if (r >= ZYDIS_REGISTER_XMM0 && r <= ZYDIS_REGISTER_XMM31) return uint8_t(r - ZYDIS_REGISTER_XMM0);
    if (r >= ZYDIS_REGISTER_ES && r <= ZYDIS_REGISTER_GS) return uint8_t(r - ZYDIS_REGISTER_ES);
    if (r >= ZYDIS_REGISTER_CR0 && r <= ZYDIS_REGISTER_CR15) return uint8_t(r - ZYDIS_REGISTER_CR0);
    if (r >= ZYDIS_REGISTER_DR0 && r <= ZYDIS_REGISTER_DR15) return uint8_t(r - ZYDIS_REGISTER_DR0);
    return kNoReg;
}

uint8_t seg_of(const ZydisDecodedInstruction& zi, ZydisRegister segreg, Mode mode) {
    uint8_t s = (segreg >= ZYDIS_REGISTER_ES && segreg <= ZYDIS_REGISTER_GS) ? uint8_t(segreg - ZYDIS_REGISTER_ES)
                                                                              : uint8_t(DS);
    (void)zi;
    if (mode == Mode::Long64 && s != FS && s != GS) return kSegFlat;
    return s;
}

// The segment an instruction without an explicit memory operand uses for its DS-relative implicit
// operand (string source, XLAT): the override prefix if any, else DS.
uint8_t implicit_seg(const ZydisDecodedInstruction& zi, Mode mode) {
    static const struct {
        ZyanU64 attr;
        ZydisRegister reg;
    } kOverrides[] = {
        {ZYDIS_ATTRIB_HAS_SEGMENT_ES, ZYDIS_REGISTER_ES}, {ZYDIS_ATTRIB_HAS_SEGMENT_CS, ZYDIS_REGISTER_CS},
        {ZYDIS_ATTRIB_HAS_SEGMENT_SS, ZYDIS_REGISTER_SS}, {ZYDIS_ATTRIB_HAS_SEGMENT_DS, ZYDIS_REGISTER_DS},
        {ZYDIS_ATTRIB_HAS_SEGMENT_FS, ZYDIS_REGISTER_FS}, {ZYDIS_ATTRIB_HAS_SEGMENT_GS, ZYDIS_REGISTER_GS},
    };
    for (const auto& o : kOverrides)
        if (zi.attributes & o.attr) return seg_of(zi, o.reg, mode);
    return seg_of(zi, ZYDIS_REGISTER_DS, mode);
}

bool ends_block(const ZydisDecodedInstruction& zi) {
    switch (zi.meta.category) {
        case ZYDIS_CATEGORY_COND_BR:
        case ZYDIS_CATEGORY_UNCOND_BR:
        case ZYDIS_CATEGORY_CALL:
        case ZYDIS_CATEGORY_RET:
        case ZYDIS_CATEGORY_INTERRUPT:
        case ZYDIS_CATEGORY_SYSCALL:
        case ZYDIS_CATEGORY_SYSRET:
        case ZYDIS_CATEGORY_SYSTEM: return true;
        default: return false;
    }
}

void ud_handler(Cpu& c, const Insn&) { c.raise_ud(); }

}  // namespace

bool decode_one(const uint8_t* bytes, size_t avail, Mode mode, Insn& out) {
    ZydisDecodedInstruction zi;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    out = Insn{};
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder_for(mode), bytes, avail, &zi, ops))) {
        out.fn = ud_handler;
        out.info = info::kEndsBlock;
        return false;
    }
    out.len = zi.length;
    out.mnemonic = uint16_t(zi.mnemonic);
    out.osz = uint8_t(zi.operand_width / 8);
    out.asz = uint8_t(zi.address_width / 8);
    if (zi.attributes & ZYDIS_ATTRIB_HAS_REP) out.prefix |= pfx::kRep;
    if (zi.attributes & ZYDIS_ATTRIB_HAS_REPE) out.prefix |= pfx::kRep;
    if (zi.attributes & ZYDIS_ATTRIB_HAS_REPNE) out.prefix |= pfx::kRepne;
    if (zi.attributes & ZYDIS_ATTRIB_HAS_LOCK) out.prefix |= pfx::kLock;
    if (zi.attributes & ZYDIS_ATTRIB_HAS_OPERANDSIZE) out.prefix |= pfx::kOpsize;
    if (zi.attributes & ZYDIS_ATTRIB_HAS_ADDRESSSIZE) out.prefix |= pfx::kAdsize;
    if (zi.attributes & ZYDIS_ATTRIB_HAS_REX) out.prefix |= pfx::kRex;
    if (zi.raw.rex.W) out.prefix |= pfx::kRexW;
    if (ends_block(zi)) out.info |= info::kEndsBlock;
    switch (zi.meta.category) {
        case ZYDIS_CATEGORY_COND_BR:
        case ZYDIS_CATEGORY_UNCOND_BR:
        case ZYDIS_CATEGORY_CALL:
        case ZYDIS_CATEGORY_RET:
            if (zi.meta.branch_type != ZYDIS_BRANCH_TYPE_FAR && zi.mnemonic != ZYDIS_MNEMONIC_IRET &&
                zi.mnemonic != ZYDIS_MNEMONIC_IRETD && zi.mnemonic != ZYDIS_MNEMONIC_IRETQ)
                out.info |= info::kNearBranch;
            break;
        default: break;
    }

    bool have_mem = false, have_imm = false;
    unsigned n = 0;
    out.info |= info::kGprOnly;
    for (unsigned k = 0; k < zi.operand_count_visible && n < 3; k++) {
        const ZydisDecodedOperand& op = ops[k];
        switch (op.type) {
            case ZYDIS_OPERAND_TYPE_REGISTER:
                out.kind[n] = kOpReg;
                out.reg[n] = reg_number(op.reg.value);
                switch (ZydisRegisterGetClass(op.reg.value)) {
                    case ZYDIS_REGCLASS_GPR8:
                    case ZYDIS_REGCLASS_GPR16:
                    case ZYDIS_REGCLASS_GPR32:
                    case ZYDIS_REGCLASS_GPR64: break;
                    default: out.info &= uint8_t(~info::kGprOnly);
                }
                break;
            case ZYDIS_OPERAND_TYPE_MEMORY:
                out.kind[n] = kOpMem;
                out.msz = op.size / 8 <= 255 ? uint8_t(op.size / 8) : 0;
                have_mem = true;
                out.seg = seg_of(zi, op.mem.segment, mode);
                if (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) out.info |= info::kMemWrite;
                if (op.mem.segment == ZYDIS_REGISTER_SS) out.info |= info::kSsMem;
                out.base = op.mem.base == ZYDIS_REGISTER_NONE ? kNoReg
                           : (op.mem.base == ZYDIS_REGISTER_RIP || op.mem.base == ZYDIS_REGISTER_EIP)
                               ? kRipReg
                               : reg_number(op.mem.base);
                out.index = op.mem.index == ZYDIS_REGISTER_NONE ? kNoReg : reg_number(op.mem.index);
                out.scale = op.mem.scale == 8 ? 3 : op.mem.scale == 4 ? 2 : op.mem.scale == 2 ? 1 : 0;
                out.disp = op.mem.disp.has_displacement ? op.mem.disp.value : 0;
                break;
            case ZYDIS_OPERAND_TYPE_IMMEDIATE:
                out.kind[n] = kOpImm;
                if (!have_imm) {
                    out.imm = op.imm.value.u;
                    have_imm = true;
                } else {
                    out.imm2 = uint8_t(op.imm.value.u);
                }
                break;
            case ZYDIS_OPERAND_TYPE_POINTER:  // far ptr16:16/32 -> imm = offset, aux = selector
                out.kind[n] = kOpImm;
                out.imm = op.ptr.offset;
                out.aux = op.ptr.segment;
                break;
            default: continue;
        }
        n++;
    }
    if (!have_mem) out.seg = implicit_seg(zi, mode);

    bool known = false;
    Handler h = Registry::get().select(DecodeCtx{zi, ops, out, mode}, &known);
    if (!h) {
        log_unimplemented(out.mnemonic, known ? "operand form not implemented" : "not implemented");
        out.fn = ud_handler;
        out.info |= info::kEndsBlock;
        return true;
    }
    out.fn = h;
    return true;
}

std::string disassemble(const uint8_t* bytes, size_t avail, Mode mode, uint64_t rip) {
    ZydisDecodedInstruction zi;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder_for(mode), bytes, avail, &zi, ops)))
        return "(bad)";
    static ZydisFormatter fmtr = [] {
        ZydisFormatter f;
        ZydisFormatterInit(&f, ZYDIS_FORMATTER_STYLE_INTEL);
        return f;
    }();
    char buf[256];
    if (!ZYAN_SUCCESS(ZydisFormatterFormatInstruction(&fmtr, &zi, ops, zi.operand_count_visible, buf,
                                                      sizeof buf, rip, nullptr)))
        return "(unformattable)";
    return buf;
}

// ---- code cache ----------------------------------------------------------------------------------

std::shared_ptr<CodeCache> make_code_cache() { return std::make_shared<CodeCache>(); }

Block* CodeCache::find(uint64_t phys, Mode mode) const {
    stats.lookups++;
    return by_phys_.find(key(phys, mode));
}

Block* CodeCache::insert(std::unique_ptr<Block> b) {
    stats.decoded++;
    Block* raw = b.get();
    if (Block* old = by_phys_.find(key(b->phys, b->mode))) retire(old);
    uint64_t page = b->phys & kPageMask;
    pages_[page].push_back(raw);
    if (b->page2 != 1) pages_[b->page2].push_back(raw);
    by_phys_.insert(key(raw->phys, raw->mode), std::move(b));
    // Pages holding code must take the write slow path on every CPU, so writes to them are seen.
    for (Cpu* c : cpus_) {
        c->tlb_protect_code(page);
        if (raw->page2 != 1) c->tlb_protect_code(raw->page2);
    }
    return raw;
}

// Remove b from the page lists (except `except_page`'s, which the caller drops whole) and move it
// from the index to the graveyard.
void CodeCache::unlink(Block* b, uint64_t except_page) {
    b->valid = false;
    for (uint64_t p : {b->phys & kPageMask, b->page2}) {
        if (p == except_page || p == 1) continue;
        auto o = pages_.find(p);
        if (o == pages_.end()) continue;
        std::erase(o->second, b);
        if (o->second.empty()) pages_.erase(o);
    }
    if (by_phys_.find(key(b->phys, b->mode)) == b) graveyard_.push_back(by_phys_.take(key(b->phys, b->mode)));
}

void CodeCache::retire(Block* b) {
    if (!b->valid) return;
    unlink(b, 1);
    generation_++;
    stats.invalidations++;
}

void CodeCache::invalidate_page(uint64_t page) {
    auto it = pages_.find(page);
    if (it == pages_.end()) return;
    std::vector<Block*> blocks = std::move(it->second);
    pages_.erase(it);
    for (Block* b : blocks)
        if (b->valid) unlink(b, page);
    generation_++;
    stats.invalidations++;
}

void CodeCache::invalidate_all() {
    for (auto& b : by_phys_.take_all()) {
        b->valid = false;
        graveyard_.push_back(std::move(b));
    }
    pages_.clear();
    generation_++;
    stats.invalidations++;
}

}  // namespace m86::cpu
