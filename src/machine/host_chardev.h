// Host character streams for guest serial ports and consoles: stdio (raw terminal when stdin is a
// terminal, restored on every exit path, Ctrl-A x quits as in QEMU), a file, or nothing. Part of
// the host layer: POSIX terminal and signal handling stay in host_*.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace m86::host {

class CharDev {
public:
    virtual ~CharDev() = default;
    // Guest output. Never blocks the guest for long; errors (closed pipe) are dropped silently.
    virtual void write(const uint8_t* data, size_t n) = 0;
    // Guest input available now (non-blocking). Returns the number of bytes stored.
    virtual size_t read(uint8_t*, size_t) { return 0; }
    // A file descriptor to poll for input while the guest idles, or -1.
    virtual int input_fd() const { return -1; }
    // The user typed the quit escape (Ctrl-A x).
    bool quit_requested() const { return quit_; }
    // Create or truncate the output now. A file backend is checked when it is made but opened
    // only here, once the whole configuration and every input have been checked, so a start-up
    // error never touches a user's file. Returns false with the OS reason in `error`.
    virtual bool open_output(std::string&) { return true; }

protected:
    bool quit_ = false;
};

std::unique_ptr<CharDev> open_stdio_chardev();
// A file output: checked now (not a directory, writable), created or truncated (or, with
// `append`, opened for appending) only by open_output().
std::unique_ptr<CharDev> open_file_chardev(const std::string& path, bool append, std::string& error);
std::unique_ptr<CharDev> open_null_chardev();

// Host monotonic time in nanoseconds.
int64_t monotonic_ns();
// Wall-clock time (seconds since the epoch), for the RTC's starting point.
int64_t wall_clock_seconds();
// Sleep until one of `fds` is readable or `timeout_ns` passes (negative: no timeout).
void wait_for_input(const std::vector<int>& fds, int64_t timeout_ns);

}  // namespace m86::host
