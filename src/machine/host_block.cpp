// HostBlockFile: raw image files through POSIX file I/O (see host_block.h).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1  // fallocate() and its FALLOC_FL_* modes
#endif
#include "machine/host_block.h"

#include "machine/host.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#ifdef __linux__
#include <linux/falloc.h>
#endif

namespace m86::host {

namespace {

std::string os_error(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// Takes the image lock: exclusive for a writer, shared for a reader. Returns false if another
// process holds a conflicting lock.
bool lock_image(int fd, bool read_only) {
#ifdef F_OFD_SETLK
    struct flock fl = {};
    fl.l_type = read_only ? F_RDLCK : F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;  // the whole file
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return true;
    if (errno == EAGAIN || errno == EACCES) return false;  // held by someone else
    // Any other error: no OFD locks on this file system; try flock().
#endif
    if (flock(fd, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0) return true;
    return errno != EWOULDBLOCK;  // a file system without locks at all: go on unlocked
}

#ifdef __linux__
bool punch(int fd, uint64_t offset, uint64_t len) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(offset), off_t(len)) == 0;
}
#endif

}  // namespace

std::unique_ptr<HostBlockFile> HostBlockFile::open(const std::string& path, bool read_only, std::string& error) {
    // O_NONBLOCK: a FIFO must not hang the open (it is refused below); cleared once checked.
    int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        error = os_error("cannot open disk image '" + path + "'", e);
        if (!read_only && (e == EACCES || e == EROFS || e == EPERM)) error += " (for a read-only drive, add readonly=on)";
        return nullptr;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        error = os_error("cannot stat disk image '" + path + "'", errno);
        ::close(fd);
        return nullptr;
    }
    if (S_ISDIR(st.st_mode)) {
        error = "disk image '" + path + "' is a directory";
        ::close(fd);
        return nullptr;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {  // /dev/zero, a FIFO, a socket: no disk
        error = "disk image '" + path + "' is " + file_kind(st.st_mode) +
                " (a drive must be a regular file or a block device)";
        ::close(fd);
        return nullptr;
    }
    if (int fl = fcntl(fd, F_GETFL); fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    uint64_t size = uint64_t(st.st_size);
    if (!S_ISREG(st.st_mode)) {  // a block device: its size is where SEEK_END lands
        off_t end = lseek(fd, 0, SEEK_END);
        if (end < 0) {
            error = os_error("cannot size disk image '" + path + "'", errno);
            ::close(fd);
            return nullptr;
        }
        size = uint64_t(end);
    }
    if (!lock_image(fd, read_only)) {
        error = "disk image '" + path + "' is locked by another process (is another emulator using it?)";
        ::close(fd);
        return nullptr;
    }
    bool can_punch = false;
#ifdef __linux__
    // Probe hole punching past the end of the file: a no-op where the file system supports it,
    // EOPNOTSUPP where it does not. Nothing inside the image is touched.
    if (!read_only && S_ISREG(st.st_mode)) can_punch = punch(fd, (size + 4095) & ~uint64_t(4095), 4096);
#endif
    return std::unique_ptr<HostBlockFile>(new HostBlockFile(fd, path, size, read_only, can_punch));
}

HostBlockFile::~HostBlockFile() { ::close(fd_); }

bool HostBlockFile::read(uint64_t offset, void* dst, size_t len) {
    auto* p = static_cast<uint8_t*>(dst);
    while (len) {
        ssize_t n = pread(fd_, p, len, off_t(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (n == 0) {  // past the end of the file: zeros
            std::memset(p, 0, len);
            return true;
        }
        p += n, offset += uint64_t(n), len -= size_t(n);
    }
    return true;
}

bool HostBlockFile::write(uint64_t offset, const void* src, size_t len) {
    if (read_only_) return false;
    auto* p = static_cast<const uint8_t*>(src);
    while (len) {
        ssize_t n = pwrite(fd_, p, len, off_t(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += n, offset += uint64_t(n), len -= size_t(n);
    }
    return true;
}

bool HostBlockFile::flush() {
#if defined(__APPLE__) && defined(F_FULLFSYNC)
    // macOS: fsync() does not flush the drive's cache; F_FULLFSYNC does.
    if (fcntl(fd_, F_FULLFSYNC) == 0) return true;
#endif
    while (fsync(fd_) != 0)
        if (errno != EINTR) return false;
    return true;
}

bool HostBlockFile::discard(uint64_t offset, uint64_t len) {
    if (read_only_ || !can_punch_) return false;
#ifdef __linux__
    return punch(fd_, offset, len);
#else
    (void)offset, (void)len;
    return false;
#endif
}

bool HostBlockFile::write_zeroes(uint64_t offset, uint64_t len, bool may_unmap) {
    if (read_only_) return false;
#ifdef __linux__
    // A punched hole reads back as zeros; without permission to deallocate, zero the range in
    // place (FALLOC_FL_ZERO_RANGE keeps it allocated) or fall back to writing zeros.
    if (may_unmap && can_punch_ && punch(fd_, offset, len)) return true;
    if (offset + len <= size_ && fallocate(fd_, FALLOC_FL_ZERO_RANGE, off_t(offset), off_t(len)) == 0) return true;
#endif
    return BlockBackend::write_zeroes(offset, len, may_unmap);
}

}  // namespace m86::host
