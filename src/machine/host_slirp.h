// HostSlirp: user-mode networking through libslirp (`-netdev user,id=ID[,hostfwd=...]`), as QEMU's
// `-netdev user`: the guest sees a virtual 10.0.2.0/24 network with the gateway and DHCP server at
// 10.0.2.2 (handing out addresses from 10.0.2.15), the DNS forwarder at 10.0.2.3, and IPv6
// fec0::/64 with the host at fec0::2; guest TCP/UDP connections leave through ordinary host
// sockets, 10.0.2.2 reaching the host's loopback. hostfwd rules forward a host port to a guest port.
//
// Wiring (see host_net.h): the board polls it with poll_sources(); slirp's timers run on the
// dev::Clock given at creation (the board's clock.run_due() fires them) and slirp's notion of time
// is clock.now(). Frames for the guest are delivered to the receiver (VirtioNet) from inside
// poll processing, timer callbacks or send().
//
// Guest fragments never reach libslirp: micro86 reassembles IPv4 fragments itself and hands
// libslirp whole datagrams, and drops IPv6 fragments (which libslirp drops too), because Debian 12's
// libslirp 4.7.0 crashes on a lone last IPv4 fragment. Why, and which versions: host_slirp.cpp and
// docs/network.md.
//
// Built without libslirp (meson found no `slirp` dependency), create() fails with a clear error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "devices/clock.h"
#include "machine/host_net.h"
#include "machine/ipv4_reasm.h"

namespace m86::host {

// One hostfwd rule: [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport.
struct Hostfwd {
    bool udp = false;
    std::string host_addr;   // empty: all host addresses (0.0.0.0), as QEMU
    uint16_t host_port = 0;
    std::string guest_addr;  // empty: the first DHCP address (10.0.2.15)
    uint16_t guest_port = 0;
};

// The `-netdev user` options micro86 understands, with QEMU's defaults.
struct SlirpOptions {
    std::string net = "10.0.2.0";
    unsigned prefix_len = 24;
    std::string host = "10.0.2.2";
    std::string dhcp_start = "10.0.2.15";
    std::string dns = "10.0.2.3";
    bool ipv4 = true, ipv6 = true;
    std::string ipv6_prefix = "fec0::";
    unsigned ipv6_prefix_len = 64;
    std::string ipv6_host = "fec0::2", ipv6_dns = "fec0::3";
    bool restricted = false;  // restrict=on: no connections leave the virtual network
    std::string hostname, domainname;
    std::vector<Hostfwd> hostfwd;

    // Applies one `key=value` option of `-netdev user` (net=, host=, dhcpstart=, dns=, ipv4=,
    // ipv6=, ipv6-net=, ipv6-host=, ipv6-dns=, restrict=, hostname=, domainname=, hostfwd=; hostfwd
    // may repeat). Returns false with a one-line `error` for an unknown key or a bad value.
    bool set(std::string_view key, std::string_view value, std::string& error);
};

// Parses QEMU's hostfwd syntax. Returns false with `error` on a malformed rule.
bool parse_hostfwd(std::string_view spec, Hostfwd& out, std::string& error);

// Whether a libslirp version string ("4.7.0", as slirp_version_string() returns; a suffix after
// the third number is ignored) is at least major.minor.micro. False for anything unparsable.
bool slirp_version_at_least(std::string_view version, unsigned major, unsigned minor, unsigned micro);

class HostSlirp : public HostNetBackend {
public:
    // Returns nullptr with a one-line `error` (bad address, a hostfwd port already in use, ...).
    static std::unique_ptr<HostSlirp> create(const SlirpOptions& opt, dev::Clock& clock, std::string& error);
    ~HostSlirp() override;
    HostSlirp(const HostSlirp&) = delete;
    HostSlirp& operator=(const HostSlirp&) = delete;

    // dev::NetBackend: a frame from the guest.
    void send(const uint8_t* frame, size_t len) override;
    // PollSource.
    void add_poll_fds(std::vector<pollfd>& fds, int& timeout_ms) override;
    void process_poll_fds(const std::vector<pollfd>& fds, bool poll_failed) override;

    // Whether the fragment guard is on (for every libslirp version known so far).
    bool guards_fragments() const;
    struct FragmentStats {
        Ipv4Reassembler::Stats ipv4;
        size_t ipv4_pending = 0;     // datagrams being reassembled now
        uint64_t ipv6_dropped = 0;   // frames with an IPv6 fragment header
    };
    FragmentStats fragment_stats() const;

    struct Impl;

private:
    explicit HostSlirp(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace m86::host
