// The code cache shared by the vCPUs of a machine: code one CPU writes must reach the decoded blocks
// every other CPU runs (Linux patches its text at run time on SMP), whichever write path it takes.
// And the per-CPU structures in front of it: TLB and jump-cache flushes (fill logs, cpu.h).
#include <doctest/doctest.h>
#include <xbyak/xbyak.h>

#include <cstring>
#include <functional>
#include <map>
#include <vector>

#include "cpu/cpu.h"
#include "cpu/decode.h"
#include "machine/snippet.h"

#include "asm.h"

using namespace m86;
using namespace m86::cpu;
using m86::test::assemble;

namespace {

// Two CPUs on the snippet environment's bus and page tables, sharing one code cache.
struct TwoCpus {
    machine::SnippetEnv env;
    std::shared_ptr<CodeCache> cache = make_code_cache();
    Cpu c0{env.bus(), cache}, c1{env.bus(), cache};
    TwoCpus() {
        for (Cpu* c : {&c0, &c1}) {
            c->s = env.cpu().s;
            c->update_mode();
            c->tlb_flush();
        }
    }
    void load(uint64_t addr, const std::vector<uint8_t>& code) { REQUIRE(env.poke(addr, code.data(), code.size())); }
    // Run `c` from `rip` to its HLT.
    void run(Cpu& c, uint64_t rip) {
        c.s.rip = rip;
        c.halted = false;
        REQUIRE(c.run(100000) == StopReason::Halt);
    }
};

constexpr uint64_t kCode = 0x100000;     // CPU 0's function (page 0x100000)
constexpr uint64_t kData = 0x100c00;     // a data byte on the same page
constexpr uint64_t kWarm = 0x102000;     // CPU 1: a write to kData (its write TLB maps the page)
constexpr uint64_t kPatch = 0x103000;    // CPU 1: the patch
constexpr uint64_t kNewCode = 0x104000;  // bytes CPU 1 copies over kCode

// mov eax, imm32; hlt
std::vector<uint8_t> mov_eax(uint32_t v) { return {0xb8, uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24), 0xf4}; }

}  // namespace

TEST_CASE("code cache: a patch by CPU 1 reaches code CPU 0 has executed (single store)") {
    TwoCpus m;
    m.load(kCode, mov_eax(1));
    m.load(kWarm, assemble([](Xbyak::CodeGenerator& g) {
        g.mov(Xbyak::util::al, 0xcc);
        g.mov(Xbyak::util::byte[kData], Xbyak::util::al);
        g.hlt();
    }));
    m.load(kPatch, assemble([](Xbyak::CodeGenerator& g) {
        g.mov(Xbyak::util::al, 2);
        g.mov(Xbyak::util::byte[kCode + 1], Xbyak::util::al);  // the low byte of the imm32
        g.hlt();
    }));
    // CPU 1 writes to the page before it holds code: its write TLB now maps it writable.
    m.run(m.c1, kWarm);
    // CPU 0 decodes and runs the function (twice: the second run comes from its jump cache).
    m.run(m.c0, kCode);
    m.run(m.c0, kCode);
    CHECK(uint32_t(m.c0.s.gpr[RAX]) == 1);
    // CPU 1 patches the immediate: decoding on CPU 0 must have write-protected the page in CPU 1's
    // TLB, so the store is seen and the block retired for both CPUs.
    m.run(m.c1, kPatch);
    uint8_t byte = 0;
    m.env.peek(kCode + 1, &byte, 1);
    REQUIRE(byte == 2);
    m.run(m.c0, kCode);
    CHECK(uint32_t(m.c0.s.gpr[RAX]) == 2);
}

TEST_CASE("code cache: CPU 1 copies a new function over CPU 0's with REP MOVSB") {
    TwoCpus m;
    m.load(kCode, assemble([](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(eax, 5);
        g.add(eax, 1);
        g.hlt();
    }));
    auto replacement = assemble([](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(eax, 100);
        g.sub(eax, 1);
        g.hlt();
    });
    m.load(kNewCode, replacement);
    m.load(kPatch, assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(esi, uint32_t(kNewCode));
        g.mov(edi, uint32_t(kCode));
        g.mov(ecx, uint32_t(replacement.size()));
        g.rep();
        g.movsb();
        g.hlt();
    }));
    m.load(kWarm, assemble([](Xbyak::CodeGenerator& g) {
        g.mov(Xbyak::util::al, 0xcc);
        g.mov(Xbyak::util::byte[kData], Xbyak::util::al);
        g.hlt();
    }));
    m.run(m.c1, kWarm);  // CPU 1's write TLB maps the page before it holds code
    m.run(m.c0, kCode);
    CHECK(uint32_t(m.c0.s.gpr[RAX]) == 6);
    m.run(m.c1, kPatch);
    m.run(m.c0, kCode);
    CHECK(uint32_t(m.c0.s.gpr[RAX]) == 99);
    // And back on the other CPU: CPU 1 runs the new code too.
    m.run(m.c1, kCode);
    CHECK(uint32_t(m.c1.s.gpr[RAX]) == 99);
}

TEST_CASE("code cache: CPU 1 rewrites a function CPU 0 calls in a loop") {
    // CPU 0 runs a loop that calls a function; CPU 1 rewrites the function between two runs of the
    // loop. The caller's blocks stay valid, the callee's must be decoded again.
    TwoCpus m;
    auto caller = assemble([](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.xor_(ebx, ebx);
        g.mov(ecx, 10);
        g.L("top");
        g.mov(eax, uint32_t(kCode + 0x800));
        g.call(rax);
        g.add(ebx, eax);
        g.sub(ecx, 1);
        g.jnz("top");
        g.hlt();
    });
    m.load(kCode, caller);
    auto fn = [](uint32_t v) {
        return assemble([v](Xbyak::CodeGenerator& g) {
            g.mov(Xbyak::util::eax, v);
            g.ret();
        });
    };
    m.load(kCode + 0x800, fn(3));
    auto fn7 = fn(7);
    m.load(kNewCode, fn7);
    m.load(kPatch, assemble([&](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        uint32_t imm;  // the new imm32 (unaligned in the encoding)
        std::memcpy(&imm, fn7.data() + 1, sizeof imm);
        g.mov(eax, imm);
        g.mov(dword[kCode + 0x801], eax);
        g.hlt();
    }));
    m.run(m.c0, kCode);
    CHECK(uint32_t(m.c0.s.gpr[RBX]) == 30);
    m.run(m.c1, kPatch);
    m.run(m.c0, kCode);
    CHECK(uint32_t(m.c0.s.gpr[RBX]) == 70);
}

TEST_CASE("code cache: blocks are shared, jump caches are per CPU") {
    TwoCpus m;
    m.load(kCode, mov_eax(9));
    m.run(m.c0, kCode);
    size_t n = m.cache->size();
    CHECK(n >= 1);
    m.run(m.c1, kCode);  // decoded once: CPU 1 finds CPU 0's block
    CHECK(m.cache->size() == n);
    CHECK(uint32_t(m.c1.s.gpr[RAX]) == 9);
}

// ---- flushes: the TLB and the jump cache are flushed through fill logs (cpu.h); both the logged
// path and the overflowed path (more entries filled than the log holds) must drop every entry. ----

namespace {

constexpr uint64_t kPtBase = 0x4000;  // the snippet's 4 KiB page tables (linear = physical < 4 MiB)
constexpr uint64_t pte_addr(uint64_t lin) { return kPtBase + (lin >> 12) * 8; }

// Touch `pages` pages from 0x120000 (read and write), so that many TLB entries are filled; then
// read [0x300000] (mapped to itself), remap it to physical 0x301000, invalidate (MOV CR3 or
// INVLPG), and read it again into RBX.
std::vector<uint8_t> remap_data(unsigned pages, bool invlpg) {
    return assemble([=](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(esi, 0x120000);
        g.mov(ecx, pages);
        g.L("fill");
        g.mov(rax, qword[rsi]);
        g.mov(qword[rsi], rax);
        g.add(rsi, 0x1000);
        g.sub(ecx, 1);
        g.jnz("fill");
        g.mov(esi, 0x300000);
        g.mov(rax, qword[rsi]);  // TLB: 0x300000 -> 0x300000
        g.mov(edi, uint32_t(pte_addr(0x300000)));
        g.mov(eax, 0x301003);  // present, writable, frame 0x301000
        g.mov(qword[rdi], rax);
        if (invlpg) {
            g.db(0x0f), g.db(0x01), g.db(0x3e);  // invlpg [rsi]
        } else {
            g.db(0x0f), g.db(0x20), g.db(0xd8);  // mov rax, cr3
            g.db(0x0f), g.db(0x22), g.db(0xd8);  // mov cr3, rax
        }
        g.mov(rbx, qword[rsi]);
        g.hlt();
    });
}

// Run `blocks` distinct blocks (a chain of JMPs to the next instruction), then call 0x380000
// (mapped to itself: returns 1), remap it to physical 0x381000 (returns 2), MOV CR3, call it again.
std::vector<uint8_t> remap_code(unsigned blocks) {
    return assemble([=](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        for (unsigned k = 0; k < blocks; k++) {
            Xbyak::Label next;
            g.jmp(next, Xbyak::CodeGenerator::T_NEAR);
            g.L(next);
        }
        g.mov(eax, 0x380000);
        g.call(rax);
        g.mov(ebx, eax);
        g.mov(edi, uint32_t(pte_addr(0x380000)));
        g.mov(eax, 0x381003);
        g.mov(qword[rdi], rax);
        g.db(0x0f), g.db(0x20), g.db(0xd8);  // mov rax, cr3
        g.db(0x0f), g.db(0x22), g.db(0xd8);  // mov cr3, rax
        g.mov(eax, 0x380000);
        g.call(rax);
        g.hlt();
    });
}

}  // namespace

TEST_CASE("TLB flush: MOV CR3 and INVLPG drop translations, with few and with many entries filled") {
    for (bool invlpg : {false, true}) {
        for (unsigned pages : {2u, 300u}) {  // 300 pages = 600 entries: more than the fill log holds
            CAPTURE(invlpg);
            CAPTURE(pages);
            machine::SnippetEnv env;
            uint64_t v1 = 0x1111, v2 = 0x2222;
            env.poke(0x300000, &v1, 8);
            env.poke(0x301000, &v2, 8);
            env.load_code(remap_data(pages, invlpg));
            REQUIRE(env.run(100000) == StopReason::Halt);
            CHECK(env.cpu().s.gpr[RBX] == v2);
        }
    }
}

TEST_CASE("TLB flush: MOV CR3 drops jump-cache entries, with few and with many blocks run") {
    for (unsigned blocks : {1u, 700u}) {  // 700 blocks: more than the jump cache's fill log holds
        CAPTURE(blocks);
        machine::SnippetEnv env;
        env.poke(0x380000, mov_eax(1).data(), 5);
        env.poke(0x381000, mov_eax(2).data(), 5);
        uint8_t ret = 0xc3;
        env.poke(0x380005, &ret, 1);
        env.poke(0x381005, &ret, 1);
        env.load_code(remap_code(blocks));
        REQUIRE(env.run(100000) == StopReason::Halt);
        CHECK(uint32_t(env.cpu().s.gpr[RBX]) == 1);
        CHECK(uint32_t(env.cpu().s.gpr[RAX]) == 2);
    }
}

TEST_CASE("code cache: write protection reaches a CPU whose TLB fill log overflowed") {
    TwoCpus m;
    m.load(kCode, mov_eax(1));
    // CPU 1 writes 300 pages, the code page last: its write TLB maps the page, beyond the log.
    m.load(kWarm, assemble([](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(esi, 0x120000);
        g.mov(ecx, 300);
        g.L("fill");
        g.mov(qword[rsi], rax);
        g.add(rsi, 0x1000);
        g.sub(ecx, 1);
        g.jnz("fill");
        g.mov(al, 0xcc);
        g.mov(byte[kData], al);
        g.hlt();
    }));
    m.load(kPatch, assemble([](Xbyak::CodeGenerator& g) {
        g.mov(Xbyak::util::al, 2);
        g.mov(Xbyak::util::byte[kCode + 1], Xbyak::util::al);
        g.hlt();
    }));
    m.run(m.c1, kWarm);
    m.run(m.c0, kCode);
    CHECK(uint32_t(m.c0.s.gpr[RAX]) == 1);
    m.run(m.c1, kPatch);
    m.run(m.c0, kCode);
    CHECK(uint32_t(m.c0.s.gpr[RAX]) == 2);
}

// ---- block links (Cpu::run_blocks): a block remembers the block that followed it; a link to
// another linear page must not survive a change of that page's translation, on this CPU or for
// another CPU that runs the same block under different page tables. ----

namespace {

// 0x380000: jmp 0x381000 (another page); 0x381000: mov eax, 1; ret. 0x382000: mov eax, 2; ret.
void load_cross_page(machine::SnippetEnv& env) {
    auto jmp = assemble([](Xbyak::CodeGenerator& g) {
        g.db(0xe9);
        g.dd(0x1000 - 5);  // jmp rel32 to 0x381000
    });
    env.poke(0x380000, jmp.data(), jmp.size());
    auto f1 = mov_eax(1), f2 = mov_eax(2);
    f1[5] = f2[5] = 0xc3;  // ret instead of hlt
    env.poke(0x381000, f1.data(), f1.size());
    env.poke(0x382000, f2.data(), f2.size());
}

}  // namespace

TEST_CASE("block links: a cross-page link does not survive INVLPG or MOV CR3 of its target page") {
    for (bool invlpg : {false, true}) {
        CAPTURE(invlpg);
        machine::SnippetEnv env;
        load_cross_page(env);
        env.load_code(assemble([=](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            g.mov(esi, 0x380000);
            g.call(rsi);  // links: caller -> 0x380000 -> 0x381000
            g.mov(ebx, eax);
            g.call(rsi);  // through the links
            g.add(ebx, eax);
            g.mov(edi, uint32_t(pte_addr(0x381000)));
            g.mov(eax, 0x382003);  // 0x381000 now maps physical 0x382000
            g.mov(qword[rdi], rax);
            if (invlpg) {
                g.mov(edi, 0x381000);
                g.db(0x0f), g.db(0x01), g.db(0x3f);  // invlpg [rdi]
            } else {
                g.db(0x0f), g.db(0x20), g.db(0xd8);  // mov rax, cr3
                g.db(0x0f), g.db(0x22), g.db(0xd8);  // mov cr3, rax
            }
            g.call(rsi);
            g.hlt();
        }));
        REQUIRE(env.run(1000) == StopReason::Halt);
        CHECK(uint32_t(env.cpu().s.gpr[RBX]) == 2);
        CHECK(uint32_t(env.cpu().s.gpr[RAX]) == 2);
    }
}

TEST_CASE("block links: CPUs with different page tables do not share cross-page links") {
    TwoCpus m;
    load_cross_page(m.env);
    // CPU 1's page tables: a copy of the snippet's where 0x381000 maps physical 0x382000.
    // PML4 0x7000 -> PDPT 0x8000 -> PD 0x9000 (a copy) -> the 2-4 MiB page table copied to 0xa000.
    std::vector<uint8_t> page(4096);
    auto copy = [&](uint64_t from, uint64_t to) {
        m.env.peek(from, page.data(), 4096);
        m.env.poke(to, page.data(), 4096);
    };
    copy(0x3000, 0x9000);
    copy(0x5000, 0xa000);
    auto put = [&](uint64_t addr, uint64_t v) { m.env.poke(addr, &v, 8); };
    put(0x7000, 0x8003);
    put(0x8000, 0x9003);
    put(0x9000 + 8, 0xa003);                            // PD entry 1: 2-4 MiB
    put(0xa000 + ((0x381000 - 0x200000) >> 12) * 8, 0x382003);
    m.c1.s.cr3 = 0x7000;
    m.c1.tlb_flush();
    auto caller = assemble([](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        g.mov(esi, 0x380000);
        g.call(rsi);
        g.call(rsi);
        g.hlt();
    });
    m.load(kCode, caller);
    m.run(m.c0, kCode);  // CPU 0 links 0x380000 -> its 0x381000 block (physical 0x381000)
    CHECK(uint32_t(m.c0.s.gpr[RAX]) == 1);
    m.run(m.c1, kCode);  // same blocks by physical address, but 0x381000 is physical 0x382000 here
    CHECK(uint32_t(m.c1.s.gpr[RAX]) == 2);
    m.run(m.c0, kCode);
    CHECK(uint32_t(m.c0.s.gpr[RAX]) == 1);
}

// ---- global translations (G with CR4.PGE): MOV CR3 may keep them (cpu.h keeps them, with the
// jump-cache entries reached through them); everything else that invalidates must drop them. ----

namespace {

constexpr uint64_t kPteG = 0x100;

void set_pte(machine::SnippetEnv& env, uint64_t lin, uint64_t frame, bool global) {
    uint64_t pte = frame | 3 | (global ? kPteG : 0);
    env.poke(pte_addr(lin), &pte, 8);
}

void cr4_pge(Xbyak::CodeGenerator& g, bool on) {
    g.db(0x0f), g.db(0x20), g.db(0xe0);  // mov rax, cr4
    if (on) {
        g.db(0x48), g.db(0x0d), g.dd(0x80);  // or rax, 0x80
    } else {
        g.db(0x48), g.db(0x25), g.dd(~0x80u);  // and rax, ~0x80
    }
    g.db(0x0f), g.db(0x22), g.db(0xe0);  // mov cr4, rax
}

void mov_cr3(Xbyak::CodeGenerator& g) {
    g.db(0x0f), g.db(0x20), g.db(0xd8);  // mov rax, cr3
    g.db(0x0f), g.db(0x22), g.db(0xd8);  // mov cr3, rax
}

}  // namespace

TEST_CASE("TLB flush: MOV CR3 drops a non-global entry that replaced a global one in its slot") {
    // 0x200000 (global) and 0x300000 (not global) share TLB slot 0.
    machine::SnippetEnv env;
    set_pte(env, 0x200000, 0x200000, true);
    uint64_t v_old = 0x1111, v_new = 0x2222;
    env.poke(0x300000, &v_old, 8);
    env.poke(0x301000, &v_new, 8);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        using namespace Xbyak::util;
        cr4_pge(g, true);
        g.mov(esi, 0x200000);
        g.mov(rax, qword[rsi]);  // slot 0: global
        g.mov(esi, 0x300000);
        g.mov(rax, qword[rsi]);  // slot 0: the non-global 0x300000 -> 0x300000
        g.mov(edi, uint32_t(pte_addr(0x300000)));
        g.mov(eax, 0x301003);
        g.mov(qword[rdi], rax);  // 0x300000 -> 0x301000
        mov_cr3(g);
        g.mov(rbx, qword[rsi]);
        g.hlt();
    }));
    REQUIRE(env.run(1000) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RBX] == v_new);
}

TEST_CASE("TLB flush: INVLPG, CR4.PGE and INVPCID type 2 drop global translations") {
    for (int how = 0; how < 3; how++) {
        CAPTURE(how);
        machine::SnippetEnv env;
        set_pte(env, 0x300000, 0x300000, true);
        uint64_t v_old = 0x1111, v_new = 0x2222, desc[2] = {0, 0};
        env.poke(0x300000, &v_old, 8);
        env.poke(0x301000, &v_new, 8);
        env.poke(0x210000, desc, 16);  // INVPCID descriptor: PCID 0, address 0
        env.load_code(assemble([how](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            cr4_pge(g, true);
            g.mov(esi, 0x300000);
            g.mov(rax, qword[rsi]);
            g.mov(edi, uint32_t(pte_addr(0x300000)));
            g.mov(eax, 0x301003 | 0x100);
            g.mov(qword[rdi], rax);  // still global, now -> 0x301000
            if (how == 0) {
                g.db(0x0f), g.db(0x01), g.db(0x3e);  // invlpg [rsi]
            } else if (how == 1) {
                cr4_pge(g, false);
            } else {
                g.mov(ecx, 2);
                g.mov(edx, 0x210000);
                g.db(0x66), g.db(0x0f), g.db(0x38), g.db(0x82), g.db(0x0a);  // invpcid rcx, [rdx]
            }
            g.mov(rbx, qword[rsi]);
            g.hlt();
        }));
        REQUIRE(env.run(1000) == StopReason::Halt);
        CHECK(env.cpu().s.gpr[RBX] == v_new);
    }
}

TEST_CASE("block links and jump cache: code on a global page is dropped by CR4.PGE and INVLPG") {
    for (bool invlpg : {false, true}) {
        CAPTURE(invlpg);
        machine::SnippetEnv env;
        load_cross_page(env);  // 0x380000: jmp 0x381000: returns 1; 0x382000 returns 2
        set_pte(env, 0x380000, 0x380000, true);
        set_pte(env, 0x381000, 0x381000, true);
        env.load_code(assemble([=](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            cr4_pge(g, true);
            g.mov(esi, 0x380000);
            g.call(rsi);
            g.mov(ebx, eax);
            mov_cr3(g);  // (may keep the global code translations)
            g.call(rsi);
            g.add(ebx, eax);
            g.mov(edi, uint32_t(pte_addr(0x381000)));
            g.mov(eax, 0x382003 | 0x100);
            g.mov(qword[rdi], rax);
            if (invlpg) {
                g.mov(edi, 0x381000);
                g.db(0x0f), g.db(0x01), g.db(0x3f);  // invlpg [rdi]
            } else {
                cr4_pge(g, false);
            }
            g.call(rsi);
            g.hlt();
        }));
        REQUIRE(env.run(1000) == StopReason::Halt);
        CHECK(uint32_t(env.cpu().s.gpr[RBX]) == 2);
        CHECK(uint32_t(env.cpu().s.gpr[RAX]) == 2);
    }
}

TEST_CASE("block index: random inserts, lookups and removals agree with std::map") {
    BlockIndex idx;
    std::map<uint64_t, Block*> model;
    uint64_t rng = 12345;
    auto next = [&rng] { return rng = rng * 6364136223846793005ull + 1442695040888963407ull; };
    for (int step = 0; step < 200000; step++) {
        // Keys shaped like the code cache's (phys * 8 + mode), from a small range so removals and
        // reinsertions of the same key (tombstones) are frequent.
        uint64_t key = ((next() >> 33) % 5000) * 8 + (next() >> 60) % 6;
        switch (next() >> 62) {
            case 0:
            case 1:
                if (!model.count(key)) {
                    auto b = std::make_unique<Block>();
                    model[key] = b.get();
                    idx.insert(key, std::move(b));
                }
                break;
            case 2: {
                auto b = idx.take(key);
                auto it = model.find(key);
                REQUIRE((b.get() == (it == model.end() ? nullptr : it->second)));
                if (it != model.end()) model.erase(it);
                break;
            }
            default: break;
        }
        auto it = model.find(key);
        REQUIRE(idx.find(key) == (it == model.end() ? nullptr : it->second));
        REQUIRE(idx.size() == model.size());
    }
    for (auto& [k, b] : model) REQUIRE(idx.find(k) == b);
    auto all = idx.take_all();
    CHECK(all.size() == model.size());
    CHECK(idx.size() == 0);
    CHECK(idx.find(model.begin()->first) == nullptr);
}

TEST_CASE("TLB flush: INVLPG drops the jump-cache entries of its 1 GiB only") {
    for (bool same_gib : {false, true}) {
        CAPTURE(same_gib);
        machine::SnippetEnv env;
        env.poke(0x380000, mov_eax(7).data(), 5);
        uint8_t ret = 0xc3;
        env.poke(0x380005, &ret, 1);
        // Call 0x380000 once (its block enters the jump cache), INVLPG, call it again through the
        // jump cache (no link: a RET-ended block in between), then stop.
        const uint64_t target = same_gib ? 0x3ff000 : 0x7fc0000000;
        env.load_code(assemble([=](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            g.mov(esi, 0x380000);
            g.call(rsi);
            g.mov(rdi, target);
            g.db(0x0f), g.db(0x01), g.db(0x3f);  // invlpg [rdi]
            g.hlt();
            g.call(rsi);
            g.hlt();
        }));
        REQUIRE(env.run(1000) == StopReason::Halt);
        const uint64_t lookups = env.cpu().code().stats.lookups;
        env.cpu().halted = false;
        REQUIRE(env.run(1000) == StopReason::Halt);
        CHECK(uint32_t(env.cpu().s.gpr[RAX]) == 7);
        // The second call finds 0x380000 in the jump cache unless INVLPG hit its 1 GiB (the block
        // after the HLT is new either way: one lookup).
        CHECK(env.cpu().code().stats.lookups - lookups == (same_gib ? 3u : 2u));
    }
}
