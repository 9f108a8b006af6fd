#include "machine/host_chardev.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace m86::host {

namespace {

// ---- terminal mode, restored on every exit path --------------------------------------------------
struct termios g_saved_termios;
bool g_termios_saved = false;

void restore_terminal() {
    if (g_termios_saved) {
        tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_termios);
        g_termios_saved = false;
    }
}

void on_fatal_signal(int sig) {
    restore_terminal();
    signal(sig, SIG_DFL);
    raise(sig);
}

void enter_raw_mode() {
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &g_saved_termios) != 0) return;
    g_termios_saved = true;
    std::atexit(restore_terminal);
    for (int sig : {SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL})
        signal(sig, on_fatal_signal);
    struct termios raw = g_saved_termios;
    // Like cfmakeraw, but keep output post-processing so host-side messages stay readable.
    raw.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    raw.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    raw.c_cflag &= ~(CSIZE | PARENB);
    raw.c_cflag |= CS8;
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    tcsetattr(STDIN_FILENO, TCSANOW, &raw);
}

class StdioChardev : public CharDev {
public:
    StdioChardev() {
        tty_ = isatty(STDIN_FILENO);
        enter_raw_mode();
        int fl = fcntl(STDIN_FILENO, F_GETFL);
        if (fl >= 0) fcntl(STDIN_FILENO, F_SETFL, fl | O_NONBLOCK);
    }
    void write(const uint8_t* data, size_t n) override {
        while (n) {
            ssize_t w = ::write(STDOUT_FILENO, data, n);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno == EAGAIN) {
                struct pollfd p = {STDOUT_FILENO, POLLOUT, 0};
                poll(&p, 1, 100);
                continue;
            }
            if (w <= 0) return;
            data += w;
            n -= size_t(w);
        }
    }
    size_t read(uint8_t* buf, size_t max) override {
        if (eof_ || quit_) return 0;
        size_t got = 0;
        while (got < max) {
            uint8_t c;
            ssize_t r = ::read(STDIN_FILENO, &c, 1);
            if (r == 0) {
                eof_ = true;
                break;
            }
            if (r < 0) break;
            // QEMU's escape: Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A, Ctrl-A h prints help.
            if (tty_ && escape_) {
                escape_ = false;
                if (c == 'x' || c == 'X') {
                    quit_ = true;
                    break;
                }
                if (c == 'h' || c == '?') {
                    const char* help = "\r\nC-a h    print this help\r\nC-a x    exit micro86\r\nC-a C-a  send C-a\r\n";
                    write(reinterpret_cast<const uint8_t*>(help), std::strlen(help));
                    continue;
                }
                if (c != 1) continue;
            } else if (tty_ && c == 1) {
                escape_ = true;
                continue;
            }
            buf[got++] = c;
        }
        return got;
    }
    int input_fd() const override { return eof_ || quit_ ? -1 : STDIN_FILENO; }

private:
    bool tty_ = false, escape_ = false, eof_ = false;
};

class FileChardev : public CharDev {
public:
    explicit FileChardev(int fd) : fd_(fd) {}
    ~FileChardev() override { ::close(fd_); }
    void write(const uint8_t* data, size_t n) override {
        while (n) {
            ssize_t w = ::write(fd_, data, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return;
            data += w;
            n -= size_t(w);
        }
    }

private:
    int fd_;
};

class NullChardev : public CharDev {
public:
    void write(const uint8_t*, size_t) override {}
};

}  // namespace

std::unique_ptr<CharDev> open_stdio_chardev() { return std::make_unique<StdioChardev>(); }

std::unique_ptr<CharDev> open_file_chardev(const std::string& path, std::string& error) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = std::strerror(errno);
        return nullptr;
    }
    return std::make_unique<FileChardev>(fd);
}

std::unique_ptr<CharDev> open_null_chardev() { return std::make_unique<NullChardev>(); }

int64_t monotonic_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t wall_clock_seconds() { return int64_t(std::time(nullptr)); }

void wait_for_input(const std::vector<int>& fds, int64_t timeout_ns) {
    struct pollfd p[8];
    int n = 0;
    for (int fd : fds)
        if (fd >= 0 && n < 8) p[n++] = {fd, POLLIN, 0};
    int ms = timeout_ns < 0 ? -1 : int((timeout_ns + 999999) / 1000000);
    if (n == 0) {
        if (timeout_ns < 0 || timeout_ns > 1000000000) timeout_ns = 1000000000;  // nothing else can wake us
        struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
        nanosleep(&ts, nullptr);
        return;
    }
    poll(p, nfds_t(n), ms);
}

}  // namespace m86::host
