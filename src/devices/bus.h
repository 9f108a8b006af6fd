// Address buses the board attaches devices to: IoBus (the 64 KiB x86 port space) and MmioBus
// (physical addresses that are not RAM or ROM).
//
// A bus maps non-overlapping ranges [base, base + size) to devices; map() rejects an overlap, an
// empty range or one past the end of the address space with a BusError that names both parties.
// An access entirely inside one range goes to that device with the offset from the range base. An
// access that straddles a range boundary (rare: a 16-bit IN at the last port of a device) is split
// into byte accesses, each routed on its own, as byte lanes are on an ISA bus. Bytes nobody claims
// read as all ones and ignore writes.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "devices/device.h"

namespace m86::dev {

class BusError : public std::runtime_error {
   public:
    using std::runtime_error::runtime_error;
};

class AddressBus {
   public:
    struct Mapping {
        uint64_t base, size;
        Device* device;
        std::string name;
        uint64_t last() const { return base + size - 1; }
    };

    // `space` is the size of the address space (0 = the whole 64-bit space); `what` names it in
    // error messages ("I/O port", "MMIO").
    AddressBus(std::string what, uint64_t space) : what_(std::move(what)), space_(space) {}

    void map(uint64_t base, uint64_t size, Device* device, std::string name);
    // The mapping that contains `addr`, or nullptr.
    const Mapping* find(uint64_t addr) const;
    const std::vector<Mapping>& mappings() const { return maps_; }

    uint64_t read(uint64_t addr, unsigned size);
    void write(uint64_t addr, unsigned size, uint64_t value);

   private:
    std::string what_;
    uint64_t space_;
    std::vector<Mapping> maps_;  // sorted by base
};

class IoBus : public AddressBus {
   public:
    IoBus() : AddressBus("I/O port", 0x10000) {}
    uint32_t in(uint16_t port, unsigned size) { return uint32_t(read(port, size)); }
    void out(uint16_t port, unsigned size, uint32_t value) { write(port, size, value); }
};

class MmioBus : public AddressBus {
   public:
    MmioBus() : AddressBus("MMIO", 0) {}
};

}  // namespace m86::dev
