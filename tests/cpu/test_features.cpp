// Linux-visible CPU features micro86 advertises (cpuid.h switches) and the state behind them:
// the MSRs they come with, checked against the SDM's definitions (Vol. 4, chapter 2 for the MSRs).
#include <doctest/doctest.h>

#include <vector>

#include "cpu/cpu.h"
#include "cpu/cpuid.h"
#include "machine/snippet.h"

using namespace m86;
using namespace m86::cpu;

namespace {

constexpr uint32_t kMsrTsc = 0x10, kMsrTscAdjust = 0x3b, kMsrArchCapabilities = 0x10a;

bool has(const Cpu& c, uint32_t leaf, int reg, unsigned bit) {
    auto r = cpuid::query(c, leaf, 0);
    uint32_t v = reg == cpuid::kEax ? r.eax : reg == cpuid::kEbx ? r.ebx : reg == cpuid::kEcx ? r.ecx : r.edx;
    return v >> bit & 1;
}

// RDMSR / WRMSR as the guest runs them (CPL 0). Returns false if the instruction faulted (#GP).
bool rdmsr(machine::SnippetEnv& env, uint32_t msr, uint64_t* v) {
    // mov ecx, msr; rdmsr; hlt
    std::vector<uint8_t> code = {0xb9, uint8_t(msr), uint8_t(msr >> 8), uint8_t(msr >> 16), uint8_t(msr >> 24),
                                 0x0f, 0x32, 0xf4};
    env.reset_cpu();
    env.load_code(code);
    if (env.run(10) != StopReason::Halt) return false;
    *v = uint32_t(env.cpu().s.gpr[RAX]) | uint64_t(uint32_t(env.cpu().s.gpr[RDX])) << 32;
    return true;
}
bool wrmsr_on(machine::SnippetEnv& env, uint32_t msr, uint64_t v) {
    // mov ecx, msr; mov eax, lo; mov edx, hi; wrmsr; hlt
    std::vector<uint8_t> code = {0xb9, uint8_t(msr), uint8_t(msr >> 8), uint8_t(msr >> 16), uint8_t(msr >> 24), 0xb8};
    for (int k = 0; k < 4; k++) code.push_back(uint8_t(v >> (8 * k)));
    code.push_back(0xba);
    for (int k = 4; k < 8; k++) code.push_back(uint8_t(v >> (8 * k)));
    code.insert(code.end(), {0x0f, 0x30, 0xf4});
    env.load_code(code);  // (keeps the CPU's MSR state)
    env.cpu().halted = false;
    return env.run(10) == StopReason::Halt;
}

}  // namespace

TEST_CASE("features: IA32_ARCH_CAPABILITIES is advertised, readable and read-only") {
    machine::SnippetEnv env;
    REQUIRE(has(env.cpu(), 7, cpuid::kEdx, 29) == cpuid::kHaveArchCapabilities);
    if (!cpuid::kHaveArchCapabilities) return;
    uint64_t v = 0;
    REQUIRE(rdmsr(env, kMsrArchCapabilities, &v));
    // SDM Vol. 4, Table 2-2. An interpreter executes nothing speculatively, so it is not
    // susceptible to rogue data cache loads (RDCL_NO, bit 0: what makes Linux skip page-table
    // isolation), MDS (bit 5), TAA (bit 8), speculative store bypass (bit 4).
    CHECK((v & 1) != 0);
    CHECK((v >> 4 & 1) != 0);
    CHECK((v >> 5 & 1) != 0);
    CHECK((v >> 8 & 1) != 0);
    // Bits that would promise state micro86 does not have: IBRS_ALL (1, needs IA32_SPEC_CTRL),
    // RSBA (2), TSX_CTRL (7, needs IA32_TSX_CTRL), FB_CLEAR (17, promises VERW clears buffers),
    // and the reserved bits 9..12.
    for (unsigned bit : {1u, 2u, 7u, 9u, 10u, 11u, 12u, 17u}) {
        CAPTURE(bit);
        CHECK((v >> bit & 1) == 0);
    }
    CHECK_FALSE(wrmsr_on(env, kMsrArchCapabilities, v));  // read-only: WRMSR raises #GP
    CHECK(env.cpu().last_fault.vector == kGP);
}

TEST_CASE("features: IA32_TSC_ADJUST follows SDM Vol. 3, 18.17.3") {
    machine::SnippetEnv env;
    REQUIRE(has(env.cpu(), 7, cpuid::kEbx, 1) == cpuid::kHaveTscAdjust);
    if (!cpuid::kHaveTscAdjust) return;
    uint64_t v = 1;
    REQUIRE(rdmsr(env, kMsrTscAdjust, &v));
    CHECK(v == 0);  // 0 after RESET
    // rdtsc -> r8; TSC_ADJUST = 1000000; rdtsc -> r9; rdmsr TSC_ADJUST -> r10; TSC = 0 (WRMSR);
    // rdmsr TSC_ADJUST -> r11; rdtsc -> r12.
    std::vector<uint8_t> code;
    auto add = [&](std::initializer_list<uint8_t> b) {
        for (uint8_t x : b) code.push_back(x);
    };
    auto rdtsc_to = [&](uint8_t r) { add({0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0x49, 0x89, uint8_t(0xc0 | r)}); };
    auto mov_ecx = [&](uint32_t m) { add({0xb9, uint8_t(m), uint8_t(m >> 8), uint8_t(m >> 16), uint8_t(m >> 24)}); };
    rdtsc_to(0);  // rdtsc; shl rdx, 32; or rax, rdx; mov r8, rax
    mov_ecx(kMsrTscAdjust);
    add({0xb8, 0x40, 0x42, 0x0f, 0x00, 0x31, 0xd2, 0x0f, 0x30});  // mov eax, 1000000; xor edx, edx; wrmsr
    rdtsc_to(1);
    mov_ecx(kMsrTscAdjust);
    add({0x0f, 0x32, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0x49, 0x89, 0xc2});  // rdmsr -> r10
    mov_ecx(kMsrTsc);
    add({0x31, 0xc0, 0x31, 0xd2, 0x0f, 0x30});  // xor eax, eax; xor edx, edx; wrmsr (TSC = 0)
    mov_ecx(kMsrTscAdjust);
    add({0x0f, 0x32, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0x49, 0x89, 0xc3});  // rdmsr -> r11
    rdtsc_to(4);
    add({0xf4});
    env.reset_cpu();
    env.load_code(code);
    REQUIRE(env.run(100) == StopReason::Halt);
    const auto& g = env.cpu().s.gpr;
    int64_t t0 = int64_t(g[R8]), t1 = int64_t(g[R9]), adj1 = int64_t(g[R10]), adj2 = int64_t(g[R11]),
            t2 = int64_t(g[R12]);
    CHECK(adj1 == 1000000);
    // Writing TSC_ADJUST moved the TSC by the difference (the rest is the few instructions between
    // the reads; this environment's TSC counts instructions).
    CHECK(t1 - t0 >= 1000000);
    CHECK(t1 - t0 < 1000000 + 100);
    // Writing the TSC (to 0 at a TSC of about t1) changed TSC_ADJUST by the same amount.
    CHECK(adj2 <= adj1 - t1);
    CHECK(adj2 > adj1 - t1 - 100);
    CHECK(t2 >= 0);
    CHECK(t2 < 100);
    // INIT keeps IA32_TSC_ADJUST (SDM Vol. 3, Table 10-1 keeps the MSRs); RESET clears it.
    env.cpu().reset(true);
    CHECK(env.cpu().s.tsc_adjust == uint64_t(adj2));
    env.cpu().reset(false);
    CHECK(env.cpu().s.tsc_adjust == 0);
}
