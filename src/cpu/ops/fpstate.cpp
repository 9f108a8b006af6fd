// Instruction class "fpstate": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_fpstate(Registry&) {}

}  // namespace m86::cpu
