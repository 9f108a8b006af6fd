// Instruction class "sse_fp": not implemented yet.
#include "cpu/decode.h"
#include "cpu/mem.h"

namespace m86::cpu {

void register_sse_fp(Registry&) {}

}  // namespace m86::cpu
