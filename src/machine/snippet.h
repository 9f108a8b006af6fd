// The flat snippet environment: a bare 64-bit machine for running a piece of machine code.
//
// Used by `micro86 snippet`, the differential tests and the benchmarks. What it sets up (all of it
// real architectural state: the CPU translates through these page tables like any guest):
//
//   RAM          0 .. ram_size (default 64 MiB), zero-filled, no devices; port reads give all ones
//   page tables  PML4 0x1000, PDPT 0x2000, PD 0x3000, PTs 0x4000-0x5fff: identity map of all RAM,
//                4 KiB pages below 4 MiB (so single pages can be made not-present), 2 MiB pages above;
//                page 0 is not present (null dereferences fault)
//   GDT          0x6000: null, 0x08 64-bit code (DPL 0), 0x10 data (DPL 0), 0x18 32-bit code (DPL 0)
//   code         loaded at 0x100000 (kCodeBase); RIP starts there
//   stack        RSP = 0x400000 (kStackTop), growing down
//   CPU          64-bit mode, CPL 0; CR0 = PE|MP|ET|NE|WP|PG, CR4 = PAE|OSFXSR|OSXMMEXCPT|OSXSAVE,
//                EFER = SCE|LME|LMA|NXE, XCR0 = x87|SSE; RFLAGS = 0x2; other GPRs 0; x87 and
//                MXCSR in their FNINIT/reset state; no IDT: any exception stops the run
//
// The run ends at HLT, at an exception, or after the instruction limit.
//
// set_bits(32) instead: flat 32-bit protected mode with paging off: CS = 0x18 (base 0, 4 GiB,
// 32-bit), DS/ES/FS/GS/SS = 0x10 (base 0, 4 GiB), CR0 = PE|MP|ET|NE, CR4 = OSFXSR|OSXMMEXCPT|
// OSXSAVE, EFER = 0; code at 0x100000, ESP = 0x400000 (the page tables stay in RAM, unused).
// set_bits(16): real-address mode: code at 0x10000 with CS:IP = 1000:0000, DS/ES/FS/GS/SS = 0
// (limits 0xFFFF), SP = 0xFFF0, CR0 = ET|NE|MP (PE clear), CR4 = OSFXSR|OSXMMEXCPT|OSXSAVE; the IVT
// is empty (exceptions stop the run as in the other modes).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/bus.h"
#include "cpu/cpu.h"
#include "machine/host.h"

namespace m86::machine {

class FlatBus : public cpu::Bus {
public:
    explicit FlatBus(size_t ram_size) : ram_(ram_size) {}
    uint8_t* page_ptr(uint64_t page, bool) override { return page < ram_.size() ? ram_.data() + page : nullptr; }
    uint64_t mmio_read(uint64_t, unsigned size) override { return size == 8 ? ~0ull : (1ull << (8 * size)) - 1; }
    void mmio_write(uint64_t, unsigned, uint64_t) override {}
    uint32_t io_read(uint16_t, unsigned size) override { return size == 4 ? ~0u : (1u << (8 * size)) - 1; }
    void io_write(uint16_t, unsigned, uint32_t) override {}
    uint64_t tsc(uint64_t instructions) override { return instructions; }
    uint8_t* ram() { return ram_.data(); }
    size_t ram_size() const { return ram_.size(); }

private:
    host::GuestMemory ram_;
};

class SnippetEnv {
public:
    static constexpr uint64_t kCodeBase = 0x100000;
    static constexpr uint64_t kStackTop = 0x400000;
    static constexpr uint64_t kSmallPagesEnd = 0x400000;  // 4 KiB pages below this address
    static constexpr uint64_t kCodeBase16 = 0x10000;       // real mode (set_bits(16)): CS = 0x1000

    explicit SnippetEnv(size_t ram_size = 64ull << 20);

    // Copy bytes into guest RAM (physical == linear here). Returns false if out of range.
    bool poke(uint64_t addr, const void* data, size_t size);
    bool peek(uint64_t addr, void* data, size_t size) const;
    // Make a 4 KiB page below kSmallPagesEnd present or not present.
    void set_page_present(uint64_t addr, bool present);
    // Load code at kCodeBase and point RIP at it.
    bool load_code(const std::vector<uint8_t>& code);
    // Reset the CPU to the entry state above (keeps RAM contents).
    void reset_cpu();
    // Run blocks through the JIT once they have run `threshold` times (1: from their first run;
    // 0: interpret everything, the default); resets the CPU. False if this build has no JIT.
    bool set_jit(uint32_t threshold);
    // Choose the entry mode: 64 (default), 32 or 16 (see the file comment); resets the CPU.
    void set_bits(unsigned bits);
    unsigned bits() const { return bits_; }
    // Where load_code puts the code in the current mode.
    uint64_t code_base() const { return bits_ == 16 ? kCodeBase16 : kCodeBase; }

    cpu::StopReason run(uint64_t max_instructions) { return cpu_->run(max_instructions); }
    cpu::Cpu& cpu() { return *cpu_; }
    FlatBus& bus() { return bus_; }

private:
    FlatBus bus_;
    std::unique_ptr<cpu::Cpu> cpu_;
    unsigned bits_ = 64;
    uint32_t jit_threshold_ = 0;
};

}  // namespace m86::machine
