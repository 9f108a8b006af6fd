// The microvm board (QEMU's hw/i386/microvm.c with acpi=off): guest RAM, the vCPUs with their local
// APICs, the legacy devices (8259 PIC pair, 8254 PIT, MC146818 RTC, 16550 UART), the I/O APIC, and
// the loop that runs it all on one host thread.
//
// How it fits together:
//   - The board is the CPUs' cpu::Bus: RAM pages by host pointer, MMIO and port I/O dispatched to
//     the device buses (src/devices/bus.h), the LAPIC page to the accessing CPU's own Lapic.
//   - Each vCPU is a cpu::Cpu plus a dev::Lapic; the Vcpu glue implements the CPU's Platform
//     (INTA, APIC MSRs, CR8) and the LAPIC's CpuPins (INTR, NMI, INIT, SIPI).
//   - Interrupt wiring: ISA IRQ n -> PIC pin n and IOAPIC pin n (IRQ0 -> IOAPIC pin 2, the MP
//     table's override); the PIC's INTR -> LINT0 of every LAPIC (ExtINT); IOAPIC -> APIC bus.
//   - Time: one dev::Clock; vCPUs run in slices, the clock's due events run between slices, and
//     when every vCPU is halted the host sleeps until the next event or terminal input
//     (deterministic mode: virtual time jumps there instead).
//   - vCPUs are interleaved round-robin in one host thread, deterministically.
//   - Boot: with firmware (-bios, or qboot.rom found in the QEMU data directories when -kernel is
//     given), the image is mapped to end at 4 GiB and its last 128 KiB (all of it if smaller) is
//     aliased to end at 1 MiB, one writable RAM-like backing for both (QEMU's microvm loads its
//     firmware with isapc_ram_fw); the BSP starts at the reset vector and the firmware reads the
//     kernel from fw_cfg. Direct boot (--direct-boot, or no firmware found) loads the kernel into
//     RAM and starts the BSP at its entry. fw_cfg carries the same items either way.
//   - Guest-physical writes that do not come from a CPU's own fast path (firmware pages written
//     through either alias, every device DMA write) go through code_written(), which drops the
//     decoded code of those pages in every vCPU so nothing stale is ever executed.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cpu/bus.h"
#include "cpu/cpu.h"
#include "devices/apic_bus.h"
#include "devices/bus.h"
#include "devices/clock.h"
#include "devices/debug_exit.h"
#include "devices/fw_cfg.h"
#include "devices/ioapic.h"
#include "devices/lapic.h"
#include "devices/pic8259.h"
#include "devices/pit8254.h"
#include "devices/rtc146818.h"
#include "devices/uart16550.h"
#include "machine/guest_ram.h"
#include "machine/host_chardev.h"
#include "machine/options.h"

namespace m86::machine {

class VirtioSlots;

// What the run loop did, for --stats and tests.
struct RunStats {
    uint64_t passes = 0;        // round-robin passes over the vCPUs
    uint64_t idle_waits = 0;    // times every vCPU was halted and the loop waited for an event
    uint64_t idle_skipped = 0;  // every vCPU halted, but one had a wake-up pending: no wait
};

class Microvm : public cpu::Bus, public dev::ExitSink {
public:
    // Build the machine from a parsed command line: reads the kernel/initrd files, opens the
    // character backends. Returns nullptr with a one-line `error` on any problem.
    static std::unique_ptr<Microvm> create(const VmConfig& cfg, std::string& error);
    ~Microvm() override;

    // Run until the guest powers off / reboots with -no-reboot, or the user quits (Ctrl-A x).
    // Returns the process exit status.
    int run();

    // ---- cpu::Bus ----------------------------------------------------------------------------
    uint8_t* page_ptr(uint64_t page, bool write) override;
    uint64_t mmio_read(uint64_t addr, unsigned size) override;
    void mmio_write(uint64_t addr, unsigned size, uint64_t value) override;
    uint32_t io_read(uint16_t port, unsigned size) override;
    void io_write(uint16_t port, unsigned size, uint32_t value) override;
    uint64_t tsc(uint64_t instructions_retired) override;

    // ---- dev::ExitSink (isa-debug-exit) ------------------------------------------------------
    void request_exit(int status) override;

    // For tests and tools.
    GuestRam& ram() { return ram_; }
    cpu::Cpu& cpu(unsigned i);
    unsigned num_cpus() const { return unsigned(vcpus_.size()); }
    dev::Clock& clock() { return clock_; }
    const RunStats& run_stats() const { return stats_; }
    void print_stats() const;
    // Guest physical memory for device DMA: RAM and the firmware, bounds-checked, and every write
    // invalidates the decoded code of the pages it touches (in every vCPU).
    dev::DmaMemory& dma();
    dev::FwCfg& fw_cfg() { return *fw_cfg_; }
    bool firmware_boot() const { return !fw_image_.empty(); }
    // The virtio-mmio transports, their devices and host backends (virtio_slots.h).
    VirtioSlots& virtio() { return *virtio_; }

private:
    struct Vcpu;
    class SerialOut;
    class PhysDma;
    explicit Microvm(const VmConfig& cfg);
    bool build(std::string& error);
    bool setup_boot(std::string& error);
    bool load_firmware(const std::string& path, std::string& error);
    // After everything else is built and checked: refuse outputs that are inputs or that two
    // outputs share, then create/truncate the output files (the only step that touches them).
    bool open_outputs(std::string& error);
    void build_fw_cfg();
    std::string kernel_cmdline() const;
    std::vector<unsigned> populated_virtio_slots() const;
    // The firmware backing behind physical address `addr` (either alias), or nullptr.
    uint8_t* firmware_at(uint64_t addr, uint64_t* avail = nullptr);
    // Drop decoded code for the physical range [addr, addr + len) (and the firmware's other alias).
    void code_written(uint64_t addr, uint64_t len);
    void reset_machine();
    // Some vCPU has an interrupt, NMI, INIT/SIPI or stop request it would act on now.
    bool wake_pending() const;
    void poll_input();
    void flush_output();

    VmConfig cfg_;
    GuestRam ram_;
    dev::Clock clock_;
    dev::TscScale tsc_scale_;
    dev::IoBus io_;
    dev::MmioBus mmio_;
    dev::ApicBus apic_bus_;
    dev::IrqFanout isa_irq_;   // ISA IRQ lines -> PIC and IOAPIC
    dev::IrqFanout lint0_;     // the PIC's INTR -> LINT0 of every LAPIC
    std::unique_ptr<dev::Ioapic> ioapic_;
    std::unique_ptr<dev::Pic8259> pic_;
    std::unique_ptr<dev::Pit8254> pit_;
    std::unique_ptr<dev::Rtc146818> rtc_;
    std::unique_ptr<dev::Uart16550> uart_;
    std::unique_ptr<SerialOut> serial_out_;
    std::unique_ptr<host::CharDev> serial_host_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    unsigned current_ = 0;            // the vCPU running now (whose LAPIC the MMIO page reaches)
    uint64_t slice_start_icount_ = 0; // deterministic TSC: instructions into the current slice
    bool quit_ = false;
    int exit_status_ = 0;
    RunStats stats_;
    cpu::CpuState boot_state_;        // the BSP's entry state for direct boot (kept for reset)
    bool have_boot_state_ = false;
    // Direct boot: puts kernel, initrd and boot data into RAM and sets boot_state_ (at start and
    // at every later reset).
    std::function<bool(std::string&)> direct_loader_;
    unsigned resets_ = 0;
    // Firmware: the pristine image (restored at reset) and the live backing of both aliases.
    std::vector<uint8_t> fw_image_;
    host::GuestMemory fw_mem_;
    uint64_t fw_base_ = 0;              // the image's address below 4 GiB
    uint64_t isa_base_ = 0, isa_size_ = 0;  // the alias ending at 1 MiB
    std::unique_ptr<PhysDma> dma_;
    std::unique_ptr<dev::FwCfg> fw_cfg_;
    std::vector<std::unique_ptr<dev::DebugExit>> debug_exits_;
    std::string option_rom_;            // the option ROM QEMU would add for this kernel (fw_cfg genroms/)
    // The host files read at start (option and path: -kernel, -initrd, -bios, -drive), which no
    // output may name.
    std::vector<std::pair<std::string, std::string>> inputs_;
    std::unique_ptr<VirtioSlots> virtio_;  // last: destroyed first (it uses the clock, DMA, buses)
};

}  // namespace m86::machine
