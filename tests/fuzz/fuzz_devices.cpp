// fuzz_devices: libFuzzer harness for the register files of the board's interrupt controllers,
// timers and serial port - two LAPICs on one APIC bus, the IOAPIC, the 8259 pair with ELCR, the
// 8254 PIT with port 0x61, the MC146818 RTC and the 16550 UART - wired as microvm wires them (ISA
// IRQ n to PIC pin n and IOAPIC pin n, IRQ0 to IOAPIC pin 2, the PIC behind LINT0 as ExtINT), on a
// deterministic clock.
//
// Input: records of 7 bytes until the input ends: [op][offset: 2 bytes LE][value: 4 bytes LE].
// op bits 0-2: target (0 LAPIC 0 MMIO page, 1 LAPIC 1 MSRs, 2 IOAPIC, 3 PIC master/slave/ELCR,
// 4 PIT / port 0x61, 5 RTC, 6 UART, 7 time and the CPU side: advance the clock by `value` ns
// (up to ~1 ms), run due timers, take pending interrupts (INTA), feed the UART a byte);
// bit 3: write (else read); bits 4-5: access width 1, 2, 4 or 8 bytes (clipped to the range the
// board maps, as its bus would); bits 6-7 pick between a device's ranges (PIC: master, slave,
// ELCR; PIT: counters or port 0x61). Seeds: tests/fuzz/corpus/devices/ (make_corpus.cpp).
#include <cstddef>
#include <cstdint>
#include <memory>

#include "devices/apic_bus.h"
#include "devices/clock.h"
#include "devices/ioapic.h"
#include "devices/lapic.h"
#include "devices/pic8259.h"
#include "devices/pit8254.h"
#include "devices/rtc146818.h"
#include "devices/uart16550.h"

using namespace m86::dev;

namespace {

struct Pins : CpuPins {
    bool intr = false;
    void set_intr(bool l) override { intr = l; }
    void nmi() override {}
    void init() override {}
    void sipi(uint8_t) override {}
};

struct Sink : SerialBackend {
    void transmit(uint8_t) override {}
};

// One access of `size` bytes at `offset` into a range of `span` bytes, clipped as the bus would.
void access(Device& d, uint64_t span, uint16_t offset, unsigned size, bool write, uint32_t value) {
    while (size > span) size >>= 1;
    uint64_t off = offset % (span - size + 1);
    if (write)
        d.write(off, size, value);
    else
        (void)d.read(off, size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    ClockConfig cc;
    cc.mode = ClockMode::Deterministic;
    Clock clock(cc);
    ApicBus bus;
    Pins pins[2];
    IrqFanout lint0;  // the PIC's INT output to LINT0 of every LAPIC
    Pic8259 pic(IrqLine{&lint0, 0});
    Ioapic ioapic(&bus, 2);
    bus.add_eoi_listener(&ioapic);
    std::unique_ptr<Lapic> lapic[2];
    for (unsigned i = 0; i < 2; i++) {
        LapicConfig cfg;
        cfg.apic_id = i;
        cfg.bsp = i == 0;
        lapic[i] = std::make_unique<Lapic>(clock, cfg, &pins[i], &bus, &bus, &pic);
        bus.add_lapic(lapic[i].get());
        lint0.connect(0, IrqLine{lapic[i].get(), lapic::kLint0});
    }
    IrqFanout isa;  // the board's GSI router
    for (unsigned irq = 0; irq < 16; irq++) {
        isa.connect(irq, IrqLine{&pic, irq});
        isa.connect(irq, IrqLine{&ioapic, irq == 0 ? 2u : irq});
    }
    Pit8254 pit(clock, IrqLine{&isa, 0});
    Rtc146818 rtc(clock, IrqLine{&isa, 8});
    Sink sink;
    Uart16550 uart(clock, IrqLine{&isa, 4}, &sink);

    for (size_t pos = 0; pos + 7 <= size; pos += 7) {
        const uint8_t op = data[pos];
        const uint16_t offset = uint16_t(data[pos + 1] | data[pos + 2] << 8);
        const uint32_t value = uint32_t(data[pos + 3]) | uint32_t(data[pos + 4]) << 8 |
                               uint32_t(data[pos + 5]) << 16 | uint32_t(data[pos + 6]) << 24;
        const bool write = op & 8;
        const unsigned width = 1u << ((op >> 4) & 3), sub = op >> 6;
        switch (op & 7) {
            case 0: access(*lapic[0], lapic::kPageSize, offset, width, write, value); break;
            case 1: {
                // x2APIC registers, IA32_APIC_BASE and the TSC deadline, as RDMSR/WRMSR reach them.
                uint32_t msr = sub == 0 ? lapic::kMsrApicBase : sub == 1 ? lapic::kMsrTscDeadline
                                                                          : lapic::kMsrX2apicFirst + (offset & 0xff);
                uint64_t v = uint64_t(value) | (uint64_t(offset) << 32);
                if (write)
                    lapic[1]->msr_write(msr, v);
                else
                    lapic[1]->msr_read(msr, &v);
                break;
            }
            case 2: access(ioapic, 0x20, offset, width, write, value); break;
            case 3: access(sub == 0 ? pic.master() : sub == 1 ? pic.slave() : pic.elcr(), 2, offset, width, write, value); break;
            case 4:
                if (sub == 3)
                    access(pit.port61(), 1, offset, width, write, value);
                else
                    access(pit, 4, offset, width, write, value);
                break;
            case 5: access(rtc, 2, offset, width, write, value); break;
            case 6: access(uart, 8, offset, width, write, value); break;
            case 7: {
                clock.idle_until(clock.now() + (value & 0xfffff));  // up to ~1 ms
                clock.run_due();
                for (unsigned i = 0; i < 2; i++)
                    if (lapic[i]->has_interrupt()) lapic[i]->acknowledge();
                if (sub & 1) uart.receive(uint8_t(offset));
                if (sub & 2) lapic[0]->set_cr8(uint8_t(offset & 15));
                break;
            }
        }
    }
    return 0;
}
