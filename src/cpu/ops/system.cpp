// Instruction class "system": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_system(Registry&) {}

}  // namespace m86::cpu
