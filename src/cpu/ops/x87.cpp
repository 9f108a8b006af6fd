// Instruction class "x87": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_x87(Registry&) {}

}  // namespace m86::cpu
