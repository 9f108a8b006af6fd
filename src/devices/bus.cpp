// IoBus / MmioBus: range lookup, overlap rejection, straddling accesses split into bytes.
#include "devices/bus.h"

#include <algorithm>
#include <cstdio>

namespace m86::dev {

namespace {
std::string range_text(uint64_t first, uint64_t last, const std::string& name) {
    char buf[80];
    std::snprintf(buf, sizeof buf, "0x%llx-0x%llx", (unsigned long long)first, (unsigned long long)last);
    return std::string(buf) + " (" + name + ")";
}
}  // namespace

void AddressBus::map(uint64_t base, uint64_t size, Device* device, std::string name) {
    if (size == 0 || device == nullptr)
        throw BusError(what_ + " mapping '" + name + "' is empty or has no device");
    uint64_t last = base + size - 1;
    if (last < base || (space_ != 0 && last >= space_))
        throw BusError(what_ + " range " + range_text(base, last, name) + " lies outside the address space");
    for (const auto& m : maps_)
        if (base <= m.last() && m.base <= last)
            throw BusError(what_ + " range " + range_text(base, last, name) + " overlaps " +
                           range_text(m.base, m.last(), m.name));
    auto at = std::upper_bound(maps_.begin(), maps_.end(), base,
                               [](uint64_t b, const Mapping& m) { return b < m.base; });
    maps_.insert(at, Mapping{base, size, device, std::move(name)});
}

const AddressBus::Mapping* AddressBus::find(uint64_t addr) const {
    auto it = std::upper_bound(maps_.begin(), maps_.end(), addr,
                               [](uint64_t a, const Mapping& m) { return a < m.base; });
    if (it == maps_.begin()) return nullptr;
    --it;
    return addr - it->base < it->size ? &*it : nullptr;
}

uint64_t AddressBus::read(uint64_t addr, unsigned size) {
    const Mapping* m = find(addr);
    if (m && addr - m->base + size <= m->size) return m->device->read(addr - m->base, size) & all_ones(size);
    if (size == 1) return 0xff;
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++) v |= read(addr + i, 1) << (8 * i);
    return v;
}

void AddressBus::write(uint64_t addr, unsigned size, uint64_t value) {
    const Mapping* m = find(addr);
    if (m && addr - m->base + size <= m->size)
        return m->device->write(addr - m->base, size, value & all_ones(size));
    if (size == 1) return;
    for (unsigned i = 0; i < size; i++) write(addr + i, 1, (value >> (8 * i)) & 0xff);
}

}  // namespace m86::dev
