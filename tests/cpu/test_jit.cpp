// Block-level tests of the JIT (src/jit): what the single-instruction differential tests cannot see.
// Host code runs native instructions without writing RIP and the retired count, writes both before
// handler calls, leaves a block early on exit requests, takes the interpreter handler out of line
// on a TLB miss, and the run loop falls back to the interpreter for a block the instruction limit
// cuts. Each test runs the same guest code in two snippet environments, one with every block
// translated at its first run (set_jit(1)) and one interpreting, and compares the complete state
// (GPRs, RIP, RFLAGS, retired count, CR2, the fault, all of RAM); where the architecture fixes a
// value (the faulting RIP, CR2, the error code, a sum the loop computes), the test checks it too.
// Every test also checks that the blocks it is about did get host code.
#include <doctest/doctest.h>
#include <xbyak/xbyak.h>

#include <fmt/format.h>

#include <cstring>
#include <memory>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu.h"
#include "cpu/decode.h"
#include "jit/jit.h"
#include "machine/snippet.h"

#include "asm.h"

using namespace m86;
using namespace m86::cpu;
using m86::test::assemble;
using m86::test::kCode;
using m86::test::kData;
using machine::SnippetEnv;

namespace {

// Without asmjit every test here is reported as skipped (not passed).
const bool kNoJit = !jit::available();

constexpr size_t kRam = 8ull << 20;  // the snippet's page tables map 4 KiB pages below 4 MiB
constexpr uint64_t kPt = 0x4000;     // the snippet's page tables for 0..4 MiB (snippet.h)

using Setup = std::function<void(SnippetEnv&)>;

// Point the PTE of linear page `lin` (below 4 MiB) at physical `phys` with `flags` (P = 1, W = 2).
void set_pte(SnippetEnv& env, uint64_t lin, uint64_t phys, uint64_t flags) {
    uint64_t pte = (phys & ~0xfffull) | flags;
    REQUIRE(env.poke(kPt + (lin >> 12) * 8, &pte, 8));
    env.cpu().tlb_flush_page(lin);
}

// Fill [addr, addr + size) with bytes from a fixed seed (the same in both environments).
void fill_random(SnippetEnv& env, uint64_t addr, size_t size, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> bytes(size);
    for (auto& b : bytes) b = uint8_t(rng());
    REQUIRE(env.poke(addr, bytes.data(), size));
}

// The same program in a JIT environment and an interpreting one.
struct Pair {
    SnippetEnv jit{kRam}, ref{kRam};
    StopReason rj{}, rr{};

    Pair(const std::vector<uint8_t>& code, const Setup& setup = {}, unsigned bits = 64, uint32_t threshold = 1) {
        if (bits != 64) {
            jit.set_bits(bits);
            ref.set_bits(bits);
        }
        REQUIRE(jit.set_jit(threshold));  // resets the CPU (keeps the mode)
        for (SnippetEnv* e : {&jit, &ref}) {
            REQUIRE(e->load_code(code));
            if (setup) setup(*e);
        }
    }
    void run(uint64_t n) {
        rj = jit.run(n);
        rr = ref.run(n);
    }
    // The block at linear (= physical) address `at` exists in the JIT environment and has host code.
    bool has_host(uint64_t at) {
        Mode m = jit.bits() == 64 ? Mode::Long64 : jit.bits() == 32 ? Mode::Prot32 : Mode::Real;
        const Block* b = jit.cpu().code().find(at, m);
        return b && b->host;
    }
    // Both environments in the same state.
    void same(const char* what) {
        INFO(what);
        Cpu& a = jit.cpu();
        Cpu& b = ref.cpu();
        CHECK(int(rj) == int(rr));
        for (unsigned r = 0; r < 16; r++) {
            INFO("GPR " << r);
            CHECK(a.s.gpr[r] == b.s.gpr[r]);
        }
        CHECK(a.s.rip == b.s.rip);
        CHECK(a.s.seg[CS].sel == b.s.seg[CS].sel);
        CHECK(int(a.mode()) == int(b.mode()));
        CHECK(a.rflags() == b.rflags());
        CHECK(a.icount == b.icount);
        CHECK(a.halted == b.halted);
        CHECK(a.s.cr0 == b.s.cr0);
        CHECK(a.s.cr2 == b.s.cr2);
        CHECK(a.s.seg[FS].base == b.s.seg[FS].base);
        if (rj == StopReason::Exception && rr == StopReason::Exception) {
            CHECK(int(a.last_fault.vector) == int(b.last_fault.vector));
            CHECK(a.last_fault.error_code == b.last_fault.error_code);
        }
        const uint8_t* ma = jit.bus().ram();
        const uint8_t* mb = ref.bus().ram();
        if (std::memcmp(ma, mb, kRam) != 0) {
            size_t k = 0;
            while (ma[k] == mb[k]) k++;
            FAIL_CHECK("RAM differs first at 0x" << std::hex << k << ": jit " << int(ma[k]) << ", interpreter "
                                                  << int(mb[k]));
        }
    }
};

// The JIT and the interpreter agree when a fresh run of `code` stops after n instructions, for every
// n from 1 to `last`; a run that reaches the limit retired exactly n instructions.
void same_at_every_limit(const std::vector<uint8_t>& code, uint64_t last, const Setup& setup = {},
                         unsigned bits = 64) {
    for (uint64_t n = 1; n <= last; n++) {
        INFO("limit " << n);
        Pair q(code, setup, bits);
        q.run(n);
        if (q.rr == StopReason::Limit)
            CHECK(q.jit.cpu().icount == n);
        else
            CHECK(q.jit.cpu().icount <= n);
        q.same("at the limit");
    }
}

// Offsets of labels in assembled code: call mark(g) where the label is.
struct Marks {
    std::vector<size_t> at;
    void mark(Xbyak::CodeGenerator& g) { at.push_back(g.getSize()); }
    uint64_t operator[](size_t k) const { return kCode + at.at(k); }
};

// ---- 1. a long mix of native and called instructions ---------------------------------------------

// A loop of ~30 instructions: native loads/stores/ALU/LEA interleaved with called ones (shifts, IMUL,
// PUSH/POP, XCHG, ADC, SETcc, CMOVcc, PUSHFQ, RDTSC) that consume native results and flags.
std::vector<uint8_t> mix_loop(uint32_t iterations, Marks& m) {
    return assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(esi, uint32_t(kData));
        g.mov(edi, uint32_t(kData + 0x800));
        g.mov(ecx, iterations);
        g.mov(r15, 0x0123456789abcdefull);
        Xbyak::Label top;
        g.L(top);
        m.mark(g);                             // 0: the loop block
        g.mov(rax, ptr[rsi]);                  // native load
        g.add(rax, rcx);                       // native
        g.lea(rdx, ptr[rax + rcx * 4 + 0x10]);  // native
        g.shl(rdx, 3);                         // called
        g.imul(rdx, rax);                      // called
        g.push(rdx);                           // called (a store)
        g.mov(ptr[rsi + 8], rdx);              // native store
        g.movzx(ebx, byte[rsi + 3]);
        g.movsx(r8, word[rsi + 5]);
        g.movsxd(r9, dword[rsi + 9]);
        g.movzx(r10d, word[rsi + 0x11]);
        g.xchg(rbx, r8);  // called
        g.pop(r10);       // called
        g.xor_(r10, rax);
        g.sub(r11d, r10d);
        g.add(ptr[rsi + 16], r11);  // ALU with a memory destination
        g.cmp(r12, ptr[rsi + 16]);
        g.adc(r13, r12);  // called: CF from the native CMP
        g.mov(ptr[rdi + rcx * 8], rax);
        g.rol(r15, 7);
        g.add(r15, rcx);
        g.mov(ptr[rsi], r15);  // feeds the next iteration's first load
        g.inc(r14);            // called: keeps CF from the native ADD
        g.test(r14d, 3);
        g.setz(al);
        g.cmovnz(r12, r9);
        g.pushf();  // called: RFLAGS materialised from the native TEST
        g.pop(rbp);
        g.or_(r12d, 0x10);
        g.mov(dword[rsi + 0x20], r12d);
        g.rdtsc();  // called: the TSC is the retired count here (FlatBus::tsc)
        g.sub(r11, rax);
        g.sub(ecx, 1);
        g.jnz(top);
        g.hlt();
    });
}

Setup mix_setup(uint32_t seed) {
    return [seed](SnippetEnv& e) {
        fill_random(e, kData, 0x2000, seed);
        std::mt19937_64 rng(seed);
        for (unsigned r : {RBX, R11, R12, R13, R14}) e.cpu().s.gpr[r] = rng();
    };
}

}  // namespace

TEST_CASE("jit: a long mix of native and called instructions in a loop matches the interpreter" *
          doctest::skip(kNoJit)) {
    for (uint32_t iterations : {1u, 2u, 3u, 7u, 50u}) {
        for (uint32_t threshold : {1u, 3u}) {
            INFO("iterations " << iterations << ", threshold " << threshold);
            Marks m;
            Pair p(mix_loop(iterations, m), mix_setup(iterations), 64, threshold);
            p.run(100000);
            CHECK(p.rj == StopReason::Halt);
            p.same("after the loop");
            // The first iteration runs in the program's first block; the loop block starts at the second.
            if (iterations - 1 >= threshold) CHECK(p.has_host(m[0]));
        }
    }
}

TEST_CASE("jit: host code is used: the loop block is translated and the default threshold is reached" *
          doctest::skip(kNoJit)) {
    for (uint32_t threshold : {1u, jit::kDefaultThreshold}) {
        INFO("threshold " << threshold);
        Marks m;
        auto code = assemble([&](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            g.mov(ecx, 1000);
            g.xor_(eax, eax);
            Xbyak::Label top;
            g.L(top);
            m.mark(g);
            g.add(rax, rcx);
            g.sub(ecx, 1);
            g.jnz(top);
            g.hlt();
        });
        Pair p(code, {}, 64, threshold);
        p.run(100000);
        CHECK(p.rj == StopReason::Halt);
        CHECK(p.jit.cpu().s.gpr[RAX] == 500500);  // sum 1..1000
        CHECK(p.has_host(m[0]));
        // The interpreting environment has no host code at all.
        const Block* b = p.ref.cpu().code().find(m[0], Mode::Long64);
        REQUIRE(b);
        CHECK_FALSE(bool(b->host));
        p.same("after the loop");
    }
}

TEST_CASE("jit: host code chains from block to block without the run loop" * doctest::skip(kNoJit)) {
    // A loop of two blocks (a Jcc in the middle): once both have host code and are linked, the run
    // loop enters host code a handful of times, not once per block. A call/return pair chains too.
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        Xbyak::Label top, skip, fn;
        g.mov(ecx, 1000);
        g.xor_(eax, eax);
        g.xor_(edx, edx);
        g.L(top);
        g.add(rax, rcx);
        g.test(ecx, 1);
        g.jz(skip);
        g.add(rdx, 1);
        g.L(skip);
        g.call(fn);
        g.sub(ecx, 1);
        g.jnz(top);
        g.hlt();
        g.L(fn);
        g.add(rdx, 2);
        g.ret();
    });
    Pair p(code);
    p.run(100000);
    REQUIRE(p.rj == StopReason::Halt);
    Cpu& c = p.jit.cpu();
    CHECK(c.s.gpr[RAX] == 500500);
    CHECK(c.s.gpr[RDX] == 500 + 2000);
    // About 5 blocks per iteration, 1000 iterations: without chaining, thousands of entries.
    CHECK(c.host_entries < 100);
    CHECK(p.ref.cpu().host_entries == 0);
    p.same("after the loop");
}

TEST_CASE("jit: CMOVcc and SETcc for all 16 conditions, after native and called flag producers" *
          doctest::skip(kNoJit)) {
    // After a native CMP the host flags are used directly; after a called producer (ADC), after a
    // native memory-form CMP, and for a memory source (its TLB check changes the host flags) the
    // condition comes from the lazy flags. Each against the interpreter.
    const uint64_t pairs[][2] = {{0, 0}, {1, 2}, {2, 1}, {0x8000000000000000ull, 1}, {1, 0x8000000000000000ull},
                                 {0x7fffffffffffffffull, ~0ull}, {~0ull, 0x7fffffffffffffffull}, {5, 5}};
    for (int producer = 0; producer < 3; producer++) {
        for (unsigned cc = 0; cc < 16; cc++) {
            for (const auto& pr : pairs) {
                INFO("producer " << producer << " cc " << cc << " a " << pr[0] << " b " << pr[1]);
                auto code = assemble([&](Xbyak::CodeGenerator& g) {
                    using namespace Xbyak::util;
                    g.mov(rdi, pr[0]);
                    g.mov(rsi, pr[1]);
                    g.mov(rbx, 0x1111);
                    g.mov(rdx, 0x2222);
                    g.mov(eax, 0xffffff);
                    g.mov(r8d, uint32_t(kData));
                    g.mov(qword[r8], rsi);
                    g.mov(r9, qword[r8]);  // (fills the read TLB: the CMOV below takes the hit path)
                    if (producer == 0) g.cmp(rdi, rsi);
                    if (producer == 1) g.adc(rdi, rsi);
                    if (producer == 2) g.cmp(rdi, qword[r8]);
                    g.db(0x0f), g.db(0x90 + cc), g.db(0xc0);              // setcc al
                    g.db(0x48), g.db(0x0f), g.db(0x40 + cc), g.db(0xda);  // cmovcc rbx, rdx
                    g.db(0x0f), g.db(0x40 + cc), g.db(0xca);              // cmovcc ecx, edx
                    g.db(0x49), g.db(0x0f), g.db(0x40 + cc), g.db(0x28);  // cmovcc rbp, [r8]
                    g.hlt();
                });
                Pair p(code);
                p.run(100);
                CHECK(p.rj == StopReason::Halt);
                CHECK(p.has_host(kCode));
                p.same("after setcc/cmovcc");
            }
        }
    }
}

// ---- 2. faults in the middle of a translated block -----------------------------------------------

TEST_CASE("jit: #PF from a native load mid-block: RIP, CR2, retired count, earlier native results" *
          doctest::skip(kNoJit)) {
    // The loop reads one page per iteration; page `bad` is not present. bad = kData: the fault is in
    // the block's first run (cold TLB); kData + 0x2000: in its third, after two runs of host code.
    for (uint64_t bad : {kData, kData + 0x2000}) {
        INFO("not-present page 0x" << std::hex << bad);
        Marks m;
        auto code = assemble([&](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            g.mov(esi, uint32_t(kData));
            g.mov(ecx, 5);
            Xbyak::Label top;
            g.L(top);
            m.mark(g);  // 0
            g.mov(eax, ecx);
            g.add(rbx, rax);
            g.lea(rdx, ptr[rbx + 8]);
            m.mark(g);  // 1: the load
            g.mov(r8, ptr[rsi + 0x10]);
            g.add(r9, r8);
            g.add(rsi, 0x1000);
            g.sub(ecx, 1);
            g.jnz(top);
            g.hlt();
        });
        Pair p(code, [&](SnippetEnv& e) {
            fill_random(e, kData, 0x4000, 7);
            e.set_page_present(bad, false);
        });
        p.run(1000);
        REQUIRE(p.rj == StopReason::Exception);
        Cpu& c = p.jit.cpu();
        const uint64_t k = (bad - kData) / 0x1000;  // iterations completed before the fault
        CHECK(int(c.last_fault.vector) == kPF);
        CHECK(c.last_fault.error_code == 0);  // not present, read, supervisor
        CHECK(c.s.cr2 == bad + 0x10);
        CHECK(c.s.rip == m[1]);
        CHECK(c.icount == 2 + 8 * k + 3);  // the MOV ECX / MOV ESI, k iterations, 3 before the load
        CHECK(c.s.gpr[RCX] == 5 - k);
        CHECK(c.s.gpr[RAX] == 5 - k);
        CHECK(c.s.gpr[RDX] == c.s.gpr[RBX] + 8);
        CHECK(c.s.gpr[RSI] == bad);
        CHECK(p.has_host(k == 0 ? kCode : m[0]));  // the first iteration is in the first block
        p.same("at the fault");
    }
}

TEST_CASE("jit: #PF from native stores and ALU memory forms mid-block (not present, read-only)" *
          doctest::skip(kNoJit)) {
    constexpr uint64_t kRo = kData + 0x3000;  // read-only page (CR0.WP = 1 in the snippet)
    constexpr uint64_t kNp = kData + 0x1000;  // not-present page
    struct Case {
        const char* name;
        std::function<void(Xbyak::CodeGenerator&)> insn;  // addresses rdi (the bad page) + 0x18
        uint64_t page;
        uint32_t error_code;
    };
    using namespace Xbyak::util;
    const Case cases[] = {
        {"mov [ro], r64", [](Xbyak::CodeGenerator& g) { g.mov(ptr[rdi + 0x18], rbx); }, kRo, 3},
        {"mov [ro], imm32", [](Xbyak::CodeGenerator& g) { g.mov(dword[rdi + 0x18], 5); }, kRo, 3},
        {"mov [np], r32", [](Xbyak::CodeGenerator& g) { g.mov(ptr[rdi + 0x18], ebx); }, kNp, 2},
        {"add [ro], r64", [](Xbyak::CodeGenerator& g) { g.add(ptr[rdi + 0x18], rbx); }, kRo, 3},
        {"sub [np], imm", [](Xbyak::CodeGenerator& g) { g.sub(qword[rdi + 0x18], 9); }, kNp, 2},
        {"add r64, [np]", [](Xbyak::CodeGenerator& g) { g.add(rbx, ptr[rdi + 0x18]); }, kNp, 0},
        {"cmp [np], r32", [](Xbyak::CodeGenerator& g) { g.cmp(ptr[rdi + 0x18], ebx); }, kNp, 0},
        {"movsxd [np]", [](Xbyak::CodeGenerator& g) { g.movsxd(rbx, dword[rdi + 0x18]); }, kNp, 0},
        {"xchg [ro] (called)", [](Xbyak::CodeGenerator& g) { g.xchg(ptr[rdi + 0x18], rbx); }, kRo, 3},
    };
    for (const Case& c : cases) {
        INFO(c.name);
        // A read of the read-only page first (its read TLB entry is filled: the store must still
        // fault), native work, the faulting instruction, more native work.
        Marks m;
        auto prog = assemble([&](Xbyak::CodeGenerator& g) {
            g.mov(edi, uint32_t(c.page));
            g.mov(esi, uint32_t(kData));
            g.mov(ecx, 2);
            Xbyak::Label top;
            g.L(top);
            m.mark(g);  // 0: the loop block
            g.mov(rax, ptr[rsi]);
            g.add(rbx, rax);
            if (c.page == kRo) g.mov(rdx, ptr[rdi + 0x18]);  // read TLB hit for the page
            g.lea(r8, ptr[rbx + rax * 2]);
            g.mov(ptr[rsi + 8], r8);
            g.sub(ecx, 1);
            g.jnz(top);
            m.mark(g);  // 1: the second block
            g.xor_(r9d, r9d);
            g.add(r9, rbx);
            m.mark(g);  // 2: the faulting instruction
            c.insn(g);
            g.add(r9, 1);
            g.hlt();
        });
        const int before = 3 + 6 * 2 + (c.page == kRo ? 2 : 0) + 2;
        Pair p(prog, [&](SnippetEnv& e) {
            fill_random(e, kData, 0x4000, 11);
            if (c.page == kRo)
                set_pte(e, kRo, kRo, 1);
            else
                e.set_page_present(kNp, false);
        });
        p.run(1000);
        REQUIRE(p.rj == StopReason::Exception);
        Cpu& cpu = p.jit.cpu();
        CHECK(int(cpu.last_fault.vector) == kPF);
        CHECK(cpu.last_fault.error_code == c.error_code);
        CHECK(cpu.s.cr2 == c.page + 0x18);
        CHECK(cpu.s.rip == m[2]);
        CHECK(cpu.icount == uint64_t(before));
        CHECK(cpu.s.gpr[R9] == cpu.s.gpr[RBX]);
        CHECK(p.has_host(m[0]));
        CHECK(p.has_host(m[1]));
        p.same("at the fault");
    }
}

TEST_CASE("jit: #DE from a called DIV after native instructions: RIP at the DIV, native results kept" *
          doctest::skip(kNoJit)) {
    SUBCASE("first run of the block") {
        Marks m;
        auto code = assemble([&](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            g.mov(eax, 100);
            g.mov(ecx, 0);
            g.add(ebx, 7);
            g.xor_(edx, edx);
            m.mark(g);  // 0: the DIV
            g.div(ecx);
            g.mov(eax, 5);
            g.hlt();
        });
        Pair p(code);
        p.run(100);
        REQUIRE(p.rj == StopReason::Exception);
        Cpu& c = p.jit.cpu();
        CHECK(int(c.last_fault.vector) == kDE);
        CHECK(c.s.rip == m[0]);
        CHECK(c.icount == 4);
        CHECK(c.s.gpr[RAX] == 100);
        CHECK(c.s.gpr[RBX] == 7);
        CHECK(c.s.gpr[RCX] == 0);
        CHECK(c.s.gpr[RDX] == 0);
        // Flags from the XOR (SDM: OF = CF = 0, SF/ZF/PF from the result 0); AF undefined.
        constexpr uint64_t kSt = fl::CF | fl::PF | fl::ZF | fl::SF | fl::OF;
        CHECK((c.rflags() & kSt) == (fl::PF | fl::ZF));
        CHECK(p.has_host(kCode));
        p.same("at the fault");
    }
    SUBCASE("third run of the block") {
        Marks m;
        auto code = assemble([&](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            g.mov(ecx, 3);
            Xbyak::Label top;
            g.L(top);
            m.mark(g);  // 0
            g.mov(eax, 1000);
            g.lea(r8d, ptr[rcx - 1]);
            g.add(r9, rax);
            g.mov(ptr[rsp - 16], r9);
            g.xor_(edx, edx);
            m.mark(g);  // 1: the DIV (divisor 0 in the third iteration)
            g.div(r8d);
            g.add(r10, rax);
            g.sub(ecx, 1);
            g.jnz(top);
            g.hlt();
        });
        Pair p(code);
        p.run(100);
        REQUIRE(p.rj == StopReason::Exception);
        Cpu& c = p.jit.cpu();
        CHECK(int(c.last_fault.vector) == kDE);
        CHECK(c.s.rip == m[1]);
        CHECK(c.icount == 1 + 9 * 2 + 5);
        CHECK(c.s.gpr[R9] == 3000);
        CHECK(test::peek64(p.jit, SnippetEnv::kStackTop - 16) == 3000);
        CHECK(c.s.gpr[R10] == 1000 / 2 + 1000 / 1);
        CHECK(p.has_host(m[0]));
        p.same("at the fault");
    }
}

// ---- 3. the instruction limit inside blocks with host code ---------------------------------------

TEST_CASE("jit: the instruction limit ends inside translated blocks: exact count and RIP for every limit" *
          doctest::skip(kNoJit)) {
    Marks m;
    auto code = mix_loop(3, m);
    // The whole run's length, from the interpreter.
    uint64_t total;
    {
        Pair p(code, mix_setup(5));
        p.run(100000);
        REQUIRE(p.rj == StopReason::Halt);
        total = p.ref.cpu().icount;
        p.same("whole run");
    }
    same_at_every_limit(code, total + 2, mix_setup(5));
    // Runs in short slices: after the first iteration the loop block has host code, and every slice
    // boundary cuts it somewhere else.
    for (uint64_t step : {1u, 2u, 3u, 5u, 7u, 11u, 31u, 32u, 33u}) {
        INFO("slices of " << step);
        Pair p(code, mix_setup(5));
        for (int k = 0; k < 1000 && !p.jit.cpu().halted; k++) {
            p.run(step);
            CHECK(p.jit.cpu().icount == std::min(uint64_t(k + 1) * step, total));
            p.same("after a slice");
        }
        CHECK(p.jit.cpu().halted);
        CHECK(p.has_host(m[0]));
    }
}

// ---- 4. self-modifying code ----------------------------------------------------------------------

TEST_CASE("jit: a translated block rewrites a later instruction of its own" * doctest::skip(kNoJit)) {
    // Each iteration stores EBX into the imm32 of the `mov eax, imm32` further down the same block;
    // the MOV must see the new value: EDX = 1 + 2 + 3 + 4 + 5. The first store (to a scratch dword
    // on the code page) fills the write TLB for the page before the loop block exists.
    struct Form {
        const char* name;
        int kind;
    };
    for (Form f : {Form{"native mov [rip+x], r32", 0}, Form{"native add [rip+x], imm", 1},
                   Form{"called xchg [rip+x], r32", 2}, Form{"native mov [r64], r32", 3}}) {
        INFO(f.name);
        Marks m;
        auto code = assemble([&](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            Xbyak::Label top, imm, scratch;
            g.mov(ptr[rip + scratch], eax);
            g.mov(ecx, 5);
            g.xor_(edx, edx);
            g.xor_(ebx, ebx);
            g.lea(rdi, ptr[rip + imm]);
            g.L(top);
            m.mark(g);  // 0: the loop block
            g.add(ebx, 1);
            g.mov(r8d, ebx);
            switch (f.kind) {
                case 0: g.mov(ptr[rip + imm], ebx); break;
                case 1: g.add(dword[rip + imm], 1); break;
                case 2: g.xchg(ptr[rip + imm], r8d); break;
                default: g.mov(ptr[rdi], ebx); break;
            }
            g.add(r9, rcx);
            g.db(0xb8);  // mov eax, imm32
            g.L(imm);
            g.dd(0);
            g.add(edx, eax);
            g.sub(ecx, 1);
            g.jnz(top);
            g.hlt();
            g.align(4);
            g.L(scratch);
            g.dd(0);
        });
        Pair p(code);
        p.run(10000);
        REQUIRE(p.rj == StopReason::Halt);
        CHECK(p.jit.cpu().s.gpr[RDX] == 15);
        CHECK(p.jit.cpu().s.gpr[R9] == 15);
        p.same("after the loop");
        // In the second iteration, the loop block (from `top`) has host code, the store is next.
        {
            Pair h(code);
            h.run(5 + 8 + 2);
            CHECK(h.has_host(m[0]));
            h.same("before the second store");
        }
        // Cut at every instruction too.
        const uint64_t total = p.ref.cpu().icount;
        same_at_every_limit(code, total - 1);
    }
}

TEST_CASE("jit: a block on another page rewrites a translated block" * doctest::skip(kNoJit)) {
    // The loop's `mov eax, imm32` is patched by a function on the next page after every run of the
    // block: EAX = 0, 3, 6, 9, 12 -> EDX = 30.
    constexpr uint64_t kPatcher = kCode + 0x1000;
    Marks m;
    auto main = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        Xbyak::Label top;
        g.mov(ecx, 5);
        g.xor_(edx, edx);
        g.xor_(ebx, ebx);
        g.L(top);
        m.mark(g);  // 0: the loop block, starting with the patched MOV
        g.db(0xb8);
        m.mark(g);  // 1: its imm32
        g.dd(0);
        g.add(edx, eax);
        g.add(ebx, 3);
        g.mov(r8d, uint32_t(kPatcher));
        g.call(r8);
        g.sub(ecx, 1);
        g.jnz(top);
        g.hlt();
    });
    auto patcher = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(r9d, uint32_t(m[1]));
        g.add(r10, 1);
        g.mov(ptr[r9], ebx);  // native store to the code page
        g.add(r10, 1);        // native work after it, in the same block
        g.lea(r11, ptr[r10 + r9]);
        g.ret();
    });
    REQUIRE(main.size() < 0x1000);
    Pair p(main, [&](SnippetEnv& e) { REQUIRE(e.poke(kPatcher, patcher.data(), patcher.size())); });
    // Up to the CALL of the third iteration: 3 + 5 + 6 + 2 (the first iteration, the patcher
    // included), 5 + 6 + 2, 5: the loop block (from `top`) is translated, the third call patches it.
    p.run(3 + 13 + 13 + 5);
    CHECK(p.jit.cpu().s.rip == kPatcher);
    CHECK(p.has_host(m[0]));
    CHECK(p.has_host(kPatcher));
    p.same("before the third patch");
    p.run(10000);
    REQUIRE(p.rj == StopReason::Halt);
    CHECK(p.jit.cpu().s.gpr[RDX] == 30);
    CHECK(p.jit.cpu().s.gpr[R10] == 10);
    p.same("after the loop");
}

// ---- 5. slow-path memory accesses inside translated blocks ---------------------------------------

TEST_CASE("jit: TLB misses and conflicts in a translated loop" * doctest::skip(kNoJit)) {
    // 300 pages per pass, 2 passes: more pages than the TLB has entries, so the inline hit path
    // misses often (cold and conflict misses) and the handler runs out of line.
    Marks m;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        Xbyak::Label outer, top;
        g.mov(r12d, 2);
        g.L(outer);
        g.mov(esi, uint32_t(kData));
        g.mov(ecx, 300);
        g.L(top);
        m.mark(g);  // 0
        g.mov(rax, ptr[rsi + 0x7f8]);
        g.add(rbx, rax);
        g.mov(ptr[rsi + 0x10], rbx);
        g.movzx(edx, byte[rsi + 1]);
        g.add(rbx, rdx);
        g.xor_(ptr[rsi + 0x20], rdx);
        g.movsx(r8d, word[rsi + 0xffe]);
        g.sub(r9d, r8d);
        g.add(rsi, 0x1000);
        g.sub(ecx, 1);
        g.jnz(top);
        g.sub(r12d, 1);
        g.jnz(outer);
        g.hlt();
    });
    Pair p(code, [](SnippetEnv& e) { fill_random(e, kData, 300 * 0x1000, 3); });
    p.run(100000);
    REQUIRE(p.rj == StopReason::Halt);
    CHECK(p.has_host(m[0]));
    p.same("after the loops");
}

TEST_CASE("jit: loads and stores that cross a page boundary inside a translated block" * doctest::skip(kNoJit)) {
    constexpr uint64_t kB = kData + 0x1000;  // the boundary
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(esi, uint32_t(kB));
        g.mov(rax, ptr[rsi - 3]);  // crosses
        g.add(rbx, rax);
        g.mov(ptr[rsi - 5], rbx);  // crosses
        g.movzx(ecx, word[rsi - 1]);
        g.movsx(rdx, word[rsi - 1]);
        g.movsxd(r8, dword[rsi - 2]);
        g.mov(r9d, ptr[rsi - 1]);
        g.add(r9, rcx);
        g.mov(ptr[rsi - 2], r9d);
        g.add(ptr[rsi - 4], rdx);  // ALU memory form, crossing
        g.mov(r10, ptr[rsi - 8]);  // ends at the boundary: no crossing
        g.mov(r11, ptr[rsi - 7]);  // crosses by one byte
        g.mov(ptr[rsi - 1], r10d);
        g.mov(r12, ptr[rsi]);
        g.hlt();
    });
    // The page after the boundary maps a physical page that is not the next one: an access that
    // crossed through the first page's host address would read or write the wrong bytes.
    constexpr uint64_t kPhys2 = kData + 0x8000;
    auto setup = [](SnippetEnv& e) {
        set_pte(e, kB, kPhys2, 3);
        uint8_t bytes[32];
        for (int k = 0; k < 32; k++) bytes[k] = uint8_t(0x80 + k);  // byte at linear kB - 16 + k
        REQUIRE(e.poke(kB - 16, bytes, 16));
        REQUIRE(e.poke(kPhys2, bytes + 16, 16));
        e.cpu().s.gpr[RBX] = 0x1111111111111111ull;
    };
    Pair p(code, setup);
    p.run(1000);
    REQUIRE(p.rj == StopReason::Halt);
    Cpu& c = p.jit.cpu();
    // Little-endian reads of the pattern (bytes 0x80 + k at kB - 16 + k).
    CHECK(c.s.gpr[RAX] == 0x94939291908f8e8dull);                        // bytes kB-3 .. kB+4
    CHECK(c.s.gpr[RBX] == 0x1111111111111111ull + 0x94939291908f8e8dull);  // stored at kB-5
    CHECK(c.s.gpr[RCX] == 0xa3a2);                                        // its bytes 4 and 5
    CHECK(p.has_host(kCode));
    p.same("at HLT");
}

TEST_CASE("jit: a page-crossing native load whose second page is not present" * doctest::skip(kNoJit)) {
    constexpr uint64_t kB = kData + 0x1000;
    for (int store = 0; store < 2; store++) {
        INFO((store ? "store" : "load"));
        Marks m;
        auto code = assemble([&](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            g.mov(esi, uint32_t(kB));
            g.mov(rax, ptr[rsi - 0x100]);
            g.add(rbx, rax);
            m.mark(g);  // 0: the crossing access
            if (store)
                g.mov(ptr[rsi - 2], rbx);
            else
                g.mov(rcx, ptr[rsi - 2]);
            g.add(rbx, 1);
            g.hlt();
        });
        Pair p(code, [](SnippetEnv& e) {
            fill_random(e, kData, 0x1000, 5);
            e.set_page_present(kB, false);
        });
        p.run(100);
        REQUIRE(p.rj == StopReason::Exception);
        Cpu& c = p.jit.cpu();
        CHECK(int(c.last_fault.vector) == kPF);
        CHECK(c.last_fault.error_code == (store ? 2u : 0u));
        CHECK(c.s.cr2 == kB);  // the first byte of the second page
        CHECK(c.s.rip == m[0]);
        CHECK(c.icount == 3);
        CHECK(p.has_host(kCode));
        p.same("at the fault");
    }
}

TEST_CASE("jit: MMIO accesses (no TLB entry) inside a translated loop" * doctest::skip(kNoJit)) {
    // Linear page kMmio maps a physical address beyond RAM: FlatBus reads give all ones, writes are
    // dropped.
    constexpr uint64_t kMmio = 0x300000;
    Marks m;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        Xbyak::Label top;
        g.mov(esi, uint32_t(kMmio));
        g.mov(edi, uint32_t(kData));
        g.mov(r12d, 3);
        g.L(top);
        m.mark(g);  // 0
        g.mov(rax, ptr[rsi]);
        g.add(rbx, rax);
        g.mov(ptr[rsi + 8], rbx);
        g.mov(ecx, ptr[rsi + 4]);
        g.movzx(edx, byte[rsi]);
        g.lea(r8, ptr[rax + rcx]);
        g.add(ptr[rsi + 16], r8);
        g.mov(ptr[rdi + r12 * 8], r8);  // RAM
        g.sub(r12d, 1);
        g.jnz(top);
        g.hlt();
    });
    Pair p(code, [](SnippetEnv& e) { set_pte(e, kMmio, 0x10000000, 3); });
    p.run(1000);
    REQUIRE(p.rj == StopReason::Halt);
    Cpu& c = p.jit.cpu();
    CHECK(c.s.gpr[RAX] == ~0ull);
    CHECK(c.s.gpr[RCX] == 0xffffffffull);
    CHECK(c.s.gpr[RDX] == 0xff);
    CHECK(c.s.gpr[RBX] == uint64_t(-3));
    CHECK(test::peek64(p.jit, kData + 8) == 0xfffffffeull);
    CHECK(p.has_host(m[0]));
    p.same("at HLT");
}

TEST_CASE("jit: FS/GS bases apply to native accesses, DS/ES/SS bases do not (64-bit mode)" *
          doctest::skip(kNoJit)) {
    // FS base 0x1000, GS base 0x2000: the offsets alone address kData's page, which the TLB holds
    // (read and write) when the FS/GS accesses run, so a missing base would hit it.
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(esi, uint32_t(kData));
        g.mov(r10, ptr[rsi]);
        g.mov(ptr[rsi + 0x80], r10);
        g.db(0x64);  // FS
        g.mov(rax, ptr[rsi + 8]);
        g.db(0x65);  // GS
        g.mov(ptr[rsi + 0x10], rax);
        g.db(0x65);  // GS
        g.movzx(ecx, word[rsi + 0x10]);
        g.db(0x65);  // GS
        g.add(ptr[rsi + 0x10], rcx);
        g.db(0x64);  // FS
        g.add(rcx, ptr[rsi + 0x18]);
        g.mov(rdx, ptr[rsi]);  // DS base ignored
        g.db(0x26);            // ES: ignored
        g.mov(ptr[rsi + 0x18], rdx);
        g.db(0x3e);  // DS
        g.mov(r8, ptr[rsi + 0x2010]);
        g.db(0x36);  // SS
        g.mov(r9, ptr[rsi + 0x1018]);
        g.hlt();
    });
    Pair p(code, [](SnippetEnv& e) {
        fill_random(e, kData, 0x3000, 9);
        e.cpu().s.seg[FS].base = 0x1000;
        e.cpu().s.seg[GS].base = 0x2000;
        for (unsigned s : {unsigned(DS), unsigned(ES), unsigned(SS)}) e.cpu().s.seg[s].base = 0x40000;
    });
    const uint64_t v = test::peek64(p.ref, kData + 0x1008), w = test::peek64(p.ref, kData + 0x1018);
    p.run(100);
    REQUIRE(p.rj == StopReason::Halt);
    Cpu& c = p.jit.cpu();
    CHECK(c.s.gpr[RAX] == v);
    CHECK(c.s.gpr[RCX] == (v & 0xffff) + w);
    CHECK(test::peek64(p.jit, kData + 0x2010) == v + (v & 0xffff));
    CHECK(c.s.gpr[R8] == v + (v & 0xffff));
    CHECK(c.s.gpr[R9] == w);
    CHECK(c.s.gpr[RDX] == c.s.gpr[R10]);
    CHECK(test::peek64(p.jit, kData + 0x18) == c.s.gpr[RDX]);
    CHECK(p.has_host(kCode));
    p.same("at HLT");
}

TEST_CASE("jit: RIP-relative and moffs native accesses in a block entered in its middle" * doctest::skip(kNoJit)) {
    // The first pass enters the loop body at `mid` (a jump into it), later passes at `top`: blocks
    // start at different addresses, and RIP-relative operands must follow. (`var` is on the code
    // page: only read, a store would retire the page's blocks.)
    Marks m;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        Xbyak::Label top, mid, var;
        g.mov(ecx, 4);
        g.jmp(mid);
        g.L(top);
        m.mark(g);  // 0
        g.add(rbx, ptr[rip + var]);
        g.lea(r8, ptr[rip + var]);
        g.L(mid);
        m.mark(g);  // 1
        g.mov(rdx, ptr[rip + var]);
        g.add(r9, rdx);
        test::emit(g, {0x48, 0xa1});  // mov rax, [moffs64]
        g.dq(kData + 0x30);
        g.add(rax, rcx);
        test::emit(g, {0x48, 0xa3});  // mov [moffs64], rax
        g.dq(kData + 0x30);
        test::emit(g, {0x67, 0x8b, 0x04, 0x25});  // mov eax, [disp32] with a 32-bit address
        g.dd(uint32_t(kData + 0x40));
        g.add(r10, rax);
        g.sub(ecx, 1);
        g.jnz(top);
        g.hlt();
        g.align(8);
        g.L(var);
        m.mark(g);  // 2
        g.dq(0x1234);
    });
    Pair p(code, [](SnippetEnv& e) { fill_random(e, kData, 0x100, 13); });
    const uint64_t v30 = test::peek64(p.ref, kData + 0x30);
    const uint64_t v40 = test::peek64(p.ref, kData + 0x40);
    p.run(1000);
    REQUIRE(p.rj == StopReason::Halt);
    Cpu& c = p.jit.cpu();
    CHECK(c.s.gpr[RBX] == 3 * 0x1234);  // passes 2..4 start at `top`
    CHECK(c.s.gpr[R9] == 4 * 0x1234);
    CHECK(c.s.gpr[R8] == m[2]);
    CHECK(test::peek64(p.jit, kData + 0x30) == v30 + 4 + 3 + 2 + 1);
    CHECK(c.s.gpr[R10] == 4 * uint64_t(uint32_t(v40)));
    CHECK(p.has_host(m[0]));
    CHECK(p.has_host(m[1]));
    p.same("at HLT");
}

// ---- 6. exit requests in the middle of a block ---------------------------------------------------

TEST_CASE("jit: instructions that request a block exit, with native work after each" * doctest::skip(kNoJit)) {
    constexpr uint64_t kRo = kData + 0x3000;  // read-only page: written once CR0.WP is clear
    Marks m;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        Xbyak::Label scratch;
        g.mov(esi, uint32_t(kData));
        g.mov(edi, uint32_t(kRo));
        g.mov(rax, ptr[rsi]);
        g.add(rbx, rax);
        // POPFQ toggling AC (exit request: RFLAGS.AC changed)
        g.pushf();
        g.pop(rax);
        g.xor_(eax, 0x40000);
        g.push(rax);
        g.popf();
        g.mov(r11, ptr[rsi + 32]);
        g.add(r11, rbx);
        // STI: interrupt shadow (exit request); nothing is pending
        g.sti();
        g.mov(r12, ptr[rsi + 40]);
        g.add(r12, r11);
        g.mov(ptr[rsi + 0x48], r12);
        // MOV SS: interrupt shadow
        g.mov(eax, 0x10);
        g.mov(ss, eax);
        g.mov(r13, ptr[rsi + 48]);
        g.add(r13, r12);
        // a store to this code page by a native MOV (the page has blocks: exit request)
        g.mov(ptr[rip + scratch], r13d);
        g.mov(r14, ptr[rsi + 56]);
        g.add(r14, r13);
        g.mov(ptr[rsi + 0x50], r14);
        // WRMSR IA32_FS_BASE, then an FS-relative native load
        g.mov(ecx, 0xc0000100);
        g.mov(eax, uint32_t(kData + 0x40));
        g.xor_(edx, edx);
        g.wrmsr();
        test::emit(g, {0x64, 0x4c, 0x8b, 0x04, 0x25, 0, 0, 0, 0});  // mov r8, fs:[0]
        g.add(r8, rbx);
        // MOV CR3 (TLB flush), then native accesses that miss
        test::emit(g, {0x0f, 0x20, 0xd8});  // mov rax, cr3
        test::emit(g, {0x0f, 0x22, 0xd8});  // mov cr3, rax
        g.mov(r9, ptr[rsi + 8]);
        g.mov(ptr[rsi + 16], r9);
        // INVLPG
        test::emit(g, {0x0f, 0x01, 0x3e});  // invlpg [rsi]
        g.mov(r10, ptr[rsi + 24]);
        g.add(r10, r9);
        // MOV CR0 clearing WP: a supervisor store to the read-only page is allowed
        test::emit(g, {0x0f, 0x20, 0xc0});  // mov rax, cr0
        g.and_(eax, ~uint32_t(cr0::WP));
        test::emit(g, {0x0f, 0x22, 0xc0});  // mov cr0, rax
        g.mov(ptr[rdi + 8], r10);
        g.mov(r15, ptr[rdi + 8]);
        g.add(r15, 1);
        g.hlt();
        g.align(4);
        g.L(scratch);
        g.dd(0);
    });
    auto setup = [](SnippetEnv& e) {
        fill_random(e, kData, 0x1000, 17);
        set_pte(e, kRo, kRo, 1);
    };
    Pair p(code, setup);
    // Up to the store to the code page: the first block, with POPFQ, STI and MOV SS in its middle
    // (WRMSR, MOV CR and INVLPG end their blocks), has host code; the store retires it.
    p.run(19);
    CHECK(p.has_host(kCode));
    CHECK(p.jit.cpu().s.gpr[R13] == p.jit.cpu().s.gpr[R12] + test::peek64(p.jit, kData + 48));
    p.same("before the store to the code page");
    p.run(1000);
    REQUIRE(p.rj == StopReason::Halt);
    Cpu& c = p.jit.cpu();
    CHECK(c.s.gpr[R8] == test::peek64(p.jit, kData + 0x40) + c.s.gpr[RBX]);
    CHECK(test::peek64(p.jit, kRo + 8) == c.s.gpr[R10]);
    CHECK(c.s.gpr[R15] == c.s.gpr[R10] + 1);
    CHECK((c.rflags() & fl::AC) != 0);
    p.same("at HLT");
    // Every cut, too.
    const uint64_t total = p.ref.cpu().icount;
    same_at_every_limit(code, total - 1, setup);
}

// ---- 7. 32-bit protected mode --------------------------------------------------------------------

// Code that means the same in 32-bit mode as xbyak writes it for 64-bit mode: 32-bit operands, no
// REX prefix (no r8-r15, no 64-bit operations), memory operands based on rsi/rdi/rcx (no 0x67
// prefix: [esi] etc. in 32-bit mode).
TEST_CASE("jit: 32-bit protected mode: register forms native, memory forms called" * doctest::skip(kNoJit)) {
    for (uint32_t iterations : {1u, 4u, 20u}) {
        INFO("iterations " << iterations);
        Marks m;
        auto code = assemble([&](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            Xbyak::Label top;
            g.mov(esi, uint32_t(kData));
            g.mov(edi, uint32_t(kData + 0x800));
            g.mov(ecx, iterations);
            g.L(top);
            m.mark(g);  // 0
            g.mov(eax, ptr[rsi]);
            g.add(eax, ecx);
            g.lea(edx, ptr[rax + rcx * 4 + 0x10]);
            g.shl(edx, 3);
            g.imul(edx, eax);
            g.push(rdx);
            g.mov(ptr[rsi + 4], edx);
            g.movzx(ebx, byte[rsi + 3]);
            g.movsx(ebp, word[rsi + 5]);
            g.xchg(ebx, ebp);
            g.pop(rbx);
            g.xor_(ebx, eax);
            g.sub(ebp, ebx);
            g.add(ptr[rsi + 8], ebp);
            g.cmp(eax, ptr[rsi + 8]);
            g.adc(ebx, eax);
            g.mov(ptr[rdi + rcx * 4], eax);
            g.test(ebx, 3);
            g.setz(al);
            g.pushf();
            g.pop(rbp);
            g.or_(ebp, 0x10);
            g.mov(ptr[rsi], ebp);
            g.sub(ecx, 1);
            g.jnz(top);
            g.hlt();
        });
        Pair p(code, [](SnippetEnv& e) { fill_random(e, kData, 0x1000, 21); }, 32);
        REQUIRE(p.jit.cpu().mode() == Mode::Prot32);
        // The code decodes as intended in 32-bit mode: the loop's first instruction is a 2-byte
        // `mov eax, [esi]`.
        {
            const uint8_t* b = code.data() + (m[0] - kCode);
            CHECK(cpu::disassemble(b, code.size(), Mode::Prot32, m[0]) == "mov eax, [esi]");
        }
        p.run(100000);
        CHECK(p.rj == StopReason::Halt);
        CHECK(p.has_host(iterations > 1 ? m[0] : kCode));  // the loop block starts at the second
        p.same("at HLT");
        if (iterations == 4) {
            const uint64_t total = p.ref.cpu().icount;
            same_at_every_limit(code, total - 1, [](SnippetEnv& e) { fill_random(e, kData, 0x1000, 21); }, 32);
        }
    }
}

TEST_CASE("jit: 32-bit protected mode: #DE after native register instructions" * doctest::skip(kNoJit)) {
    Marks m;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(eax, 100);
        g.mov(ebx, 3);
        g.lea(ecx, ptr[rbx + rbx * 2 - 9]);  // 0
        g.add(ebx, eax);
        g.xor_(edx, edx);
        m.mark(g);  // 0: the DIV
        g.div(ecx);
        g.hlt();
    });
    Pair p(code, {}, 32);
    p.run(100);
    REQUIRE(p.rj == StopReason::Exception);
    Cpu& c = p.jit.cpu();
    CHECK(int(c.last_fault.vector) == kDE);
    CHECK(c.s.rip == m[0]);
    CHECK(c.icount == 5);
    CHECK(c.s.gpr[RBX] == 103);
    CHECK(c.s.gpr[RCX] == 0);
    CHECK(p.has_host(kCode));
    p.same("at the fault");
}

// ---- more block-level cases ----------------------------------------------------------------------

TEST_CASE("jit: SMAP: STAC/CLAC switch the TLB context native accesses use, mid-block" * doctest::skip(kNoJit)) {
    // kUser is a user page (U at every level); with CR4.SMAP a supervisor access to it needs
    // RFLAGS.AC = 1 (SDM Vol. 3, 4.6.1): the load after CLAC faults with #PF (present, read).
    constexpr uint64_t kUser = kData + 0x5000;
    Marks m;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(esi, uint32_t(kUser));
        g.mov(edi, uint32_t(kData));
        g.mov(rax, ptr[rdi]);  // a supervisor page: fine either way
        test::emit(g, {0x0f, 0x01, 0xcb});  // stac
        g.mov(rbx, ptr[rsi]);  // allowed
        g.add(rbx, rax);
        g.mov(ptr[rsi + 8], rbx);
        g.mov(rcx, ptr[rdi + 8]);
        test::emit(g, {0x0f, 0x01, 0xca});  // clac
        g.mov(rdx, ptr[rdi + 16]);
        g.add(rdx, rcx);
        m.mark(g);  // 0: faults
        g.mov(r8, ptr[rsi + 8]);
        g.hlt();
    });
    Pair p(code, [](SnippetEnv& e) {
        fill_random(e, kData, 0x6000, 23);
        uint64_t v;
        for (uint64_t a : {uint64_t(0x1000), uint64_t(0x2000), uint64_t(0x3000 + 8)}) {  // PML4E, PDPTE, PDE 1
            REQUIRE(e.peek(a, &v, 8));
            v |= 4;
            REQUIRE(e.poke(a, &v, 8));
        }
        set_pte(e, kUser, kUser, 7);
        e.cpu().s.cr4 |= cr4::SMAP;
        e.cpu().update_mode();
        e.cpu().tlb_flush();
    });
    p.run(100);
    REQUIRE(p.rj == StopReason::Exception);
    Cpu& c = p.jit.cpu();
    CHECK(int(c.last_fault.vector) == kPF);
    CHECK(c.last_fault.error_code == 1);
    CHECK(c.s.cr2 == kUser + 8);
    CHECK(c.s.rip == m[0]);
    CHECK(c.icount == 11);
    CHECK(test::peek64(p.jit, kUser + 8) == c.s.gpr[RBX]);
    CHECK(p.has_host(kCode));
    p.same("at the fault");
}

TEST_CASE("jit: 32-bit addresses in 64-bit mode wrap; a non-canonical native access faults" * doctest::skip(kNoJit)) {
    SUBCASE("address-size prefix") {
        auto code = assemble([&](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            g.mov(rsi, 0xabcd000000000000ull | (kData - 0x100));
            g.mov(rcx, 0x1234000000000000ull | 0x40000040ull);  // * 4 = 0x100000100: wraps at 4 GiB
            g.mov(rax, ptr[esi + ecx * 4 + 0x10]);                // kData + 0x10
            g.add(rbx, rax);
            g.mov(ptr[esi + ecx * 4 + 0x18], rbx);
            g.lea(rdx, ptr[esi + ecx * 4 + 0x18]);
            g.movzx(r8d, word[esi + ecx * 4 + 0x12]);
            g.db(0x64);  // FS: the base is added to the truncated offset
            g.mov(r9, ptr[esi + 0x120]);
            g.hlt();
        });
        Pair p(code, [](SnippetEnv& e) {
            fill_random(e, kData, 0x1000, 29);
            e.cpu().s.seg[FS].base = 0x100;
        });
        const uint64_t v = test::peek64(p.ref, kData + 0x10);
        p.run(100);
        REQUIRE(p.rj == StopReason::Halt);
        Cpu& c = p.jit.cpu();
        CHECK(c.s.gpr[RAX] == v);
        CHECK(test::peek64(p.jit, kData + 0x18) == c.s.gpr[RBX]);
        CHECK(c.s.gpr[RDX] == kData + 0x18);
        CHECK(c.s.gpr[R8] == ((v >> 16) & 0xffff));
        CHECK(c.s.gpr[R9] == test::peek64(p.jit, kData + 0x120));
        CHECK(p.has_host(kCode));
        p.same("at HLT");
    }
    SUBCASE("non-canonical") {
        for (int form = 0; form < 3; form++) {
            INFO("form " << form);
            Marks m;
            auto code = assemble([&](Xbyak::CodeGenerator& g) {
                using namespace Xbyak::util;
                g.mov(rsi, 0x0000800000000000ull);  // the first non-canonical address (4-level paging)
                g.mov(eax, 7);
                g.add(rbx, rax);
                m.mark(g);  // 0
                if (form == 0)
                    g.mov(rcx, ptr[rsi + 8]);
                else if (form == 1)
                    g.mov(ptr[rsi + 0x10], rbx);
                else
                    g.add(ptr[rsi], ebx);
                g.hlt();
            });
            Pair p(code);
            p.run(100);
            REQUIRE(p.rj == StopReason::Exception);
            Cpu& c = p.jit.cpu();
            CHECK(int(c.last_fault.vector) == kGP);
            CHECK(c.last_fault.error_code == 0);
            CHECK(c.s.rip == m[0]);
            CHECK(c.icount == 3);
            CHECK(c.s.gpr[RBX] == 7);
            CHECK(p.has_host(kCode));
            p.same("at the fault");
        }
    }
}

TEST_CASE("jit: a trap (INT3) and CPUID after native instructions" * doctest::skip(kNoJit)) {
    Marks m;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(eax, 0);
        g.add(rbx, 5);
        g.lea(rbp, ptr[rbx + rbx]);
        g.cpuid();  // called; writes EAX..EDX
        g.add(rax, rbp);
        g.mov(r8, rbp);
        m.mark(g);  // 0
        g.int3();
        g.hlt();
    });
    Pair p(code);
    p.run(100);
    REQUIRE(p.rj == StopReason::Exception);
    Cpu& c = p.jit.cpu();
    CHECK(int(c.last_fault.vector) == kBP);
    CHECK(c.s.gpr[R8] == 10);
    CHECK(p.has_host(kCode));
    p.same("at the trap");
}

TEST_CASE("jit: real-address mode with operand- and address-size prefixes" * doctest::skip(kNoJit)) {
    // 16-bit code (raw bytes): 32-bit register forms (66h) are native, 16-bit ones and every memory
    // form are called; LEA with a 32-bit address (67h) is native.
    const std::vector<uint8_t> code = {
        0x66, 0xb8, 0x78, 0x56, 0x34, 0x12,        // mov eax, 0x12345678
        0x66, 0xbb, 0xf0, 0xde, 0xbc, 0x9a,        // mov ebx, 0x9abcdef0
        0xb9, 0x05, 0x00,                          // mov cx, 5
        0x66, 0x01, 0xd8,                          // top: add eax, ebx
        0x66, 0x67, 0x8d, 0x54, 0x48, 0x10,        // lea edx, [eax + ecx*2 + 0x10]
        0x66, 0x31, 0xd3,                          // xor ebx, edx
        0x01, 0xc6,                                // add si, ax (16-bit: called)
        0x89, 0x1e, 0x00, 0x20,                    // mov [0x2000], bx
        0x66, 0x03, 0x1e, 0x00, 0x20,              // add ebx, [0x2000]
        0x66, 0x39, 0xc3,                          // cmp ebx, eax
        0x66, 0x11, 0xc7,                          // adc edi, eax
        0x49,                                      // dec cx
        0x75, 0xe0,                                // jnz top
        0xf4,                                      // hlt
    };
    Pair p(code, {}, 16);
    REQUIRE(p.jit.cpu().mode() == Mode::Real);
    {
        const uint64_t top = SnippetEnv::kCodeBase16 + 15;
        CHECK(cpu::disassemble(code.data() + 15, code.size() - 15, Mode::Real, 15) == "add eax, ebx");
        CHECK(cpu::disassemble(code.data() + code.size() - 3, 3, Mode::Real, code.size() - 3) == "jnz 0x000F");
        p.run(1000);
        REQUIRE(p.rj == StopReason::Halt);
        CHECK(p.has_host(top));
        p.same("at HLT");
    }
    const uint64_t total = p.ref.cpu().icount;
    same_at_every_limit(code, total - 1, {}, 16);
}

TEST_CASE("jit: Jcc ending a block, all 16 conditions after native, memory and called flag producers" *
          doctest::skip(kNoJit)) {
    // For each condition: load the operands, produce flags, Jcc. Taken: set bit cc of R15; not
    // taken: bit cc of R14. Each Jcc ends a block whose host code evaluates the condition (from the
    // host flags right after a native register ALU operation, else from the lazy flags).
    const uint64_t pairs[][2] = {{0, 0},
                                 {1, 2},
                                 {2, 1},
                                 {~0ull, 1},
                                 {0x8000000000000000ull, 1},
                                 {0x7fffffffffffffffull, ~0ull},
                                 {0x80000000ull, 1},
                                 {0x7fffffffull, 0xffffffffull},
                                 {5, 5},
                                 {uint64_t(-5), 3},
                                 {0xff, 0x1}};
    const char* producers[] = {"cmp r64, r64",  "sub r32, r32", "test r64, r64",     "cmp r64, [m]",
                               "cmp; mov",      "add r8, r8",   "and r32, imm32",    "xor r64, r64 (same)",
                               "add [m], r32"};
    for (int prod = 0; prod < 9; prod++) {
        for (const auto& ab : pairs) {
            INFO(std::string(producers[prod]) << " a=0x" << std::hex << ab[0] << " b=0x" << ab[1]);
            auto code = assemble([&](Xbyak::CodeGenerator& g) {
                using namespace Xbyak::util;
                g.mov(edi, uint32_t(kData));
                g.xor_(r14d, r14d);
                g.xor_(r15d, r15d);
                for (int cc = 0; cc < 16; cc++) {
                    Xbyak::Label taken, next;
                    g.mov(rax, ab[0]);
                    g.mov(rbx, ab[1]);
                    g.mov(ptr[rdi], rbx);
                    switch (prod) {
                        case 0: g.cmp(rax, rbx); break;
                        case 1: g.sub(eax, ebx); break;
                        case 2: g.test(rax, rbx); break;
                        case 3: g.cmp(rax, ptr[rdi]); break;
                        case 4: g.cmp(rax, rbx), g.mov(rcx, rax); break;
                        case 5: g.add(al, bl); break;
                        case 6: g.and_(eax, 0x80000001); break;
                        case 7: g.xor_(rbx, rbx); break;
                        default: g.add(ptr[rdi], eax); break;
                    }
                    const auto near = Xbyak::CodeGenerator::T_NEAR;
                    switch (cc) {
                        case 0: g.jo(taken, near); break;
                        case 1: g.jno(taken, near); break;
                        case 2: g.jb(taken, near); break;
                        case 3: g.jnb(taken, near); break;
                        case 4: g.jz(taken, near); break;
                        case 5: g.jnz(taken, near); break;
                        case 6: g.jbe(taken, near); break;
                        case 7: g.ja(taken, near); break;
                        case 8: g.js(taken, near); break;
                        case 9: g.jns(taken, near); break;
                        case 10: g.jp(taken, near); break;
                        case 11: g.jnp(taken, near); break;
                        case 12: g.jl(taken, near); break;
                        case 13: g.jge(taken, near); break;
                        case 14: g.jle(taken, near); break;
                        default: g.jg(taken, near); break;
                    }
                    g.bts(r14, cc);
                    g.jmp(next, Xbyak::CodeGenerator::T_NEAR);
                    g.L(taken);
                    g.bts(r15, cc);
                    g.L(next);
                }
                g.hlt();
            });
            Pair p(code);
            p.run(10000);
            REQUIRE(p.rj == StopReason::Halt);
            const uint64_t t = p.jit.cpu().s.gpr[R15], n = p.jit.cpu().s.gpr[R14];
            CHECK((t ^ n) == 0xffff);                   // each condition either taken or not
            CHECK(((t ^ (t >> 1)) & 0x5555) == 0x5555);  // cc and cc ^ 1 are opposites
            CHECK(p.has_host(kCode));  // ends with the first Jcc
            p.same("at HLT");
        }
    }
}

// ---- 10. far transfers that change the mode ------------------------------------------------------

// RETF, far JMP/CALL through memory and IRETQ between 64-bit and compatibility mode, in a loop: the
// mnemonic of a far RET is RET, of a far JMP/CALL JMP/CALL, but they load CS (here: the mode), so
// host code must run their handlers, never a near branch's native form (issue 21). Each stop counts
// itself with an instruction that only does so in its own mode: `inc esi` (46h, a REX prefix in
// 64-bit mode) in compatibility mode, `add r8, 1` (REX.W+B) in 64-bit mode. The far pointers are in
// memory at kData (their targets are known once the code is assembled). sys/far64.s does the same
// on the board with the immediate forms (EA, 9A), IRETD and the 32-bit RETF imm16 too.
constexpr uint16_t kCs64 = 0x08, kDs = 0x10, kCs32 = 0x18;  // the snippet's GDT
constexpr uint32_t kFarIterations = 100;

struct FarProgram {
    Marks m;
    std::vector<uint8_t> code;
    Setup setup;
};

static FarProgram far_transfer_program() {
    constexpr uint32_t kIterations = kFarIterations;
    constexpr uint32_t kPL2 = kData, kPC3 = kData + 8, kPL5 = kData + 16, kPL7 = kData + 24,
                       kPL9 = kData + 32, kPC6 = kData + 40, kPL11 = kData + 56;  // far pointers
    auto disp32 = [](Xbyak::CodeGenerator& g, uint32_t v) {
        for (int k = 0; k < 4; k++) g.db(uint8_t(v >> (8 * k)));
    };
    // Marks (in code order): 0 top (64-bit), 1 c1 (32), 2 l2 (64), 3 c4 (32), 4 l7 (64), 5 c8 (32),
    // 6 l9 (64), 7 c6 (32), 8 l11 (64), 9 c3 (32), 10 l5 (64).
    FarProgram p;
    Marks& m = p.m;
    p.code = assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        Xbyak::Label top, c1, c3, c4, l5, c8, c6;
        g.mov(ebp, kIterations);
        g.xor_(esi, esi);
        g.xor_(r8d, r8d);
        g.L(top);
        m.mark(g);  // 0
        // 64 -> 32: RETF with REX.W.
        g.lea(rax, ptr[rip + c1]);
        g.push(kCs32);
        g.push(rax);
        test::emit(g, {0x48, 0xcb});  // retfq
        g.L(c1);
        m.mark(g);                    // 1
        test::emit(g, {0x46});        // inc esi
        test::emit(g, {0xff, 0x2d});  // jmp far [kPL2] (m16:32) -> l2
        disp32(g, kPL2);
        m.mark(g);  // 2: l2
        g.add(r8, 1);
        test::emit(g, {0xff, 0x1c, 0x25});  // call far [kPC3] (m16:32) -> c3, back by RETF (CB)
        disp32(g, kPC3);
        g.add(r8, 1);
        // 64 -> 32: RETF imm16 with REX.W, two parameters dropped.
        g.lea(rax, ptr[rip + c4]);
        g.push(0x1111);
        g.push(0x2222);
        g.push(kCs32);
        g.push(rax);
        test::emit(g, {0x48, 0xca, 0x10, 0x00});  // retfq 16
        g.L(c4);
        m.mark(g);                    // 3
        test::emit(g, {0x46});        // inc esi
        test::emit(g, {0xff, 0x1d});  // call far [kPL5] (m16:32) -> l5 (64-bit), back by RETF (CB)
        disp32(g, kPL5);
        test::emit(g, {0x46});        // inc esi
        test::emit(g, {0xff, 0x2d});  // jmp far [kPL7] -> l7
        disp32(g, kPL7);
        m.mark(g);  // 4: l7
        g.add(r8, 1);
        // 64 -> 32: IRETQ at CPL 0 (pops SS:RSP too).
        g.mov(rax, rsp);
        g.push(kDs);
        g.push(rax);
        g.pushf();
        g.push(kCs32);
        g.lea(rax, ptr[rip + c8]);
        g.push(rax);
        test::emit(g, {0x48, 0xcf});  // iretq
        g.L(c8);
        m.mark(g);                    // 5
        test::emit(g, {0x46});        // inc esi
        test::emit(g, {0xff, 0x2d});  // jmp far [kPL9] -> l9
        disp32(g, kPL9);
        m.mark(g);  // 6: l9
        g.add(r8, 1);
        test::emit(g, {0x48, 0xff, 0x2c, 0x25});  // jmp far [kPC6] with REX.W (m16:64) -> c6
        disp32(g, kPC6);
        g.L(c6);
        m.mark(g);                    // 7
        test::emit(g, {0x46});        // inc esi
        test::emit(g, {0xff, 0x2d});  // jmp far [kPL11] -> l11
        disp32(g, kPL11);
        m.mark(g);  // 8: l11
        g.add(r8, 1);
        g.sub(ebp, 1);
        g.jnz(top, Xbyak::CodeGenerator::T_NEAR);
        g.hlt();
        // Far CALL targets.
        g.L(c3);
        m.mark(g);                    // 9
        test::emit(g, {0x46, 0xcb});  // inc esi; retf (32-bit)
        g.L(l5);
        m.mark(g);  // 10
        g.add(r8, 1);
        test::emit(g, {0xcb});  // retf (32-bit operand size in 64-bit mode)
    });
    REQUIRE(m.at.size() == 11);
    p.setup = [m](SnippetEnv& e) {
        e.cpu().s.gdtr.limit = 31;  // the snippet's 32-bit code segment 0x18 too
        auto far32 = [&](uint64_t at, uint64_t off, uint16_t sel) {
            uint32_t o = uint32_t(off);
            REQUIRE(e.poke(at, &o, 4));
            REQUIRE(e.poke(at + 4, &sel, 2));
        };
        far32(kPL2, m[2], kCs64);
        far32(kPC3, m[9], kCs32);
        far32(kPL5, m[10], kCs64);
        far32(kPL7, m[4], kCs64);
        far32(kPL9, m[6], kCs64);
        far32(kPL11, m[8], kCs64);
        const uint64_t c6 = m[7];
        REQUIRE(e.poke(kPC6, &c6, 8));  // m16:64
        REQUIRE(e.poke(kPC6 + 8, &kCs32, 2));
    };
    return p;
}

TEST_CASE("jit: far RET, far JMP/CALL and IRETQ between 64-bit and compatibility mode" *
          doctest::skip(kNoJit)) {
    const FarProgram prog = far_transfer_program();
    const Marks& m = prog.m;
    const auto& code = prog.code;
    const Setup& setup = prog.setup;
    constexpr uint32_t kIterations = kFarIterations;
    for (uint32_t threshold : {1u, jit::kDefaultThreshold}) {
        INFO("threshold " << threshold);
        Pair p(code, setup, 64, threshold);
        p.run(100000);
        CHECK(p.rr == StopReason::Halt);
        CHECK(p.rj == StopReason::Halt);
        Cpu& c = p.jit.cpu();
        CHECK(c.s.gpr[RSI] == 6 * kIterations);
        CHECK(c.s.gpr[R8] == 6 * kIterations);
        CHECK(c.s.gpr[RSP] == SnippetEnv::kStackTop);
        CHECK(c.s.seg[CS].sel == kCs64);
        CHECK(c.mode() == Mode::Long64);
        // The blocks that end with each far transfer have host code, in both modes.
        auto has_host = [&](size_t k, Mode mode) {
            const Block* b = c.code().find(m[k], mode);
            return b && b->host;
        };
        for (size_t k : {0, 2, 4, 6}) CHECK(has_host(k, Mode::Long64));
        for (size_t k : {1, 3, 5, 7}) CHECK(has_host(k, Mode::Compat32));
        p.same("at HLT");
    }
    // Every cut of the first two rounds (3 instructions, then 41 per round).
    same_at_every_limit(code, 3 + 2 * 41, setup);
}

// ---- 11. the lockstep checker (--jit-check) ------------------------------------------------------

// Cpu::jit_check runs each block through the interpreter and then its host code from the same
// state, and reports any difference through on_jit_mismatch. It must pass the real translator on
// the far-transfer program above (every mode switch checked), and it must catch the bug of issue
// 21: a far RET compiled as a near one (RIP popped, CS never loaded, RSP off by 8).

std::vector<std::string> g_jit_reports;
void collect_jit_report(const std::string& report) { g_jit_reports.push_back(report); }

// The block at `wrong_at` gets host code that runs its instructions through their handlers, except
// a final RETF, which it does as a near RET; every other block gets the real translator's code.
class NearRetfTranslator : public BlockTranslator {
public:
    explicit NearRetfTranslator(uint64_t wrong_at) : wrong_at_(wrong_at) {}
    HostCode translate(Cpu& c, const Block& b) override {
        return b.lin == wrong_at_ ? &near_retf : real_->translate(c, b);
    }
    void release(HostCode code) override {
        if (code != &near_retf) real_->release(code);
    }

private:
    static uint32_t near_retf(Cpu& c) {
        const Block* b = c.code().find(c.s.rip, c.mode());
        for (uint32_t k = 0; k + 1 < b->n; k++) {
            const Insn& i = b->insns[k];
            c.next_rip = c.s.rip + i.len;
            i.fn(c, i);
            c.s.rip = c.next_rip;
            ++c.icount;
        }
        uint64_t target = 0;
        c.read_slow(c.s.gpr[RSP], &target, 8);
        c.s.rip = target;
        c.s.gpr[RSP] += 8;
        ++c.icount;
        return b->n;
    }
    uint64_t wrong_at_;
    std::unique_ptr<BlockTranslator> real_ = jit::make_translator();
};

// `prog` in a snippet environment with every block translated at its first run (by `t`; default:
// the real translator), run under the checker (after each block's first 16 runs, one in `every`),
// its reports collected in g_jit_reports.
std::unique_ptr<SnippetEnv> checked_env(const FarProgram& prog, uint32_t every,
                                        std::unique_ptr<BlockTranslator> t = nullptr) {
    auto e = std::make_unique<SnippetEnv>(kRam);
    REQUIRE(e->set_jit(1));
    if (t) e->cpu().code().set_translator(std::move(t), 1);
    REQUIRE(e->load_code(prog.code));
    prog.setup(*e);
    Cpu& c = e->cpu();
    c.jit_check = true;
    c.jit_check_every = every;
    c.on_jit_mismatch = collect_jit_report;
    g_jit_reports.clear();
    return e;
}

TEST_CASE("jit-check: the real translator passes across mode switches; a far RET run as near is caught" *
          doctest::skip(kNoJit)) {
    const FarProgram prog = far_transfer_program();
    {
        INFO("the real translator, every block from its first run");
        auto e = checked_env(prog, 1);
        Cpu& c = e->cpu();
        CHECK(e->run(100000) == StopReason::Halt);
        CHECK(g_jit_reports.empty());
        CHECK(c.s.gpr[RSI] == 6 * kFarIterations);
        // Every block that ends in a far transfer ran under the check on every pass.
        CHECK(c.jit_checked >= 11 * kFarIterations);
        for (const auto& r : g_jit_reports) MESSAGE(r);
    }
    {
        INFO("a translator that runs the first RETFQ (mark 0's block) as a near RET");
        auto e = checked_env(prog, 1, std::make_unique<NearRetfTranslator>(prog.m[0]));
        e->run(2000);  // (after the report the wrong state runs on: wherever it goes, it stops)
        REQUIRE(!g_jit_reports.empty());
        const std::string& r = g_jit_reports.front();
        MESSAGE(r);
        CHECK(r.find(fmt::format("block at {:#x}", prog.m[0])) != std::string::npos);
        CHECK(r.find("cs.sel") != std::string::npos);
        CHECK(r.find("rsp") != std::string::npos);
        CHECK(r.find("ret far") != std::string::npos);  // (the disassembly of the block)
    }
}

TEST_CASE("jit-check: sampling checks each block's first runs, then one run in N" * doctest::skip(kNoJit)) {
    const FarProgram prog = far_transfer_program();
    uint64_t checked[2] = {};
    for (uint32_t every : {1u, 8u}) {
        auto e = checked_env(prog, every);
        Cpu& c = e->cpu();
        CHECK(e->run(100000) == StopReason::Halt);
        CHECK(g_jit_reports.empty());
        CHECK(c.s.gpr[RSI] == 6 * kFarIterations);
        checked[every > 1] = c.jit_checked;
    }
    // 100 passes over a dozen blocks: all checked at N = 1; at N = 8, 16 + (100 - 16) / 8 per block.
    CHECK(checked[1] > 0);
    CHECK(checked[1] < checked[0] / 3);
}
