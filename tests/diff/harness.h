// Differential testing against the host CPU.
//
// The host is x86-64, so it is the oracle for user-level instructions. A Form describes one
// instruction form (e.g. "add r/m32, imm8"): it emits random instances with xbyak and may shape the
// random input state. For each case the harness
//   1. builds a random input State (GPRs, RFLAGS, XMM, MXCSR, x87, a data area),
//   2. runs the instance natively, inside a wrapper that loads the State and stores the result,
//      with the data area mapped at the same fixed address as in the emulator, in a forked child
//      with signal handlers so a faulting instance cannot take down the runner,
//   3. runs the same bytes in micro86's interpreter (machine::SnippetEnv) from the same State, at
//      CPL 3 like the native Linux process (user pages, CS 0x33 / SS 0x2b, RFLAGS.IF = 1, CR0.AM),
//      so privileged instructions fault the same way in both,
//   4. compares every GPR, RFLAGS (minus the form's undefined flags), RIP, the data area, XMM,
//      MXCSR, the x87 state, and the exception raised if any; on a mismatch it prints the
//      disassembly, the seed and both states side by side.
//
// Fixed addresses (identical natively and in the emulator; all inside SnippetEnv's 4 KiB-paged
// low region):
//   kCodeAddr   the instruction(s) under test
//   kDataAddr   kDataSize bytes of random data, followed by a guard page (not present / PROT_NONE)
//   stack       two pages below kStackTop; RSP starts at kStackTop - 0x1000, and the 1 KiB around it
//               is random input and compared afterwards (so PUSH/POP forms need no setup)
// Only these pages are mapped (natively and in the emulator), so a stray access faults in both.
// The instance ends natively with a JMP to the wrapper, in the emulator with HLT (both reported
// as RIP = the end of the instance).
#pragma once

#include <xbyak/xbyak.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cpu/state.h"

namespace m86::difftest {

constexpr uint64_t kCodeAddr = 0x100000;
constexpr uint64_t kDataAddr = 0x200000;
constexpr uint64_t kDataSize = 0x2000;               // two pages of data
constexpr uint64_t kGuardAddr = kDataAddr + kDataSize;  // not present / PROT_NONE
constexpr uint64_t kStackTop = 0x380000;             // stack pages: [kStackTop - 0x2000, kStackTop)
// The initial RSP, and the window around it that is random input and compared afterwards. Stack
// memory outside the window is neither initialised alike nor compared: keep pushes/pops inside it
// (or point RSP into the data area).
constexpr uint64_t kStackRsp = kStackTop - 0x1000;
constexpr uint64_t kStackWinAddr = kStackRsp - 0x200, kStackWinSize = 0x400;

// The random generator of the test inputs: a UniformRandomBitGenerator (usable like
// std::mt19937_64, also with <random> distributions) that is cheap to seed per case and to call:
// a Weyl sequence through the splitmix64 finaliser.
class Rng {
public:
    using result_type = uint64_t;
    explicit Rng(uint64_t seed = 1) : x_(seed) {}
    static constexpr uint64_t min() { return 0; }
    static constexpr uint64_t max() { return ~0ull; }
    uint64_t operator()() {
        uint64_t z = (x_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    void discard(unsigned long long n) { x_ += n * 0x9e3779b97f4a7c15ull; }

private:
    uint64_t x_;
};

// The guest-visible state compared by the harness. x87 state is kept in FXSAVE layout fields.
struct State {
    uint64_t gpr[16] = {};
    uint64_t rflags = 0x202 & ~0x200ull;  // IF is not under test
    cpu::Xmm xmm[16];
    uint32_t mxcsr = 0x1f80;
    uint16_t fcw = 0x037f, fsw = 0, ftw = 0xffff;  // ftw: full 2-bit tag word (0xffff = all empty)
    cpu::F80 st[8];                                // physical registers R0..R7
    uint8_t data[kDataSize] = {};
};

// How a case ended.
struct Outcome {
    State state;
    bool faulted = false;
    uint8_t vector = 0;  // exception vector when faulted (#DE=0, #UD=6, #GP=13, #PF=14, #MF=16, #XM=19...)
};

// Picks random operands for an emitted instance.
struct Picker {
    Rng& rng;
    // Percentage of data_offset() results whose range crosses into the guard page (#PF expected).
    // A form may set it to 0 in its emitter (p.fault_percent = 0) before calling data_offset().
    unsigned fault_percent = 3;
    // A random 64/32/16/8-bit GPR other than those in `avoid` (register numbers) and never RSP.
    int gpr(std::initializer_list<int> avoid = {});
    const Xbyak::Reg64& r64(int n) const;
    const Xbyak::Reg32& r32(int n) const;
    const Xbyak::Reg16& r16(int n) const;
    const Xbyak::Reg8& r8(int n) const;  // low byte (SPL..R15B via REX)
    const Xbyak::Xmm& xmm(int n) const;
    uint64_t u64() { return rng(); }
    // Interesting values: 0, 1, -1, sign boundaries, small, random (for width bytes).
    uint64_t edge(unsigned width);
    // An offset into the data area such that [kDataAddr + off, +size) is inside it; sometimes
    // unaligned, sometimes straddling the page boundary in the middle of the data area.
    uint64_t data_offset(unsigned size);
};

struct Form {
    std::string name;  // e.g. "add r/m32, imm8"
    // Emit one instance. May also set up the input state's registers that the instance uses as
    // memory bases (st.gpr[n] = kDataAddr + p.data_offset(...)).
    std::function<void(Xbyak::CodeGenerator& g, Picker& p, State& st)> emit;
    uint64_t undefined_flags = 0;  // RFLAGS bits the SDM leaves undefined for this form
    int cases = 0;                 // 0 = the run's default number of cases
    // Compare the x87 state / XMM+MXCSR only when the form touches them (faster, clearer diffs).
    bool x87 = false, sse = false;
    // For transcendental x87 instructions only: allowed difference in the last significand bits
    // (real CPUs are not correctly rounded there, and Intel and AMD differ). 0 = bit-exact.
    unsigned x87_ulps = 0;
};

// Each generator file defines one of these; main.cpp calls them all.
void forms_alu(std::vector<Form>&);
void forms_int1(std::vector<Form>&);      // shifts, mul/div, bit ops, BMI
void forms_int2(std::vector<Form>&);      // data movement, stack, control, flags ops
void forms_string(std::vector<Form>&);    // string instructions, misc (CPUID excluded)
void forms_x87(std::vector<Form>&);
void forms_sse(std::vector<Form>&);
void forms_system(std::vector<Form>&);   // user-level system behaviour (ops/system.cpp)

struct RunOptions {
    uint64_t seed = 1;
    int cases = 2000;          // per form unless the form says otherwise
    std::string filter;        // run only forms whose name contains this
    bool verbose = false;
    int only_case = -1;        // >= 0: run only this case index of each form (reproduce a failure)
    int max_reports = 3;       // mismatches printed per form (all are counted)
    bool selftest = false;     // corrupt some emulator results on purpose; all must be detected
    int dump = 0;              // print the disassembly of each form's first `dump` instances
    double hang_seconds = 10;  // a native case without a result for this long: the child is killed
    bool jit = false;          // micro86's side runs through the JIT (every block from its first run)
};

// Runs every form; prints mismatches and the summary line "diff: N passed, M failed" (N, M count
// forms); returns the number of failing cases (in selftest mode: plus one if a corruption went
// undetected).
int run_forms(const std::vector<Form>& forms, const RunOptions& opt);

}  // namespace m86::difftest
