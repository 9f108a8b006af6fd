// Unit tests: int2 (data movement, stack, near control transfers, flag operations).
//
// Targeted cases whose expected values come from the manuals (SDM Vol. 2 instruction pages; AMD
// APM Vol. 3 for 66h-prefixed near branches in 64-bit mode). Everything else in this class is
// compared against the host CPU by the differential forms in tests/diff/gen_int2.cpp.
#include <doctest/doctest.h>
#include <xbyak/xbyak.h>

#include <functional>

#include "machine/snippet.h"

#include "asm.h"

using namespace m86;
using namespace m86::cpu;
using namespace m86::test;
using namespace Xbyak::util;

TEST_CASE("int2: a PUSH that faults on the stack page leaves RSP and memory unchanged") {
    machine::SnippetEnv env;
    env.set_page_present(kData, false);
    // RSP = kData + 0x1004: the 8-byte push straddles the not-present page kData and kData + 0x1000.
    poke64(env, kData + 0x1000, 0x1111111111111111ull);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x1004);
        g.mov(rax, 0x8877665544332211ull);
        g.push(rax);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kPF);
    CHECK(env.cpu().last_fault.error_code == 2);  // not present, write, supervisor
    CHECK(env.cpu().s.cr2 == kData + 0xffc);
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x1004);
    CHECK(peek64(env, kData + 0x1000) == 0x1111111111111111ull);  // the present half was not written
}

TEST_CASE("int2: a CALL whose push faults changes neither RSP nor RIP") {
    machine::SnippetEnv env;
    env.set_page_present(kData, false);
    Xbyak::Label target;
    size_t at = 0;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x1000);
        at = g.getSize();
        g.call(target);
        g.hlt();
        g.L(target);
        g.hlt();
    });
    env.load_code(code);
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kPF);
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x1000);
    CHECK(env.cpu().s.rip == kCode + at);
}

TEST_CASE("int2: POP [rsp+8] computes the address with the incremented RSP") {
    // SDM Vol. 2, POP: "If the destination operand uses ESP as base register, the address is computed
    // after ESP is incremented." So the value lands at old RSP + 8 + 8.
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x800);
        g.mov(rax, 0xabcdef0123456789ull);
        g.mov(ptr[rsp], rax);
        g.pop(qword[rsp + 8]);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x808);
    CHECK(peek64(env, kData + 0x810) == 0xabcdef0123456789ull);
    CHECK(peek64(env, kData + 0x808) == 0);
}

TEST_CASE("int2: PUSH RSP and PUSH [RSP] use the value before the decrement") {
    machine::SnippetEnv env;
    poke64(env, kData + 0x800, 0x5555aaaa5555aaaaull);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x800);
        g.push(rsp);
        g.push(qword[rsp + 8]);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x7f0);
    CHECK(peek64(env, kData + 0x7f8) == kData + 0x800);
    CHECK(peek64(env, kData + 0x7f0) == 0x5555aaaa5555aaaaull);
}

TEST_CASE("int2: POP RSP loads the popped value; 16-bit PUSH/POP move RSP by 2") {
    machine::SnippetEnv env;
    poke64(env, kData + 0x800, kData + 0x123);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x800);
        g.pop(rsp);
        g.mov(rsp, kData + 0x900);
        g.mov(eax, 0x12345678);
        g.push(ax);          // 66 50
        g.mov(rbx, ~0ull);
        g.pop(bx);           // 66 5b: merges into BX
        emit(g, {0x66, 0x6a, 0x80});  // push word -128 (imm8 sign-extended to 16 bits)
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RBX] == 0xffffffffffff5678ull);
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x8fe);
    uint16_t w = 0;
    env.peek(kData + 0x8fe, &w, 2);
    CHECK(w == 0xff80);
    // The first POP RSP: checked by running just the first two instructions again.
    env.reset_cpu();
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x800);
        g.pop(rsp);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x123);
}

TEST_CASE("int2: CMOVcc with a 32-bit destination zero-extends even when the condition is false") {
    // SDM Vol. 2, CMOVcc: in 64-bit mode with a 32-bit operand the upper 32 bits of the destination
    // are cleared whether or not the condition holds.
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rax, 0xfedcba9876543210ull);
        g.mov(rdx, 0xfedcba9876543210ull);
        g.mov(rcx, 0x1111111122222222ull);
        g.mov(ebx, 1);
        g.test(ebx, ebx);   // ZF = 0
        g.cmovz(eax, ecx);  // not taken
        g.cmovz(dx, cx);    // not taken, 16-bit: untouched
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RAX] == 0x76543210ull);
    CHECK(env.cpu().s.gpr[RDX] == 0xfedcba9876543210ull);
}

TEST_CASE("int2: CMOVcc reads a memory source even when the condition is false") {
    machine::SnippetEnv env;
    env.set_page_present(kData, false);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsi, kData);
        g.xor_(eax, eax);   // ZF = 1
        g.cmovnz(rax, ptr[rsi]);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kPF);
}

TEST_CASE("int2: CMPXCHG16B needs a 16-byte aligned operand (#GP(0)), and compares RDX:RAX") {
    machine::SnippetEnv env;
    poke64(env, kData + 0x100, 0x1111);
    poke64(env, kData + 0x108, 0x2222);
    size_t at = 0;
    auto code = [&at](uint64_t addr) {
        return assemble([&at, addr](Xbyak::CodeGenerator& g) {
            g.mov(rdi, addr);
            g.mov(eax, 0x1111);
            g.mov(edx, 0x2222);
            g.mov(ebx, 0x3333);
            g.mov(ecx, 0x4444);
            at = g.getSize();
            g.cmpxchg16b(ptr[rdi]);
            g.hlt();
        });
    };
    env.load_code(code(kData + 0x108));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().last_fault.error_code == 0);
    CHECK(env.cpu().s.rip == kCode + at);  // at the CMPXCHG16B

    env.reset_cpu();
    env.load_code(code(kData + 0x100));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().zf());
    CHECK(peek64(env, kData + 0x100) == 0x3333);
    CHECK(peek64(env, kData + 0x108) == 0x4444);

    // Now they differ: RDX:RAX receives the memory value, ZF = 0.
    env.reset_cpu();
    env.load_code(code(kData + 0x100));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(!env.cpu().zf());
    CHECK(env.cpu().s.gpr[RAX] == 0x3333);
    CHECK(env.cpu().s.gpr[RDX] == 0x4444);
}

TEST_CASE("int2: CMPXCHG writes the destination on success and the accumulator on failure") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        // failure: EAX != ECX -> EAX = ECX (zero-extended), ECX untouched, ZF = 0
        g.mov(rax, 0xaaaaaaaa00000001ull);
        g.mov(rcx, 0xcccccccc00000002ull);
        g.mov(rdx, 0xdddddddd00000003ull);
        g.cmpxchg(ecx, edx);
        g.setz(r8b);
        // success: AX == BX -> BX = SI, flags as CMP AX, BX (ZF = 1)
        g.mov(rbx, 0x7777777777770005ull);
        g.mov(rsi, 0x9999999999999999ull);
        g.mov(ax, 5);
        g.cmpxchg(bx, si);
        g.setz(r9b);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    const auto& r = env.cpu().s.gpr;
    CHECK(r[RCX] == 0xcccccccc00000002ull);
    CHECK(uint8_t(r[R8]) == 0);
    CHECK(r[RBX] == 0x7777777777779999ull);
    CHECK(uint8_t(r[R9]) == 1);
    CHECK(r[RAX] == 0x0000000000000005ull);  // EAX = 2 (zero-extended) then AX = 5
}

TEST_CASE("int2: XCHG with memory and XADD") {
    machine::SnippetEnv env;
    poke64(env, kData, 40);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rdi, kData);
        g.mov(eax, 2);
        g.lock();
        g.xadd(qword[rdi], rax);  // [rdi] = 42, rax = 40
        g.mov(ecx, 7);
        g.xchg(ptr[rdi], rcx);    // [rdi] = 7, rcx = 42
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RAX] == 40);
    CHECK(env.cpu().s.gpr[RCX] == 42);
    CHECK(peek64(env, kData) == 7);
}

TEST_CASE("int2: CALL/RET imm16 and indirect CALL through memory") {
    machine::SnippetEnv env;
    Xbyak::Label fn, fn2;
    size_t fn2_at = 0;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x800);
        g.push(1);
        g.push(2);
        g.call(fn);
        g.mov(rsi, kData + 0x900);
        g.call(ptr[rsi]);
        g.hlt();
        g.L(fn);
        g.mov(eax, 0x11);
        g.ret(16);  // pops the return address and both pushed arguments
        fn2_at = g.getSize();
        g.L(fn2);
        g.mov(ebx, 0x22);
        g.ret();
    });
    env.load_code(code);
    poke64(env, kData + 0x900, kCode + fn2_at);
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RAX] == 0x11);
    CHECK(env.cpu().s.gpr[RBX] == 0x22);
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x800);
}

TEST_CASE("int2: a JMP to a non-canonical address raises #GP(0) at the JMP") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rax, 0x0000800000000000ull);
        g.jmp(rax);  // at offset 10
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().s.rip == kCode + 10);
}

TEST_CASE("int2: 66h-prefixed near branches in 64-bit mode use a 16-bit IP (AMD semantics)") {
    // AMD APM Vol. 3, "JMP (Near)"/"CALL (Near)"/"RET (Near)": in 64-bit mode the operand size of
    // near branches can be overridden to 16 bits; the target is truncated to 16 bits and CALL/RET
    // push/pop a 16-bit return address. A HLT at 0x8000 catches the truncated targets.
    machine::SnippetEnv env;
    uint8_t hlt = 0xf4;
    env.poke(0x8000, &hlt, 1);

    SUBCASE("66 E9 rel16") {
        // next IP = 0x100000 + 4 -> low 16 bits 0x0004; rel16 = 0x7ffc -> 0x8000.
        env.load_code({0x66, 0xe9, 0xfc, 0x7f, 0xf4});
        REQUIRE(env.run(10) == StopReason::Halt);
        CHECK(env.cpu().s.rip == 0x8001);
    }
    SUBCASE("66 EB rel8 (rel8 form: only the truncation differs)") {
        env.load_code({0x66, 0xeb, 0x00, 0xf4});  // target = (0x100003) & 0xffff = 3: page 0 is not present
        REQUIRE(env.run(10) == StopReason::Exception);
        CHECK(env.cpu().last_fault.vector == kPF);
        CHECK(env.cpu().s.rip == 3);
    }
    SUBCASE("66 E8 rel16 pushes a 2-byte return address; 66 C3 pops one") {
        // call 0x8000 from 0x100000: return address 0x100004 -> 0x0004 pushed as 2 bytes.
        env.load_code({0x48, 0xc7, 0xc4, 0x00, 0x08, 0x20, 0x00,  // mov rsp, 0x200800
                       0x66, 0xe8, 0xf5, 0x7f});                     // call (0x10000b + 0x7ff5) & 0xffff
        REQUIRE(env.run(10) == StopReason::Halt);
        CHECK(env.cpu().s.rip == 0x8001);
        CHECK(env.cpu().s.gpr[RSP] == kData + 0x7fe);
        uint16_t ret = 0;
        env.peek(kData + 0x7fe, &ret, 2);
        CHECK(ret == 0x000b);
        // 66 C3 at 0x8000 pops those 2 bytes: IP = 0x000b (page 0: #PF at the fetch), RSP += 2.
        env.reset_cpu();
        uint8_t ret16[] = {0x66, 0xc3};
        env.poke(0x8000, ret16, 2);
        env.cpu().s.rip = 0x8000;
        env.cpu().s.gpr[RSP] = kData + 0x7fe;
        REQUIRE(env.run(10) == StopReason::Exception);
        CHECK(env.cpu().s.rip == 0x000b);
        CHECK(env.cpu().s.gpr[RSP] == kData + 0x800);
    }
    SUBCASE("66 FF E0: jmp ax") {
        env.load_code({0xb8, 0x00, 0x80, 0x01, 0x00,  // mov eax, 0x18000
                       0x66, 0xff, 0xe0});             // jmp ax -> 0x8000
        REQUIRE(env.run(10) == StopReason::Halt);
        CHECK(env.cpu().s.rip == 0x8001);
    }
}

TEST_CASE("int2: LOOP with a 32-bit address size counts in ECX and zero-extends RCX") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rcx, 0xffffffff00000003ull);
        g.xor_(eax, eax);
        g.L("top");
        g.inc(eax);
        g.db(0x67);  // loop top, with a 32-bit address size
        g.loop("top");
        g.mov(rdx, 0x1234);
        Xbyak::Label skip;
        g.jecxz(skip);  // 67 E3: taken, ECX = 0
        g.xor_(edx, edx);
        g.L(skip);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RAX] == 3);
    CHECK(env.cpu().s.gpr[RCX] == 0);
    CHECK(env.cpu().s.gpr[RDX] == 0x1234);
}

TEST_CASE("int2: LOOPE/LOOPNE stop on the ZF condition") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        // LOOPNE: scan for the first zero byte among 0x05 0x04 0x00 0x07 at kData.
        g.mov(rsi, kData);
        g.mov(ecx, 4);
        g.L("scan");
        g.cmp(byte[rsi], 0);
        g.lea(rsi, ptr[rsi + 1]);
        g.loopne("scan");
        g.hlt();
    }));
    uint8_t bytes[] = {5, 4, 0, 7};
    env.poke(kData, bytes, 4);
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RSI] == kData + 3);
    CHECK(env.cpu().s.gpr[RCX] == 1);
}

TEST_CASE("int2: ENTER with nesting levels builds the display (SDM ENTER pseudocode)") {
    machine::SnippetEnv env;
    // An outer frame at RBP = kData + 0x700 whose display slots hold recognisable values.
    poke64(env, kData + 0x6f8, 0xa1);
    poke64(env, kData + 0x6f0, 0xa2);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x800);
        g.mov(rbp, kData + 0x700);
        g.enter(0x20, 3);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    const auto& r = env.cpu().s.gpr;
    // push rbp -> 0x7f8; frame = 0x7f8; push [rbp-8], [rbp-16] -> 0x7f0, 0x7e8; push frame -> 0x7e0;
    // rsp = 0x7e0 - 0x20.
    CHECK(peek64(env, kData + 0x7f8) == kData + 0x700);
    CHECK(peek64(env, kData + 0x7f0) == 0xa1);
    CHECK(peek64(env, kData + 0x7e8) == 0xa2);
    CHECK(peek64(env, kData + 0x7e0) == kData + 0x7f8);
    CHECK(r[RBP] == kData + 0x7f8);
    CHECK(r[RSP] == kData + 0x7c0);
}

TEST_CASE("int2: ENTER 0,0 then LEAVE restores RSP and RBP; ENTER level is taken modulo 32") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x800);
        g.mov(rbp, 0x1234);
        g.enter(0x100, 32);  // level 32 mod 32 = 0
        g.mov(rax, rsp);
        g.mov(rbx, rbp);
        g.leave();
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    const auto& r = env.cpu().s.gpr;
    CHECK(r[RAX] == kData + 0x7f8 - 0x100);
    CHECK(r[RBX] == kData + 0x7f8);
    CHECK(r[RSP] == kData + 0x800);
    CHECK(r[RBP] == 0x1234);
}

TEST_CASE("int2: an ENTER whose last push faults leaves RSP and RBP unchanged") {
    // (The pushes before the faulting one do reach memory below RSP, as on the host; the
    // differential forms compare that.)
    machine::SnippetEnv env;
    env.set_page_present(kData, false);
    poke64(env, kData + 0x1000, 0x77);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x1010);
        g.mov(rbp, kData + 0x1800);
        g.enter(0, 3);  // pushes at 0x1008, 0x1000, then 0xff8 (not present)
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kPF);
    CHECK(env.cpu().s.cr2 == kData + 0xff8);
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x1010);
    CHECK(env.cpu().s.gpr[RBP] == kData + 0x1800);
}

TEST_CASE("int2: ENTER write-checks the final stack pointer without writing there") {
    // AMD APM Vol. 3, "ENTER": "ENTER finishes with a memory write check on the final stack pointer,
    // but no write actually occurs" (the host, an AMD EPYC, faults the same way).
    machine::SnippetEnv env;
    env.set_page_present(kData, false);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x1800);
        g.mov(rbp, 0x55);
        g.enter(0x1000, 0);  // push rbp -> 0x17f8; final rsp = 0x7f8 (not present)
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kPF);
    CHECK(env.cpu().s.cr2 == kData + 0x7f8);
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x1800);
    CHECK(env.cpu().s.gpr[RBP] == 0x55);
}

TEST_CASE("int2: POPF at CPL 0 loads IF and IOPL, never RF or VM, keeps bit 1; PUSHF clears RF/VM") {
    machine::SnippetEnv env;
    // Image: every flag bit 0..21 set, bit 1 clear.
    uint64_t image = 0x3fffffull & ~2ull;
    poke64(env, kData + 0x800, image);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x800);
        g.popfq();
        g.pushfq();
        g.pop(rax);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    uint64_t want = fl::kArith | fl::TF | fl::IF | fl::DF | fl::IOPL | fl::NT | fl::AC | fl::ID | fl::kFixed1;
    CHECK(env.cpu().rflags() == want);
    CHECK(env.cpu().s.gpr[RAX] == want);
}

TEST_CASE("int2: 16-bit POPF changes only the low 16 bits") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x800);
        g.push(fl::AC | fl::ID);
        g.popfq();          // AC, ID set
        emit(g, {0x66, 0x6a, 0x00});  // push word 0
        emit(g, {0x66, 0x9d});  // popf (16-bit): clears the low flags only
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().rflags() == (fl::AC | fl::ID | fl::kFixed1));
    CHECK(env.cpu().s.gpr[RSP] == kData + 0x800);
}

TEST_CASE("int2: LAHF/SAHF move SF:ZF:0:AF:0:PF:1:CF through AH") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(eax, 0xd500);  // AH = SF ZF AF PF CF = 1101 0101
        g.sahf();
        g.setc(bl);
        g.sets(cl);
        g.mov(eax, 0);
        g.cmp(eax, 1);  // 0 - 1: CF=1 SF=1 AF=1 PF=1 (0xff) ZF=0
        g.lahf();
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(uint8_t(env.cpu().s.gpr[RBX]) == 1);
    CHECK(uint8_t(env.cpu().s.gpr[RCX]) == 1);
    CHECK(uint8_t(env.cpu().s.gpr[RAX] >> 8) == 0x97);  // SF . . AF . PF 1 CF
}

TEST_CASE("int2: XLAT, MOVBE, BSWAP, MOVSXD, CBW/CWD family") {
    machine::SnippetEnv env;
    uint8_t table[256];
    for (int k = 0; k < 256; k++) table[k] = uint8_t(255 - k);
    env.poke(kData, table, 256);
    poke64(env, kData + 0x400, 0x0102030405060708ull);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rbx, kData);
        g.mov(eax, 0x10);
        g.xlatb();            // AL = 0xef
        g.mov(r8, rax);
        g.mov(rsi, kData + 0x400);
        g.movbe(r9, ptr[rsi]);  // 0x0807060504030201
        g.mov(r10d, 0x11223344);
        g.bswap(r10d);        // 0x44332211
        g.mov(r11d, 0x80000000);
        g.movsxd(r11, r11d);  // 0xffffffff80000000
        g.mov(eax, 0x8000);
        g.cwde();             // 0xffff8000
        g.cdqe();             // 0xffffffffffff8000
        g.cqo();              // RDX = all ones
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    const auto& r = env.cpu().s.gpr;
    CHECK(r[R8] == 0xef);
    CHECK(r[R9] == 0x0807060504030201ull);
    CHECK(r[R10] == 0x44332211);
    CHECK(r[R11] == 0xffffffff80000000ull);
    CHECK(r[RAX] == 0xffffffffffff8000ull);
    CHECK(r[RDX] == ~0ull);
}

TEST_CASE("int2: multi-byte and hint NOPs do not touch their memory operand") {
    machine::SnippetEnv env;
    env.set_page_present(kData, false);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rax, kData);
        emit(g, {0x0f, 0x1f, 0x00});        // nop dword [rax]
        emit(g, {0x0f, 0x1f, 0x44, 0x00, 0x00});
        emit(g, {0x0f, 0x19, 0x00});        // hint nop [rax]
        emit(g, {0x0f, 0x1a, 0x40, 0x08});  // hint nop [rax+8] (BNDLDX on MPX CPUs)
        emit(g, {0x0f, 0x1c, 0x00});        // hint nop [rax] (CLDEMOTE on CPUs that have it)
        emit(g, {0xf3, 0x0f, 0x1e, 0xfa});  // endbr64: a NOP without CET
        g.mov(ebx, 1);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RBX] == 1);
}

TEST_CASE("int2: in 32-bit compatibility mode PUSH/POP/CALL/ENTER/LEAVE use ESP and 32-bit slots") {
    machine::SnippetEnv env;
    CpuState& s = env.cpu().s;
    s.seg[CS].attr = 0xc09b;  // 32-bit code segment (D = 1, L = 0): compatibility mode
    env.cpu().update_mode();
    REQUIRE(env.cpu().mode() == Mode::Compat32);
    env.load_code({
        0xbc, 0x00, 0x08, 0x20, 0x00,  // 0: mov esp, 0x200800
        0x68, 0x78, 0x56, 0x34, 0x12,  // 5: push 0x12345678
        0x58,                          // 10: pop eax
        0xe8, 0x00, 0x00, 0x00, 0x00,  // 11: call 16 (pushes 0x100010)
        0x5b,                          // 16: pop ebx
        0xbd, 0x44, 0x33, 0x22, 0x11,  // 17: mov ebp, 0x11223344
        0xc8, 0x08, 0x00, 0x01,        // 22: enter 8, 1
        0x89, 0xe6,                    // 26: mov esi, esp
        0x89, 0xef,                    // 28: mov edi, ebp
        0xc9,                          // 30: leave
        0xf4,                          // 31: hlt
    });
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(uint32_t(s.gpr[RAX]) == 0x12345678);
    CHECK(uint32_t(s.gpr[RBX]) == 0x100010);
    // ENTER 8, 1: push ebp -> 0x2007fc (frame); push frame -> 0x2007f8; esp = 0x2007f0.
    CHECK(uint32_t(s.gpr[RDI]) == 0x2007fc);
    CHECK(uint32_t(s.gpr[RSI]) == 0x2007f0);
    uint32_t slot = 0;
    env.peek(0x2007f8, &slot, 4);
    CHECK(slot == 0x2007fc);
    CHECK(uint32_t(s.gpr[RSP]) == 0x200800);
    CHECK(uint32_t(s.gpr[RBP]) == 0x11223344);
}

TEST_CASE("int2: with a 16-bit stack (SS.B = 0) SP wraps and the upper bits of ESP are kept") {
    // SDM Vol. 1, 6.2.3: the stack-address size is given by SS.B; with B = 0 pushes and pops use SP.
    machine::SnippetEnv env;
    CpuState& s = env.cpu().s;
    s.seg[CS].attr = 0xc09b;
    s.seg[SS].attr = 0x8093;  // 16-bit stack segment
    s.seg[SS].base = 0x200000;
    env.cpu().update_mode();
    s.gpr[RSP] = 0x12340002;
    s.gpr[RAX] = 0xcafef00d;
    env.load_code({
        0x50,  // push eax: SP = 0xfffe, writes SS:0xfffe
        0x59,  // pop ecx: SP = 0x0002
        0x50,  // push eax
        0xf4,
    });
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(uint32_t(s.gpr[RCX]) == 0xcafef00d);
    CHECK(uint32_t(s.gpr[RSP]) == 0x1234fffe);
    uint32_t v = 0;
    env.peek(0x200000 + 0xfffe, &v, 4);
    CHECK(v == 0xcafef00d);
}

TEST_CASE("int2: PUSHAD/POPAD in compatibility mode (the ESP image is skipped on POPAD)") {
    // SDM Vol. 2, PUSHA/PUSHAD: EAX, ECX, EDX, EBX, the original ESP, EBP, ESI, EDI in that order.
    machine::SnippetEnv env;
    CpuState& s = env.cpu().s;
    s.seg[CS].attr = 0xc09b;
    env.cpu().update_mode();
    for (int r = 0; r < 8; r++) s.gpr[r] = 0x1000 * (r + 1) + r;
    s.gpr[RSP] = 0x200800;
    env.load_code({
        0x60,                          // pushad
        0x31, 0xc0, 0x31, 0xc9, 0x31, 0xd2, 0x31, 0xdb,  // xor eax/ecx/edx/ebx
        0x31, 0xed, 0x31, 0xf6, 0x31, 0xff,              // xor ebp/esi/edi
        0xc7, 0x44, 0x24, 0x0c, 0x11, 0x11, 0x11, 0x11,  // mov dword [esp+12], 0x11111111 (ESP image)
        0x61,                          // popad
        0xf4,
    });
    REQUIRE(env.run(100) == StopReason::Halt);
    uint32_t img[8];
    env.peek(0x200800 - 32, img, sizeof img);
    for (int r = 0; r < 8; r++) {
        CAPTURE(r);
        uint32_t want = r == RSP ? 0x200800u : uint32_t(0x1000 * (r + 1) + r);
        CHECK(img[7 - r] == (r == RSP ? 0x11111111u : want));
        CHECK(uint32_t(s.gpr[r]) == want);
    }
}
