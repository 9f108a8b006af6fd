// Instruction class "shift": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_shift(Registry&) {}

}  // namespace m86::cpu
