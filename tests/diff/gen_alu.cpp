// Differential-test forms (names start with "alu "): ALU (ADD ADC SUB SBB AND OR XOR CMP TEST, INC DEC NEG NOT), their LOCK
// forms, MOV (all general-register forms, moffs, imm64) and LEA (every addressing form, 16/32/64-bit
// operand size, 64- and 32-bit address size).
//
// Instances are hand-encoded (encode.h) so each form is exactly the encoding its name says (xbyak
// would pick imm8/short forms itself). Each form covers all four operand widths: the width is chosen
// per case, and the disassembly in a mismatch report shows it.
//
// Undefined flags (SDM Vol. 2 instruction pages, "Flags Affected"): AND, OR, XOR, TEST leave AF
// undefined; ADD ADC SUB SBB CMP NEG INC DEC define all they touch; NOT, MOV, LEA touch none.
#include <cstring>

#include "diff/encode.h"
#include "diff/harness.h"

namespace m86::difftest {

namespace {

using enc::Insn;
using enc::RM;
using cpu::fl::AF;

constexpr unsigned kWidths[4] = {1, 2, 4, 8};

unsigned pick_width(Picker& p) { return kWidths[p.rng() % 4]; }

// Operand-size prefix / REX.W for `w`; `op8` is the byte opcode, op8+1 the wider one.
void set_width(Insn& in, unsigned w, uint8_t op8, bool has_byte_form = true) {
    if (w == 2) in.prefixes.push_back(0x66);
    in.rex_w = w == 8;
    in.byte_regs = w == 1;
    in.opcode = {uint8_t(has_byte_form && w != 1 ? op8 + 1 : op8)};
}

uint64_t imm_for(Picker& p, unsigned size) {
    uint64_t v = p.edge(size);
    return size >= 8 ? v : v & ((1ull << (8 * size)) - 1);
}

// Now and then, prefixes that must not change the meaning: 66 next to REX.W (REX.W wins, SDM Vol. 2,
// 2.2.1.2) and a null segment override (ES/CS/SS/DS are ignored in 64-bit mode, SDM Vol. 1, 3.3.7.1).
void add_noise_prefixes(Picker& p, Insn& in) {
    if (in.rex_w && p.rng() % 8 == 0) in.prefixes.push_back(0x66);
    if (in.has_modrm && in.rm.mem && p.rng() % 16 == 0) {
        static constexpr uint8_t kNullSegs[] = {0x26, 0x2e, 0x36, 0x3e};
        in.prefixes.insert(in.prefixes.begin() + int(p.rng() % (in.prefixes.size() + 1)), kNullSegs[p.rng() % 4]);
    }
}

// Emits, retrying register choices that cannot be encoded (AH..BH together with a REX prefix).
template <class Build> void emit_retry(Xbyak::CodeGenerator& g, Picker& p, State& st, Build build) {
    for (int tries = 0;; ++tries) {
        uint64_t saved[16];  // registers a failed attempt set as bases
        std::memcpy(saved, st.gpr, sizeof saved);
        Insn in = build(p, st, tries > 20);
        add_noise_prefixes(p, in);
        if (enc::emit(g, in)) return;
        std::memcpy(st.gpr, saved, sizeof saved);
    }
}

// Register number for width w; never AH..BH when `no_high`.
int reg_for(Picker& p, unsigned w, bool no_high, std::initializer_list<int> avoid = {}) {
    return enc::random_reg(p, w, !no_high, avoid);
}

// LOCKed accesses must not split a cache line (split-lock detection makes that #AC or very slow on
// some hosts): aligned offsets, plus some fully inside the guard page for #PF.
uint64_t lock_offset(Picker& p, unsigned size) {
    if (p.rng() % 40 == 0) return kDataSize + size * (p.rng() % 8);
    return (p.rng() % (kDataSize / size)) * size;
}

// ---- binary ALU ----------------------------------------------------------------------------------

struct BinOp {
    const char* name;
    int ext;  // /digit in 80/81/83 and the opcode row (ext * 8) for the 00-05 forms; -1 for TEST
    bool logic;
};
constexpr BinOp kBinOps[] = {{"add", 0, false}, {"or", 1, true},   {"adc", 2, false}, {"sbb", 3, false},
                             {"and", 4, true},  {"sub", 5, false}, {"xor", 6, true},  {"cmp", 7, false},
                             {"test", -1, true}};

enum class Kind { RmR_Reg, RRm_Reg, RmR_Mem, RRm_Mem, RmImm_Reg, RmImm8_Reg, RmImm_Mem, RmImm8_Mem, AccImm };

void add_bin(std::vector<Form>& v, const BinOp& op, Kind kind, const char* what) {
    Form f;
    f.name = std::string("alu ") + op.name + " " + what;
    f.undefined_flags = op.logic ? AF : 0;
    f.emit = [op, kind](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned w = pick_width(p);
        if (kind == Kind::RmImm8_Reg || kind == Kind::RmImm8_Mem)
            while (w == 1) w = pick_width(p);  // 83 /digit has no byte form
        emit_retry(g, p, st, [&](Picker& p, State& st, bool simple) {
            Insn in;
            const bool test = op.ext < 0;
            uint8_t row = uint8_t(test ? 0 : op.ext * 8);
            switch (kind) {
                case Kind::RmR_Reg:
                case Kind::RRm_Reg:
                    set_width(in, w, test ? 0x84 : uint8_t(row + (kind == Kind::RRm_Reg ? 2 : 0)));
                    in.reg = reg_for(p, w, simple);
                    in.rm.reg = reg_for(p, w, simple);
                    break;
                case Kind::RmR_Mem:
                case Kind::RRm_Mem:
                    set_width(in, w, test ? 0x84 : uint8_t(row + (kind == Kind::RRm_Mem ? 2 : 0)));
                    in.rm.mem = true;
                    in.rm.m = enc::random_mem(p, st, w, {}, -1);
                    in.reg = reg_for(p, w, simple);
                    break;
                case Kind::RmImm_Reg:
                case Kind::RmImm_Mem:
                case Kind::RmImm8_Reg:
                case Kind::RmImm8_Mem: {
                    bool imm8 = kind == Kind::RmImm8_Reg || kind == Kind::RmImm8_Mem;
                    if (test) set_width(in, w, 0xf6);
                    else if (imm8) set_width(in, w, 0x83, false);
                    else set_width(in, w, 0x80);
                    in.reg = test ? 0 : op.ext;
                    in.reg_is_opext = true;
                    if (kind == Kind::RmImm_Mem || kind == Kind::RmImm8_Mem) {
                        in.rm.mem = true;
                        in.rm.m = enc::random_mem(p, st, w, {}, -1);
                    } else {
                        in.rm.reg = reg_for(p, w, simple);
                    }
                    in.imm_size = imm8 ? 1 : std::min(w, 4u);
                    in.imm = imm_for(p, unsigned(in.imm_size));
                    break;
                }
                case Kind::AccImm:
                    set_width(in, w, test ? 0xa8 : uint8_t(row + 4));
                    in.has_modrm = false;
                    in.imm_size = std::min(w, 4u);
                    in.imm = imm_for(p, unsigned(in.imm_size));
                    break;
            }
            return in;
        });
    };
    v.push_back(std::move(f));
}

// ---- unary: INC DEC (FE/FF /0 /1), NOT NEG (F6/F7 /2 /3) ---------------------------------------

struct UnOp {
    const char* name;
    uint8_t op8;
    int ext;
};
constexpr UnOp kUnOps[] = {{"inc", 0xfe, 0}, {"dec", 0xfe, 1}, {"not", 0xf6, 2}, {"neg", 0xf6, 3}};

void add_un(std::vector<Form>& v, const UnOp& op, bool mem, bool lock) {
    Form f;
    f.name = std::string(lock ? "alu lock " : "alu ") + op.name + (mem ? " m (mem)" : " r (reg)");
    f.emit = [op, mem, lock](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned w = pick_width(p);
        emit_retry(g, p, st, [&](Picker& p, State& st, bool simple) {
            Insn in;
            if (lock) in.prefixes.push_back(0xf0);
            set_width(in, w, op.op8);
            in.reg = op.ext;
            in.reg_is_opext = true;
            if (mem) {
                in.rm.mem = true;
                if (lock) {
                    in.rm.m.base = p.gpr();
                    st.gpr[in.rm.m.base] = kDataAddr + lock_offset(p, w);
                } else {
                    in.rm.m = enc::random_mem(p, st, w, {}, -1);
                }
            } else {
                in.rm.reg = reg_for(p, w, simple);
            }
            return in;
        });
    };
    v.push_back(std::move(f));
}

// LOCK on the memory forms of ADD OR ADC SBB AND SUB XOR (register source or immediate).
void add_lock_bin(std::vector<Form>& v, const BinOp& op) {
    Form f;
    f.name = std::string("alu lock ") + op.name + " m, r/imm";
    f.undefined_flags = op.logic ? AF : 0;
    f.emit = [op](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned w = pick_width(p);
        emit_retry(g, p, st, [&](Picker& p, State& st, bool simple) {
            Insn in;
            in.prefixes.push_back(0xf0);
            unsigned form = unsigned(p.rng() % 3);
            if (form == 2 && w == 1) form = 1;
            in.rm.mem = true;
            in.rm.m.base = p.gpr();
            // A displacement now and then, so the lock path sees a computed address.
            in.rm.m.disp = p.rng() % 2 ? int8_t(p.rng()) & ~int(w - 1) : 0;
            in.rm.m.disp_size = in.rm.m.disp ? 1 : 0;
            st.gpr[in.rm.m.base] = kDataAddr + lock_offset(p, w) - uint64_t(in.rm.m.disp);
            if (form == 0) {
                set_width(in, w, uint8_t(op.ext * 8));
                in.reg = reg_for(p, w, simple);
            } else {
                set_width(in, w, form == 2 ? 0x83 : 0x80, form != 2);
                in.reg = op.ext;
                in.reg_is_opext = true;
                in.imm_size = form == 2 ? 1 : std::min(w, 4u);
                in.imm = imm_for(p, unsigned(in.imm_size));
            }
            return in;
        });
    };
    v.push_back(std::move(f));
}

// ---- MOV -----------------------------------------------------------------------------------------

enum class MovKind { RmR_Reg, RRm_Reg, RmR_Mem, RRm_Mem, RmImm_Reg, RmImm_Mem, RImm, MoffsLoad, MoffsStore };

void add_mov(std::vector<Form>& v, MovKind kind, const char* name) {
    Form f;
    f.name = std::string("alu ") + name;
    f.emit = [kind](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned w = pick_width(p);
        emit_retry(g, p, st, [&](Picker& p, State& st, bool simple) {
            Insn in;
            switch (kind) {
                case MovKind::RmR_Reg:
                case MovKind::RRm_Reg:
                    set_width(in, w, kind == MovKind::RRm_Reg ? 0x8a : 0x88);
                    in.reg = reg_for(p, w, simple);
                    in.rm.reg = reg_for(p, w, simple);
                    break;
                case MovKind::RmR_Mem:
                case MovKind::RRm_Mem:
                    set_width(in, w, kind == MovKind::RRm_Mem ? 0x8a : 0x88);
                    in.rm.mem = true;
                    in.rm.m = enc::random_mem(p, st, w, {}, -1);
                    in.reg = reg_for(p, w, simple);
                    break;
                case MovKind::RmImm_Reg:
                case MovKind::RmImm_Mem:
                    set_width(in, w, 0xc6);
                    in.reg = 0;
                    in.reg_is_opext = true;
                    if (kind == MovKind::RmImm_Mem) {
                        in.rm.mem = true;
                        in.rm.m = enc::random_mem(p, st, w, {}, -1);
                    } else {
                        in.rm.reg = reg_for(p, w, simple);
                    }
                    in.imm_size = std::min(w, 4u);
                    in.imm = imm_for(p, unsigned(in.imm_size));
                    break;
                case MovKind::RImm:  // B0+r ib, B8+r iw/id, REX.W B8+r io (imm64)
                    set_width(in, w, w == 1 ? 0xb0 : 0xb8, false);
                    in.has_modrm = false;
                    in.opreg = reg_for(p, w, simple);
                    in.imm_size = int(w);
                    in.imm = imm_for(p, w);
                    break;
                case MovKind::MoffsLoad:
                case MovKind::MoffsStore: {  // A0-A3: absolute address, 8 bytes (4 with 0x67)
                    set_width(in, w, kind == MovKind::MoffsLoad ? 0xa0 : 0xa2);
                    in.has_modrm = false;
                    uint64_t addr = kDataAddr + p.data_offset(w);
                    if (p.rng() % 4 == 0) {
                        in.prefixes.push_back(0x67);
                        in.imm_size = 4;
                    } else {
                        in.imm_size = 8;
                    }
                    in.imm = addr;
                    break;
                }
            }
            return in;
        });
    };
    v.push_back(std::move(f));
}

// ---- LEA -----------------------------------------------------------------------------------------

void add_lea(std::vector<Form>& v, bool a32) {
    Form f;
    f.name = a32 ? "alu lea r, m (32-bit address)" : "alu lea r, m";
    f.emit = [a32](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned w = kWidths[1 + p.rng() % 3];  // 16, 32, 64
        Insn in;
        set_width(in, w, 0x8d, false);
        in.rm.mem = true;
        in.rm.m = enc::random_lea(p, st, a32);
        in.reg = p.rng() % 40 == 0 ? 4 : p.gpr();
        add_noise_prefixes(p, in);
        enc::emit(g, in);
    };
    v.push_back(std::move(f));
}

// Encodings that must raise #UD, so the fault path is compared too.
void add_ud_forms(std::vector<Form>& v) {
    v.push_back({"alu #UD: 82 /digit ib (invalid in 64-bit mode)", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
                     Insn in;
                     in.opcode = {0x82};
                     in.byte_regs = true;
                     in.reg = int(p.rng() % 8);
                     in.reg_is_opext = true;
                     in.rm.reg = p.gpr() & 3;
                     in.imm_size = 1;
                     in.imm = p.rng() & 0xff;
                     enc::emit(g, in);
                 }});
    v.push_back({"alu #UD: lock on a register destination", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
                     Insn in;
                     in.prefixes = {0xf0};
                     in.opcode = {uint8_t(8 * (p.rng() % 7) + 1)};
                     in.rex_w = p.rng() % 2;
                     in.reg = p.gpr();
                     in.rm.reg = p.gpr();
                     enc::emit(g, in);
                 }});
    v.push_back({"alu #UD: lock cmp/test/mov on memory", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                     Insn in;
                     in.prefixes = {0xf0};
                     static constexpr uint8_t kOps[] = {0x39, 0x3b, 0x85, 0x89, 0x8b};
                     in.opcode = {kOps[p.rng() % 5]};
                     in.reg = p.gpr();
                     in.rm.mem = true;
                     in.rm.m = enc::random_mem(p, st, 4, {}, 0);
                     enc::emit(g, in);
                 }});
    v.push_back({"alu #UD: lea with a register operand", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
                     Insn in;
                     in.opcode = {0x8d};
                     in.rex_w = p.rng() % 2;
                     in.reg = p.gpr();
                     in.rm.reg = p.gpr();
                     enc::emit(g, in);
                 }});
}

// ---- sequences: the lazy flags across instructions ------------------------------------------------
// 2..6 register ALU instructions in a row, so each reads the flags the previous one left lazily (ADC/
// SBB read CF, INC/DEC preserve it, NOT preserves all). AF is undefined after AND/OR/XOR/TEST and no
// instruction here reads it, so only the last flag writer decides whether AF is compared: one form
// ends in an arithmetic operation, the other in a logic one.

const Xbyak::Reg& seq_reg(Picker& p, unsigned w, int n) {
    switch (w) {
        case 1: return p.r8(n);
        case 2: return p.r16(n);
        case 4: return p.r32(n);
        default: return p.r64(n);
    }
}

enum SeqOp { kAdd, kAdc, kSub, kSbb, kCmp, kInc, kDec, kNeg, kNot, kAnd, kOr, kXor, kTest, kNumSeqOps };

void emit_seq_op(Xbyak::CodeGenerator& g, Picker& p, int op) {
    unsigned w = pick_width(p);
    const Xbyak::Reg& a = seq_reg(p, w, p.gpr());
    const Xbyak::Reg& b = seq_reg(p, w, p.gpr());
    const bool imm = p.rng() % 3 == 0;
    // xbyak wants 8/16-bit immediates sign-extended to 32 bits and rejects 64-bit ones >= 2^31 (the
    // single-instruction forms cover those).
    uint32_t iv = uint32_t(p.edge(std::min(w, 4u)));
    if (w == 1) iv = uint32_t(int32_t(int8_t(iv)));
    if (w == 2) iv = uint32_t(int32_t(int16_t(iv)));
    if (w == 8) iv &= 0x7fffffffu;
    switch (op) {
        case kAdd: imm ? g.add(a, iv) : g.add(a, b); break;
        case kAdc: imm ? g.adc(a, iv) : g.adc(a, b); break;
        case kSub: imm ? g.sub(a, iv) : g.sub(a, b); break;
        case kSbb: imm ? g.sbb(a, iv) : g.sbb(a, b); break;
        case kCmp: imm ? g.cmp(a, iv) : g.cmp(a, b); break;
        case kInc: g.inc(a); break;
        case kDec: g.dec(a); break;
        case kNeg: g.neg(a); break;
        case kNot: g.not_(a); break;
        case kAnd: imm ? g.and_(a, iv) : g.and_(a, b); break;
        case kOr: imm ? g.or_(a, iv) : g.or_(a, b); break;
        case kXor: imm ? g.xor_(a, iv) : g.xor_(a, b); break;
        default: imm ? g.test(a, iv) : g.test(a, b.cvt64().getIdx() == a.cvt64().getIdx() ? a : b); break;
    }
}

void add_sequences(std::vector<Form>& v) {
    v.push_back({"alu sequence of 2-6 ops ending in arithmetic", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
                     int n = 1 + int(p.rng() % 5);
                     for (int i = 0; i < n; ++i) emit_seq_op(g, p, int(p.rng() % kNumSeqOps));
                     emit_seq_op(g, p, int(p.rng() % (kNeg + 1)));  // ADD..NEG: all six flags defined
                 }});
    v.push_back({"alu sequence of 2-6 ops ending in a logic op", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
                     int n = 1 + int(p.rng() % 5);
                     for (int i = 0; i < n; ++i) emit_seq_op(g, p, int(p.rng() % kNumSeqOps));
                     if (p.rng() % 3 == 0) emit_seq_op(g, p, kNot);  // NOT keeps the logic op's flags
                     emit_seq_op(g, p, kAnd + int(p.rng() % 4));
                 },
                 AF});
}

}  // namespace

void forms_alu(std::vector<Form>& v) {
    for (const BinOp& op : kBinOps) {
        bool test = op.ext < 0;
        add_bin(v, op, Kind::RmR_Reg, "r/m, r (reg)");
        if (!test) add_bin(v, op, Kind::RRm_Reg, "r, r/m (reg)");
        add_bin(v, op, Kind::RmR_Mem, "m, r");
        if (!test) add_bin(v, op, Kind::RRm_Mem, "r, m");
        add_bin(v, op, Kind::RmImm_Reg, "r/m, imm (reg)");
        add_bin(v, op, Kind::RmImm_Mem, "m, imm");
        if (!test) add_bin(v, op, Kind::RmImm8_Reg, "r/m, imm8 (83, reg)");
        if (!test) add_bin(v, op, Kind::RmImm8_Mem, "m, imm8 (83)");
        add_bin(v, op, Kind::AccImm, "al/ax/eax/rax, imm");
        if (!test && op.ext != 7) add_lock_bin(v, op);
    }
    for (const UnOp& op : kUnOps) {
        add_un(v, op, false, false);
        add_un(v, op, true, false);
        add_un(v, op, true, true);
    }
    add_mov(v, MovKind::RmR_Reg, "mov r/m, r (88/89 reg)");
    add_mov(v, MovKind::RRm_Reg, "mov r, r/m (8a/8b reg)");
    add_mov(v, MovKind::RmR_Mem, "mov m, r");
    add_mov(v, MovKind::RRm_Mem, "mov r, m");
    add_mov(v, MovKind::RmImm_Reg, "mov r/m, imm (c6/c7 reg)");
    add_mov(v, MovKind::RmImm_Mem, "mov m, imm (c6/c7)");
    add_mov(v, MovKind::RImm, "mov r, imm (b0/b8, imm64)");
    add_mov(v, MovKind::MoffsLoad, "mov al/ax/eax/rax, moffs");
    add_mov(v, MovKind::MoffsStore, "mov moffs, al/ax/eax/rax");
    add_lea(v, false);
    add_lea(v, true);
    add_ud_forms(v);
    add_sequences(v);
}

}  // namespace m86::difftest
