// Instruction class "muldiv": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_muldiv(Registry&) {}

}  // namespace m86::cpu
