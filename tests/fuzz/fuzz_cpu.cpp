// fuzz_cpu: libFuzzer harness for the decoder and the interpreter (and, when the input asks and the
// build has it, the JIT) on random code bytes in the snippet environment (machine/snippet.h).
//
// Input: [mode: 1 byte][code bytes...]. Mode bits 0-1 pick the entry mode (0/3 = 64-bit, 1 = 32-bit
// protected, 2 = real mode); bit 2 runs blocks through the JIT from their first execution (ignored
// when the build has no JIT). The code (at most kMaxCode bytes) is loaded at the snippet code base
// and run for at most kMaxInsns instructions. The general registers start pointing into RAM so
// memory operands often hit mapped pages. Any guest outcome - #UD, #GP, #PF, HLT, a triple fault,
// the instruction limit - is fine; only host crashes, sanitizer reports and timeouts are bugs.
// Seeds: tests/fuzz/corpus/cpu/ (written by make_corpus.cpp).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpu/cpu.h"
#include "machine/snippet.h"

using namespace m86;

namespace {
constexpr size_t kRam = 8 << 20;  // covers the page tables, code at 1 MiB and the stack at 4 MiB
constexpr size_t kMaxCode = 4096;
constexpr uint64_t kMaxInsns = 2000;  // a REP turn (up to 1024 elements) counts as one
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint8_t mode = data[0];
    machine::SnippetEnv env(kRam);
    const unsigned bits[4] = {64, 32, 16, 64};
    env.set_bits(bits[mode & 3]);
    if (mode & 4) env.set_jit(1);  // false (and interpreted) without a JIT
    std::vector<uint8_t> code(data + 1, data + std::min(size, kMaxCode + 1));
    if (!env.load_code(code)) return 0;
    cpu::CpuState& s = env.cpu().s;
    // Registers that point somewhere useful: data above the code, below the stack; RCX a small
    // count, so a REP string instruction is not millions of iterations unless the code asks.
    for (unsigned r = 0; r < 16; r++)
        if (r != cpu::RSP) s.gpr[r] = env.bits() == 16 ? 0x100 * r : 0x200000 + 0x1000 * r;
    s.gpr[cpu::RCX] = 0x40;
    env.run(kMaxInsns);
    return 0;
}
