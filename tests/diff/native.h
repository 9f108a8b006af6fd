// Native execution of one test case on the host CPU (the oracle of the differential tests).
//
// The test's memory lives at the fixed addresses of harness.h, mapped in this process once by
// native_init(). The wrapper code (prologue/epilogue, generated with xbyak) and its save area sit in
// a private region at kWrapAddr, below 2 GiB, so the wrapper loads and stores every register with
// absolute disp32 addressing and needs no free register:
//
//   prologue  saves the host's callee-saved registers, RSP and x87/SSE state (FXSAVE), loads the
//             test's x87/SSE state (FXRSTOR), RFLAGS (POPFQ from a slot), all 16 GPRs (RSP last) and
//             jumps to kCodeAddr
//   instance  the bytes under test at kCodeAddr, followed by a JMP to the epilogue
//   epilogue  stores all 16 GPRs, RFLAGS (PUSHFQ on a private stack), FXSAVE, restores the host
//
// A fault in the instance arrives as a signal (SIGSEGV/SIGBUS/SIGFPE/SIGILL/SIGTRAP) on an
// alternate stack; the handler records the vector (REG_TRAPNO), the registers and the FPU image from
// the ucontext and siglongjmps back. native_run() must only be called in the forked child that ran
// native_child_setup() (a faulting instance can leave the process in any state).
#pragma once

#include <cstdint>

#include "diff/harness.h"

namespace m86::difftest {

constexpr uint64_t kWrapAddr = 0x390000;  // wrapper code page; the save area is the next page
constexpr uint64_t kMaxCode = 240;        // bytes of instance code per case

// The Outcome vector reported when an instance made a system call natively (blocked; no CPU
// exception has this number).
constexpr uint8_t kSyscallVector = 0xfe;

// One generated case: the input state and the instance bytes.
struct Case {
    State in;
    uint8_t stack[kStackWinSize];
    uint8_t code[kMaxCode];
    uint32_t len = 0;
};

// Where a case ended, with what the Outcome does not hold.
enum class End : uint8_t { Done, Fault, Limit, Error };

struct Result {
    Outcome o;
    End end = End::Done;
    uint64_t rip = 0;  // address of the end marker (JMP/HLT) when Done, the faulting RIP on a fault
    uint64_t cr2 = 0;  // #PF only
    uint32_t err = 0;  // #PF error code
    uint8_t stack[kStackWinSize];
};

// Map the fixed regions and generate the wrapper (once, in the parent, before any fork).
// Returns false with a message on stderr if an address is taken.
bool native_init();
// In the forked child: signal handlers on an alternate stack, a watchdog alarm.
void native_child_setup(unsigned alarm_seconds);
void native_run(const Case& c, Result& r);

// FXSAVE image <-> State (x87 and SSE parts). The image's ST(i) is in stack order; State.st[] is
// physical. The full tag word is rebuilt from the abridged one by classifying the contents.
void state_to_fxsave(const State& s, uint8_t img[512]);
void fxsave_to_state(const uint8_t img[512], State& s);
// The full 2-bit tag of a register's contents (SDM Vol. 1, 8.1.7): 0 valid, 1 zero, 2 special.
unsigned x87_tag_of(const cpu::F80& v);

}  // namespace m86::difftest
