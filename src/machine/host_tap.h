// HostTap: a host TAP interface as a network backend (`-netdev tap,id=ID[,ifname=NAME],script=no,
// downscript=no`): Ethernet frames go to and come from the kernel's tap device through
// /dev/net/tun (Linux). micro86 runs no ifup/ifdown scripts: the interface is created (or, if it
// exists as a persistent tap owned by this user, attached) and left for the user to configure.
//
// Creating a tap needs CAP_NET_ADMIN, or a persistent device made beforehand, e.g.
//   sudo ip tuntap add dev tap0 mode tap user $USER && sudo ip link set tap0 up
// open() explains which of these is missing when it fails.
#pragma once

#include <memory>
#include <string>

#include "machine/host_net.h"

namespace m86::host {

class HostTap : public HostNetBackend {
public:
    // `ifname` empty: the kernel picks a name (tapN). Returns nullptr with a one-line `error`.
    static std::unique_ptr<HostTap> open(const std::string& ifname, std::string& error);
    ~HostTap() override;
    HostTap(const HostTap&) = delete;
    HostTap& operator=(const HostTap&) = delete;

    const std::string& ifname() const { return ifname_; }

    void send(const uint8_t* frame, size_t len) override;
    void add_poll_fds(std::vector<pollfd>& fds, int& timeout_ms) override;
    void process_poll_fds(const std::vector<pollfd>& fds, bool poll_failed) override;

private:
    HostTap(int fd, std::string ifname) : fd_(fd), ifname_(std::move(ifname)) {}
    int fd_;
    std::string ifname_;
    size_t poll_index_ = SIZE_MAX;
};

}  // namespace m86::host
