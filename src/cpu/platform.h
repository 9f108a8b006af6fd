// The board's side of a CPU's interrupt and MSR plumbing (the "environment" a Cpu runs in).
//
// A Cpu never includes device headers. Its interrupt controller (8259 PIC or local APIC, provided by
// the board) drives the CPU through Cpu::set_intr()/raise_nmi()/raise_init()/raise_sipi() and
// answers through this interface when the CPU takes an interrupt:
//
//   board                                   Cpu
//   -----                                   ---
//   controller output changes  ──────────▶  cpu.set_intr(level)        (INTR pin, level-triggered)
//   NMI / INIT / SIPI IPIs     ──────────▶  cpu.raise_nmi() / raise_init() / raise_sipi(vector)
//                               ◀────────── platform->intr_acknowledge()  (INTA cycle, at an
//                                                                          instruction boundary with
//                                                                          IF=1 and no shadow)
//   MSRs the board owns        ◀────────── platform->msr_read/msr_write (APIC, TSC deadline, x2APIC)
//   CR8 (task priority)        ◀────────── platform->tpr_written(tpr)
//
// A triple fault ends Cpu::run() with StopReason::Shutdown; the board resets the machine (or exits,
// with -no-reboot). HLT ends run() with StopReason::Halt; the board sleeps until an event and calls
// run() again, which takes the pending interrupt (or returns Halt again at once if there is none).
#pragma once

#include <cstdint>

namespace m86::cpu {

class Platform {
public:
    virtual ~Platform() = default;

    // INTA: the CPU takes the maskable interrupt the INTR pin signals. Returns the vector (0..255),
    // or -1 if the request went away (the CPU then continues without an interrupt).
    virtual int intr_acknowledge() = 0;

    // MSRs handled by the board (local APIC: IA32_APIC_BASE side effects, TSC_DEADLINE, x2APIC
    // 0x800-0x8ff). Return false if the board does not implement `msr` (the CPU then uses its own
    // storage or raises #GP). A write the board rejects (reserved bits) returns false too.
    virtual bool msr_read(uint32_t msr, uint64_t* value) {
        (void)msr;
        (void)value;
        return false;
    }
    virtual bool msr_write(uint32_t msr, uint64_t value) {
        (void)msr;
        (void)value;
        return false;
    }

    // MOV CR8 wrote the task priority (CR8[3:0] = TPR[7:4], SDM Vol. 3, 10.8.6.1).
    virtual void tpr_written(uint8_t cr8) { (void)cr8; }
};

}  // namespace m86::cpu
