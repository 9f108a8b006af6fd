// The shared prologue of the CPU unit tests (tests/cpu): code for machine::SnippetEnv assembled with
// xbyak, raw bytes for encodings xbyak does not offer, and 64-bit reads/writes of the snippet's RAM.
//
// Use: `auto code = test::assemble([](Xbyak::CodeGenerator& g) { ... }); env.load_code(code);`
#pragma once

#include <xbyak/xbyak.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <vector>

#include "machine/snippet.h"

namespace m86::test {

using AsmGen = std::function<void(Xbyak::CodeGenerator&)>;

// The bytes `gen` emits, labels resolved (ready() also rejects a jump to an undefined label).
inline std::vector<uint8_t> assemble(const AsmGen& gen) {
    Xbyak::CodeGenerator g(4096);
    gen(g);
    g.ready();
    return {g.getCode(), g.getCode() + g.getSize()};
}

// The same with a HLT appended: the snippet environment's usual stop.
inline std::vector<uint8_t> assemble_hlt(const AsmGen& gen) {
    return assemble([&](Xbyak::CodeGenerator& g) {
        gen(g);
        g.hlt();
    });
}

inline void emit(Xbyak::CodeGenerator& g, std::initializer_list<uint8_t> bytes) {
    for (uint8_t b : bytes) g.db(b);
}

constexpr uint64_t kCode = machine::SnippetEnv::kCodeBase;
constexpr uint64_t kData = 0x200000;  // a 4 KiB-paged RAM area the tests use for data and stacks

inline uint64_t peek64(machine::SnippetEnv& env, uint64_t a) {
    uint64_t v = 0;
    env.peek(a, &v, 8);
    return v;
}
inline void poke64(machine::SnippetEnv& env, uint64_t a, uint64_t v) { env.poke(a, &v, 8); }

}  // namespace m86::test
