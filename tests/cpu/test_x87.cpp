// Unit tests: the x87 FPU (src/cpu/ops/x87.cpp), for what the differential tests cannot reach: CR0
// interaction (#NM), exception delivery across instructions (#MF at the next waiting instruction),
// the FIP/FDP/FOP bookkeeping and the FSTENV/FSAVE image layouts of the other modes. Expected
// values come from the SDM (cited per test), not from the emulator.
#include <doctest/doctest.h>
#include <xbyak/xbyak.h>

#include <cstring>
#include <functional>

#include "cpu/softfloat.h"
#include "machine/snippet.h"

#include "asm.h"

using namespace m86;
using namespace m86::cpu;
using m86::test::assemble_hlt;

namespace {

constexpr uint64_t kBuf = 0x200000;

StopReason run_code(machine::SnippetEnv& env, const std::vector<uint8_t>& code, uint64_t n = 1000) {
    env.load_code(code);
    return env.run(n);
}

uint16_t rd16(machine::SnippetEnv& env, uint64_t a) {
    uint16_t v = 0;
    env.peek(a, &v, 2);
    return v;
}
uint32_t rd32(machine::SnippetEnv& env, uint64_t a) {
    uint32_t v = 0;
    env.peek(a, &v, 4);
    return v;
}

}  // namespace

TEST_CASE("x87: CR0.EM/CR0.TS give #NM; WAIT faults only with CR0.MP and CR0.TS") {
    // SDM Vol. 3, Table 2-2 (action taken for combinations of EM, MP, TS) and Vol. 2 WAIT/FWAIT.
    machine::SnippetEnv env;
    auto run = [&](uint64_t set_cr0, uint64_t clear_cr0, bool wait) {
        env.reset_cpu();
        env.cpu().s.cr0 = (env.cpu().s.cr0 | set_cr0) & ~clear_cr0;
        auto code = assemble_hlt([wait](Xbyak::CodeGenerator& g) {
            if (wait) g.fwait();
            else g.fld1();
        });
        StopReason r = run_code(env, code, 10);
        return r == StopReason::Exception ? int(env.cpu().last_fault.vector) : -1;
    };
    CHECK(run(0, 0, false) == -1);
    CHECK(run(cr0::EM, 0, false) == kNM);
    CHECK(run(cr0::TS, 0, false) == kNM);
    CHECK(run(cr0::TS, cr0::MP, true) == -1);     // TS without MP: WAIT runs
    CHECK(run(cr0::TS | cr0::MP, 0, true) == kNM);
    CHECK(run(cr0::EM, cr0::MP, true) == -1);     // EM does not affect WAIT
}

TEST_CASE("x87: an unmasked exception is pending until the next waiting instruction raises #MF") {
    // SDM Vol. 1, 8.6 / 8.7: the exception sets ES (and B) in FSW; non-waiting control instructions
    // (FNSTSW, FNCLEX...) execute normally; the next waiting x87 instruction raises #MF before it
    // executes, with the state unchanged.
    machine::SnippetEnv env;
    env.poke(kBuf, "\x7b\x03", 2);  // FCW 0x037b: ZE unmasked
    auto code = assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.eax, kBuf);
        g.fldcw(g.word[g.rax]);
        g.fld1();
        g.fldz();
        g.fdivp();        // 1 / 0: ZE, unmasked -> pending, stack unchanged
        g.fnstsw(g.ax);   // non-waiting: runs
        g.mov(g.ebx, 1);  // an ordinary instruction runs too
        g.fld1();         // waiting: #MF here
    });
    REQUIRE(run_code(env, code) == StopReason::Exception);
    CpuState& s = env.cpu().s;
    CHECK(env.cpu().last_fault.vector == kMF);
    CHECK((s.gpr[RAX] & 0xffff) == s.x87.fsw);
    CHECK((s.x87.fsw & 0x80ff) == 0x8084);  // B, ES, ZE
    CHECK(s.x87.top() == 6);                 // the FDIVP did not pop
    CHECK(s.gpr[RBX] == 1);
    // RIP at the faulting FLD1 (the last instruction before the HLT, two bytes long).
    CHECK(s.rip == machine::SnippetEnv::kCodeBase + code.size() - 3);

    // FNCLEX clears the exception: the next waiting instruction runs.
    env.reset_cpu();
    auto code2 = assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.eax, kBuf);
        g.fldcw(g.word[g.rax]);
        g.fld1();
        g.fldz();
        g.fdivp();
        g.fnclex();
        g.fld1();
    });
    CHECK(run_code(env, code2) == StopReason::Halt);
    CHECK((env.cpu().s.x87.fsw & 0x80ff) == 0);

    // FLDCW that unmasks an exception already flagged makes it pending (SDM Vol. 2 FLDCW).
    env.reset_cpu();
    auto code3 = assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.fld1();
        g.fldz();
        g.fdivp();  // masked ZE: flag only
        g.mov(g.eax, kBuf);
        g.fldcw(g.word[g.rax]);
        g.fld1();
    });
    REQUIRE(run_code(env, code3) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kMF);
}

TEST_CASE("x87: FNSTENV stores FIP/FOP/FDP of the last non-control instruction (64-bit mode)") {
    // SDM Vol. 1, 8.1.8 (FIP/FDP), 8.1.9 (FOP: bits 2..0 of the first opcode byte and the ModR/M
    // byte), 8.1.10 Figure 8-9 (32-bit protected-mode environment layout, used in 64-bit mode too).
    machine::SnippetEnv env;
    uint64_t fadd_at = 0;
    auto code = assemble_hlt([&](Xbyak::CodeGenerator& g) {
        g.mov(g.eax, kBuf + 0x100);
        g.mov(g.ebx, kBuf);
        g.fld1();
        fadd_at = machine::SnippetEnv::kCodeBase + g.getSize();
        g.fadd(g.qword[g.rax + 8]);  // DC 40 08: FOP = 4 << 8 | 0x40
        g.fnstcw(g.word[g.rbx + 0x80]);  // control instructions do not change the pointers
        g.fnstenv(g.ptr[g.rbx]);
    });
    REQUIRE(run_code(env, code) == StopReason::Halt);
    CHECK(rd16(env, kBuf + 0) == 0x037f);           // FCW (FNSTENV then masks all: already)
    CHECK((rd16(env, kBuf + 4) & 0x3800) == 7u << 11);  // FSW TOP after one push
    CHECK(rd16(env, kBuf + 8) == 0x3fff);           // FTW: R7 valid, the others empty
    CHECK(rd32(env, kBuf + 12) == uint32_t(fadd_at));  // FIP
    CHECK((rd32(env, kBuf + 16) >> 16) == 0x440);   // FOP
    CHECK(rd32(env, kBuf + 20) == kBuf + 0x108);    // FDP
}

TEST_CASE("x87: FNSAVE stores the registers in stack order and reinitialises; FRSTOR restores") {
    // SDM Vol. 2 FSAVE/FNSAVE (then FNINIT state), FRSTOR; Vol. 1 Figure 8-13 (register area).
    machine::SnippetEnv env;
    auto code = assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.ebx, kBuf);
        g.fld1();
        g.fldpi();  // ST(0) = pi, ST(1) = 1
        g.fnsave(g.ptr[g.rbx]);
        g.fnstsw(g.word[g.rbx + 0x200]);  // after FNSAVE: FNINIT state
        g.frstor(g.ptr[g.rbx]);
        g.fsubp();  // ST(1) - ST(0) = 1 - pi, popped
        g.db(0xdb), g.db(0xbb), g.dd(0x210);  // fstp tword [rbx+0x210] (xbyak has no tword)
    });
    REQUIRE(run_code(env, code) == StopReason::Halt);
    uint64_t m;
    uint16_t se;
    env.peek(kBuf + 28, &m, 8);  // ST(0) after the 28-byte environment
    env.peek(kBuf + 36, &se, 2);
    CHECK(m == 0xc90fdaa22168c235ull);  // FLDPI, round to nearest (SDM Vol. 1, 8.3.8)
    CHECK(se == 0x4000);
    env.peek(kBuf + 38, &m, 8);
    env.peek(kBuf + 46, &se, 2);
    CHECK(m == 0x8000000000000000ull);
    CHECK(se == 0x3fff);
    CHECK(rd16(env, kBuf + 0x200) == 0);  // FSW after FNINIT
    // 1 - pi = -2.14159...: exponent 0x4000, negative.
    env.peek(kBuf + 0x210, &m, 8);
    env.peek(kBuf + 0x218, &se, 2);
    CHECK(se == 0xc000);
    CHECK((m >> 60) == 0x8);
    CHECK(env.cpu().s.x87.ftw == 0xffff);
}

TEST_CASE("x87: 16-bit FNSTENV layouts in protected and real mode") {
    // SDM Vol. 1, Figures 8-11 (protected mode, 16-bit: IP offset, CS, operand offset, DS) and
    // 8-12 (real mode, 16-bit: IP bits 15..0, then IP bits 19..16 in bits 15..12 with the 11-bit
    // opcode, DP bits 15..0, DP bits 19..16 in bits 15..12).
    {
        machine::SnippetEnv env;
        CpuState& s = env.cpu().s;
        s.seg[CS].attr = 0xc09b;  // 32-bit compatibility mode: 66h selects the 14-byte format
        env.cpu().update_mode();
        env.load_code({
            0xbb, 0x00, 0x00, 0x20, 0x00,  // mov ebx, 0x200000
            0xd9, 0xe8,                    // fld1
            0xd8, 0x43, 0x40,              // fadd dword [ebx+0x40]
            0x66, 0xd9, 0x33,              // fnstenv (14 bytes) [ebx]
            0xf4,
        });
        REQUIRE(env.run(100) == StopReason::Halt);
        CHECK(rd16(env, kBuf + 0) == 0x037f);
        CHECK(rd16(env, kBuf + 4) == 0x3fff);
        CHECK(rd16(env, kBuf + 6) == uint16_t(machine::SnippetEnv::kCodeBase + 7));  // FIP offset
        CHECK(rd16(env, kBuf + 8) == s.seg[CS].sel);
        CHECK(rd16(env, kBuf + 10) == 0x0040);  // operand offset (low 16 bits of 0x200040)
    }
    {
        machine::SnippetEnv env;
        CpuState& s = env.cpu().s;
        // Real mode: no paging (RAM is identity mapped anyway), CS base 0x10000 (selector 0x1000).
        s.cr0 &= ~(cr0::PE | cr0::PG);
        s.efer = 0;
        s.seg[CS].sel = 0x1000;
        s.seg[CS].base = 0x10000;
        s.seg[CS].attr = 0x009b;
        s.seg[CS].limit = 0xffff;
        s.seg[DS].sel = 0x2000;
        s.seg[DS].base = 0x20000;
        s.seg[DS].attr = 0x0093;
        s.seg[DS].limit = 0xffff;
        env.cpu().update_mode();
        env.cpu().tlb_flush();
        REQUIRE(env.cpu().mode() == Mode::Real);
        const uint8_t code[] = {
            0xd9, 0xe8,              // 0: fld1
            0xd8, 0x06, 0x34, 0x12,  // 2: fadd dword [0x1234]  (D8 06: FOP 0x006)
            0xd9, 0x36, 0x00, 0x01,  // 6: fnstenv [0x100] (16-bit operand size by default)
            0xf4,
        };
        env.poke(0x10000, code, sizeof code);
        s.rip = 0;
        REQUIRE(env.run(100) == StopReason::Halt);
        uint64_t env_at = 0x20000 + 0x100;
        uint32_t lip = 0x10000 + 2, ldp = 0x20000 + 0x1234;
        CHECK(rd16(env, env_at + 6) == uint16_t(lip));
        CHECK(rd16(env, env_at + 8) == uint16_t(((lip >> 16) & 0xf) << 12 | 0x006));
        CHECK(rd16(env, env_at + 10) == uint16_t(ldp));
        CHECK(rd16(env, env_at + 12) == uint16_t(((ldp >> 16) & 0xf) << 12));
    }
}

TEST_CASE("x87: stack overflow and underflow (masked: QNaN indefinite, C1 tells which, SF set)") {
    // SDM Vol. 1, 8.5.1.1: overflow sets C1 = 1, underflow C1 = 0; IE and SF; the masked response
    // stores the QNaN floating-point indefinite.
    machine::SnippetEnv env;
    auto code = assemble_hlt([](Xbyak::CodeGenerator& g) {
        for (int k = 0; k < 9; k++) g.fld1();  // the ninth overflows
        g.fnstsw(g.ax);
        g.mov(g.ecx, g.eax);
        g.fninit();
        g.fadd(g.st0, g.st1);  // both empty: underflow
        g.fnstsw(g.ax);
    });
    REQUIRE(run_code(env, code) == StopReason::Halt);
    CpuState& s = env.cpu().s;
    CHECK((s.gpr[RCX] & 0x0241) == 0x0241);  // C1, SF, IE
    CHECK((s.gpr[RAX] & 0x0241) == 0x0041);  // SF, IE, C1 clear
    F80 r = s.x87.st[s.x87.top()];
    CHECK(r.se == 0xffff);
    CHECK(r.mant == 0xc000000000000000ull);
}
