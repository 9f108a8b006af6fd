// DebugExit: a write anywhere in the range asks the board to exit with (value << 1) | 1.
#include "devices/debug_exit.h"

namespace m86::dev {

void DebugExit::write(uint64_t, unsigned size, uint64_t value) {
    uint64_t v = size >= 8 ? value : value & ((1ull << (8 * size)) - 1);
    if (sink_) sink_->request_exit(debug_exit::status_for(v));
}

}  // namespace m86::dev
