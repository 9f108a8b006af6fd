// Instruction class "sse_int": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_sse_int(Registry&) {}

}  // namespace m86::cpu
