// Native execution of test cases on the host CPU; see native.h for the design.
#include "diff/native.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <csetjmp>
#include <cstdio>
#include <cstddef>
#include <cstring>
#include <vector>

namespace m86::difftest {

namespace {

// Save area layout (page after the wrapper code).
constexpr uint64_t kSlots = kWrapAddr + 0x1000;
constexpr uint64_t kGprIn = kSlots + 0x000;     // 16 x 8
constexpr uint64_t kFlagsIn = kSlots + 0x080;
constexpr uint64_t kTarget = kSlots + 0x088;    // jump target (kCodeAddr)
constexpr uint64_t kGprOut = kSlots + 0x100;    // 16 x 8
constexpr uint64_t kFlagsOut = kSlots + 0x180;
constexpr uint64_t kHostRsp = kSlots + 0x188;
constexpr uint64_t kFxIn = kSlots + 0x200;      // 512 bytes each, 16-byte aligned
constexpr uint64_t kFxOut = kSlots + 0x400;
constexpr uint64_t kFxHost = kSlots + 0x600;
constexpr uint64_t kPrivStack = kSlots + 0x1000;  // grows down into the slot page's top half
constexpr uint64_t kEpilogue = kWrapAddr + 0x400;
constexpr uint64_t kRestore = kWrapAddr + 0x800;

template <class T> T* at(uint64_t a) { return reinterpret_cast<T*>(a); }

// ModRM + SIB for an absolute [disp32] operand: mod=00 rm=100, SIB base=101 index=100.
void abs_op(Xbyak::CodeGenerator& g, int reg_field, uint64_t addr) {
    g.db(0x04 | (reg_field << 3));
    g.db(0x25);
    g.dd(uint32_t(addr));
}
void fxsave_abs(Xbyak::CodeGenerator& g, uint64_t addr) { g.db(0x0f), g.db(0xae), abs_op(g, 0, addr); }
void fxrstor_abs(Xbyak::CodeGenerator& g, uint64_t addr) { g.db(0x0f), g.db(0xae), abs_op(g, 1, addr); }

bool map_fixed(uint64_t addr, uint64_t size, int prot) {
    void* p = mmap(reinterpret_cast<void*>(addr), size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                   -1, 0);
    if (p != reinterpret_cast<void*>(addr)) {
        std::fprintf(stderr, "diff: cannot map %#llx (+%#llx) at its fixed address\n", (unsigned long long)addr,
                     (unsigned long long)size);
        if (p != MAP_FAILED) munmap(p, size);
        return false;
    }
    return true;
}

void copy_code(const Xbyak::CodeGenerator& g, uint64_t addr) { std::memcpy(at<void>(addr), g.getCode(), g.getSize()); }

bool gen_wrapper() {
    using namespace Xbyak::util;
    static const Xbyak::Reg64 regs[16] = {rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15};
    Xbyak::CodeGenerator g(4096, Xbyak::DontSetProtectRWE);
    // Prologue: called as void(*)() from C++.
    for (const auto& r : {rbx, rbp, r12, r13, r14, r15}) g.push(r);
    g.mov(g.ptr[reinterpret_cast<void*>(kHostRsp)], rsp);
    fxsave_abs(g, kFxHost);
    fxrstor_abs(g, kFxIn);
    g.mov(rsp, uint32_t(kFlagsIn));
    g.popfq();
    for (int i = 0; i < 16; ++i)
        if (i != 4) g.mov(regs[i], g.ptr[reinterpret_cast<void*>(kGprIn + 8 * i)]);
    g.mov(rsp, g.ptr[reinterpret_cast<void*>(kGprIn + 8 * 4)]);
    g.jmp(g.ptr[reinterpret_cast<void*>(kTarget)]);
    if (g.getSize() > kEpilogue - kWrapAddr) return false;
    copy_code(g, kWrapAddr);

    // Epilogue: reached by the JMP after the instance.
    g.reset();
    for (int i = 0; i < 16; ++i) g.mov(g.ptr[reinterpret_cast<void*>(kGprOut + 8 * i)], regs[i]);
    g.mov(rsp, uint32_t(kPrivStack));
    g.pushfq();
    g.pop(rax);
    g.mov(g.ptr[reinterpret_cast<void*>(kFlagsOut)], rax);
    fxsave_abs(g, kFxOut);
    fxrstor_abs(g, kFxHost);
    g.push(0x202);  // clean host RFLAGS: DF=0 (ABI), AC=0 (the host does unaligned accesses)
    g.popfq();
    g.mov(rsp, g.ptr[reinterpret_cast<void*>(kHostRsp)]);
    for (const auto& r : {r15, r14, r13, r12, rbp, rbx}) g.pop(r);
    g.ret();
    copy_code(g, kEpilogue);

    // Restore after a fault (siglongjmp already restored the callee-saved registers and RSP).
    g.reset();
    fxrstor_abs(g, kFxHost);
    g.push(0x202);
    g.popfq();
    g.ret();
    copy_code(g, kRestore);
    *at<uint64_t>(kTarget) = kCodeAddr;
    return true;
}

// Fault capture (filled by the signal handler).
struct FaultInfo {
    uint64_t trapno, rip, err, cr2, rflags;
    uint64_t gpr[16];
    uint8_t fx[512];
    bool have_fx;
};
FaultInfo g_fault;
sigjmp_buf g_jb;
volatile sig_atomic_t g_in_test = 0;

void on_signal(int sig, siginfo_t* si, void* ctx) {
    // The kernel clears DF and TF for the handler but not AC; host code does unaligned accesses.
    asm volatile("pushfq; andq %0, (%%rsp); popfq" : : "i"(~0x40000ll) : "memory", "cc");
    if (!g_in_test) {  // a fault in the harness itself: die so the parent reports it
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_in_test = 0;
    const auto* uc = static_cast<const ucontext_t*>(ctx);
    const greg_t* gr = uc->uc_mcontext.gregs;
    static constexpr int kMap[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                     REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};
    for (int i = 0; i < 16; ++i) g_fault.gpr[i] = uint64_t(gr[kMap[i]]);
    g_fault.trapno = sig == SIGSYS ? kSyscallVector : uint64_t(gr[REG_TRAPNO]);
    g_fault.rip = uint64_t(gr[REG_RIP]);
    g_fault.err = uint64_t(gr[REG_ERR]);
    g_fault.rflags = uint64_t(gr[REG_EFL]);
    g_fault.cr2 = (sig == SIGSEGV || sig == SIGBUS) ? reinterpret_cast<uint64_t>(si->si_addr) : 0;
    g_fault.have_fx = uc->uc_mcontext.fpregs != nullptr;
    if (g_fault.have_fx) std::memcpy(g_fault.fx, uc->uc_mcontext.fpregs, 512);
    siglongjmp(g_jb, 1);
}

}  // namespace

unsigned x87_tag_of(const cpu::F80& v) {
    unsigned exp = v.se & 0x7fff;
    if (exp == 0) return v.mant == 0 ? 1 : 2;
    if (exp == 0x7fff) return 2;
    return (v.mant >> 63) ? 0 : 2;  // unnormal: integer bit clear
}

void state_to_fxsave(const State& s, uint8_t img[512]) {
    std::memset(img, 0, 512);
    std::memcpy(img + 0, &s.fcw, 2);
    std::memcpy(img + 2, &s.fsw, 2);
    uint8_t abridged = 0;
    for (int i = 0; i < 8; ++i)
        if (((s.ftw >> (2 * i)) & 3) != 3) abridged |= uint8_t(1u << i);
    img[4] = abridged;
    std::memcpy(img + 24, &s.mxcsr, 4);
    unsigned top = (s.fsw >> 11) & 7;
    for (int i = 0; i < 8; ++i) {
        const cpu::F80& r = s.st[(top + i) & 7];
        std::memcpy(img + 32 + 16 * i, &r.mant, 8);
        std::memcpy(img + 40 + 16 * i, &r.se, 2);
    }
    for (int i = 0; i < 16; ++i) std::memcpy(img + 160 + 16 * i, s.xmm[i].b, 16);
}

void fxsave_to_state(const uint8_t img[512], State& s) {
    std::memcpy(&s.fcw, img + 0, 2);
    std::memcpy(&s.fsw, img + 2, 2);
    std::memcpy(&s.mxcsr, img + 24, 4);
    unsigned top = (s.fsw >> 11) & 7;
    for (int i = 0; i < 8; ++i) {
        cpu::F80& r = s.st[(top + i) & 7];
        std::memcpy(&r.mant, img + 32 + 16 * i, 8);
        std::memcpy(&r.se, img + 40 + 16 * i, 2);
    }
    uint16_t ftw = 0;
    for (int i = 0; i < 8; ++i) ftw |= uint16_t(((img[4] >> i) & 1 ? x87_tag_of(s.st[i]) : 3u) << (2 * i));
    s.ftw = ftw;
    for (int i = 0; i < 16; ++i) std::memcpy(s.xmm[i].b, img + 160 + 16 * i, 16);
}

namespace {
// An instance that reaches the kernel (SYSCALL, INT 0x80) must not act on the host: from here on the
// child may only make the system calls the harness itself needs; any other one raises SIGSYS, which
// ends the case like a fault (kSyscallVector).
void install_syscall_filter() {
    // The emitters run in the child too: malloc may need brk/mmap.
    static const int kAllowed[] = {SYS_futex,  SYS_exit,   SYS_exit_group, SYS_rt_sigreturn, SYS_write,
                                   SYS_rt_sigprocmask,    SYS_rt_sigaction, SYS_tgkill,       SYS_getpid,
                                   SYS_gettid, SYS_brk,    SYS_mmap,       SYS_munmap,       SYS_mremap,
                                   SYS_madvise};
    std::vector<sock_filter> prog;
    prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
    prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP));
#if defined(__SANITIZE_ADDRESS__)
    // Under AddressSanitizer the runtime makes system calls of its own at unpredictable moments
    // (sigaltstack in its signal wrappers, /proc/self/maps and getrlimit when a handler
    // siglongjmps), so instead of an allow-list trap exactly the calls made from the instance
    // page: instruction_pointer in [kCodeAddr, kCodeAddr + 4 KiB).
    const unsigned ip_lo = offsetof(seccomp_data, instruction_pointer), ip_hi = ip_lo + 4;
    prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ip_hi));
    prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ip_lo));
    prog.push_back(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, unsigned(kCodeAddr), 1, 0));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    prog.push_back(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, unsigned(kCodeAddr + 0x1000), 0, 1));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP));
    (void)kAllowed;
#else
    prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
    for (int nr : kAllowed) {
        prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, unsigned(nr), 0, 1));
        prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    }
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP));
#endif
    sock_fprog fprog{uint16_t(prog.size()), prog.data()};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0)
        std::perror("diff: seccomp filter for the native child (instances could make system calls)");
}
}  // namespace

bool native_init() {
    constexpr int kRW = PROT_READ | PROT_WRITE, kRWX = kRW | PROT_EXEC;
    if (!map_fixed(kCodeAddr, 0x1000, kRWX) || !map_fixed(kDataAddr, kDataSize, kRW) ||
        !map_fixed(kGuardAddr, 0x1000, PROT_NONE) || !map_fixed(kStackTop - 0x2000, 0x2000, kRW) ||
        !map_fixed(kWrapAddr, 0x1000, kRWX) || !map_fixed(kSlots, 0x1000, kRW))
        return false;
    return gen_wrapper();
}

void native_child_setup(unsigned alarm_seconds) {
    static uint8_t altstack[64 * 1024];
    stack_t ss{};
    ss.ss_sp = altstack;
    ss.ss_size = sizeof altstack;
    sigaltstack(&ss, nullptr);
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS}) sigaction(sig, &sa, nullptr);
    alarm(alarm_seconds);
    install_syscall_filter();
}

void native_run(const Case& c, Result& r) {
    std::memcpy(at<void>(kDataAddr), c.in.data, kDataSize);
    std::memcpy(at<void>(kStackWinAddr), c.stack, kStackWinSize);
    uint8_t* code = at<uint8_t>(kCodeAddr);
    std::memcpy(code, c.code, c.len);
    uint64_t end = kCodeAddr + c.len;
    int32_t rel = int32_t(int64_t(kEpilogue) - int64_t(end + 5));
    code[c.len] = 0xe9;
    std::memcpy(code + c.len + 1, &rel, 4);
    state_to_fxsave(c.in, at<uint8_t>(kFxIn));
    std::memcpy(at<void>(kGprIn), c.in.gpr, sizeof c.in.gpr);
    *at<uint64_t>(kFlagsIn) = c.in.rflags;

    State& o = r.o.state;
    if (sigsetjmp(g_jb, 0) == 0) {
        g_in_test = 1;
        reinterpret_cast<void (*)()>(kWrapAddr)();
        g_in_test = 0;
        r.end = End::Done;
        r.o.faulted = false;
        r.o.vector = 0;
        r.rip = end;
        r.cr2 = r.err = 0;
        std::memcpy(o.gpr, at<void>(kGprOut), sizeof o.gpr);
        o.rflags = *at<uint64_t>(kFlagsOut);
        fxsave_to_state(at<uint8_t>(kFxOut), o);
    } else {
        reinterpret_cast<void (*)()>(kRestore)();
        r.end = End::Fault;
        r.o.faulted = true;
        r.o.vector = uint8_t(g_fault.trapno);
        r.rip = g_fault.rip;
        r.cr2 = g_fault.cr2;
        r.err = uint32_t(g_fault.err);
        std::memcpy(o.gpr, g_fault.gpr, sizeof o.gpr);
        o.rflags = g_fault.rflags;
        fxsave_to_state(g_fault.have_fx ? g_fault.fx : at<uint8_t>(kFxIn), o);
    }
    std::memcpy(o.data, at<void>(kDataAddr), kDataSize);
    std::memcpy(r.stack, at<void>(kStackWinAddr), kStackWinSize);
}

}  // namespace m86::difftest
