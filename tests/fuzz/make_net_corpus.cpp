// make_net_corpus DIR: writes fuzz_net's seed corpus (tests/fuzz/corpus/net) - real frames a guest
// sends, in fuzz_net's record format ([op][length, big-endian 16 bits][frame]; op bit 0 = through
// virtio-net, bits 1-7 = seconds to wait first). Frames come from tests/devices/net_frames.h.
#include <cstdio>
#include <string>

#include "devices/net_frames.h"

using namespace m86::test::frames;

namespace {

struct Seed {
    Frame bytes;
    // One record: `frame` after `wait_s` seconds, through virtio-net or straight to the back-end.
    Seed& add(const Frame& frame, bool virtio = true, unsigned wait_s = 0) {
        bytes.push_back(uint8_t(wait_s << 1 | (virtio ? 1 : 0)));
        bytes.push_back(uint8_t(frame.size() >> 8));
        bytes.push_back(uint8_t(frame.size()));
        bytes.insert(bytes.end(), frame.begin(), frame.end());
        return *this;
    }
};

Frame ipv4_udp(const uint8_t* src, const uint8_t* dst, uint16_t sport, uint16_t dport, const Frame& data,
               const uint8_t* dst_mac = kBroadcastMac) {
    return ether(dst_mac, 0x0800, ipv4(kUdp, src, dst, 1, 0, udp(src, dst, sport, dport, data)));
}

// A DHCPDISCOVER (RFC 2131: a BOOTP request with the magic cookie and option 53 = 1).
Frame dhcp_discover() {
    Frame b(236, 0);
    b[0] = 1, b[1] = 1, b[2] = 6;  // BOOTREQUEST, Ethernet, 6-byte address
    put32be(b, 4, 0x19191919);     // xid
    std::copy(kGuestMac, kGuestMac + 6, b.begin() + 28);
    b = cat(b, {99, 130, 83, 99, 53, 1, 1, 55, 3, 1, 3, 6, 255});
    const uint8_t any[4] = {0, 0, 0, 0}, all[4] = {255, 255, 255, 255};
    return ipv4_udp(any, all, 68, 67, b);
}

// A DNS query (RFC 1035) for example.com, type A, to slirp's forwarder 10.0.2.3.
Frame dns_query() {
    Frame q = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    q = cat(q, {7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1});
    return ipv4_udp(kGuestIp, kDnsIp, 5353, 53, q);
}

bool write(const std::string& dir, const char* name, const Seed& s) {
    std::string path = dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return std::perror(path.c_str()), false;
    bool ok = std::fwrite(s.bytes.data(), 1, s.bytes.size(), f) == s.bytes.size();
    return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_net_corpus DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    const Frame arp = arp_request(kGatewayIp);
    std::vector<Frame> ping =
        fragments(kBroadcastMac, kIcmp, kGatewayIp, 0x100, icmp_echo(1, 1, pattern(4000)), 1480);
    std::vector<Frame> udp8k = fragments(kBroadcastMac, kUdp, kGatewayIp, 0x200,
                                         udp(kGuestIp, kGatewayIp, 5000, 9, pattern(8192)), 1480);
    Seed s[16];
    int n = 0;
    const char* names[16];
    auto seed = [&](const char* name) -> Seed& { return names[n] = name, s[n++]; };

    seed("arp").add(arp).add(arp_request(kDnsIp), false);
    seed("dhcp_discover").add(dhcp_discover());
    seed("dns_query").add(arp).add(dns_query());
    seed("tcp_syn").add(arp).add(
        ether(kBroadcastMac, 0x0800,
              ipv4(kTcp, kGuestIp, kGatewayIp, 2, 0, tcp(kGuestIp, kGatewayIp, 40000, 22, 1000, 0, 0x02))));
    seed("icmp_echo")
        .add(arp)
        .add(ether(kBroadcastMac, 0x0800,
                   ipv4(kIcmp, kGuestIp, kGatewayIp, 3, 0, icmp_echo(1, 1, pattern(56)))));
    seed("tftp_rrq")
        .add(arp)
        .add(ipv4_udp(kGuestIp, kGatewayIp, 1069, 69, cat({0, 1}, bytes(std::string("file\0octet\0", 11)))));
    seed("frag_ping_4000").add(arp).add(ping[0]).add(ping[1], false).add(ping[2]);
    Seed& rev = seed("frag_udp_8k_last_first").add(arp);
    for (size_t i = udp8k.size(); i-- > 0;) rev.add(udp8k[i], i % 2 == 0);
    seed("frag_lone_last").add(arp).add(ipv4_fragment(0x0064, 64));  // issue 19's frame
    seed("frag_overlap")
        .add(ipv4_fragment(kMf | 0, 64, 7))
        .add(ipv4_fragment(kMf | 4, 64, 7))
        .add(ipv4_fragment(16, 8, 7));
    seed("frag_timeout").add(ping[0]).add(ping[1]).add(ping[2], true, 31);
    seed("ipv6_router_solicit").add(icmp6(133, kAllRouters6, {0, 0, 0, 0}));
    seed("ipv6_echo")
        .add(icmp6(133, kAllRouters6, {0, 0, 0, 0}))
        .add(icmp6(128, kHostIp6, cat({0, 1, 0, 1}, pattern(32))));
    seed("ipv6_fragments").add(ipv6_fragment(0, true, 64)).add(ipv6_fragment(100, false, 64));
    for (int i = 0; i < n; i++)
        if (!write(dir, names[i], s[i])) return 1;
    std::printf("%d seeds in %s\n", n, dir.c_str());
    return 0;
}
