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
