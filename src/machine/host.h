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

// The default cap on an input file read whole (kernel, initrd, firmware, option ROM, module):
// callers that know better (guest RAM) pass a smaller one.
constexpr uint64_t kMaxInputFile = uint64_t(4) << 30;

// Read a whole file of at most `max_size` bytes. The file is opened non-blocking (a FIFO cannot
// hang the start-up), must be a regular file, and its size is checked before anything is
// allocated. Returns false and sets `error` (with the reason) when it cannot.
bool read_file(const std::string& path, std::vector<uint8_t>& out, std::string& error,
               uint64_t max_size = kMaxInputFile);

// A file's identity (device and inode), to find one file given under two names.
struct FileId {
    uint64_t dev = 0, ino = 0;
    bool operator==(const FileId&) const = default;
};
// The identity of `path` (following symbolic links); false if it does not exist.
bool file_id(const std::string& path, FileId& out);
// What a st_mode is, for messages: "a directory", "a character device", "a FIFO", ...
std::string file_kind(unsigned mode);

// The host's physical memory in bytes, or 0 if it cannot tell.
uint64_t physical_memory();

}  // namespace m86::host
