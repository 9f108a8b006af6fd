// Instruction class "bit": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_bit(Registry&) {}

}  // namespace m86::cpu
