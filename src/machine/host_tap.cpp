// HostTap: TAP devices through /dev/net/tun (see host_tap.h).
#include "machine/host_tap.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#ifdef __linux__
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#endif

namespace m86::host {

namespace {
constexpr size_t kMaxFrame = 65536;
}

std::unique_ptr<HostTap> HostTap::open(const std::string& ifname, std::string& error) {
#ifdef __linux__
    if (ifname.size() >= IFNAMSIZ) {
        error = "-netdev tap: interface name '" + ifname + "' is too long";
        return nullptr;
    }
    int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        error = std::string("-netdev tap: cannot open /dev/net/tun: ") + std::strerror(e) +
                (e == ENOENT ? " (no tun driver on this host)" : "") +
                (e == EACCES || e == EPERM ? " (no permission; use -netdev user instead)" : "");
        return nullptr;
    }
    struct ifreq ifr = {};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;  // raw Ethernet frames, no packet-information prefix
    std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        int e = errno;
        ::close(fd);
        error = "-netdev tap: cannot create tap interface" + (ifname.empty() ? std::string() : " '" + ifname + "'") +
                ": " + std::strerror(e);
        if (e == EPERM || e == EACCES)
            error += " (needs CAP_NET_ADMIN, or a persistent tap owned by this user: "
                     "ip tuntap add dev NAME mode tap user $USER; or use -netdev user)";
        else if (e == EBUSY)
            error += " (the interface is in use or is not a tap)";
        return nullptr;
    }
    return std::unique_ptr<HostTap>(new HostTap(fd, ifr.ifr_name));
#else
    (void)ifname;
    error = "-netdev tap is only supported on Linux hosts; use -netdev user";
    return nullptr;
#endif
}

HostTap::~HostTap() { ::close(fd_); }

void HostTap::send(const uint8_t* frame, size_t len) {
    // A full kernel queue drops the frame, as a busy wire would; TCP in the guest retransmits.
    while (::write(fd_, frame, len) < 0 && errno == EINTR) {
    }
}

void HostTap::add_poll_fds(std::vector<pollfd>& fds, int&) {
    poll_index_ = fds.size();
    fds.push_back({fd_, POLLIN, 0});
}

void HostTap::process_poll_fds(const std::vector<pollfd>& fds, bool poll_failed) {
    if (poll_failed || poll_index_ >= fds.size() || !(fds[poll_index_].revents & POLLIN)) return;
    uint8_t buf[kMaxFrame];
    // Read what is queued now (bounded, so a flood cannot starve the guest).
    for (int i = 0; i < 256; i++) {
        ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (receiver_) receiver_->receive(buf, size_t(n));
    }
}

}  // namespace m86::host
