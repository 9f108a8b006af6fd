// The contracts every device model of the board is written against (src/devices).
//
// A device is a state machine behind `read(offset, size)` / `write(offset, size, value)`, where
// `offset` is relative to the base of the range the board attached it at (IoBus / MmioBus in
// bus.h) and `size` is 1, 2, 4 or 8 bytes; values travel in the low bytes, little-endian like the
// x86 bus. A device never knows its own base address, never includes CPU or board headers, and
// reaches the outside world only through what it is given at construction:
//
//   - IrqLine: one interrupt output, a (sink, pin) pair. set(true/false) drives a level; an edge is
//     a pulse(). The sink is an interrupt controller input (Pic8259, Ioapic, Lapic LINT0/1) or an
//     IrqFanout, the board's router that sends an ISA IRQ to both the PIC and the IOAPIC. An
//     unconnected line (sink == nullptr) is valid and does nothing.
//   - InterruptController: what a CPU-facing controller offers its consumer (the PIC's INTA cycle,
//     used by the LAPIC for ExtINT).
//   - DmaMemory: bounds-checked access to guest physical memory for devices that do DMA (fw_cfg,
//     virtio). Every access is checked as a whole: a range that is not entirely guest RAM fails
//     without touching anything, so a guest can never make a device write outside its RAM.
//   - Clock / Timer (clock.h): virtual time and the event queue.
//
// ISA-style chips with 8-bit registers derive from ByteDevice (wider accesses become byte
// accesses). RamDma is the DmaMemory the board builds from its RAM regions.
//
// Device state lives in a plain `State` struct per device, readable with state() for inspection
// and save/restore (restore() re-arms the device's timers).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace m86::dev {

// All ones in the low `size` bytes: what an unclaimed read returns on a PC bus.
constexpr uint64_t all_ones(unsigned size) { return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1; }

class Device {
   public:
    virtual ~Device() = default;
    virtual uint64_t read(uint64_t offset, unsigned size) = 0;
    virtual void write(uint64_t offset, unsigned size, uint64_t value) = 0;
};

// A device of 8-bit registers (ISA-style chips: UART, PIC, PIT, RTC): a wider access is a sequence
// of byte accesses at consecutive offsets, low byte first, as the ISA bus splits it.
class ByteDevice : public Device {
   public:
    virtual uint8_t read8(unsigned offset) = 0;
    virtual void write8(unsigned offset, uint8_t value) = 0;

    uint64_t read(uint64_t offset, unsigned size) override {
        uint64_t v = 0;
        for (unsigned i = 0; i < size; i++) v |= uint64_t(read8(unsigned(offset) + i)) << (8 * i);
        return v;
    }
    void write(uint64_t offset, unsigned size, uint64_t value) override {
        for (unsigned i = 0; i < size; i++) write8(unsigned(offset) + i, uint8_t(value >> (8 * i)));
    }
};

// The input side of interrupt lines: a controller with numbered input pins.
class IrqSink {
   public:
    virtual ~IrqSink() = default;
    // Drive input `pin` to `level` (true = asserted). Controllers detect edges themselves.
    virtual void set_irq(unsigned pin, bool level) = 0;
};

// One interrupt output wire. Cheap to copy; default-constructed = not connected.
struct IrqLine {
    IrqSink* sink = nullptr;
    unsigned pin = 0;

    void set(bool level) const {
        if (sink) sink->set_irq(pin, level);
    }
    void raise() const { set(true); }
    void lower() const { set(false); }
    // An edge-triggered request: a low-high-low pulse.
    void pulse() const {
        set(true);
        set(false);
    }
    bool connected() const { return sink != nullptr; }
};

// Fans inputs out to several lines: the board's GSI router (ISA IRQ n -> PIC pin n and IOAPIC pin
// n, with IRQ0 -> IOAPIC pin 2), or LINT0 of every LAPIC.
class IrqFanout : public IrqSink {
   public:
    void connect(unsigned pin, IrqLine out) { routes_.push_back({pin, out}); }
    void set_irq(unsigned pin, bool level) override {
        for (const auto& r : routes_)
            if (r.pin == pin) r.out.set(level);
    }

   private:
    struct Route {
        unsigned pin;
        IrqLine out;
    };
    std::vector<Route> routes_;
};

// A CPU-facing interrupt controller (the PIC's INTR/INTA interface).
class InterruptController {
   public:
    virtual ~InterruptController() = default;
    virtual bool has_interrupt() const = 0;
    // The INTA cycle: returns the vector to take (a spurious vector if the request went away).
    virtual uint8_t acknowledge() = 0;
};

// Guest physical memory as seen by a DMA-capable device. All calls return false (and do nothing)
// unless [addr, addr + len) lies entirely in guest RAM.
class DmaMemory {
   public:
    virtual ~DmaMemory() = default;
    virtual bool read(uint64_t addr, void* dst, uint64_t len) = 0;
    virtual bool write(uint64_t addr, const void* src, uint64_t len) = 0;
    virtual bool fill(uint64_t addr, uint8_t byte, uint64_t len) = 0;
};

// DmaMemory over a set of host-backed RAM regions (guest physical base, host pointer, size): what
// the board builds from its RAM layout (below 3 GiB, and from 4 GiB). A range may span adjacent
// regions only if they are contiguous in guest physical space.
class RamDma : public DmaMemory {
   public:
    void add_region(uint64_t gpa, uint8_t* host, uint64_t size) { regions_.push_back({gpa, host, size}); }

    bool read(uint64_t addr, void* dst, uint64_t len) override {
        if (!check(addr, len)) return false;
        auto* d = static_cast<uint8_t*>(dst);
        walk(addr, len, [&](uint8_t* p, uint64_t n) { std::memcpy(d, p, n), d += n; });
        return true;
    }
    bool write(uint64_t addr, const void* src, uint64_t len) override {
        if (!check(addr, len)) return false;
        auto* s = static_cast<const uint8_t*>(src);
        walk(addr, len, [&](uint8_t* p, uint64_t n) { std::memcpy(p, s, n), s += n; });
        return true;
    }
    bool fill(uint64_t addr, uint8_t byte, uint64_t len) override {
        if (!check(addr, len)) return false;
        walk(addr, len, [&](uint8_t* p, uint64_t n) { std::memset(p, byte, n); });
        return true;
    }

   private:
    struct Region {
        uint64_t gpa;
        uint8_t* host;
        uint64_t size;
    };
    const Region* find(uint64_t addr) const {
        for (const auto& r : regions_)
            if (addr >= r.gpa && addr - r.gpa < r.size) return &r;
        return nullptr;
    }
    bool check(uint64_t addr, uint64_t len) const {
        if (addr + len < addr) return false;  // wraps around the address space
        while (len) {
            const Region* r = find(addr);
            if (!r) return false;
            uint64_t n = std::min(len, r->size - (addr - r->gpa));
            addr += n, len -= n;
        }
        return true;
    }
    template <class F>
    void walk(uint64_t addr, uint64_t len, F f) const {
        while (len) {
            const Region* r = find(addr);
            uint64_t n = std::min(len, r->size - (addr - r->gpa));
            f(r->host + (addr - r->gpa), n);
            addr += n, len -= n;
        }
    }
    std::vector<Region> regions_;
};

}  // namespace m86::dev
