#include "machine/host_chardev.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace m86::host {

namespace {

// ---- terminal mode and stdin's file status flags, restored on every exit path ----------------------
// stdin is shared with the user's shell (one open file description): leaving O_NONBLOCK on it
// breaks the shell after micro86 exits, so the flags are put back at exit and on any signal that
// ends the process (SIGINT too: with a non-raw stdin, Ctrl-C reaches micro86 as SIGINT).
struct termios g_saved_termios;
bool g_termios_saved = false;
int g_saved_stdin_flags = -1;
bool g_handlers_installed = false;

void restore_terminal() {
    if (g_termios_saved) {
        tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_termios);
        g_termios_saved = false;
    }
    if (g_saved_stdin_flags >= 0) {
        fcntl(STDIN_FILENO, F_SETFL, g_saved_stdin_flags);  // async-signal-safe, as is tcsetattr
        g_saved_stdin_flags = -1;
    }
}

void on_fatal_signal(int sig) {
    restore_terminal();
    signal(sig, SIG_DFL);
    raise(sig);
}

void install_restore_handlers() {
    if (g_handlers_installed) return;
    g_handlers_installed = true;
    std::atexit(restore_terminal);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL})
        signal(sig, on_fatal_signal);
}

void enter_raw_mode() {
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &g_saved_termios) != 0) return;
    g_termios_saved = true;
    install_restore_handlers();
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
        if (fl >= 0 && !(fl & O_NONBLOCK)) {
            if (g_saved_stdin_flags < 0) g_saved_stdin_flags = fl;
            install_restore_handlers();
            fcntl(STDIN_FILENO, F_SETFL, fl | O_NONBLOCK);
        }
    }
    ~StdioChardev() override { restore_terminal(); }
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
    FileChardev(std::string path, bool append) : path_(std::move(path)), append_(append) {}
    ~FileChardev() override {
        if (fd_ >= 0) ::close(fd_);
    }
    bool open_output(std::string& error) override {
        if (fd_ >= 0) return true;
        // O_NONBLOCK: a FIFO with no reader is an error now (ENXIO), not a start-up that waits
        // for one for ever. Cleared once open: output then blocks as a file's does.
        int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK | (append_ ? O_APPEND : O_TRUNC);
        fd_ = ::open(path_.c_str(), flags, 0644);
        if (fd_ < 0) {
            error = "cannot open '" + path_ + "': " +
                    (errno == ENXIO ? std::string("a FIFO with no reader") : std::string(std::strerror(errno)));
            return false;
        }
        if (int fl = fcntl(fd_, F_GETFL); fl >= 0) fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK);
        return true;
    }
    void write(const uint8_t* data, size_t n) override {
        if (fd_ < 0) return;  // not opened yet: nothing is written before start-up succeeded
        while (n) {
            ssize_t w = ::write(fd_, data, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return;
            data += w;
            n -= size_t(w);
        }
    }

private:
    std::string path_;
    bool append_;
    int fd_ = -1;
};

class NullChardev : public CharDev {
public:
    void write(const uint8_t*, size_t) override {}
};

}  // namespace

std::unique_ptr<CharDev> open_stdio_chardev() { return std::make_unique<StdioChardev>(); }

std::unique_ptr<CharDev> open_file_chardev(const std::string& path, bool append, std::string& error) {
    // Check what can be checked without creating or truncating anything: an existing path must be
    // a writable non-directory; a new one needs a writable directory.
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            error = "is a directory";
            return nullptr;
        }
        if (access(path.c_str(), W_OK) != 0) {
            error = std::strerror(errno);
            return nullptr;
        }
    } else {
        auto slash = path.rfind('/');
        std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
        if (access(dir.c_str(), W_OK) != 0) {
            error = std::strerror(errno);
            return nullptr;
        }
    }
    return std::make_unique<FileChardev>(path, append);
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
