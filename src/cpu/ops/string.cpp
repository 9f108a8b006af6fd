// Instruction class "string": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_string(Registry&) {}

}  // namespace m86::cpu
