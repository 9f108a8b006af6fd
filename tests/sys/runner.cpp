// Runner for the bare-metal guest programs in tests/sys (one program per run).
//
// The machine: 32 MiB of RAM at 0, the program's 64 KiB image as ROM at 0xFFFF0000 (where the reset
// vector lives) and aliased at 0xF0000 (where the programs are linked), and a few test ports:
//
//   0xE9  write: one character of log output
//   0xF0  write: a 32-bit value for the failure report (what a failed check saw)
//   0xF4  write: end of test; 0 = pass, anything else = the id of the failed check
//   0xF8  write: raise INTR with this vector (held until the CPU acknowledges it)
//   0xF9  write: raise NMI
//   0xFB  write: raise INTR with this vector once the CPU halts (a timer that fires when idle)
//   0xFC  write: raise NMI once the CPU halts
//
// The CPU starts from RESET and delivers exceptions through the guest's IVT/IDT
// (stop_on_exception = false). A triple fault (StopReason::Shutdown) fails the test unless
// --expect-shutdown is given; HLT with nothing pending also fails (the program would hang).
//
// --jit N runs blocks through the JIT once they have run N times (1: every block from its first
// run), as the board does with threshold jit::kDefaultThreshold; without it everything is
// interpreted. meson runs every program both ways.
//
// --jit-check (with --jit) runs the JIT lockstep checker on every run of host code (Cpu::jit_check):
// a difference from the interpreter aborts with its report; a run in which nothing was checked
// fails.
//
// usage: sys_runner IMAGE [--expect-shutdown] [--max-insns N] [--jit N [--jit-check]] [--trace]
#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "cpu/cpu.h"
#include "cpu/decode.h"
#include "jit/jit.h"
#include "machine/host.h"

using namespace m86;
using namespace m86::cpu;

namespace {

constexpr uint64_t kRamSize = 32ull << 20;
constexpr uint64_t kRomSize = 64 * 1024;
constexpr uint64_t kRomHigh = 0xffff0000, kRomLow = 0xf0000;
constexpr uint16_t kPortLog = 0xe9, kPortReport = 0xf0, kPortExit = 0xf4, kPortIntr = 0xf8, kPortNmi = 0xf9,
                   kPortIntrOnHalt = 0xfb, kPortNmiOnHalt = 0xfc;

class TestMachine : public Bus, public Platform {
public:
    std::vector<uint8_t> ram = std::vector<uint8_t>(kRamSize);
    std::vector<uint8_t> rom = std::vector<uint8_t>(kRomSize);
    Cpu* cpu = nullptr;
    std::string log;
    std::vector<uint32_t> reports;
    bool done = false;
    uint32_t exit_code = 0;
    std::deque<uint8_t> intr;
    int intr_on_halt = -1;
    bool nmi_on_halt = false;

    uint8_t* page_ptr(uint64_t page, bool write) override {
        if (page >= kRomLow && page < kRomLow + kRomSize) return write ? nullptr : rom.data() + (page - kRomLow);
        if (page >= kRomHigh && page < kRomHigh + kRomSize) return write ? nullptr : rom.data() + (page - kRomHigh);
        if (page < kRamSize) return ram.data() + page;
        return nullptr;
    }
    uint64_t mmio_read(uint64_t, unsigned size) override { return size == 8 ? ~0ull : (1ull << (8 * size)) - 1; }
    void mmio_write(uint64_t, unsigned, uint64_t) override {}
    uint32_t io_read(uint16_t, unsigned size) override { return size == 4 ? ~0u : (1u << (8 * size)) - 1; }
    void io_write(uint16_t port, unsigned, uint32_t v) override {
        switch (port) {
            case kPortLog: log += char(v); break;
            case kPortReport: reports.push_back(v); break;
            case kPortExit:
                done = true;
                exit_code = v;
                cpu->request_stop();
                break;
            case kPortIntr:
                intr.push_back(uint8_t(v));
                cpu->set_intr(true);
                break;
            case kPortNmi: cpu->raise_nmi(); break;
            case kPortIntrOnHalt: intr_on_halt = int(v & 0xff); break;
            case kPortNmiOnHalt: nmi_on_halt = true; break;
            default: break;
        }
    }
    uint64_t tsc(uint64_t n) override { return n; }
    int intr_acknowledge() override {
        if (intr.empty()) return -1;
        int v = intr.front();
        intr.pop_front();
        if (intr.empty()) cpu->set_intr(false);
        return v;
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        fmt::print(stderr,
                   "usage: sys_runner IMAGE [--expect-shutdown] [--max-insns N] [--jit N [--jit-check]] [--trace]\n");
        return 2;
    }
    std::string image = argv[1];
    bool expect_shutdown = false, trace = false, jit_check = false;
    uint64_t max_insns = 50'000'000;
    uint32_t jit_threshold = 0;
    for (int k = 2; k < argc; k++) {
        std::string a = argv[k];
        if (a == "--expect-shutdown") expect_shutdown = true;
        else if (a == "--trace") trace = true;
        else if (a == "--jit-check") jit_check = true;
        else if (a == "--max-insns" && k + 1 < argc) max_insns = std::strtoull(argv[++k], nullptr, 0);
        else if (a == "--jit" && k + 1 < argc) jit_threshold = uint32_t(std::strtoul(argv[++k], nullptr, 0));
        else {
            fmt::print(stderr, "sys_runner: unknown option {}\n", a);
            return 2;
        }
    }
    std::vector<uint8_t> bytes;
    std::string err;
    if (!host::read_file(image, bytes, err)) {
        fmt::print(stderr, "sys_runner: {}: {}\n", image, err);
        return 2;
    }
    if (bytes.size() != kRomSize) {
        fmt::print(stderr, "sys_runner: {}: image is {} bytes, expected {}\n", image, bytes.size(), kRomSize);
        return 2;
    }
    if (jit_threshold && !jit::available()) {
        fmt::print("sys_runner: this build has no JIT: skipped\n");
        return 77;  // meson's "skipped"
    }
    TestMachine m;
    std::memcpy(m.rom.data(), bytes.data(), kRomSize);
    std::shared_ptr<CodeCache> code = make_code_cache();
    if (jit_threshold) code->set_translator(jit::make_translator(), jit_threshold);
    Cpu cpu(m, code);
    m.cpu = &cpu;
    cpu.platform = &m;
    cpu.stop_on_exception = false;
    cpu.jit_check = jit_check;

    const char* why = nullptr;
    int halts_in_a_row = 0;
    while (!m.done && cpu.icount < max_insns) {
        StopReason r;
        if (trace) {
            uint64_t lin = (cpu.s.seg[CS].base + cpu.s.rip) & 0xffffffff;
            if (cpu.mode() == Mode::Long64) lin = cpu.s.seg[CS].base + cpu.s.rip;
            uint8_t b[15] = {};
            for (int k = 0; k < 15; k++) {
                uint8_t* p = m.page_ptr((lin + k) & kPageMask, false);
                b[k] = p ? p[(lin + k) & ~kPageMask] : 0xff;
            }
            fmt::print("{:04x}:{:08x}  {}\n", cpu.s.seg[CS].sel, cpu.s.rip, disassemble(b, 15, cpu.mode(), cpu.s.rip));
            r = cpu.run(1);
        } else {
            r = cpu.run(1'000'000);
        }
        if (m.done) break;
        if (r == StopReason::Shutdown) {
            why = "triple fault (shutdown)";
            break;
        }
        if (r == StopReason::Halt && (m.intr_on_halt >= 0 || m.nmi_on_halt)) {
            // The "timer" fires while the CPU sleeps.
            if (m.intr_on_halt >= 0) {
                m.intr.push_back(uint8_t(m.intr_on_halt));
                cpu.set_intr(true);
                m.intr_on_halt = -1;
            }
            if (m.nmi_on_halt) {
                cpu.raise_nmi();
                m.nmi_on_halt = false;
            }
            continue;
        }
        if (r == StopReason::Halt && (m.intr.empty() || ++halts_in_a_row > 3)) {
            why = "HLT with no interrupt that can wake it";
            break;
        }
        if (r != StopReason::Halt) halts_in_a_row = 0;
        if (r == StopReason::Exception) {
            why = "exception stop";
            break;
        }
    }
    bool pass;
    if (expect_shutdown)
        pass = why && std::string(why).find("shutdown") != std::string::npos;
    else
        pass = m.done && m.exit_code == 0;
    if (jit_check && cpu.jit_checked == 0) {
        fmt::print("{}: --jit-check: no run of host code was checked\n", image);
        pass = false;
    }
    if (!m.log.empty()) fmt::print("guest log:\n{}\n", m.log);
    if (pass) {
        fmt::print("{}: pass ({} instructions", image, cpu.icount);
        if (jit_threshold) fmt::print(", {} entries into host code", cpu.host_entries);
        if (jit_check) fmt::print(", {} runs checked, {} unchecked", cpu.jit_checked, cpu.jit_unchecked);
        fmt::print(")\n");
        return 0;
    }
    if (m.done)
        fmt::print("{}: FAILED check {}", image, m.exit_code);
    else
        fmt::print("{}: FAILED: {}", image, why ? why : "instruction limit reached");
    for (size_t k = 0; k < m.reports.size() && k < 8; k++) fmt::print(" [saw 0x{:x}]", m.reports[k]);
    fmt::print("\n  cs={:04x} rip={:x} rsp={:x} rflags={:x} cr0={:x} cr2={:x} cr3={:x} cr4={:x} efer={:x} last fault {} err {:x}\n",
               cpu.s.seg[CS].sel, cpu.s.rip, cpu.s.gpr[RSP], cpu.s.rflags, cpu.s.cr0, cpu.s.cr2, cpu.s.cr3, cpu.s.cr4,
               cpu.s.efer, cpu.last_fault.vector, cpu.last_fault.error_code);
    return 1;
}
