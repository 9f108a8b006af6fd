// Instruction class "stack": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_stack(Registry&) {}

}  // namespace m86::cpu
