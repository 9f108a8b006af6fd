// Interpreter speed in guest MIPS (millions of guest instructions retired per host second).
//
// A figure, not a test: nothing here passes or fails. Each workload is a small guest loop generated
// with xbyak and run in the flat snippet environment (src/machine/snippet.h) for a fixed number of
// guest instructions; the best of several runs is reported.
//
//   build/bench/bench_mips [seconds-per-workload]     (default 1.0)
#include <fmt/format.h>
#include <xbyak/xbyak.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "machine/snippet.h"

using namespace m86;
using Gen = std::function<void(Xbyak::CodeGenerator&)>;

namespace {

struct Workload {
    const char* name;
    const char* what;
    Gen gen;
};

std::vector<uint8_t> assemble(const Gen& gen) {
    Xbyak::CodeGenerator g(4096);
    gen(g);
    return {g.getCode(), g.getCode() + g.getSize()};
}

// Run the workload's code repeatedly (it loops forever) for about `seconds`; return MIPS.
double measure(const Workload& w, double seconds) {
    machine::SnippetEnv env;
    env.load_code(assemble(w.gen));
    // Warm up: decode the blocks, fill the TLB.
    env.run(100000);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        uint64_t chunk = 10'000'000, total = 0;
        auto t0 = std::chrono::steady_clock::now();
        double el = 0;
        do {
            if (env.run(chunk) != cpu::StopReason::Limit) {
                fmt::print(stderr, "{}: stopped unexpectedly (exception {})\n", w.name,
                           env.cpu().last_fault.vector);
                std::exit(1);
            }
            total += chunk;
            el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        } while (el < seconds / 3);
        best = std::max(best, total / el / 1e6);
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
    using namespace Xbyak::util;
    const std::vector<Workload> workloads = {
        {"integer", "add/xor/shift-free ALU ops, a compare and a taken branch per 8 instructions",
         [](Xbyak::CodeGenerator& g) {
             g.xor_(eax, eax);
             g.mov(ecx, 1);
             g.mov(edx, 3);
             g.L("top");
             g.add(eax, ecx);
             g.xor_(edx, eax);
             g.sub(ecx, edx);
             g.add(rbx, 1);
             g.and_(edx, 0xffff);
             g.or_(eax, 0x10);
             g.cmp(rbx, rsi);  // never equal: rsi stays 0 (rbx counts up from 1)
             g.jne("top");
             g.hlt();
         }},
        {"memcopy", "a load/store copy loop over 64 KiB with pointer increments",
         [](Xbyak::CodeGenerator& g) {
             g.L("outer");
             g.mov(esi, 0x800000);
             g.mov(edi, 0x900000);
             g.mov(ecx, 8192);
             g.L("copy");
             g.mov(rax, qword[rsi]);
             g.mov(qword[rdi], rax);
             g.add(rsi, 8);
             g.add(rdi, 8);
             g.sub(ecx, 1);
             g.jnz("copy");
             g.jmp("outer");
         }},
        {"sse2", "scalar and packed double arithmetic (mulsd/addsd/addpd) in a counted loop",
         [](Xbyak::CodeGenerator& g) {
             g.mov(rax, 0x3ff0000000000000ull);  // 1.0
             g.movq(xmm0, rax);
             g.movq(xmm1, rax);
             g.movq(xmm2, rax);
             g.L("top");
             g.mulsd(xmm1, xmm0);
             g.addsd(xmm2, xmm1);
             g.addpd(xmm3, xmm0);
             g.add(ecx, 1);
             g.jmp("top");
         }},
        {"x87", "x87 arithmetic on the register stack (fadd/fmul/fxch)",
         [](Xbyak::CodeGenerator& g) {
             g.fld1();
             g.fld1();
             g.L("top");
             g.fadd(st0, st1);
             g.fmul(st0, st1);
             g.fxch(st1);
             g.add(ecx, 1);
             g.jmp("top");
         }},
    };
    fmt::print("micro86 interpreter speed (guest MIPS, best of 3, ~{:.1f} s per workload)\n", seconds);
    for (const auto& w : workloads) {
        double mips = measure(w, seconds);
        fmt::print("  {:<8} {:8.1f} MIPS   {}\n", w.name, mips, w.what);
    }
}
