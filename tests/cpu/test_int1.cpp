// Unit tests: int1 - shifts/rotates, multiply/divide, bit operations, BMI, ADX.
//
// Targeted cases whose expected values follow from the SDM's instruction pages (Vol. 2); the
// differential tests (tests/diff/gen_int1.cpp) cover the operand space against the host CPU.
#include <doctest/doctest.h>
#include <xbyak/xbyak.h>

#include <cstring>
#include <functional>

#include "machine/snippet.h"

using namespace m86;
using namespace m86::cpu;

namespace {

using Xbyak::CodeGenerator;
namespace fl = m86::cpu::fl;

// Runs `gen`'s code (a HLT is appended) with the given register and flag values.
struct Run {
    machine::SnippetEnv env;
    StopReason why{};
    size_t code_size = 0;

    Run(const std::function<void(CodeGenerator&)>& gen, std::initializer_list<std::pair<Gpr, uint64_t>> regs,
        uint64_t flags = 0, const std::function<void(machine::SnippetEnv&)>& setup = {}) {
        if (setup) setup(env);
        CodeGenerator g(4096, Xbyak::DontSetProtectRWE);
        gen(g);
        code_size = g.getSize();
        g.hlt();
        env.load_code({g.getCode(), g.getCode() + g.getSize()});
        for (auto [r, v] : regs) env.cpu().s.gpr[r] = v;
        env.cpu().s.rflags = fl::kFixed1 | flags;
        why = env.run(100);
    }
    uint64_t r(Gpr n) { return env.cpu().s.gpr[n]; }
    uint64_t flags() { return env.cpu().rflags() & fl::kArith; }
};

}  // namespace

TEST_CASE("int1: DIV by zero raises #DE with no register changed") {
    Run t([](CodeGenerator& g) { g.div(Xbyak::util::ecx); }, {{RAX, 0x1111222233334444}, {RDX, 0x5555666677778888}, {RCX, 0}},
          fl::CF | fl::ZF);
    CHECK(t.why == StopReason::Exception);
    CHECK(t.env.cpu().last_fault.vector == kDE);
    CHECK(t.r(RAX) == 0x1111222233334444);  // a 32-bit write would have cleared the upper half
    CHECK(t.r(RDX) == 0x5555666677778888);
    CHECK(t.env.cpu().s.rip == machine::SnippetEnv::kCodeBase);  // at the faulting instruction
    CHECK(t.flags() == (fl::CF | fl::ZF));
}

TEST_CASE("int1: DIV and IDIV quotient overflow raise #DE") {
    // SDM "DIV": the quotient of EDX:EAX / r/m32 must fit in 32 bits.
    Run d([](CodeGenerator& g) { g.div(Xbyak::util::ecx); }, {{RAX, 0}, {RDX, 5}, {RCX, 5}});
    CHECK(d.why == StopReason::Exception);
    CHECK(d.env.cpu().last_fault.vector == kDE);
    CHECK(d.r(RAX) == 0);
    CHECK(d.r(RDX) == 5);
    // SDM "IDIV": -2^31 / -1 = 2^31 does not fit in a signed 32-bit quotient.
    Run i([](CodeGenerator& g) { g.idiv(Xbyak::util::ecx); }, {{RAX, 0x80000000}, {RDX, 0xffffffff}, {RCX, 0xffffffff}});
    CHECK(i.why == StopReason::Exception);
    CHECK(i.env.cpu().last_fault.vector == kDE);
    CHECK(i.r(RAX) == 0x80000000);
    // The smallest 128-bit dividend by -1 (host arithmetic would overflow here).
    Run q([](CodeGenerator& g) { g.idiv(Xbyak::util::rcx); }, {{RAX, 0}, {RDX, 1ull << 63}, {RCX, ~0ull}});
    CHECK(q.why == StopReason::Exception);
    CHECK(q.env.cpu().last_fault.vector == kDE);
    CHECK(q.r(RDX) == 1ull << 63);
}

TEST_CASE("int1: IDIV truncates toward zero, remainder has the dividend's sign") {
    // -7 / 2 = -3 remainder -1 (SDM "IDIV": the quotient is truncated toward zero).
    Run t([](CodeGenerator& g) { g.idiv(Xbyak::util::rcx); }, {{RAX, uint64_t(-7)}, {RDX, ~0ull}, {RCX, 2}});
    CHECK(t.why == StopReason::Halt);
    CHECK(t.r(RAX) == uint64_t(-3));
    CHECK(t.r(RDX) == uint64_t(-1));
    // 8-bit: AX / r/m8 -> AL quotient, AH remainder. 0x0100 / 3 = 85 rem 1.
    Run b([](CodeGenerator& g) { g.div(Xbyak::util::cl); }, {{RAX, 0xffff0100}, {RCX, 3}});
    CHECK(b.r(RAX) == 0xffff0155);
}

TEST_CASE("int1: MUL and IMUL set CF/OF from the upper half") {
    Run m([](CodeGenerator& g) { g.mul(Xbyak::util::rcx); }, {{RAX, 1ull << 63}, {RCX, 4}});
    CHECK(m.r(RAX) == 0);
    CHECK(m.r(RDX) == 2);
    CHECK((m.flags() & (fl::CF | fl::OF)) == (fl::CF | fl::OF));
    // IMUL r/m8: AX = AL * r/m8; -1 * -1 = 1 fits in AL: CF = OF = 0.
    Run i([](CodeGenerator& g) { g.imul(Xbyak::util::cl); }, {{RAX, 0xff}, {RCX, 0xff}}, fl::CF | fl::OF);
    CHECK((i.r(RAX) & 0xffff) == 1);
    CHECK((i.flags() & (fl::CF | fl::OF)) == 0);
    // Three operands with a sign-extended imm8: ecx * -1.
    Run t([](CodeGenerator& g) { g.imul(Xbyak::util::eax, Xbyak::util::ecx, -1); }, {{RAX, ~0ull}, {RCX, 5}});
    CHECK(t.r(RAX) == 0xfffffffb);
    CHECK((t.flags() & (fl::CF | fl::OF)) == 0);
    // Two operands: 0x40000000 * 2 overflows a signed 32-bit result.
    Run o([](CodeGenerator& g) { g.imul(Xbyak::util::eax, Xbyak::util::ecx); }, {{RAX, 0x40000000}, {RCX, 2}});
    CHECK(o.r(RAX) == 0x80000000);
    CHECK((o.flags() & (fl::CF | fl::OF)) == (fl::CF | fl::OF));
}

TEST_CASE("int1: MULX with both destinations the same register keeps the high half") {
    // SDM "MULX": "If the first and second operand are identical, it will contain the high half".
    Run t([](CodeGenerator& g) { g.mulx(Xbyak::util::rax, Xbyak::util::rax, Xbyak::util::rcx); },
          {{RDX, 1ull << 63}, {RCX, 6}}, fl::CF);
    CHECK(t.r(RAX) == 3);
    CHECK(t.flags() == fl::CF);  // no flags affected
}

TEST_CASE("int1: RCL/RCR on bytes rotate through CF modulo 9") {
    // RCL r/m8 by 9: tempCOUNT = (9 & 0x1f) mod 9 = 0, so AL and CF stay.
    Run t([](CodeGenerator& g) { g.rcl(Xbyak::util::al, 9); }, {{RAX, 0xa5}}, fl::CF);
    CHECK((t.r(RAX) & 0xff) == 0xa5);
    CHECK((t.flags() & fl::CF) == fl::CF);
    // RCL by 1: 0x80 with CF = 0 -> 0x00, CF = 1, OF = MSB(result) XOR CF = 1.
    Run u([](CodeGenerator& g) { g.rcl(Xbyak::util::al, 1); }, {{RAX, 0x80}});
    CHECK((u.r(RAX) & 0xff) == 0);
    CHECK((u.flags() & (fl::CF | fl::OF)) == (fl::CF | fl::OF));
    // RCR by 1: CF = 1 enters at the top, bit 0 leaves into CF; OF = MSB(dest) XOR CF before.
    Run v([](CodeGenerator& g) { g.rcr(Xbyak::util::al, 1); }, {{RAX, 0x01}}, fl::CF);
    CHECK((v.r(RAX) & 0xff) == 0x80);
    CHECK((v.flags() & (fl::CF | fl::OF)) == (fl::CF | fl::OF));
    // RCL r/m16 by 17: mod 17 = 0.
    Run w([](CodeGenerator& g) { g.rcl(Xbyak::util::ax, 17); }, {{RAX, 0x1234}});
    CHECK((w.r(RAX) & 0xffff) == 0x1234);
}

TEST_CASE("int1: shift counts are masked; a zero masked count changes no flag") {
    // 32-bit: count 33 & 0x1f = 1.
    Run a([](CodeGenerator& g) { g.shl(Xbyak::util::eax, 33); }, {{RAX, 0x80000001}});
    CHECK(a.r(RAX) == 2);
    CHECK((a.flags() & (fl::CF | fl::OF)) == (fl::CF | fl::OF));  // OF = MSB(result) XOR CF
    // 32-bit: count 32 masks to 0: flags kept, but the 32-bit register write still zero-extends.
    Run b([](CodeGenerator& g) { g.shl(Xbyak::util::eax, Xbyak::util::cl); }, {{RAX, 0xffffffff00000005}, {RCX, 32}},
          fl::ZF | fl::SF);
    CHECK(b.r(RAX) == 5);
    CHECK(b.flags() == (fl::ZF | fl::SF));
    // 64-bit: count 32 is not masked (6 bits).
    Run c([](CodeGenerator& g) { g.shl(Xbyak::util::rax, Xbyak::util::cl); }, {{RAX, 5}, {RCX, 32}});
    CHECK(c.r(RAX) == 5ull << 32);
    // SAR by 1 clears OF; the sign fills.
    Run d([](CodeGenerator& g) { g.sar(Xbyak::util::al, 1); }, {{RAX, 0x81}}, fl::OF);
    CHECK((d.r(RAX) & 0xff) == 0xc0);
    CHECK((d.flags() & (fl::CF | fl::OF | fl::SF)) == (fl::CF | fl::SF));
    // SHR by 1: OF = MSB of the original operand.
    Run e([](CodeGenerator& g) { g.shr(Xbyak::util::ax, 1); }, {{RAX, 0x8000}});
    CHECK((e.r(RAX) & 0xffff) == 0x4000);
    CHECK((e.flags() & (fl::CF | fl::OF)) == fl::OF);
}

TEST_CASE("int1: SHLD/SHRD shift in bits from the source") {
    Run l([](CodeGenerator& g) { g.shld(Xbyak::util::eax, Xbyak::util::edx, 8); }, {{RAX, 0x12345678}, {RDX, 0xabcdef01}});
    CHECK(l.r(RAX) == 0x345678ab);
    CHECK((l.flags() & fl::CF) == 0);  // last bit out: bit 24 of the destination (0x12 -> 0)
    Run r([](CodeGenerator& g) { g.shrd(Xbyak::util::rax, Xbyak::util::rdx, Xbyak::util::cl); },
          {{RAX, 0x8000000000000001}, {RDX, 0x3}, {RCX, 1}});
    CHECK(r.r(RAX) == 0xc000000000000000);
    CHECK((r.flags() & (fl::CF | fl::OF)) == fl::CF);  // OF = sign change: 1 -> 1 = none
}

TEST_CASE("int1: BT with a register offset addresses a bit string in memory") {
    // SDM "BT": with a memory operand the register offset is signed and may leave the operand; the
    // operand-size word at EA + size * floor(offset / bits) holds the bit.
    using namespace Xbyak::util;
    uint8_t data[16] = {};
    data[3] = 0x80;  // bit 7 of 0x200003
    data[8] = 0x08;  // bit 3 of 0x200008
    auto setup = [&](machine::SnippetEnv& env) { env.poke(0x200000, data, sizeof data); };
    // Offset -1 from 0x200004: bit 31 of the dword at 0x200000 = bit 7 of 0x200003.
    Run a([](CodeGenerator& g) { g.bt(g.dword[rbx], ecx); }, {{RBX, 0x200004}, {RCX, 0xffffffff}}, 0, setup);
    CHECK(a.why == StopReason::Halt);
    CHECK((a.flags() & fl::CF) == fl::CF);
    // Offset 35: bit 3 of the dword at 0x200008 (set already: memory unchanged).
    Run b([](CodeGenerator& g) { g.bts(g.dword[rbx], edx); }, {{RBX, 0x200004}, {RDX, 35}}, 0, setup);
    CHECK((b.flags() & fl::CF) == fl::CF);
    // 16-bit offset -16 (0xfff0; the upper register bits are ignored): bit 0 of the word at
    // 0x200002, clear; BTC sets it.
    Run c([](CodeGenerator& g) { g.btc(g.word[rbx], si); }, {{RBX, 0x200004}, {RSI, 0x1234fff0}}, fl::CF, setup);
    CHECK((c.flags() & fl::CF) == 0);
    uint8_t out[16];
    c.env.peek(0x200000, out, sizeof out);
    CHECK(out[2] == 0x01);
    CHECK(out[3] == 0x80);
    CHECK(out[4] == 0x00);
    // An immediate offset is taken modulo the operand size: 35 -> bit 3 of the dword at EA.
    Run d([](CodeGenerator& g) { g.bt(g.dword[rbx], 35); }, {{RBX, 0x200008}}, 0, setup);
    CHECK((d.flags() & fl::CF) == fl::CF);
}

TEST_CASE("int1: BSF/BSR with a zero source set ZF and keep the destination") {
    Run t([](CodeGenerator& g) { g.bsf(Xbyak::util::eax, Xbyak::util::ecx); }, {{RAX, 0xdeadbeef12345678}, {RCX, 0}});
    CHECK(t.r(RAX) == 0xdeadbeef12345678);  // not even zero-extended
    CHECK((t.flags() & fl::ZF) == fl::ZF);
    Run u([](CodeGenerator& g) { g.bsr(Xbyak::util::rax, Xbyak::util::rcx); }, {{RAX, 7}, {RCX, 0x00f0}}, fl::ZF);
    CHECK(u.r(RAX) == 7);
    CHECK((u.flags() & fl::ZF) == 0);
}

TEST_CASE("int1: LZCNT/TZCNT/POPCNT") {
    Run t([](CodeGenerator& g) { g.tzcnt(Xbyak::util::ax, Xbyak::util::cx); }, {{RAX, 0x55550000}, {RCX, 0}});
    CHECK(t.r(RAX) == 0x55550010);  // zero source: the operand size, CF = 1
    CHECK((t.flags() & (fl::CF | fl::ZF)) == fl::CF);
    Run l([](CodeGenerator& g) { g.lzcnt(Xbyak::util::rax, Xbyak::util::rcx); }, {{RCX, 1ull << 63}});
    CHECK(l.r(RAX) == 0);  // result 0: ZF = 1
    CHECK((l.flags() & (fl::CF | fl::ZF)) == fl::ZF);
    Run p([](CodeGenerator& g) { g.popcnt(Xbyak::util::eax, Xbyak::util::ecx); }, {{RCX, 0xf0f0f0f1}}, fl::kArith);
    CHECK(p.r(RAX) == 17);
    CHECK(p.flags() == 0);  // all cleared, ZF only for a zero source
}

TEST_CASE("int1: BMI1/BMI2 by their SDM definitions") {
    using namespace Xbyak::util;
    // PDEP: the source's low bits go to the mask's set bits, in order: 0b101 into 0b11010 -> 0b10010.
    Run d([](CodeGenerator& g) { g.pdep(eax, ecx, edx); }, {{RCX, 0b101}, {RDX, 0b11010}});
    CHECK(d.r(RAX) == 0b10010);
    // PEXT: the inverse: the bits of 0b10010 at mask 0b11010 -> 0b101.
    Run e([](CodeGenerator& g) { g.pext(eax, ecx, edx); }, {{RCX, 0b10010}, {RDX, 0b11010}});
    CHECK(e.r(RAX) == 0b101);
    // BEXTR: start 4, length 8.
    Run x([](CodeGenerator& g) { g.bextr(eax, ecx, edx); }, {{RCX, 0x12345678}, {RDX, 0x0804}});
    CHECK(x.r(RAX) == 0x67);
    // BZHI with an index >= the operand size: the source, CF = 1.
    Run z([](CodeGenerator& g) { g.bzhi(rax, rcx, rdx); }, {{RCX, ~0ull}, {RDX, 64}});
    CHECK(z.r(RAX) == ~0ull);
    CHECK((z.flags() & fl::CF) == fl::CF);
    Run z2([](CodeGenerator& g) { g.bzhi(eax, ecx, edx); }, {{RCX, ~0ull}, {RDX, 0x105}});  // index = low byte = 5
    CHECK(z2.r(RAX) == 0x1f);
    // BLSR/BLSI/BLSMSK on 0b1011000.
    Run r([](CodeGenerator& g) { g.blsr(eax, ecx); }, {{RCX, 0b1011000}});
    CHECK(r.r(RAX) == 0b1010000);
    Run i([](CodeGenerator& g) { g.blsi(eax, ecx); }, {{RCX, 0b1011000}});
    CHECK(i.r(RAX) == 0b1000);
    CHECK((i.flags() & fl::CF) == fl::CF);  // CF = (source != 0)
    Run m([](CodeGenerator& g) { g.blsmsk(eax, ecx); }, {{RCX, 0b1011000}});
    CHECK(m.r(RAX) == 0b1111);
    // ANDN: ~src1 & src2.
    Run a([](CodeGenerator& g) { g.andn(rax, rcx, rdx); }, {{RCX, 0xff00}, {RDX, 0xffff}});
    CHECK(a.r(RAX) == 0x00ff);
    // SARX/SHLX/RORX: counts masked, no flags.
    Run s([](CodeGenerator& g) { g.sarx(eax, ecx, edx); }, {{RCX, 0x80000000}, {RDX, 33}}, fl::ZF);
    CHECK(s.r(RAX) == 0xc0000000);
    CHECK(s.flags() == fl::ZF);
    Run o([](CodeGenerator& g) { g.rorx(rax, rcx, 4); }, {{RCX, 0x1}});
    CHECK(o.r(RAX) == 0x1000000000000000);
}

TEST_CASE("int1: ADCX and ADOX carry through CF and OF only") {
    using namespace Xbyak::util;
    Run c([](CodeGenerator& g) { g.adcx(eax, ecx); }, {{RAX, 0xffffffff}, {RCX, 0}}, fl::CF | fl::ZF | fl::OF);
    CHECK(c.r(RAX) == 0);
    CHECK(c.flags() == (fl::CF | fl::ZF | fl::OF));  // CF out = 1, others untouched
    Run o([](CodeGenerator& g) { g.adox(rax, rcx); }, {{RAX, 5}, {RCX, 6}}, fl::OF | fl::CF);
    CHECK(o.r(RAX) == 12);
    CHECK(o.flags() == fl::CF);  // OF out = 0, CF untouched
}
