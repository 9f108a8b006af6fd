// VirtioSlots: microvm's eight virtio-mmio transports with the devices and host backends the
// command line asked for (device_options.h), wired into the board.
//
//   - Slot i sits at layout::kVirtioMmioBase + i * 0x200 and drives ISA IRQ 5 + i (PIC pin and
//     IOAPIC pin 5 + i; the guest programs the IOAPIC pin edge-triggered from the MP table, as on
//     QEMU, and the transport drives a level: high while InterruptStatus is non-zero). Every slot
//     is mapped, as in QEMU: an empty one answers MagicValue, Version and VendorID and reads zero
//     elsewhere (device ID 0: no driver claims it).
//   - Devices DMA through the board's DmaMemory, which drops decoded guest code in every page a
//     device writes (a disk read into a page that held code).
//   - Host backends: -drive -> host::HostBlockFile (opened here: a missing or unreadable image is
//     an error at start), -netdev user -> host::HostSlirp (timers on the board clock), -netdev tap ->
//     host::HostTap, virtio-rng -> host::HostEntropy, or dev::SeededEntropy in deterministic mode,
//     virtconsole -> the -chardev it names (stdio shares the board's terminal: one raw-mode
//     terminal, Ctrl-A x still quits; when the ISA serial is on stdio too, both write to it and
//     the terminal's input goes to the virtio console).
//   - The run loop calls service() every few ms (network without waiting, console input), and
//     wait() instead of sleeping when every vCPU halts (it wakes on network descriptors and
//     terminal input as well as the timeout).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "devices/bus.h"
#include "devices/clock.h"
#include "devices/device.h"
#include "devices/virtio/virtio_mmio.h"
#include "machine/host_chardev.h"
#include "machine/options.h"

namespace m86::machine {

class VirtioSlots {
public:
    struct Wiring {
        dev::DmaMemory* dma = nullptr;
        dev::IrqSink* isa_irq = nullptr;  // the board's ISA IRQ router
        dev::MmioBus* mmio = nullptr;
        dev::Clock* clock = nullptr;
        host::CharDev* stdio = nullptr;   // the board's stdio chardev if it opened one (shared)
    };

    // Opens every backend and maps all eight transports. Returns nullptr with a one-line `error`
    // (naming the option) on failure.
    static std::unique_ptr<VirtioSlots> create(const VmConfig& cfg, const Wiring& w, std::string& error);
    ~VirtioSlots();

    // Populated slots, highest first, and the auto-kernel-cmdline suffix (device_options.h).
    std::vector<unsigned> populated() const { return cfg_.populated_slots(); }
    std::string cmdline_suffix() const { return cfg_.cmdline_suffix(); }

    // Machine reset: every transport returns to its reset state (as a driver writing Status = 0).
    void reset();
    // Network I/O that is ready now (no waiting) and console input. Returns true if the user typed
    // the quit escape on a console's terminal.
    bool service();
    // Sleep until one of `fds` (the board's own input) or a backend's descriptor is ready, a
    // backend's deadline passes, or `timeout_ns` (negative: no limit) runs out; handles what woke it.
    void wait(const std::vector<int>& fds, int64_t timeout_ns);
    // Something here can wake an idle guest (a network backend, a console with input).
    bool can_wake() const;
    // Create or truncate the console output files (host::CharDev::open_output), once everything
    // else at start-up has been checked. Returns false with a one-line `error` naming the option.
    bool open_outputs(std::string& error);
    // A virtio console reads its input from `cd` (so the ISA serial must not).
    bool takes_input_from(const host::CharDev* cd) const;

    // The transport in `slot`, or nullptr if the slot is empty (for tests and tools).
    dev::virtio::VirtioMmio* transport(unsigned slot) const;

    struct Impl;

private:
    explicit VirtioSlots(const VmConfig& cfg);
    VirtioConfig cfg_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace m86::machine
