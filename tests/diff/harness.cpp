// Differential test harness: random inputs (Picker), the emulator side, the comparison and the
// runner that pipelines each form's cases between a forked native child and the emulator.
//
// Per form, one fork: the child generates the cases (runs the form's emitter) into a ring of slots
// in MAP_SHARED memory and executes each natively (native.h), writing its result into the slot; the
// parent runs each case in one reused SnippetEnv and compares. The two run in parallel, the child up
// to a ring ahead. If the child dies (an instance escaped the signal handlers, a system call, the
// hang watchdog) the form fails with the case number and the runner goes on with the next form.
// A case depends only on (seed, form name, case index), so M86_DIFF_CASE reproduces one alone.
#include "diff/harness.h"

#include <fmt/format.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "cpu/decode.h"
#include "diff/native.h"
#include "machine/snippet.h"

namespace m86::difftest {

using cpu::F80;

// ---- Picker ----------------------------------------------------------------------------------------

int Picker::gpr(std::initializer_list<int> avoid) {
    for (;;) {
        int n = int(rng() % 16);
        if (n == cpu::RSP) continue;
        bool ok = true;
        for (int a : avoid) ok &= a != n;
        if (ok) return n;
    }
}

namespace {
const Xbyak::Reg64 kR64[16] = {Xbyak::Reg64(0),  Xbyak::Reg64(1),  Xbyak::Reg64(2),  Xbyak::Reg64(3),
                               Xbyak::Reg64(4),  Xbyak::Reg64(5),  Xbyak::Reg64(6),  Xbyak::Reg64(7),
                               Xbyak::Reg64(8),  Xbyak::Reg64(9),  Xbyak::Reg64(10), Xbyak::Reg64(11),
                               Xbyak::Reg64(12), Xbyak::Reg64(13), Xbyak::Reg64(14), Xbyak::Reg64(15)};
const Xbyak::Reg32 kR32[16] = {Xbyak::Reg32(0),  Xbyak::Reg32(1),  Xbyak::Reg32(2),  Xbyak::Reg32(3),
                               Xbyak::Reg32(4),  Xbyak::Reg32(5),  Xbyak::Reg32(6),  Xbyak::Reg32(7),
                               Xbyak::Reg32(8),  Xbyak::Reg32(9),  Xbyak::Reg32(10), Xbyak::Reg32(11),
                               Xbyak::Reg32(12), Xbyak::Reg32(13), Xbyak::Reg32(14), Xbyak::Reg32(15)};
const Xbyak::Reg16 kR16[16] = {Xbyak::Reg16(0),  Xbyak::Reg16(1),  Xbyak::Reg16(2),  Xbyak::Reg16(3),
                               Xbyak::Reg16(4),  Xbyak::Reg16(5),  Xbyak::Reg16(6),  Xbyak::Reg16(7),
                               Xbyak::Reg16(8),  Xbyak::Reg16(9),  Xbyak::Reg16(10), Xbyak::Reg16(11),
                               Xbyak::Reg16(12), Xbyak::Reg16(13), Xbyak::Reg16(14), Xbyak::Reg16(15)};
const Xbyak::Reg8 kR8[16] = {Xbyak::Reg8(0),        Xbyak::Reg8(1),        Xbyak::Reg8(2),  Xbyak::Reg8(3),
                             Xbyak::Reg8(4, true),  Xbyak::Reg8(5, true),  Xbyak::Reg8(6, true), Xbyak::Reg8(7, true),
                             Xbyak::Reg8(8),        Xbyak::Reg8(9),        Xbyak::Reg8(10), Xbyak::Reg8(11),
                             Xbyak::Reg8(12),       Xbyak::Reg8(13),       Xbyak::Reg8(14), Xbyak::Reg8(15)};
const Xbyak::Xmm kXmm[16] = {Xbyak::Xmm(0),  Xbyak::Xmm(1),  Xbyak::Xmm(2),  Xbyak::Xmm(3),
                             Xbyak::Xmm(4),  Xbyak::Xmm(5),  Xbyak::Xmm(6),  Xbyak::Xmm(7),
                             Xbyak::Xmm(8),  Xbyak::Xmm(9),  Xbyak::Xmm(10), Xbyak::Xmm(11),
                             Xbyak::Xmm(12), Xbyak::Xmm(13), Xbyak::Xmm(14), Xbyak::Xmm(15)};
}  // namespace

const Xbyak::Reg64& Picker::r64(int n) const { return kR64[n & 15]; }
const Xbyak::Reg32& Picker::r32(int n) const { return kR32[n & 15]; }
const Xbyak::Reg16& Picker::r16(int n) const { return kR16[n & 15]; }
const Xbyak::Reg8& Picker::r8(int n) const { return kR8[n & 15]; }
const Xbyak::Xmm& Picker::xmm(int n) const { return kXmm[n & 15]; }

uint64_t Picker::edge(unsigned width) {
    // One draw decides the kind and supplies the small numbers (generators call this a lot).
    const unsigned bits = 8 * (width >= 8 ? 8 : width);
    const uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    const uint64_t sign = 1ull << (bits - 1);
    uint64_t r = rng();
    uint64_t rest = r >> 4;
    switch (r & 15) {
        case 0: return 0;
        case 1: return 1;
        case 2: return mask;              // -1
        case 3: return sign - 1;          // max positive
        case 4: return sign;              // min negative
        case 5: return sign + 1;
        case 6: return rest & 15;         // small
        case 7: return (mask - (rest & 15)) & mask;  // small negative
        case 8: return (sign - 1 - (rest & 3)) & mask;
        case 9: return 1ull << (rest % bits);  // a power of two
        case 10: return (sign - 1) ^ (rest & 0xf);
        default: return bits <= 32 ? rest & mask : rng();
    }
}

uint64_t Picker::data_offset(unsigned size) {
    if (size == 0) size = 1;
    if (size > kDataSize) size = kDataSize;
    const uint64_t room = kDataSize - size;  // largest offset fully inside
    unsigned r = unsigned(rng() % 100);
    if (r < fault_percent) {
        // Crosses into (or lies in) the guard page: the access must raise #PF.
        return kDataSize - size + 1 + rng() % size;
    }
    if (r < 40) {  // naturally aligned
        unsigned align = 1;
        while (align < 16 && size % (align * 2) == 0) align *= 2;
        return (rng() % (room / align + 1)) * align;
    }
    if (r < 70) return rng() % (room + 1);  // anywhere, often unaligned
    if (r < 90 && size > 1) {               // straddles the page boundary inside the data area
        uint64_t mid = 0x1000;
        return mid - 1 - rng() % (size - 1);
    }
    return (rng() & 1) ? room - rng() % 4 % (room + 1) : rng() % 4;  // at the ends
}

// ---- the emulator side -----------------------------------------------------------------------------

namespace {

// A bit-mixing step to derive independent per-case seeds (splitmix64 finaliser).
uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}
void fill_random(uint64_t seed, void* dst, size_t size) {
    auto* p = static_cast<uint8_t*>(dst);
    uint64_t x = seed;
    for (size_t i = 0; i < size; i += 8) {
        x += 0x9e3779b97f4a7c15ull;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        std::memcpy(p + i, &z, std::min<size_t>(8, size - i));
    }
}

class Emulator {
public:
    // jit: every block runs through the JIT from its first execution (the interpreter otherwise).
    explicit Emulator(bool jit) {
        if (jit && !env_.set_jit(1)) {
            fmt::print(stderr, "diff: M86_DIFF_JIT is set but this build has no JIT\n");
            std::exit(2);
        }
        // Only what exists natively is present: the code page, the data area, the stack pages (RAM
        // ends at 4 MiB; below 0x7000 sit the page tables and the GDT, which natively are unmapped
        // too, but instances never point there).
        for (uint64_t a = 0x7000; a < machine::SnippetEnv::kSmallPagesEnd; a += 0x1000) {
            bool present = a == kCodeAddr || (a >= kDataAddr && a < kDataAddr + kDataSize) ||
                           (a >= kStackTop - 0x2000 && a < kStackTop);
            if (!present) env_.set_page_present(a, false);
        }
        // Run at CPL 3 like the native side (a Linux process): user page-table entries, user code
        // and data descriptors with Linux's selectors (CS 0x33, SS 0x2b, the others null), CR0.AM.
        // The table addresses are snippet.h's documented layout (PML4 0x1000 .. PTs 0x5fff, GDT 0x6000).
        uint8_t* ram = env_.bus().ram();
        for (uint64_t a = 0x1000; a < 0x6000; a += 8) {
            uint64_t e;
            std::memcpy(&e, ram + a, 8);
            if (e) e |= 4;  // U/S
            std::memcpy(ram + a, &e, 8);
        }
        const uint64_t user_data = 0x00cff3000000ffffull, user_code64 = 0x00affb000000ffffull;
        std::memcpy(ram + 0x6000 + 0x28, &user_data, 8);
        std::memcpy(ram + 0x6000 + 0x30, &user_code64, 8);
        cpu::CpuState& s = env_.cpu().s;
        s.gdtr.limit = 0x37;
        s.cr0 |= cpu::cr0::AM;
        for (auto& sr : s.seg) sr = cpu::SegReg{0, 0, 0, 0};
        s.seg[cpu::CS] = cpu::SegReg{0x33, 0, 0xffffffff, 0xa0fb};
        s.seg[cpu::SS] = cpu::SegReg{0x2b, 0, 0xffffffff, 0xc0f3};
        env_.cpu().update_mode();
        env_.cpu().tlb_flush();
        base_ = s;
    }

    void run(const Case& c, Result& r) {
        cpu::Cpu& cpu = env_.cpu();
        cpu.s = base_;
        cpu.update_mode();
        cpu.lf = cpu::LazyFlags{};
        cpu.halted = false;
        cpu.exit_request = false;
        const State& in = c.in;
        std::memcpy(cpu.s.gpr, in.gpr, sizeof in.gpr);
        // IF is always set in a Linux process (and POPF at CPL 3, IOPL 0 cannot clear it).
        cpu.s.rflags = in.rflags | cpu::fl::kFixed1 | cpu::fl::IF;
        for (int i = 0; i < 16; ++i) cpu.s.xmm[i] = in.xmm[i];
        cpu.s.mxcsr = in.mxcsr;
        cpu::X87State& x = cpu.s.x87;
        x = cpu::X87State{};
        x.fcw = in.fcw;
        x.fsw = in.fsw;
        uint16_t ftw = 0;
        for (int i = 0; i < 8; ++i) {
            x.st[i] = in.st[i];
            unsigned t = ((in.ftw >> (2 * i)) & 3) == 3 ? 3 : x87_tag_of(in.st[i]);
            ftw |= uint16_t(t << (2 * i));
        }
        x.ftw = ftw;
        env_.poke(kDataAddr, in.data, kDataSize);
        env_.poke(kStackWinAddr, c.stack, kStackWinSize);
        uint8_t code[kMaxCode + 1];
        std::memcpy(code, c.code, c.len);
        code[c.len] = 0xf4;  // HLT: stops the run (#GP at CPL 3, at its address)
        env_.poke(kCodeAddr, code, c.len + 1);
        cpu.s.rip = kCodeAddr;

        cpu::StopReason why = cpu.run(100000);
        State& o = r.o.state;
        std::memcpy(o.gpr, cpu.s.gpr, sizeof o.gpr);
        o.rflags = cpu.rflags();
        for (int i = 0; i < 16; ++i) o.xmm[i] = cpu.s.xmm[i];
        o.mxcsr = cpu.s.mxcsr;
        o.fcw = x.fcw;
        o.fsw = x.fsw;
        o.ftw = x.ftw;
        for (int i = 0; i < 8; ++i) o.st[i] = x.st[i];
        env_.peek(kDataAddr, o.data, kDataSize);
        env_.peek(kStackWinAddr, r.stack, kStackWinSize);
        r.o.faulted = false;
        r.o.vector = 0;
        r.cr2 = r.err = 0;
        r.rip = cpu.s.rip;
        switch (why) {
            case cpu::StopReason::Halt:
                r.end = End::Done;
                if (r.rip == kCodeAddr + c.len + 1) r.rip = kCodeAddr + c.len;  // report the HLT's address
                break;
            case cpu::StopReason::Exception:
                if (cpu.last_fault.vector == cpu::kGP && r.rip == kCodeAddr + c.len) {
                    r.end = End::Done;  // the end marker: HLT raises #GP at CPL 3
                    break;
                }
                r.end = End::Fault;
                r.o.faulted = true;
                r.o.vector = cpu.last_fault.vector;
                r.err = cpu.last_fault.error_code;
                r.cr2 = cpu.last_fault.cr2;
                break;
            default: r.end = End::Limit; break;
        }
    }

private:
    machine::SnippetEnv env_{machine::SnippetEnv::kSmallPagesEnd};
    cpu::CpuState base_;
};

// ---- comparison ------------------------------------------------------------------------------------

constexpr uint64_t kComparedFlags = cpu::fl::kArith | cpu::fl::DF | cpu::fl::AC | cpu::fl::ID;
constexpr uint32_t kPfErrBits = 0x1 | 0x2 | 0x4 | 0x10;  // P, W/R, U/S, I/D (SDM Vol. 3, 4.7)

const char* const kGprNames[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                   "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

uint8_t abridged(uint16_t ftw) {
    uint8_t a = 0;
    for (int i = 0; i < 8; ++i)
        if (((ftw >> (2 * i)) & 3) != 3) a |= uint8_t(1u << i);
    return a;
}

bool f80_close(const F80& a, const F80& b, unsigned ulps) {
    if (a == b) return true;
    if (ulps == 0 || (a.se & 0x8000) != (b.se & 0x8000)) return false;
    // For same-sign finite values, (exponent, fraction) ordered as one integer is monotonic.
    auto key = [](const F80& v) {
        return ((unsigned __int128)(v.se & 0x7fff) << 63) | (v.mant & 0x7fffffffffffffffull);
    };
    unsigned __int128 ka = key(a), kb = key(b);
    unsigned __int128 d = ka > kb ? ka - kb : kb - ka;
    return d <= ulps && (a.mant >> 63) == (b.mant >> 63);
}

std::string hex(uint64_t v, int digits = 16) { return fmt::format("{:0{}x}", v, digits); }
std::string f80_str(const F80& v) { return fmt::format("{:04x}:{:016x}", v.se, v.mant); }
std::string xmm_str(const cpu::Xmm& v) { return fmt::format("{:016x}_{:016x}", v.q[1], v.q[0]); }
std::string end_str(const Result& r) {
    switch (r.end) {
        case End::Done: return "completed";
        case End::Fault:
            if (r.o.vector == kSyscallVector) return "a system call (blocked natively)";
            if (r.rip >= kWrapAddr && r.rip < kWrapAddr + 0x1000)
                return fmt::format("fault #{} in the harness's wrapper (an input the CPU rejects, e.g. MXCSR?)",
                                   r.o.vector);
            return r.o.vector == 14 ? fmt::format("fault #{} (err {:#x} cr2 {:#x})", r.o.vector, r.err, r.cr2)
                                    : fmt::format("fault #{}", r.o.vector);
        case End::Limit: return "instruction limit";
        default: return "error";
    }
}

struct Comparison {
    bool gpr[16] = {}, flags = false, rip = false, end = false, data = false, stack = false, xmm[16] = {},
         mxcsr = false, fcw = false, fsw = false, ftw = false, st[8] = {};
    bool any = false;
};

Comparison compare(const Form& f, const Result& n, const Result& e) {
    Comparison c;
    const State &a = n.o.state, &b = e.o.state;
    for (int i = 0; i < 16; ++i) c.any |= c.gpr[i] = a.gpr[i] != b.gpr[i];
    uint64_t fm = kComparedFlags & ~f.undefined_flags;
    c.any |= c.flags = ((a.rflags ^ b.rflags) & fm) != 0;
    c.any |= c.rip = n.rip != e.rip;
    c.any |= c.end = n.end != e.end || n.o.faulted != e.o.faulted || n.o.vector != e.o.vector ||
                     (n.end == End::Fault && n.o.vector == 14 &&
                      (n.cr2 != e.cr2 || ((n.err ^ e.err) & kPfErrBits) != 0));
    c.any |= c.data = std::memcmp(a.data, b.data, kDataSize) != 0;
    c.any |= c.stack = std::memcmp(n.stack, e.stack, kStackWinSize) != 0;
    if (f.sse) {
        for (int i = 0; i < 16; ++i) c.any |= c.xmm[i] = !(a.xmm[i] == b.xmm[i]);
        c.any |= c.mxcsr = a.mxcsr != b.mxcsr;
    }
    if (f.x87) {
        c.any |= c.fcw = a.fcw != b.fcw;
        c.any |= c.fsw = a.fsw != b.fsw;
        uint8_t ta = abridged(a.ftw), tb = abridged(b.ftw);
        c.any |= c.ftw = ta != tb;
        for (int i = 0; i < 8; ++i)
            if ((ta & tb) >> i & 1) c.any |= c.st[i] = !f80_close(a.st[i], b.st[i], f.x87_ulps);
    }
    return c;
}

std::string disasm(const Case& k) {
    std::string s;
    size_t off = 0;
    while (off < k.len) {
        cpu::Insn insn;
        std::string d = cpu::disassemble(k.code + off, k.len - off, cpu::Mode::Long64, kCodeAddr + off);
        size_t len = cpu::decode_one(k.code + off, k.len - off, cpu::Mode::Long64, insn) && insn.len ? insn.len
                                                                                                       : k.len - off;
        std::string bytes;
        for (size_t i = 0; i < len; ++i) bytes += fmt::format("{:02x} ", k.code[off + i]);
        s += fmt::format("    {:06x}  {:<30} {}\n", kCodeAddr + off, bytes, d);
        off += len;
    }
    return s;
}

void report(const Form& f, uint64_t seed, int idx, const Case& k, const Result& n, const Result& e,
            const Comparison& c) {
    const State& in = k.in;
    const State &a = n.o.state, &b = e.o.state;
    std::string s = fmt::format("MISMATCH {}  case {}  (reproduce: M86_SEED={} M86_DIFF_FILTER='{}' M86_DIFF_CASE={})\n{}",
                                f.name, idx, seed, f.name, idx, disasm(k));
    s += fmt::format("    {:<8} {:<18} {:<18} {:<18}\n", "", "input", "native", "emulator");
    auto row = [&](const std::string& name, const std::string& i, const std::string& x, const std::string& y,
                   bool diff) {
        s += fmt::format("    {:<8} {:<18} {:<18} {:<18}{}\n", name, i, x, y, diff ? " <<<" : "");
    };
    row("end", "", n.end == End::Done ? "completed" : "fault", e.end == End::Done ? "completed" : "fault", c.end);
    if (c.end) s += fmt::format("             native: {}   emulator: {}\n", end_str(n), end_str(e));
    row("rip", "", hex(n.rip), hex(e.rip), c.rip);
    for (int i = 0; i < 16; ++i) row(kGprNames[i], hex(in.gpr[i]), hex(a.gpr[i]), hex(b.gpr[i]), c.gpr[i]);
    row("rflags", hex(in.rflags, 8), hex(a.rflags, 8), hex(b.rflags, 8), c.flags);
    if (c.flags)
        s += fmt::format("             compared mask {:#x}, differing bits {:#x}\n",
                         kComparedFlags & ~f.undefined_flags,
                         (a.rflags ^ b.rflags) & kComparedFlags & ~f.undefined_flags);
    if (f.sse) {
        for (int i = 0; i < 16; ++i)
            if (c.xmm[i])
                s += fmt::format("    xmm{:<5} in {}\n             native {}\n             emu    {} <<<\n", i,
                                 xmm_str(in.xmm[i]), xmm_str(a.xmm[i]), xmm_str(b.xmm[i]));
        row("mxcsr", hex(in.mxcsr, 8), hex(a.mxcsr, 8), hex(b.mxcsr, 8), c.mxcsr);
    }
    if (f.x87) {
        row("fcw", hex(in.fcw, 4), hex(a.fcw, 4), hex(b.fcw, 4), c.fcw);
        row("fsw", hex(in.fsw, 4), hex(a.fsw, 4), hex(b.fsw, 4), c.fsw);
        row("ftw", hex(in.ftw, 4), hex(a.ftw, 4), hex(b.ftw, 4), c.ftw);
        for (int i = 0; i < 8; ++i)
            row(fmt::format("R{}", i), f80_str(in.st[i]), f80_str(a.st[i]), f80_str(b.st[i]), c.st[i]);
    }
    auto bytes_diff = [&](const char* what, uint64_t base, const uint8_t* i0, const uint8_t* x, const uint8_t* y,
                          size_t size) {
        int shown = 0;
        for (size_t off = 0; off < size && shown < 8; off += 16) {
            size_t len = std::min<size_t>(16, size - off);
            if (std::memcmp(x + off, y + off, len) == 0) continue;
            ++shown;
            std::string li, lx, ly, mk;
            for (size_t j = 0; j < len; ++j) {
                li += fmt::format("{:02x}", i0[off + j]);
                lx += fmt::format("{:02x}", x[off + j]);
                ly += fmt::format("{:02x}", y[off + j]);
                mk += x[off + j] != y[off + j] ? "^^" : "  ";
            }
            s += fmt::format("    {} {:#x}\n      input    {}\n      native   {}\n      emulator {}\n               "
                             "{}\n",
                             what, base + off, li, lx, ly, mk);
        }
    };
    if (c.data) bytes_diff("data", kDataAddr, in.data, a.data, b.data, kDataSize);
    if (c.stack) bytes_diff("stack", kStackWinAddr, k.stack, n.stack, e.stack, kStackWinSize);
    std::fputs(s.c_str(), stdout);
}

// ---- case generation -------------------------------------------------------------------------------

uint64_t random_gpr(Picker& p) {
    static constexpr unsigned kWidths[4] = {1, 2, 4, 8};
    unsigned w = kWidths[p.rng() % 4];
    uint64_t v = p.edge(w);
    if (w < 8 && p.rng() % 2) v |= p.rng() << (8 * w);  // random upper bits half the time
    return v;
}

// Builds case `idx` of form `f`. Returns false (with a message) if the form's emitter failed.
bool make_case(const Form& f, uint64_t seed, int idx, Xbyak::CodeGenerator& g, Case& k, std::string& err) {
    uint64_t cs = mix(seed ^ mix(fnv1a(f.name)) ^ mix(uint64_t(idx) * 0x9e3779b97f4a7c15ull));
    Rng rng(cs);
    Picker p{rng};
    State& st = k.in;
    for (int i = 0; i < 16; ++i) st.gpr[i] = random_gpr(p);
    st.gpr[cpu::RSP] = kStackRsp;
    st.rflags = cpu::fl::kFixed1 | (rng() & cpu::fl::kArith);
    for (auto& x : st.xmm) {
        x.q[0] = rng();
        x.q[1] = rng();
    }
    st.mxcsr = 0x1f80;
    st.fcw = 0x037f;
    st.fsw = 0;
    st.ftw = 0xffff;
    for (auto& r : st.st) r = F80{};
    fill_random(rng(), st.data, kDataSize);
    fill_random(rng(), k.stack, kStackWinSize);
    g.reset();
    try {
        f.emit(g, p, st);
    } catch (const std::exception& ex) {
        err = ex.what();
        return false;
    }
    if (g.getSize() == 0 || g.getSize() > kMaxCode) {
        err = fmt::format("instance size {} out of range", g.getSize());
        return false;
    }
    k.len = uint32_t(g.getSize());
    std::memcpy(k.code, g.getCode(), k.len);
    return true;
}

// ---- the runner ------------------------------------------------------------------------------------

constexpr int kRing = 16;         // slots shared by the parent and the native child

// A counter one side advances and the other may sleep on (futex on the shared mapping). A sleeper
// says how far it wants the counter to get, so the other side wakes it once per batch, not per case.
struct Counter {
    std::atomic<int32_t> value{0};
    std::atomic<int32_t> sleeping{0};
    std::atomic<int32_t> want{0};  // the sleeper waits for value > want
    void publish(int32_t v) {
        value.store(v, std::memory_order_seq_cst);
        if (sleeping.load(std::memory_order_seq_cst) && v > want.load(std::memory_order_seq_cst) &&
            sleeping.exchange(0, std::memory_order_seq_cst))
            syscall(SYS_futex, &value, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
    }
    // Waits until value > v (spinning briefly, then sleeping until value > v_batch >= v or the
    // timeout passes); returns the value seen, which may still be <= v after a timeout.
    int32_t wait_above(int32_t v, int32_t v_batch, long timeout_ns) {
        for (int spin = 0; spin < 200; ++spin) {
            int32_t cur = value.load(std::memory_order_acquire);
            if (cur > v) return cur;
            __builtin_ia32_pause();
        }
        want.store(v_batch, std::memory_order_seq_cst);
        sleeping.store(1, std::memory_order_seq_cst);
        int32_t cur = value.load(std::memory_order_seq_cst);
        while (cur <= v_batch) {
            timespec ts{timeout_ns / 1000000000, timeout_ns % 1000000000};
            syscall(SYS_futex, &value, FUTEX_WAIT, cur, timeout_ns ? &ts : nullptr, nullptr, 0);
            int32_t now = value.load(std::memory_order_seq_cst);
            if (now == cur && timeout_ns) break;  // timed out (or spurious): let the caller check
            cur = now;
            if (cur <= v_batch) sleeping.store(1, std::memory_order_seq_cst);
        }
        sleeping.store(0, std::memory_order_seq_cst);
        return cur;
    }
};

struct alignas(64) Shared {
    Counter done;      // the child generated and ran cases [0, done) natively
    Counter consumed;  // the parent finished with cases [0, consumed); their slots are free
    std::atomic<int32_t> generated{0};  // the child generated cases [0, generated)
    std::atomic<int32_t> error_case{-1};  // the case whose emitter failed (the child then exits)
    char error[256] = {};
    struct Slot {
        alignas(64) Case c;         // written by the child, then read by the parent
        alignas(64) Result native;  // written by the child
    } slot[kRing];
};

// The child generates the cases (the emitters run here, in parallel with the parent's emulator)
// and runs them natively.
[[noreturn]] void child_main(Shared* sh, const Form& f, const RunOptions& opt, int first, int total,
                             Xbyak::CodeGenerator& g) {
    native_child_setup(600);  // a last resort; the parent's watchdog acts first
    int32_t free_below = kRing;  // slots of cases below this are free
    std::string err;
    for (int32_t i = 0; i < total; ++i) {
        // Sleep until a quarter of the ring is free, not just one slot.
        while (i >= free_below)
            free_below = sh->consumed.wait_above(i - kRing, std::min(i - kRing + kRing / 4, total - 1), 0) + kRing;
        auto& sl = sh->slot[i % kRing];
        if (!make_case(f, opt.seed, first + i, g, sl.c, err)) {
            std::snprintf(sh->error, sizeof sh->error, "%s", err.c_str());
            sh->error_case.store(i);
            _exit(3);
        }
        sh->generated.store(i + 1, std::memory_order_release);
        native_run(sl.c, sl.native);
        sh->done.publish(i + 1);
    }
    _exit(0);
}

struct FormStats {
    int cases = 0, failures = 0;
    int injected = 0, detected = 0;
    int masked_injected = 0, masked_ignored = 0;
    int native_faults = 0;  // cases that ended in an exception natively
    bool died = false;
};

// Self-test: corrupt one field of the emulator's result, chosen by the case index.
bool inject(const Form& f, int idx, Result& e) {
    if (idx % 7 != 3) return false;
    State& s = e.o.state;
    switch ((idx / 7) % 6) {
        case 0: s.gpr[(idx / 42) % 16] ^= 1ull << (idx % 64); break;
        case 1: {
            uint64_t m = kComparedFlags & ~f.undefined_flags & cpu::fl::kArith;
            if (!m) m = cpu::fl::DF;
            s.rflags ^= m & -m;
            break;
        }
        case 2: s.data[(idx * 131) % kDataSize] ^= 0x10; break;
        case 3: e.rip += 1; break;
        case 4:
            if (f.sse) s.xmm[idx % 16].b[idx % 16] ^= 1;
            else if (f.x87) s.fcw ^= 0x0c00;
            else e.o.vector ^= 1, e.o.faulted = !e.o.faulted, e.end = e.end == End::Done ? End::Fault : End::Done;
            break;
        default: e.stack[idx % kStackWinSize] ^= 0x80; break;
    }
    return true;
}

FormStats run_form(const Form& f, const RunOptions& opt, Shared* sh, Emulator& emu, Xbyak::CodeGenerator& g) {
    FormStats st;
    const int total = f.cases > 0 ? f.cases : opt.cases;
    const int first = opt.only_case >= 0 ? opt.only_case : 0;
    const int end = opt.only_case >= 0 ? std::min(total, opt.only_case + 1) : total;
    const int n = std::max(0, end - first);
    sh->done.value.store(0);
    sh->consumed.value.store(0);
    sh->generated.store(0);
    sh->error_case.store(-1);
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        std::perror("fork");
        st.failures = 1;
        return st;
    }
    if (pid == 0) child_main(sh, f, opt, first, n, g);
    int printed = 0;
    bool child_gone = false;
    int wstatus = 0;
    int32_t done = 0;
    Result er;
    for (int i = 0; i < n; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        bool hung = false;
        while (done <= i) {
            done = sh->done.wait_above(i, std::min(i + kRing / 4, n - 1), 2'000'000);
            if (done > i) break;
            if (!child_gone && waitpid(pid, &wstatus, WNOHANG) == pid) child_gone = true;
            if (child_gone) {
                done = sh->done.value.load();
                break;
            }
            if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > opt.hang_seconds) {
                hung = true;
                break;
            }
        }
        auto& sl = sh->slot[i % kRing];
        if (done <= i && sh->error_case.load() == i) {
            std::printf("ERROR %s: the emitter failed at case %d: %s\n", f.name.c_str(), first + i, sh->error);
            st.failures++;
            break;
        }
        if (done <= i) {
            std::string why = hung                   ? fmt::format("no result after {} s (killed)", opt.hang_seconds)
                              : WIFSIGNALED(wstatus) ? fmt::format("killed by signal {}", WTERMSIG(wstatus))
                                                     : fmt::format("exited with status {}", WEXITSTATUS(wstatus));
            std::printf("ERROR %s: the native child died at case %d (M86_SEED=%llu): %s\n%s", f.name.c_str(),
                        first + i, (unsigned long long)opt.seed, why.c_str(),
                        sh->generated.load() > i ? disasm(sl.c).c_str() : "    (while generating it)\n");
            st.failures++;
            st.died = true;
            break;
        }
        emu.run(sl.c, er);
        ++st.cases;
        if (i < opt.dump)
            std::printf("%s case %d: %s\n%s", f.name.c_str(), first + i, end_str(sl.native).c_str(),
                        disasm(sl.c).c_str());
        if (sl.native.end == End::Fault) st.native_faults++;
        if (opt.selftest && (first + i) % 7 == 5 && f.undefined_flags && sl.native.end == End::Done &&
            !compare(f, sl.native, er).any) {
            // The other way round: flipping a flag the form declares undefined must go unnoticed.
            Result masked = er;
            masked.o.state.rflags ^= f.undefined_flags;
            st.masked_injected++;
            if (!compare(f, sl.native, masked).any) st.masked_ignored++;
        }
        bool injected = opt.selftest && inject(f, first + i, er);
        Comparison c = compare(f, sl.native, er);
        if (injected) {
            st.injected++;
            if (c.any) st.detected++;
        } else if (c.any) {
            st.failures++;
            if (printed++ < opt.max_reports) report(f, opt.seed, first + i, sl.c, sl.native, er, c);
        }
        sh->consumed.publish(i + 1);
    }
    if (!child_gone) {
        if (st.died || st.failures) kill(pid, SIGKILL);
        waitpid(pid, &wstatus, 0);
    }
    if (printed > opt.max_reports)  // `printed` counts every mismatch, shown or not
        std::printf("    ... %d mismatching cases in %s (%d shown)\n", printed, f.name.c_str(), opt.max_reports);
    return st;
}

}  // namespace

int run_forms(const std::vector<Form>& forms, const RunOptions& opt) {
    if (!native_init()) {
        std::printf("diff: 0 passed, %zu failed\n", forms.size());
        return 1;
    }
    void* mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        std::perror("mmap");
        return 1;
    }
    auto* sh = new (mem) Shared;
    auto emu = std::make_unique<Emulator>(opt.jit);
    Xbyak::CodeGenerator g(4096, Xbyak::DontSetProtectRWE);
    {
        // Cases derive from the form's name: two forms with one name test the same instances.
        std::vector<std::string> names;
        for (const Form& f : forms) names.push_back(f.name);
        std::sort(names.begin(), names.end());
        for (size_t i = 1; i < names.size(); ++i)
            if (names[i] == names[i - 1] && (i < 2 || names[i] != names[i - 2]))
                std::printf("WARNING: more than one form is named \"%s\"\n", names[i].c_str());
    }
    auto t0 = std::chrono::steady_clock::now();
    int passed = 0, failed = 0, failing_cases = 0;
    long long cases = 0, injected = 0, detected = 0, masked_injected = 0, masked_ignored = 0;
    for (const Form& f : forms) {
        if (!opt.filter.empty() && f.name.find(opt.filter) == std::string::npos) continue;
        auto tf = std::chrono::steady_clock::now();
        FormStats s = run_form(f, opt, sh, *emu, g);
        cases += s.cases;
        injected += s.injected;
        detected += s.detected;
        masked_injected += s.masked_injected;
        masked_ignored += s.masked_ignored;
        failing_cases += s.failures;
        (s.failures ? failed : passed)++;
        if (opt.verbose)
            std::printf("  %-44s %5d cases %5d faulting %5d failures  %.0f ms\n", f.name.c_str(), s.cases,
                        s.native_faults, s.failures,
                        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - tf).count());
        std::fflush(stdout);
    }
    int selftest_bad = 0;
    if (opt.selftest) {
        // The runner must survive a native child that exits or hangs, and fail that form.
        std::vector<Form> killers = {
            {"selftest: the native child exits (exit_group)",
             [](Xbyak::CodeGenerator& g, Picker&, State&) {
                 g.mov(g.eax, 231);
                 g.xor_(g.edi, g.edi);
                 g.syscall();
             }},
            {"selftest: the native instance hangs (jmp $)",
             [](Xbyak::CodeGenerator& g, Picker&, State&) {
                 g.db(0xeb);
                 g.db(0xfe);
             }},
        };
        RunOptions o = opt;
        o.cases = 20;
        o.hang_seconds = 1;
        o.selftest = false;
        killers.push_back({"selftest: a system call (read) is blocked natively", [](Xbyak::CodeGenerator& g, Picker&,
                                                                                      State&) {
                               g.xor_(g.eax, g.eax);
                               g.syscall();
                           }});
        killers.push_back({"selftest: the emitter throws", [](Xbyak::CodeGenerator&, Picker&, State&) {
                               throw std::runtime_error("thrown on purpose");
                           }});
        for (const Form& f : killers) {
            bool blocked = f.name.find("blocked") != std::string::npos;
            bool throws = f.name.find("throws") != std::string::npos;
            std::printf("(selftest: the next ERROR/MISMATCH is expected)\n");
            o.max_reports = 1;
            FormStats s = run_form(f, o, sh, *emu, g);
            bool ok = blocked ? !s.died && s.cases == o.cases && s.failures == o.cases && s.native_faults == o.cases
                      : throws ? !s.died && s.failures == 1 && s.cases == 0
                               : s.died && s.failures == 1 && s.cases == 0;
            std::printf("diff selftest: %s: %s\n", f.name.c_str(), ok ? "detected" : "NOT DETECTED");
            selftest_bad += !ok;
        }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("diff: %lld cases run in %.1f s (seed %llu%s)\n", cases, secs, (unsigned long long)opt.seed,
                opt.jit ? ", through the JIT" : "");
    if (opt.verbose) {
        rusage self{}, kids{};
        getrusage(RUSAGE_SELF, &self);
        getrusage(RUSAGE_CHILDREN, &kids);
        auto cpu = [](const rusage& r) {
            return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
        };
        std::printf("diff: CPU time %.1f s in the runner (generation, emulator, comparison), %.1f s in the native "
                    "children\n",
                    cpu(self), cpu(kids));
    }
    if (opt.selftest) {
        std::printf("diff selftest: %lld corruptions injected, %lld detected; %lld flips of undefined flags, "
                    "%lld ignored\n",
                    injected, detected, masked_injected, masked_ignored);
        if (detected != injected || injected == 0 || masked_ignored != masked_injected || selftest_bad)
            failing_cases += 1;
    }
    std::printf("diff: %d passed, %d failed\n", passed, failed);
    munmap(mem, sizeof(Shared));
    return failing_cases;
}

}  // namespace m86::difftest
