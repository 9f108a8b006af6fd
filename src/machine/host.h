// The host layer: the few operating-system services micro86 needs, behind plain functions so the
// rest of the tree stays portable (Linux, macOS, other POSIX hosts). Nothing outside this file pair
// calls mmap, termios or signals directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace m86::host {

// Zero-filled, page-aligned memory for guest RAM, committed lazily by the host OS.
class GuestMemory {
public:
    GuestMemory() = default;
    explicit GuestMemory(size_t size);
    ~GuestMemory();
    GuestMemory(GuestMemory&& o) noexcept : ptr_(o.ptr_), size_(o.size_) { o.ptr_ = nullptr, o.size_ = 0; }
    GuestMemory& operator=(GuestMemory&& o) noexcept;
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;

    uint8_t* data() const { return ptr_; }
    size_t size() const { return size_; }

private:
    uint8_t* ptr_ = nullptr;
    size_t size_ = 0;
};

// Read a whole file. Returns false and sets `error` (with the OS reason) when it cannot.
bool read_file(const std::string& path, std::vector<uint8_t>& out, std::string& error);

}  // namespace m86::host
