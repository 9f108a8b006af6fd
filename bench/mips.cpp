// Interpreter speed in guest MIPS (millions of guest instructions retired per host CPU second).
//
// A figure, not a test: nothing here passes or fails. Each workload is a small guest loop generated
// with xbyak and run in the flat snippet environment (src/machine/snippet.h) for a fixed number of
// guest instructions; the best of several runs is reported.
//
//   build/bench/bench_mips [seconds-per-workload [name]]     (default 1.0; name: run the workloads
//                                                            whose name contains it)
#include <fmt/format.h>
#include <xbyak/xbyak.h>

#include <ctime>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "jit/jit.h"
#include "machine/snippet.h"

using namespace m86;
using Gen = std::function<void(Xbyak::CodeGenerator&)>;

namespace {

struct Workload {
    const char* name;
    const char* what;
    Gen gen;
    bool user = false;  // run at CPL 3 (user pages, user code and stack segments)
};

// Drop the snippet environment's CPU to CPL 3 in 64-bit mode: set U in every paging entry of the
// identity map (PML4, PDPT, PD, the 4 KiB page tables) and load CPL-3 code and stack segments.
void enter_user(machine::SnippetEnv& env) {
    constexpr uint64_t kU = 4;
    auto set_u = [&](uint64_t table, unsigned n) {
        for (unsigned k = 0; k < n; k++) {
            uint64_t e;
            env.peek(table + k * 8, &e, 8);
            if (e & 1) e |= kU;
            env.poke(table + k * 8, &e, 8);
        }
    };
    set_u(0x1000, 1);     // PML4
    set_u(0x2000, 1);     // PDPT
    set_u(0x3000, 512);   // PD
    set_u(0x4000, 1024);  // page tables of the first 4 MiB
    cpu::Cpu& c = env.cpu();
    for (auto& sr : c.s.seg) sr = cpu::SegReg{0x23, 0, 0xffffffff, 0xc0f3};  // DPL-3 data
    c.s.seg[cpu::CS] = cpu::SegReg{0x2b, 0, 0xffffffff, 0xa0fb};            // DPL-3 64-bit code
    c.update_mode();
    c.tlb_flush();
}

std::vector<uint8_t> assemble(const Gen& gen) {
    Xbyak::CodeGenerator g(4096);
    gen(g);
    return {g.getCode(), g.getCode() + g.getSize()};
}

// CPU time of this thread: the figure must not depend on how busy the host is (other processes
// competing for the cores stretch wall-clock time, not the thread's CPU time).
double thread_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Run the workload's code repeatedly (it loops forever) for about `seconds` of CPU time; return MIPS.
// jit: blocks get host code after kDefaultThreshold runs, as on the board (0: interpret).
double measure(const Workload& w, double seconds, bool jit) {
    machine::SnippetEnv env;
    if (jit) env.set_jit(jit::kDefaultThreshold);
    env.load_code(assemble(w.gen));
    if (w.user) enter_user(env);
    // Warm up: decode the blocks, fill the TLB.
    env.run(100000);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        uint64_t chunk = 10'000'000, total = 0;
        double t0 = thread_seconds();
        double el = 0;
        do {
            if (env.run(chunk) != cpu::StopReason::Limit) {
                fmt::print(stderr, "{}: stopped unexpectedly (exception {})\n", w.name,
                           env.cpu().last_fault.vector);
                std::exit(1);
            }
            total += chunk;
            el = thread_seconds() - t0;
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
        {"call/ret", "a loop calling a function that calls a leaf function (call/ret every 3 instructions)",
         [](Xbyak::CodeGenerator& g) {
             g.L("top");
             g.call("f1");
             g.add(rbx, 1);
             g.cmp(rbx, rsi);  // never equal
             g.jne("top");
             g.hlt();
             g.L("f1");
             g.add(eax, ecx);
             g.call("f2");
             g.ret();
             g.L("f2");
             g.xor_(edx, eax);
             g.ret();
         }},
        {"user-fn", "CPL-3 loop calling C-like functions (frames, locals, a branch, a leaf call)",
         [](Xbyak::CodeGenerator& g) {
             g.xor_(ebx, ebx);
             g.L("top");
             g.mov(edi, ebx);
             g.call("fn");
             g.add(r12, rax);
             g.add(ebx, 1);
             g.jmp("top");
             // long fn(long x) { long t = x * 3; if (x & 1) t += leaf(x); return t + 1; }
             g.L("fn");
             g.push(rbp);
             g.mov(rbp, rsp);
             g.sub(rsp, 16);
             g.mov(qword[rbp - 8], rdi);
             g.lea(rax, ptr[rdi + rdi * 2]);
             g.mov(qword[rbp - 16], rax);
             g.test(dil, 1);
             g.jz("even");
             g.call("leaf");
             g.add(qword[rbp - 16], rax);
             g.L("even");
             g.mov(rax, qword[rbp - 16]);
             g.add(rax, 1);
             g.leave();
             g.ret();
             // long leaf(long x) { return (x >> 2) ^ x; }
             g.L("leaf");
             g.mov(rax, rdi);
             g.sar(rax, 2);
             g.xor_(rax, rdi);
             g.ret();
         },
         true},
        {"cr3-write", "MOV CR3 (a TLB flush, as in a context switch), then 4 pages touched and a call",
         [](Xbyak::CodeGenerator& g) {
             g.db(0x0f), g.db(0x20), g.db(0xd8);  // mov rax, cr3
             g.L("top");
             g.db(0x0f), g.db(0x22), g.db(0xd8);  // mov cr3, rax
             g.mov(esi, 0x800000);
             g.mov(rbx, qword[rsi]);
             g.mov(rbx, qword[rsi + 0x1000]);
             g.mov(qword[rsi + 0x2000], rbx);
             g.mov(qword[rsi + 0x3000], rbx);
             g.call("f");
             g.add(ecx, 1);
             g.jmp("top");
             g.L("f");
             g.ret();
         }},
        {"sse-f32", "scalar single arithmetic (mulss/addss/divss/sqrtss/cvtsi2ss) on varying values",
         [](Xbyak::CodeGenerator& g) {
             g.mov(eax, 0x3f800000);  // 1.0f
             g.movd(xmm0, eax);
             g.mov(eax, 0x3fc00000);  // 1.5f
             g.movd(xmm1, eax);
             g.movaps(xmm2, xmm0);
             g.L("top");
             g.add(ecx, 1);
             g.and_(ecx, 0xffff);
             g.cvtsi2ss(xmm3, ecx);
             g.addss(xmm3, xmm0);
             g.mulss(xmm3, xmm1);
             g.divss(xmm3, xmm1);
             g.sqrtss(xmm4, xmm3);
             g.addss(xmm2, xmm4);
             g.jmp("top");
         }},
    };
    fmt::print("micro86 speed in guest MIPS per host CPU second (best of 3, ~{:.1f} s per workload and engine)\n",
               seconds);
    fmt::print("  {:<9} {:>11} {:>11}\n", "", "interpreter", jit::available() ? "JIT" : "(no JIT)");
    for (const auto& w : workloads) {
        if (argc > 2 && std::string(w.name).find(argv[2]) == std::string::npos) continue;
        double interp = measure(w, seconds, false);
        if (jit::available())
            fmt::print("  {:<9} {:11.1f} {:11.1f}   {}\n", w.name, interp, measure(w, seconds, true), w.what);
        else
            fmt::print("  {:<9} {:11.1f} {:>11}   {}\n", w.name, interp, "-", w.what);
    }
}
