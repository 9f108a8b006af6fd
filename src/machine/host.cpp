#include "machine/host.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <cstring>
#include <new>

namespace m86::host {

GuestMemory::GuestMemory(size_t size) : size_(size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ptr_ = static_cast<uint8_t*>(p);
}

GuestMemory::~GuestMemory() {
    if (ptr_) munmap(ptr_, size_);
}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
    if (this != &o) {
        if (ptr_) munmap(ptr_, size_);
        ptr_ = o.ptr_;
        size_ = o.size_;
        o.ptr_ = nullptr;
        o.size_ = 0;
    }
    return *this;
}

std::string file_kind(unsigned mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

bool file_id(const std::string& path, FileId& out) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return false;
    out = {uint64_t(st.st_dev), uint64_t(st.st_ino)};
    return true;
}

uint64_t physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) return uint64_t(pages) * uint64_t(page);
#endif
    return 0;  // unknown (macOS without _SC_PHYS_PAGES: hw.memsize would be the way)
}

bool read_file(const std::string& path, std::vector<uint8_t>& out, std::string& error, uint64_t max_size) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        error = std::strerror(errno);
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        error = std::strerror(errno);
        ::close(fd);
        return false;
    }
    // Only a regular file has a size to check before reading: a device (/dev/zero) or a FIFO
    // could produce bytes without end.
    if (!S_ISREG(st.st_mode)) {
        error = "is " + file_kind(st.st_mode) + ", not a regular file";
        ::close(fd);
        return false;
    }
    uint64_t size = uint64_t(st.st_size);
    if (size > max_size) {
        error = "the file is " + std::to_string(size) + " bytes, more than the " + std::to_string(max_size) +
                " this input can take";
        ::close(fd);
        return false;
    }
    out.clear();
    try {
        out.resize(size_t(size));
    } catch (const std::bad_alloc&) {
        error = "cannot allocate " + std::to_string(size) + " bytes to read it";
        ::close(fd);
        return false;
    }
    size_t got = 0;
    while (got < out.size()) {
        ssize_t n = ::read(fd, out.data() + got, out.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            error = std::strerror(errno);
            ::close(fd);
            return false;
        }
        if (n == 0) break;  // the file shrank while we read it
        got += size_t(n);
    }
    out.resize(got);
    ::close(fd);
    return true;
}

}  // namespace m86::host
