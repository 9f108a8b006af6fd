// A build without the JIT (no asmjit, or a host that is not x86-64): the interpreter runs every
// block.
#include "jit/jit.h"

namespace m86::jit {

bool available() { return false; }
std::unique_ptr<cpu::BlockTranslator> make_translator() { return nullptr; }

}  // namespace m86::jit
