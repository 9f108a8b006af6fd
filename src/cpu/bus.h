// The narrow interface between a CPU and the machine around it.
//
// The CPU never includes device or board headers. It sees physical memory as pages that are either
// directly addressable host memory (RAM, ROM) or MMIO, plus port I/O, a time source and a few
// notifications. A board (src/machine) implements this; so do the tiny flat environments of the
// snippet runner and the tests.
#pragma once

#include <cstdint>

namespace m86::cpu {

constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kPageMask = ~(kPageSize - 1);

class Bus {
public:
    virtual ~Bus() = default;

    // Host pointer to the start of the 4 KiB physical page `page` (page-aligned address), or nullptr
    // when the page is MMIO or unbacked. `write` asks for a writable mapping: a read-only page (ROM)
    // returns nullptr for writes, and the write then goes to mmio_write (which may ignore it).
    virtual uint8_t* page_ptr(uint64_t page, bool write) = 0;

    // Accesses to physical addresses without a host mapping. size is 1, 2, 4 or 8; an access never
    // crosses a page. Unbacked addresses read as all ones and ignore writes (what a PC bus does).
    virtual uint64_t mmio_read(uint64_t addr, unsigned size) = 0;
    virtual void mmio_write(uint64_t addr, unsigned size, uint64_t value) = 0;

    // Port I/O (IN/OUT/INS/OUTS). size is 1, 2 or 4.
    virtual uint32_t io_read(uint16_t port, unsigned size) = 0;
    virtual void io_write(uint16_t port, unsigned size, uint32_t value) = 0;

    // The time-stamp counter as the guest sees it (the board decides realtime or deterministic).
    virtual uint64_t tsc(uint64_t instructions_retired) = 0;
};

}  // namespace m86::cpu
