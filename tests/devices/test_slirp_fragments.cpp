// HostSlirp's guard in front of libslirp (host_slirp.cpp, docs/network.md), with the real library:
// every lone-fragment shape (the first, issue 19's frame, kills a process on Debian 12's libslirp
// 4.7.0 when it reaches slirp_input() unguarded) leaves the stack answering; fragmented UDP (8 KiB
// each way) and ICMP echo work end to end; incomplete datagrams time out on the backend's clock;
// and libslirp's legacy protocol emulation stays off (an IRC DCC line reaches the host unchanged).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/clock.h"
#include "devices/net_frames.h"
#include "machine/host_slirp.h"
#include "machine/ipv4_reasm.h"
#include "slirp_env.h"

using namespace m86;
using namespace m86::test;
using namespace m86::test::frames;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

// A UDP socket on the host's loopback (the guest reaches it as 10.0.2.2:port).
struct HostUdp {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    uint16_t port = 0;
    HostUdp() {
        sockaddr_in a = {};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
    }
    ~HostUdp() { close(fd); }
};

bool is_ipv4(const Frame& f, uint8_t proto) {
    return f.size() >= 34 && get16be(f, 12) == 0x0800 && f[23] == proto;
}

// Reassembles the IPv4 datagrams slirp sent the guest (fragmented or not) with protocol `proto`;
// returns the first whole one (IP header included), or an empty frame.
Frame first_datagram(const std::vector<Frame>& frames, uint8_t proto) {
    host::Ipv4Reassembler r;
    Frame out;
    for (const Frame& f : frames) {
        if (!is_ipv4(f, proto)) continue;
        CHECK(f.size() <= 1514);  // slirp's MTU: what the guest's receive buffers hold
        switch (r.input(f.data() + 14, f.size() - 14, 0, out)) {
            case host::Ipv4Reassembler::Verdict::Whole: return Frame(f.begin() + 14, f.end());
            case host::Ipv4Reassembler::Verdict::Done: return out;
            default: break;
        }
    }
    return {};
}

std::unique_ptr<host::HostSlirp> make_slirp(dev::Clock& clock, FrameSink& sink,
                                            const host::SlirpOptions& opt = {}) {
    std::string err;
    auto s = host::HostSlirp::create(opt, clock, err);
    REQUIRE_MESSAGE(s, err);
    s->set_receiver(&sink);
    Frame arp = arp_request(kGatewayIp);  // slirp learns the guest's MAC from it
    s->send(arp.data(), arp.size());
    return s;
}

void send(host::HostSlirp& s, const Frame& f) { s.send(f.data(), f.size()); }

// A UDP exchange with the host proves the stack still works.
void check_udp_round_trip(host::HostSlirp& s, FrameSink& sink) {
    HostUdp h;
    send(s, ether(kBroadcastMac, 0x0800,
                  ipv4(kUdp, kGuestIp, kGatewayIp, 99, 0,
                       udp(kGuestIp, kGatewayIp, 4001, h.port, bytes("still here")))));
    char buf[32];
    sockaddr_in from = {};
    socklen_t flen = sizeof from;
    host::poll_sources({&s}, {h.fd}, 1000);
    ssize_t n = recvfrom(h.fd, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &flen);
    REQUIRE(n == 10);
    REQUIRE(sendto(h.fd, "and you", 7, 0, reinterpret_cast<sockaddr*>(&from), flen) == 7);
    sink.frames.clear();
    CHECK(poll_until(s, [&] {
        Frame d = first_datagram(sink.frames, kUdp);
        return d.size() == 20 + 8 + 7 && std::string(d.begin() + 28, d.end()) == "and you";
    }));
}

}  // namespace

TEST_CASE("slirp fragment guard: the version check it is keyed on") {
    CHECK(host::slirp_version_at_least("4.7.0", 4, 7, 0));
    CHECK(host::slirp_version_at_least("4.7.1", 4, 7, 0));
    CHECK(host::slirp_version_at_least("4.10.0", 4, 9, 2));
    CHECK(host::slirp_version_at_least("5.0.0-rc1", 4, 9, 9));  // a suffix after the third number
    CHECK_FALSE(host::slirp_version_at_least("4.6.9", 4, 7, 0));
    CHECK_FALSE(host::slirp_version_at_least("3.99.99", 4, 0, 0));
    for (const char* bad : {"", "4", "4.7", "4.7.", "x.7.0", "4..0", "-4.7.0"}) {
        CAPTURE(std::string(bad));
        CHECK_FALSE(host::slirp_version_at_least(bad, 0, 0, 0));
    }
}

TEST_CASE("slirp fragment guard: lone and malformed fragments of every shape leave the stack running") {
    dev::Clock clock({dev::ClockMode::Deterministic});
    FrameSink sink;
    auto s = make_slirp(clock, sink);
    CHECK(s->guards_fragments());  // every libslirp version known so far

    // Issue 19's frame: Ethernet 0x0800, UDP 10.0.2.15 -> 10.0.2.2, 64 bytes, flags/offset 0x0064
    // (MF clear, offset 100 * 8): a lone last fragment. Unguarded, libslirp 4.7.0 dies here.
    send(*s, ipv4_fragment(0x0064, 64, 1));
    send(*s, ipv4_fragment(kMf | 0, 64, 2));    // a lone first fragment
    send(*s, ipv4_fragment(kMf | 100, 64, 3));  // a lone middle fragment
    send(*s, ipv4_fragment(0x0001, 3, 4));      // a lone last fragment of 3 bytes at offset 8
    send(*s, ipv4_fragment(0x1fff, 64, 5));     // ends past 65535 bytes (ping of death)
    send(*s, ipv4_fragment(kMf | 8, 13, 6));    // MF with data not a multiple of 8
    send(*s, ipv4_fragment(0x0064, 0, 7));      // no data at all
    send(*s, ipv4_fragment(kMf | 0, 64, 8));    // an overlapping pair...
    send(*s, ipv4_fragment(0x0004, 64, 8));     // ...the second ends the datagram inside the first
    Frame bad_ihl = ipv4_fragment(0x0064, 64, 9);
    bad_ihl[14] = 0x4f;  // IHL 15: options that are really the data
    send(*s, bad_ihl);
    Frame cut = ipv4_fragment(0x0064, 64, 10);
    cut.resize(14 + 20);  // total length says 84, the frame holds the header alone
    send(*s, cut);
    send(*s, ipv6_fragment(0, true, 64));     // IPv6: a lone first fragment,
    send(*s, ipv6_fragment(100, false, 64));  // a lone last one,
    send(*s, ipv6_fragment(100, true, 64));   // a lone middle one
    check_udp_round_trip(*s, sink);

    auto st = s->fragment_stats();
    CHECK(st.ipv4.fragments == 11);
    CHECK(st.ipv4_pending == 5);  // ids 1, 2, 3, 4 and the poisoned 8
    CHECK(st.ipv4.malformed == 5);
    CHECK(st.ipv4.overlaps == 1);
    CHECK(st.ipv6_dropped == 3);

    // Incomplete datagrams go 30 s (of the backend's clock) after their first fragment.
    clock.idle_until(30 * kSec - 1);
    host::poll_sources({s.get()}, {}, 0);
    CHECK(s->fragment_stats().ipv4_pending == 5);
    clock.idle_until(30 * kSec);
    host::poll_sources({s.get()}, {}, 0);
    CHECK(s->fragment_stats().ipv4_pending == 0);
    CHECK(s->fragment_stats().ipv4.timeouts == 4);
    check_udp_round_trip(*s, sink);
}

TEST_CASE("slirp fragment guard: 8 KiB of UDP in fragments reaches the host whole, and 8 KiB comes back") {
    dev::Clock clock;
    FrameSink sink;
    auto s = make_slirp(clock, sink);
    HostUdp h;
    const Frame data = pattern(8192, 1);
    auto frags =
        fragments(kBroadcastMac, kUdp, kGatewayIp, 0x77, udp(kGuestIp, kGatewayIp, 5000, h.port, data), 1480);
    REQUIRE(frags.size() == 6);
    for (size_t i = frags.size(); i-- > 0;) send(*s, frags[i]);  // last first: the order libslirp crashes on
    Frame got(65536);
    sockaddr_in from = {};
    socklen_t flen = sizeof from;
    host::poll_sources({s.get()}, {h.fd}, 1000);
    ssize_t n =
        recvfrom(h.fd, got.data(), got.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &flen);
    REQUIRE(n == 8192);
    got.resize(size_t(n));
    CHECK(got == data);
    CHECK(s->fragment_stats().ipv4.reassembled == 1);

    const Frame answer = pattern(8192, 2);
    REQUIRE(sendto(h.fd, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from), flen) == 8192);
    Frame d;
    CHECK(poll_until(*s, [&] { return !(d = first_datagram(sink.frames, kUdp)).empty(); }));
    REQUIRE(d.size() == 20 + 8 + 8192);
    CHECK(get16be(d, 22) == 5000);  // to the guest's port
    CHECK(Frame(d.begin() + 28, d.end()) == answer);
}

TEST_CASE("slirp fragment guard: a 4000-byte ping to 10.0.2.2 in fragments is answered") {
    dev::Clock clock;
    FrameSink sink;
    auto s = make_slirp(clock, sink);
    const Frame data = pattern(4000, 3);
    for (const Frame& f : fragments(kBroadcastMac, kIcmp, kGatewayIp, 0x99, icmp_echo(0x4d38, 1, data), 1480))
        send(*s, f);
    Frame d;
    CHECK(poll_until(*s, [&] { return !(d = first_datagram(sink.frames, kIcmp)).empty(); }));
    REQUIRE(d.size() == 20 + 8 + 4000);
    CHECK(d[20] == 0);  // echo reply
    CHECK(get16be(d, 24) == 0x4d38);
    CHECK(Frame(d.begin() + 28, d.end()) == data);
    CHECK(checksum(d.data() + 20, d.size() - 20) == 0);
}

TEST_CASE("slirp: legacy protocol emulation is off (an IRC DCC CHAT line reaches the host as sent)") {
    // With emulation on, libslirp rewrites the address and port of a DCC offer on a connection to
    // port 6667 (its IRC entry) and opens a host socket for it.
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(6667);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 1) != 0) {
        MESSAGE("port 6667 is busy on this host: emulation check skipped");
        close(l);
        return;
    }
    dev::Clock clock;
    FrameSink sink;
    auto s = make_slirp(clock, sink);
    auto seg = [&](uint32_t seq, uint32_t ack, uint8_t flags, const Frame& data = {}) {
        send(*s, ether(kBroadcastMac, 0x0800,
                       ipv4(kTcp, kGuestIp, kGatewayIp, 1, 0,
                            tcp(kGuestIp, kGatewayIp, 40000, 6667, seq, ack, flags, data))));
    };
    seg(1000, 0, 0x02);  // SYN: slirp connects to 127.0.0.1:6667
    uint32_t their_seq = 0;
    REQUIRE(poll_until(*s, [&] {
        for (const Frame& f : sink.frames)
            if (is_ipv4(f, kTcp) && get16be(f, 36) == 40000 && (f[47] & 0x12) == 0x12)
                return their_seq = get32be(f, 38), true;
        return false;
    }));
    int c = accept(l, nullptr, nullptr);
    REQUIRE(c >= 0);
    const std::string line =
        "PRIVMSG bob :\x01"
        "DCC CHAT chat 167772687 5000\x01\r\n";  // 167772687 = 10.0.2.15
    seg(1001, their_seq + 1, 0x10);
    seg(1001, their_seq + 1, 0x18, bytes(line));
    std::string got;
    poll_until(*s,
               [&] {
                   char buf[256];
                   ssize_t n = recv(c, buf, sizeof buf, MSG_DONTWAIT);
                   if (n > 0) got.append(buf, size_t(n));
                   return got.size() >= line.size();
               },
               {c});
    CHECK(got == line);
    close(c);
    close(l);
}
