// Miscellaneous: HLT (more: CPUID, RDTSC/RDTSCP, PAUSE, UD2...).
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {
namespace {

void hlt(Cpu& c, const Insn&) {
    if (c.mode() != Mode::Real && (c.s.seg[CS].sel & 3) != 0) c.raise_gp(0);
    c.halted = true;
    c.exit_request = true;
}

}  // namespace

void register_misc(Registry& r) {
    r.add(ZYDIS_MNEMONIC_HLT, [](const DecodeCtx&) -> Handler { return hlt; });
}

}  // namespace m86::cpu
