// HostBlockFile: a raw disk image file as a dev::BlockBackend (`-drive file=PATH,format=raw`), part
// of the host layer: positioned reads/writes (pread/pwrite), flush = fsync, discard and
// write-zeroes by punching holes (fallocate) where the host's file system supports it.
//
// The image is opened read-write, or read-only for `readonly=on` (writes then never reach the
// file). Like QEMU, an image opened for writing takes an exclusive lock (an open-file-description
// lock where the host has them, flock() otherwise), a read-only one a shared lock, so two emulators
// cannot write one image at once. The size is the file's size at open; a trailing partial sector
// reads as zeros past the end of the file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "devices/virtio/blk.h"

namespace m86::host {

class HostBlockFile : public dev::BlockBackend {
public:
    // Returns nullptr with a one-line `error` (naming the path and the OS reason) on failure.
    static std::unique_ptr<HostBlockFile> open(const std::string& path, bool read_only, std::string& error);
    ~HostBlockFile() override;
    HostBlockFile(const HostBlockFile&) = delete;
    HostBlockFile& operator=(const HostBlockFile&) = delete;

    uint64_t size() const override { return size_; }
    bool read_only() const override { return read_only_; }
    bool read(uint64_t offset, void* dst, size_t len) override;
    bool write(uint64_t offset, const void* src, size_t len) override;
    bool flush() override;
    bool can_discard() const override { return can_punch_; }
    bool discard(uint64_t offset, uint64_t len) override;
    bool write_zeroes(uint64_t offset, uint64_t len, bool may_unmap) override;

    const std::string& path() const { return path_; }

private:
    HostBlockFile(int fd, std::string path, uint64_t size, bool read_only, bool can_punch)
        : fd_(fd), path_(std::move(path)), size_(size), read_only_(read_only), can_punch_(can_punch) {}

    int fd_;
    std::string path_;
    uint64_t size_;
    bool read_only_;
    bool can_punch_;
};

}  // namespace m86::host
