// Guest RAM of a board: the low region [0, min(size, 3 GiB)) and, for larger sizes, the high
// region [4 GiB, 4 GiB + rest), each one host mapping. Every access from board code (loaders, DMA,
// virtio rings) goes through the bounds-checked helpers here, so a guest-supplied address can never
// reach outside the mappings.
#pragma once

#include <cstdint>
#include <cstring>

#include "machine/host.h"
#include "machine/layout.h"

namespace m86::machine {

class GuestRam {
public:
    explicit GuestRam(uint64_t size)
        : low_size_(size < layout::kLowRamMax ? size : layout::kLowRamMax),
          high_size_(size - low_size_),
          low_(low_size_),
          high_(high_size_ ? host::GuestMemory(high_size_) : host::GuestMemory()) {}

    uint64_t size() const { return low_size_ + high_size_; }
    uint64_t low_size() const { return low_size_; }
    uint64_t high_size() const { return high_size_; }

    // Host pointer to [addr, addr + len) if the whole range is RAM in one region, else nullptr.
    uint8_t* ptr(uint64_t addr, uint64_t len) const {
        if (addr < low_size_ && len <= low_size_ - addr) return low_.data() + addr;
        if (addr >= layout::kHighRamBase && addr - layout::kHighRamBase < high_size_ &&
            len <= high_size_ - (addr - layout::kHighRamBase))
            return high_.data() + (addr - layout::kHighRamBase);
        return nullptr;
    }
    bool write(uint64_t addr, const void* src, uint64_t len) {
        uint8_t* p = ptr(addr, len);
        if (!p) return false;
        if (len) std::memcpy(p, src, len);
        return true;
    }
    bool read(uint64_t addr, void* dst, uint64_t len) const {
        const uint8_t* p = ptr(addr, len);
        if (!p) return false;
        if (len) std::memcpy(dst, p, len);
        return true;
    }
    template <class T> bool put(uint64_t addr, T v) { return write(addr, &v, sizeof v); }

private:
    uint64_t low_size_, high_size_;
    host::GuestMemory low_, high_;
};

}  // namespace m86::machine
