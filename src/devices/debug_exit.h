// DebugExit: QEMU's isa-debug-exit device (hw/misc/debugexit.c), the way bare-metal test programs
// report a result: a write of value V to any port of its range ends the emulator with exit status
// (V << 1) | 1, so a status is never 0 (which stays "the guest shut down normally").
//
//     -device isa-debug-exit[,iobase=N][,iosize=N]   (QEMU's defaults: iobase 0x501, iosize 2)
//     io.map(iobase, iosize, &debug_exit, "isa-debug-exit")
//
// The value is the one written, at the width of the access (OUTB/OUTW/OUTL). Reads return 0, as in
// QEMU. The device does not exit by itself: it calls the injected ExitSink, and the board flushes
// its output and leaves its run loop with that status.
#pragma once

#include <cstdint>

#include "devices/device.h"

namespace m86::dev {

namespace debug_exit {
constexpr uint16_t kDefaultIobase = 0x501;
constexpr uint16_t kDefaultIosize = 2;
// The exit status for a written value (QEMU: exit((val << 1) | 1)).
constexpr int status_for(uint64_t value) { return int(uint32_t(value << 1) | 1u); }
}  // namespace debug_exit

// Where the device's request goes (the board).
class ExitSink {
   public:
    virtual ~ExitSink() = default;
    virtual void request_exit(int status) = 0;
};

class DebugExit : public Device {
   public:
    explicit DebugExit(ExitSink* sink) : sink_(sink) {}
    uint64_t read(uint64_t, unsigned) override { return 0; }
    void write(uint64_t, unsigned size, uint64_t value) override;

   private:
    ExitSink* sink_;
};

}  // namespace m86::dev
