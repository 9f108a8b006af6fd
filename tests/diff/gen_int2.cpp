// Differential-test forms: int2 - data movement (MOVSX/MOVZX/MOVSXD, XCHG, CMPXCHG, CMPXCHG8B/16B,
// XADD, BSWAP, MOVBE, CMOVcc, SETcc, CBW..CQO, LAHF/SAHF, XLAT, CLC..STD, NOPs), stack (PUSH/POP,
// PUSHF/POPF, ENTER/LEAVE) and near control transfers (JMP, Jcc, CALL, RET, LOOPcc, JrCXZ).
//
// Every form name starts with "int2 " (M86_DIFF_FILTER=int2). ModRM instructions are hand-encoded
// (encode.h) so each form is exactly the encoding its name says; branches use xbyak labels. Branch
// instances keep every target inside the emitted bytes and end every path by falling off the end
// (where the harness puts its HLT / jump to the epilogue); the taken and not-taken paths write
// different marker registers, so the comparison sees which path ran.
//
// 66h-prefixed near branches in 64-bit mode truncate RIP to 16 bits on AMD and ignore 66h on Intel
// (control.cpp). Those forms (names "int2 66h ...") send RIP below 0x10000, where neither side has
// a mapping (the emulator's page 0 and 0x7000+ are not present; natively it is below mmap_min_addr),
// so they end in a #PF at the truncated target. They are registered only on AMD hosts.
//
// No instruction here leaves a flag undefined (SDM Vol. 2 "Flags Affected" of each page), so no form
// masks any.
#include <cpuid.h>

#include <cstring>

#include "diff/encode.h"
#include "diff/harness.h"

namespace m86::difftest {

namespace {

using enc::Insn;
using enc::Mem;
using Emit = std::function<void(Xbyak::CodeGenerator&, Picker&, State&)>;
using LT = Xbyak::CodeGenerator::LabelType;
constexpr LT kShort = Xbyak::CodeGenerator::T_SHORT, kNear = Xbyak::CodeGenerator::T_NEAR;

enum : int { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI };

constexpr const char* kCc[16] = {"o", "no", "b", "ae", "e", "ne", "be", "a",
                                 "s", "ns", "p", "np", "l", "ge", "le", "g"};

std::string bits(unsigned w) { return std::to_string(w * 8); }

void add(std::vector<Form>& v, const std::string& name, Emit e, int cases = 0) {
    Form f;
    f.name = "int2 " + name;
    f.emit = std::move(e);
    f.cases = cases;
    v.push_back(std::move(f));
}

unsigned pick(Picker& p, std::initializer_list<unsigned> l) { return l.begin()[p.rng() % l.size()]; }

void width_prefix(Insn& in, unsigned w) {
    if (w == 2) in.prefixes.push_back(0x66);
    in.rex_w = w == 8;
    in.byte_regs = w == 1;
}

// Emits the instruction `build` returns, retrying register choices that cannot be encoded (AH..BH
// with a REX prefix). build(simple): `simple` asks for no AH..BH after many failures.
template <class Build> void emit_insn(Xbyak::CodeGenerator& g, State& st, Build build) {
    uint64_t saved[16];
    std::memcpy(saved, st.gpr, sizeof saved);
    for (int tries = 0;; ++tries) {
        Insn in = build(tries > 20);
        if (enc::emit(g, in)) return;
        std::memcpy(st.gpr, saved, sizeof saved);
    }
}

void bytes(Xbyak::CodeGenerator& g, std::initializer_list<uint8_t> b) {
    for (uint8_t x : b) g.db(x);
}

// Moves a memory operand so it addresses `t` (adjusting its base register or displacement).
void retarget(Mem& m, State& st, uint64_t t) {
    uint64_t d = t - m.target;
    m.target = t;
    if (m.rip) return;
    if (m.base < 0) {
        m.disp += int64_t(d);
        return;
    }
    uint64_t& b = st.gpr[m.base];
    b = m.a32 ? ((b & ~0xffffffffull) | uint32_t(b + d)) : b + d;
}

bool in_data(uint64_t a, unsigned n) { return a >= kDataAddr && a + n <= kDataAddr + kDataSize; }
void put(State& st, uint64_t a, uint64_t v, unsigned n) {
    if (in_data(a, n)) std::memcpy(st.data + (a - kDataAddr), &v, n);
}

// LOCKed (and XCHG-with-memory) accesses stay naturally aligned: a split lock is #AC or very slow
// on some hosts. Now and then the operand lies in the guard page (#PF).
Mem locked_mem(Picker& p, State& st, unsigned size, std::initializer_list<int> avoid = {}) {
    Mem m = enc::random_mem(p, st, size, avoid, -1);
    uint64_t t = p.rng() % 40 == 0 ? kGuardAddr + size * (p.rng() % 8)
                                   : kDataAddr + (p.rng() % (kDataSize / size)) * size;
    retarget(m, st, t);
    return m;
}

uint64_t wmask(unsigned w) { return w == 8 ? ~0ull : (1ull << (8 * w)) - 1; }

// The w-byte value of register n (16..19 = AH..BH for w = 1).
uint64_t reg_value(const State& st, int n, unsigned w) {
    if (w == 1 && n >= 16) return (st.gpr[n - 16] >> 8) & 0xff;
    return st.gpr[n] & wmask(w);
}
void set_reg_value(State& st, int n, unsigned w, uint64_t v) {
    if (w == 1 && n >= 16) {
        st.gpr[n - 16] = (st.gpr[n - 16] & ~0xff00ull) | ((v & 0xff) << 8);
        return;
    }
    st.gpr[n] = (st.gpr[n] & ~wmask(w)) | (v & wmask(w));
}

// A non-canonical address (bits 63:47 neither all zeros nor all ones).
uint64_t noncanonical(Picker& p) {
    for (;;) {
        uint64_t v = p.rng();
        uint64_t top = v >> 47;
        if (top != 0 && top != 0x1ffff) return v;
    }
}

// A 16-bit branch target that is unmapped on both sides: page 0, or 0x7000..0xffff.
uint16_t low_target(Picker& p) {
    return uint16_t(p.rng() % 2 ? p.rng() % 0x1000 : 0x7000 + p.rng() % 0x9000);
}

// Conditional jump with condition cc (xbyak's JO, patched).
void jcc(Xbyak::CodeGenerator& g, int cc, const Xbyak::Label& l, bool near) {
    size_t pos = g.getSize();
    g.jo(l, near ? kNear : kShort);
    auto* code = const_cast<uint8_t*>(g.getCode());
    if (near)
        code[pos + 1] = uint8_t(0x80 + cc);
    else
        code[pos] = uint8_t(0x70 + cc);
}

// Points RSP where a push (the slot below RSP) or a pop (the slot at RSP) of `size` bytes lands:
// mostly the harness stack (compared through its window, +-0x200 bytes around the default RSP),
// sometimes the data area (crossing into its guard page now and then) or, for a push, the bottom
// of the stack pages (it faults into the unmapped page below). Pops only read the window or the
// data area: the rest of the stack pages is neither initialised per case nor compared.
void pick_rsp(Picker& p, State& st, unsigned size, bool push) {
    switch (p.rng() % 8) {
        case 0:
        case 1: st.gpr[RSP] = kDataAddr + p.data_offset(size) + (push ? size : 0); break;
        case 2:
            if (push) st.gpr[RSP] = kStackTop - 0x2000 + p.rng() % 24;
            else st.gpr[RSP] += p.rng() % 0x1f0;
            break;
        case 3: st.gpr[RSP] -= p.rng() % 16; break;
        default: break;  // the harness default
    }
}

// ---- data movement -------------------------------------------------------------------------------

void forms_movx(std::vector<Form>& v) {
    for (bool sx : {false, true})
        for (unsigned sw : {1u, 2u})
            for (unsigned w : {2u, 4u, 8u}) {
                if (sw > w) continue;
                for (bool mem : {false, true}) {
                    std::string name = std::string(sx ? "movsx" : "movzx") + " r" + bits(w) + ", " +
                                       (mem ? "m" : "r") + bits(sw);
                    add(v, name, [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                        emit_insn(g, st, [&](bool simple) {
                            Insn in;
                            width_prefix(in, w);
                            in.byte_regs = sw == 1;
                            in.opcode = {0x0f, uint8_t((sx ? 0xbe : 0xb6) + (sw == 2 ? 1 : 0))};
                            in.reg = enc::random_reg(p, w, false);
                            in.rm.mem = mem;
                            if (mem) in.rm.m = enc::random_mem(p, st, sw, {}, -1);
                            else in.rm.reg = enc::random_reg(p, sw, !simple);
                            return in;
                        });
                    });
                }
            }
    // MOVSXD (63 /r): sign-extends with REX.W; with a 32- or 16-bit operand size a plain move.
    for (unsigned w : {2u, 4u, 8u})
        for (bool mem : {false, true}) {
            // (66 63 with memory reads an m32 on the host and keeps its low half: the operand is
            // given 4 bytes of room before the guard page so that this shows.)
            unsigned sw = w == 8 ? 4 : w;
            add(v, "movsxd r" + bits(w) + ", " + (mem ? "m" : "r") + bits(sw),
                [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                    emit_insn(g, st, [&](bool) {
                        Insn in;
                        width_prefix(in, w);
                        in.opcode = {0x63};
                        in.reg = enc::random_reg(p, w, false);
                        in.rm.mem = mem;
                        if (mem) in.rm.m = enc::random_mem(p, st, 4, {}, -1);
                        else in.rm.reg = enc::random_reg(p, w, false);
                        return in;
                    });
                });
        }
}

void forms_xchg(std::vector<Form>& v) {
    add(v, "xchg r, r (86/87)", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned w = pick(p, {1, 2, 4, 8});
        emit_insn(g, st, [&](bool simple) {
            Insn in;
            width_prefix(in, w);
            in.opcode = {uint8_t(w == 1 ? 0x86 : 0x87)};
            in.reg = enc::random_reg(p, w, !simple);
            in.rm.reg = p.rng() % 8 ? enc::random_reg(p, w, !simple) : in.reg;  // sometimes xchg r, r
            return in;
        });
    });
    add(v, "xchg m, r (86/87, locked)", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned w = pick(p, {1, 2, 4, 8});
        bool lock = p.rng() % 2;
        emit_insn(g, st, [&](bool simple) {
            Insn in;
            if (lock) in.prefixes.push_back(0xf0);
            width_prefix(in, w);
            in.opcode = {uint8_t(w == 1 ? 0x86 : 0x87)};
            in.reg = enc::random_reg(p, w, !simple);
            in.rm.mem = true;
            in.rm.m = locked_mem(p, st, w);
            return in;
        });
    });
    // 90+r: XCHG r, rAX. With r = 0 and no REX.B it is NOP (no zero-extension of RAX).
    add(v, "xchg r, rAX (90+r)", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned w = pick(p, {2, 4, 8});
        emit_insn(g, st, [&](bool) {
            Insn in;
            width_prefix(in, w);
            in.has_modrm = false;
            in.opcode = {0x90};
            in.opreg = p.rng() % 4 == 0 ? (p.rng() % 2 ? 0 : 8) : int(p.rng() % 16);
            return in;
        });
    });
}

// CMPXCHG r/m, r: the destination equals the accumulator in about half of the cases.
void forms_cmpxchg_xadd(std::vector<Form>& v) {
    for (bool xadd : {false, true})
        for (bool mem : {false, true}) {
            std::string name = std::string(xadd ? "xadd " : "cmpxchg ") + (mem ? "m, r" : "r, r");
            add(v, name, [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                unsigned w = pick(p, {1, 2, 4, 8});
                bool lock = mem && p.rng() % 2;
                bool equal = p.rng() % 2;
                emit_insn(g, st, [&](bool simple) {
                    Insn in;
                    if (lock) in.prefixes.push_back(0xf0);
                    width_prefix(in, w);
                    in.opcode = {0x0f, uint8_t((xadd ? 0xc0 : 0xb0) + (w == 1 ? 0 : 1))};
                    in.reg = enc::random_reg(p, w, !simple);
                    in.rm.mem = mem;
                    if (mem) {
                        in.rm.m = lock ? locked_mem(p, st, w) : enc::random_mem(p, st, w, {}, -1);
                        if (equal) put(st, in.rm.m.target, reg_value(st, RAX, w), w);
                    } else {
                        in.rm.reg = enc::random_reg(p, w, !simple);
                        if (equal) set_reg_value(st, in.rm.reg, w, reg_value(st, RAX, w));
                    }
                    return in;
                });
            });
        }
    for (bool b16 : {false, true}) {
        add(v, b16 ? "cmpxchg16b m128" : "cmpxchg8b m64", [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            unsigned size = b16 ? 16 : 8;
            bool lock = p.rng() % 2;
            bool equal = p.rng() % 2;
            Insn in;
            if (lock) in.prefixes.push_back(0xf0);
            in.rex_w = b16;
            in.opcode = {0x0f, 0xc7};
            in.reg = 1;
            in.reg_is_opext = true;
            in.rm.mem = true;
            in.rm.m = enc::random_mem(p, st, size, {RAX, RCX, RDX, RBX}, -1);
            unsigned r = unsigned(p.rng() % 20);
            if (b16 && r == 0) {
                // not 16-byte aligned: #GP(0)
                retarget(in.rm.m, st, kDataAddr + (p.rng() % (kDataSize / 16 - 1)) * 16 + 1 + p.rng() % 15);
            } else if (lock || b16 || r < 10) {
                retarget(in.rm.m, st, r == 1 ? kGuardAddr : kDataAddr + (p.rng() % (kDataSize / 16)) * 16);
            }
            if (equal) {
                uint64_t t = in.rm.m.target;
                if (b16) {
                    put(st, t, st.gpr[RAX], 8);
                    put(st, t + 8, st.gpr[RDX], 8);
                } else {
                    put(st, t, (st.gpr[RDX] << 32) | uint32_t(st.gpr[RAX]), 8);
                }
            }
            enc::emit(g, in);
        });
    }
}

void forms_bswap_movbe(std::vector<Form>& v) {
    for (unsigned w : {4u, 8u, 2u}) {
        // BSWAP r16 is undefined in the SDM; AMD and Intel hardware clear the low 16 bits (and so
        // does the emulator), so it is compared too.
        add(v, "bswap r" + bits(w) + (w == 2 ? " (undefined: hosts clear it)" : ""),
            [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                emit_insn(g, st, [&](bool) {
                    Insn in;
                    width_prefix(in, w);
                    in.has_modrm = false;
                    in.opcode = {0x0f, 0xc8};
                    in.opreg = enc::random_reg(p, w, false);
                    return in;
                });
            });
    }
    for (bool store : {false, true})
        add(v, store ? "movbe m, r" : "movbe r, m", [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            unsigned w = pick(p, {2, 4, 8});
            emit_insn(g, st, [&](bool) {
                Insn in;
                width_prefix(in, w);
                in.opcode = {0x0f, 0x38, uint8_t(store ? 0xf1 : 0xf0)};
                in.reg = enc::random_reg(p, w, false);
                in.rm.mem = true;
                in.rm.m = enc::random_mem(p, st, w, {}, -1);
                return in;
            });
        });
}

void forms_cmov_setcc(std::vector<Form>& v) {
    for (int cc = 0; cc < 16; ++cc) {
        add(v, std::string("cmov") + kCc[cc] + " r, r/m", [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            unsigned w = pick(p, {2, 4, 8});
            bool mem = p.rng() % 3 == 0;
            emit_insn(g, st, [&](bool) {
                Insn in;
                width_prefix(in, w);
                in.opcode = {0x0f, uint8_t(0x40 + cc)};
                in.reg = enc::random_reg(p, w, false);
                in.rm.mem = mem;
                if (mem) in.rm.m = enc::random_mem(p, st, w, {}, -1);
                else in.rm.reg = enc::random_reg(p, w, false);
                return in;
            });
        });
        add(v, std::string("set") + kCc[cc] + " r/m8", [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            bool mem = p.rng() % 3 == 0;
            emit_insn(g, st, [&](bool simple) {
                Insn in;
                in.byte_regs = true;
                in.opcode = {0x0f, uint8_t(0x90 + cc)};
                in.reg = 0;
                in.reg_is_opext = true;
                in.rm.mem = mem;
                if (mem) in.rm.m = enc::random_mem(p, st, 1, {}, -1);
                else in.rm.reg = enc::random_reg(p, 1, !simple);
                return in;
            });
        });
    }
}

void forms_misc_data(std::vector<Form>& v) {
    struct Fixed {
        const char* name;
        std::vector<uint8_t> b;
    };
    const Fixed kFixed[] = {
        {"cbw", {0x66, 0x98}},
        {"cwde", {0x98}},
        {"cdqe", {0x48, 0x98}},
        {"cwd", {0x66, 0x99}},
        {"cdq", {0x99}},
        {"cqo", {0x48, 0x99}},
        {"lahf", {0x9f}},
        {"sahf", {0x9e}},
        {"clc", {0xf8}},
        {"stc", {0xf9}},
        {"cmc", {0xf5}},
        {"cld", {0xfc}},
        {"std", {0xfd}},
        {"nop (90)", {0x90}},
        {"nop (66 90)", {0x66, 0x90}},
        {"endbr64 (a NOP without CET)", {0xf3, 0x0f, 0x1e, 0xfa}},
        {"endbr32 (a NOP without CET)", {0xf3, 0x0f, 0x1e, 0xfb}},
    };
    for (const Fixed& f : kFixed) {
        std::vector<uint8_t> b = f.b;
        add(v, f.name, [b](Xbyak::CodeGenerator& g, Picker&, State&) {
            for (uint8_t x : b) g.db(x);
        }, 200);
    }
    // XLAT: AL = [rBX + AL]; with 67h EBX (whose upper half is ignored). REX.W changes nothing.
    add(v, "xlat", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned kind = unsigned(p.rng() % 3);
        uint64_t al = st.gpr[RAX] & 0xff;
        uint64_t t = kDataAddr + p.data_offset(1);
        st.gpr[RBX] = kind == 1 ? (p.rng() << 32) | uint32_t(t - al) : t - al;
        if (kind == 1) g.db(0x67);
        if (kind == 2) g.db(0x48);
        g.db(0xd7);
    });
    // NOP r/m (0F 1F /0) and the hint NOPs 0F 18 /4-7, 0F 19..1F: no memory access at all, so the
    // address registers keep their random (mostly unmapped or non-canonical) values.
    add(v, "nop r/m (0f 1f, hint nops 0f 18-1f)", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        unsigned w = pick(p, {2, 4, 8});
        uint8_t op = uint8_t(0x18 + p.rng() % 8);
        bool mem = p.rng() % 4 != 0;
        emit_insn(g, st, [&](bool) {
            Insn in;
            width_prefix(in, w);
            in.opcode = {0x0f, op};
            in.reg = op == 0x18 ? int(4 + p.rng() % 4) : int(p.rng() % 8);
            in.reg_is_opext = true;
            in.rm.mem = mem;
            if (mem) {
                uint64_t saved[16];
                std::memcpy(saved, st.gpr, sizeof saved);
                in.rm.m = enc::random_mem(p, st, 1, {}, -1);
                std::memcpy(st.gpr, saved, sizeof saved);  // keep the random register values
            } else {
                in.rm.reg = enc::random_reg(p, w, false);
            }
            return in;
        });
    });
}

// ---- near control transfers ----------------------------------------------------------------------

// A forward or backward branch emitted by `branch(label)`; the taken and fall-through paths set
// different values in `mark`.
template <class Branch> void fwd_or_back(Xbyak::CodeGenerator& g, Picker& p, int mark, Branch branch) {
    const Xbyak::Reg32& m = p.r32(mark);
    if (p.rng() % 2) {
        Xbyak::Label l;
        branch(l);
        g.mov(m, 1);
        g.L(l);
    } else {
        Xbyak::Label start, back, end;
        g.jmp(start, kShort);
        g.L(back);
        g.mov(m, 2);
        g.jmp(end, kShort);
        g.L(start);
        branch(back);
        g.mov(m, 3);
        g.L(end);
    }
}

void forms_jumps(std::vector<Form>& v) {
    add(v, "jmp rel8/rel32", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
        bool near = p.rng() % 2;
        fwd_or_back(g, p, p.gpr(), [&](const Xbyak::Label& l) { g.jmp(l, near ? kNear : kShort); });
    }, 300);
    for (int cc = 0; cc < 16; ++cc)
        add(v, std::string("j") + kCc[cc] + " rel8/rel32", [=](Xbyak::CodeGenerator& g, Picker& p, State&) {
            bool near = p.rng() % 2;
            fwd_or_back(g, p, p.gpr(), [&](const Xbyak::Label& l) { jcc(g, cc, l, near); });
        }, 500);
    // JMP r/m64: the target's address comes from LEA [rip+label] or is stored in the data area.
    add(v, "jmp r64", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
        int r = p.gpr();
        fwd_or_back(g, p, p.gpr({r}), [&](const Xbyak::Label& l) {
            g.lea(p.r64(r), g.ptr[g.rip + l]);
            g.jmp(p.r64(r));
        });
    }, 500);
    add(v, "jmp m64", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        Insn in;
        in.opcode = {0xff};
        in.reg = 4;
        in.reg_is_opext = true;
        in.rm.mem = true;
        in.rm.m = enc::random_mem(p, st, 8, {}, -1);
        int mark = p.gpr({in.rm.m.base, in.rm.m.index});
        enc::emit(g, in);
        g.mov(p.r32(mark), 1);
        put(st, in.rm.m.target, kCodeAddr + g.getSize(), 8);
    }, 500);
    add(v, "jmp r64 (non-canonical: #GP)", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        int r = p.gpr();
        st.gpr[r] = noncanonical(p);
        g.jmp(p.r64(r));
    }, 200);
}

void forms_calls(std::vector<Form>& v) {
    // CALL rel32 / r64 / m64 to a function that returns with RET or RET imm16 (releasing the
    // arguments pushed before the call, or an arbitrary amount).
    for (int kind = 0; kind < 3; ++kind) {
        static const char* const kNames[3] = {"call rel32; ret [imm16]", "call r64; ret [imm16]",
                                              "call m64; ret [imm16]"};
        add(v, kNames[kind], [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            int mark = p.gpr(), mark2 = p.gpr({mark});
            int nargs = int(p.rng() % 4);
            for (int i = 0; i < nargs; ++i) g.push(int(p.rng() % 256) - 128);
            Xbyak::Label fn, end;
            Mem m;
            if (kind == 0) {
                g.call(fn);
            } else if (kind == 1) {
                int r = p.gpr({mark, mark2});
                g.lea(p.r64(r), g.ptr[g.rip + fn]);
                g.call(p.r64(r));
            } else {
                Insn in;
                in.opcode = {0xff};
                in.reg = 2;
                in.reg_is_opext = true;
                in.rm.mem = true;
                in.rm.m = enc::random_mem(p, st, 8, {mark, mark2, RSP}, -1);
                m = in.rm.m;
                enc::emit(g, in);
            }
            g.mov(p.r32(mark), 1);
            g.jmp(end, kNear);
            if (kind == 2) put(st, m.target, kCodeAddr + g.getSize(), 8);
            g.L(fn);
            g.mov(p.r32(mark2), 2);
            unsigned r = unsigned(p.rng() % 4);
            g.ret(r == 0 ? 0 : r == 1 ? int(p.rng() % 0x10000) : 8 * nargs);
            g.L(end);
        }, 500);
    }
    add(v, "call r64 (non-canonical: #GP)", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        int r = p.gpr();
        st.gpr[r] = noncanonical(p);
        g.call(p.r64(r));
    }, 200);
    add(v, "ret (non-canonical: #GP)", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        int r = p.gpr();
        st.gpr[r] = noncanonical(p);
        g.push(p.r64(r));
        g.ret();
    }, 200);
    // CALL/RET with RSP at the bottom of the stack pages or in the data area: the push may fault.
    add(v, "call rel32 (faulting push)", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        pick_rsp(p, st, 8, true);
        Xbyak::Label fn;
        g.call(fn);
        g.L(fn);
    }, 500);
}

void forms_loops(std::vector<Form>& v) {
    static const char* const kLoop[3] = {"loop", "loope", "loopne"};
    for (int kind = 0; kind < 3; ++kind)
        for (bool a32 : {false, true}) {
            std::string name = std::string(kLoop[kind]) + (a32 ? " (67h: ecx)" : " (rcx)");
            add(v, name, [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                int mark = p.gpr({RCX});
                uint64_t n = 1 + p.rng() % 5;
                st.gpr[RCX] = a32 ? (p.rng() << 32) | n : n;
                st.gpr[mark] = p.rng() % 4;
                int k = int(p.rng() % 8);
                Xbyak::Label top, fwd;
                bool forward = p.rng() % 4 == 0;
                if (!forward) g.L(top);
                g.lea(p.r64(mark), g.ptr[p.r64(mark) + 1]);
                if (k < 6) g.cmp(p.r32(mark), k);  // else LOOPE/LOOPNE see the random input flags
                if (a32) g.db(0x67);
                Xbyak::Label& target = forward ? fwd : top;
                if (kind == 0) g.loop(target);
                else if (kind == 1) g.loope(target);
                else g.loopne(target);
                if (forward) {
                    g.mov(p.r32(p.gpr({RCX, mark})), 7);
                    g.L(fwd);
                }
            }, 500);
        }
    add(v, "jrcxz/jecxz", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        switch (p.rng() % 4) {
            case 0: st.gpr[RCX] = 0; break;
            case 1: st.gpr[RCX] = p.rng() << 32; break;  // ECX = 0, RCX != 0
            case 2: st.gpr[RCX] = p.rng() % 3; break;
            default: break;
        }
        bool e = p.rng() % 2;
        fwd_or_back(g, p, p.gpr({RCX}), [&](const Xbyak::Label& l) {
            if (e) g.db(0x67);
            g.jrcxz(l);
        });
    }, 500);
}

// 66h-prefixed near branches (AMD: 16-bit operand size; the target is truncated to 16 bits).
void forms_branch16(std::vector<Form>& v) {
    add(v, "66h jmp rel8", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
        fwd_or_back(g, p, p.gpr(), [&](const Xbyak::Label& l) {
            g.db(0x66);
            g.jmp(l, kShort);
        });
    }, 100);
    add(v, "66h jcc rel8", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
        int cc = int(p.rng() % 16);
        fwd_or_back(g, p, p.gpr(), [&](const Xbyak::Label& l) {
            g.db(0x66);
            jcc(g, cc, l, false);
        });
    }, 300);
    // rel16 forms: E9 cw, E8 cw, 0F 8x cw.
    for (int kind = 0; kind < 3; ++kind) {
        static const char* const kNames[3] = {"66h jmp rel16", "66h call rel16", "66h jcc rel16"};
        add(v, kNames[kind], [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            if (kind == 1) pick_rsp(p, st, 2, true);
            unsigned pad = unsigned(p.rng() % 8);
            for (unsigned i = 0; i < pad; ++i) g.db(0x90);
            unsigned len = kind == 2 ? 5 : 4;
            uint16_t next = uint16_t(kCodeAddr + g.getSize() + len);
            uint16_t rel = uint16_t(low_target(p) - next);
            g.db(0x66);
            if (kind == 0) g.db(0xe9);
            if (kind == 1) g.db(0xe8);
            if (kind == 2) bytes(g, {0x0f, uint8_t(0x80 + p.rng() % 16)});
            g.dw(rel);
            g.mov(p.r32(p.gpr()), 1);
        }, 300);
    }
    add(v, "66h ret [imm16]", [](Xbyak::CodeGenerator& g, Picker& p, State&) {
        bytes(g, {0x66, 0x68});  // push word imm16
        g.dw(low_target(p));
        if (p.rng() % 2) {
            bytes(g, {0x66, 0xc2});
            g.dw(uint16_t(p.rng()));
        } else {
            bytes(g, {0x66, 0xc3});
        }
    }, 300);
    for (bool call : {false, true})
        for (bool mem : {false, true}) {
            std::string name = std::string("66h ") + (call ? "call" : "jmp") + (mem ? " m16" : " r16");
            add(v, name, [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                Insn in;
                in.prefixes = {0x66};
                in.opcode = {0xff};
                in.reg = call ? 2 : 4;
                in.reg_is_opext = true;
                in.rm.mem = mem;
                uint16_t t = low_target(p);
                if (mem) {
                    in.rm.m = enc::random_mem(p, st, 2, {RSP}, -1);
                    put(st, in.rm.m.target, t, 2);
                } else {
                    in.rm.reg = p.gpr();
                    set_reg_value(st, in.rm.reg, 2, t);
                }
                enc::emit(g, in);
            }, 300);
        }
    add(v, "66h loop/jrcxz rel8", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        st.gpr[RCX] = p.rng() % 3;
        bool loop = p.rng() % 2;
        fwd_or_back(g, p, p.gpr({RCX}), [&](const Xbyak::Label& l) {
            g.db(0x66);
            if (loop) g.loop(l);
            else g.jrcxz(l);
        });
    }, 300);
}

// ---- stack ---------------------------------------------------------------------------------------

void forms_push_pop(std::vector<Form>& v) {
    for (unsigned w : {8u, 2u}) {
        std::string sz = bits(w);
        add(v, "push r" + sz, [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            pick_rsp(p, st, w, true);
            if (w == 2) g.db(0x66);
            int r = p.rng() % 8 == 0 ? RSP : int(p.rng() % 16);
            if (r >= 8) g.db(0x41);
            g.db(uint8_t(0x50 + (r & 7)));
        });
        add(v, "pop r" + sz, [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            pick_rsp(p, st, w, false);
            if (w == 2) g.db(0x66);
            int r = p.rng() % 8 == 0 ? RSP : int(p.rng() % 16);
            if (r >= 8) g.db(0x41);
            g.db(uint8_t(0x58 + (r & 7)));
        });
        add(v, "push imm8/imm" + std::string(w == 8 ? "32" : "16") + " (o" + sz + ")",
            [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                pick_rsp(p, st, w, true);
                if (w == 2) g.db(0x66);
                if (p.rng() % 2) {
                    bytes(g, {0x6a, uint8_t(p.edge(1))});
                } else {
                    g.db(0x68);
                    if (w == 2) g.dw(uint16_t(p.edge(2)));
                    else g.dd(uint32_t(p.edge(4)));
                }
            });
        // PUSH m / POP m, including [rsp+disp]: PUSH reads with the old RSP, POP writes with the
        // incremented one.
        for (bool pop : {false, true})
            add(v, std::string(pop ? "pop m" : "push m") + sz, [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                Insn in;
                if (w == 2) in.prefixes.push_back(0x66);
                in.opcode = {uint8_t(pop ? 0x8f : 0xff)};
                in.reg = pop ? 0 : 6;
                in.reg_is_opext = true;
                in.rm.mem = true;
                if (p.rng() % 3 == 0) {
                    // [rsp + disp] with RSP in the harness stack
                    in.rm.m.base = RSP;
                    int64_t d = int64_t(p.rng() % 0x200) - 0x100;
                    in.rm.m.disp = d;
                    in.rm.m.disp_size = (d >= -128 && d < 128 && p.rng() % 2) ? 1 : 4;
                    if (d == 0 && p.rng() % 2) in.rm.m.disp_size = 0;
                } else {
                    pick_rsp(p, st, w, !pop);
                    in.rm.m = enc::random_mem(p, st, w, {RSP}, -1);
                }
                enc::emit(g, in);
            });
    }
}

void forms_flags_stack(std::vector<Form>& v) {
    // POPF, then PUSHF. Natively the instance runs at CPL 3 with IF = 1 and IOPL = 0 (POPF cannot
    // change them there), the emulator at CPL 0 with IF = 0: images have IF = 1 and IOPL = 0, so both
    // sides end with the same IF and PUSHF stores the same image. TF (it would trap) and NT stay
    // clear. AC natively enables alignment checking at CPL 3, so it has its own form.
    for (int kind = 0; kind < 3; ++kind) {
        static const char* const kNames[3] = {"popfq; pushfq", "popf; pushf (o16)", "popfq with AC; pushfq"};
        add(v, kNames[kind], [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            if (kind != 2 && p.rng() % 4 == 0) pick_rsp(p, st, 8, true);  // (AC: aligned RSP only)
            uint64_t image = (p.rng() & (cpu::fl::kArith | cpu::fl::DF | cpu::fl::ID)) | cpu::fl::IF;
            if (kind == 2) image |= cpu::fl::AC;
            image |= p.rng() & 0xffc00000ull & 0x7fffffffull;  // reserved high bits: ignored
            image |= p.rng() & (1u << 1 | 1u << 3 | 1u << 5 | 1u << 15);  // reserved low bits
            if (kind == 1) {
                bytes(g, {0x66, 0x68});
                g.dw(uint16_t(image));
                bytes(g, {0x66, 0x9d});
                if (p.rng() % 2) bytes(g, {0x66, 0x9c});
            } else {
                g.db(0x68);
                g.dd(uint32_t(image));
                g.db(0x9d);
                g.db(0x9c);
            }
        }, 1000);
    }
    // PUSHF with RSP where the push may fault. POPF first sets IF (see above) on the harness stack.
    add(v, "pushfq/pushf (faulting push)", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        bool o16 = p.rng() % 2;
        uint64_t rsp0 = st.gpr[RSP];
        pick_rsp(p, st, o16 ? 2 : 8, true);
        uint64_t rsp = st.gpr[RSP];
        st.gpr[RSP] = rsp0;
        g.db(0x68);
        g.dd(uint32_t((p.rng() & (cpu::fl::kArith | cpu::fl::DF)) | cpu::fl::IF));
        g.db(0x9d);
        g.mov(g.rsp, rsp);
        if (o16) g.db(0x66);
        g.db(0x9c);
    }, 500);
}

void forms_enter_leave(std::vector<Form>& v) {
    for (unsigned w : {8u, 2u}) {
        add(v, "enter imm16, imm8 (o" + bits(w) + ")", [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            unsigned level = p.rng() % 4 == 0 ? unsigned(p.rng() % 256) : unsigned(p.rng() % 6);
            uint16_t alloc;
            switch (p.rng() % 4) {
                case 0: alloc = 0; break;
                case 1: alloc = uint16_t(p.rng()); break;  // the final write check may fault
                default: alloc = uint16_t(p.rng() % 0x100); break;
            }
            // RBP: a frame in the data area (its display slots lie below it), sometimes near the
            // area's start so the display reads fault.
            unsigned r = unsigned(p.rng() % 8);
            if (r == 0) st.gpr[RBP] = kDataAddr + p.rng() % 0x40;
            else if (r == 1) st.gpr[RBP] = st.gpr[RSP] + p.rng() % 0x100;
            else st.gpr[RBP] = kDataAddr + 0x100 + p.data_offset(w) % (kDataSize - 0x100);
            if (p.rng() % 4 == 0) pick_rsp(p, st, w, true);
            if (w == 2) g.db(0x66);
            g.db(0xc8);
            g.dw(alloc);
            g.db(uint8_t(level));
        }, 1000);
        add(v, "leave (o" + bits(w) + ")", [=](Xbyak::CodeGenerator& g, Picker& p, State& st) {
            if (p.rng() % 2) st.gpr[RBP] = kDataAddr + p.data_offset(w);
            else st.gpr[RBP] = st.gpr[RSP] + p.rng() % 0x1f8 - 0xf8;
            if (w == 2) g.db(0x66);
            g.db(0xc9);
        }, 1000);
    }
    // ENTER/LEAVE pairs around a body that uses the frame.
    add(v, "enter; body; leave", [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        st.gpr[RBP] = st.gpr[RSP] + 0x100;
        unsigned level = unsigned(p.rng() % 4);
        g.enter(uint16_t(p.rng() % 0x40 * 8), uint8_t(level));
        g.mov(g.qword[g.rbp - 8], g.rax);
        g.push(g.rbp);
        g.pop(g.rcx);
        g.leave();
    }, 500);
}

bool host_is_amd() {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    return b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;  // "AuthenticAMD"
}

}  // namespace

void forms_int2(std::vector<Form>& v) {
    forms_movx(v);
    forms_xchg(v);
    forms_cmpxchg_xadd(v);
    forms_bswap_movbe(v);
    forms_cmov_setcc(v);
    forms_misc_data(v);
    forms_jumps(v);
    forms_calls(v);
    forms_loops(v);
    if (host_is_amd()) forms_branch16(v);
    forms_push_pop(v);
    forms_flags_stack(v);
    forms_enter_leave(v);
}

}  // namespace m86::difftest
