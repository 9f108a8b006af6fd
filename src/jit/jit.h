// The JIT: host code for hot blocks, made with asmjit (x86-64 hosts).
//
// Stage 1, what exists now: a block's host code calls each instruction's interpreter handler
// directly, with the run loop's bookkeeping (RIP, next RIP, retired count, exit requests) inlined
// between the calls. The interpreter loop calls every handler through one indirect call site,
// whose target changes from instruction to instruction; host code has one call site per guest
// instruction, each with a fixed target. Semantics are the interpreter's by construction: the same
// handlers run on the same state, and a fault leaves host code by longjmp exactly as it leaves the
// interpreter loop. Native code for common instructions comes next (docs/jit.md).
#pragma once

#include <cstdint>
#include <memory>

#include "cpu/decode.h"

namespace m86::jit {

// Whether this build has the JIT (asmjit found, x86-64 System V host).
bool available();

// A translator for one machine's code cache (CodeCache::set_translator), or nullptr when the build
// has no JIT.
std::unique_ptr<cpu::BlockTranslator> make_translator();

// Blocks run this many times through the interpreter before they get host code: most blocks run
// only a few times (boot code, initialisation), and translating them would cost more than it saves.
constexpr uint32_t kDefaultThreshold = 32;

}  // namespace m86::jit
