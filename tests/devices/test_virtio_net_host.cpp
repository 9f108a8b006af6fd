// The host network backends behind virtio-net: QEMU's hostfwd / -netdev user option syntax, the
// real libslirp stack (ARP with the virtual gateway, a UDP datagram to a socket on the host's
// loopback and its answer, a hostfwd TCP connection arriving at the guest as a SYN, a busy host
// port refused with a clear error), the whole path guest driver -> virtio-net -> slirp -> back, tap
// (works or fails clearly), and the host entropy source. Frames come from net_frames.h; the
// fragment guard in front of libslirp has its own tests (test_slirp_fragments.cpp).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/clock.h"
#include "devices/virtio/net.h"
#include "machine/host_entropy.h"
#include "machine/host_slirp.h"
#include "machine/host_tap.h"
#include "net_frames.h"
#include "slirp_env.h"
#include "test_virtio_driver.h"

using namespace m86;
using namespace m86::test;
using frames::arp_request, frames::get16be, frames::kGatewayIp, frames::kGuestIp, frames::kGuestMac;
using Frame = frames::Frame;

namespace {

Frame udp_frame(const uint8_t* dst_mac, const uint8_t* dst_ip, uint16_t sport, uint16_t dport,
                const std::string& payload) {
    Frame u = frames::udp(kGuestIp, dst_ip, sport, dport, frames::bytes(payload));
    return frames::ether(dst_mac, 0x0800, frames::ipv4(frames::kUdp, kGuestIp, dst_ip, 0, 0, u));
}

const Frame* find_arp_reply(const std::vector<Frame>& frames) {
    for (const Frame& f : frames)
        if (f.size() >= 42 && get16be(f, 12) == 0x0806 && get16be(f, 20) == 2) return &f;
    return nullptr;
}

uint16_t free_tcp_port() {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    close(s);
    return ntohs(a.sin_port);
}

}  // namespace

TEST_CASE("virtio-net host: hostfwd and -netdev user option syntax") {
    host::Hostfwd r;
    std::string err;
    REQUIRE(host::parse_hostfwd("tcp::2222-:22", r, err));
    CHECK_FALSE(r.udp);
    CHECK(r.host_addr.empty());
    CHECK(r.host_port == 2222);
    CHECK(r.guest_addr.empty());
    CHECK(r.guest_port == 22);
    REQUIRE(host::parse_hostfwd("udp:127.0.0.1:5555-10.0.2.15:55", r, err));
    CHECK(r.udp);
    CHECK(r.host_addr == "127.0.0.1");
    CHECK(r.guest_addr == "10.0.2.15");
    CHECK(r.guest_port == 55);
    REQUIRE(host::parse_hostfwd("::8080-:80", r, err));  // protocol defaults to tcp
    CHECK_FALSE(r.udp);
    for (const char* bad : {"tcp:2222-:22", ":8080-:80", "sctp::1-:2", "tcp::70000-:22", "tcp::22-:0", "tcp::22", "tcp:x.y:22-:22"}) {
        CAPTURE(std::string(bad));
        CHECK_FALSE(host::parse_hostfwd(bad, r, err));
        CHECK(err.find("hostfwd") != std::string::npos);
    }
    host::SlirpOptions o;
    CHECK(o.net == "10.0.2.0");
    CHECK(o.host == "10.0.2.2");
    CHECK(o.dns == "10.0.2.3");
    CHECK(o.dhcp_start == "10.0.2.15");
    CHECK(o.set("net", "10.0.3.0/24", err));
    CHECK(o.net == "10.0.3.0");
    CHECK(o.set("hostfwd", "tcp::2222-:22", err));
    CHECK(o.set("hostfwd", "udp::5353-:53", err));
    CHECK(o.hostfwd.size() == 2);
    CHECK(o.set("restrict", "on", err));
    CHECK(o.restricted);
    CHECK_FALSE(o.set("host", "10.0.2", err));
    CHECK_FALSE(o.set("smb", "/tmp", err));
    CHECK(err.find("smb") != std::string::npos);
}

TEST_CASE("virtio-net host: slirp answers ARP for the gateway and forwards UDP to the host's loopback") {
    dev::Clock clock;
    std::string err;
    auto slirp = host::HostSlirp::create({}, clock, err);
    REQUIRE_MESSAGE(slirp, err);
    FrameSink sink;
    slirp->set_receiver(&sink);

    Frame arp = arp_request(kGatewayIp);
    slirp->send(arp.data(), arp.size());
    REQUIRE(poll_until(*slirp, [&] { return find_arp_reply(sink.frames) != nullptr; }));
    const Frame& reply = *find_arp_reply(sink.frames);
    CHECK(std::equal(reply.begin() + 28, reply.begin() + 32, kGatewayIp));  // sender: 10.0.2.2
    CHECK(std::equal(reply.begin() + 32, reply.begin() + 38, kGuestMac));  // target: us
    uint8_t gw_mac[6];
    std::copy(reply.begin() + 22, reply.begin() + 28, gw_mac);

    // A UDP socket on the host's loopback; the guest reaches it as 10.0.2.2.
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t alen = sizeof a;
    getsockname(s, reinterpret_cast<sockaddr*>(&a), &alen);
    const uint16_t port = ntohs(a.sin_port);

    Frame udp = udp_frame(gw_mac, kGatewayIp, 4000, port, "ping from guest");
    slirp->send(udp.data(), udp.size());
    char buf[64] = {};
    sockaddr_in from = {};
    socklen_t flen = sizeof from;
    host::poll_sources({slirp.get()}, {s}, 1000);
    ssize_t n = recvfrom(s, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &flen);
    REQUIRE(n == 15);
    CHECK(std::string(buf, size_t(n)) == "ping from guest");

    // The host answers; the datagram reaches the guest from 10.0.2.2:port to 10.0.2.15:4000.
    const std::string answer = "pong from host";
    REQUIRE(sendto(s, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from), flen) == ssize_t(answer.size()));
    auto is_answer = [&](const Frame& f) {
        return f.size() >= 42 + answer.size() && get16be(f, 12) == 0x0800 && f[23] == 17 && get16be(f, 34) == port &&
               get16be(f, 36) == 4000 && std::string(f.begin() + 42, f.begin() + 42 + long(answer.size())) == answer;
    };
    CHECK(poll_until(*slirp, [&] {
        for (const Frame& f : sink.frames)
            if (is_answer(f)) return true;
        return false;
    }));
    close(s);
}

TEST_CASE("virtio-net host: a hostfwd connection reaches the guest as a TCP SYN; a busy port is a clear error") {
    dev::Clock clock;
    std::string err;
    const uint16_t port = free_tcp_port();
    host::SlirpOptions opt;
    REQUIRE(opt.set("hostfwd", "tcp:127.0.0.1:" + std::to_string(port) + "-:22", err));
    auto slirp = host::HostSlirp::create(opt, clock, err);
    REQUIRE_MESSAGE(slirp, err);
    FrameSink sink;
    slirp->set_receiver(&sink);
    Frame arp = arp_request(kGatewayIp);  // lets slirp learn the guest's MAC
    slirp->send(arp.data(), arp.size());

    // A second stack cannot take the same host port.
    auto clash = host::HostSlirp::create(opt, clock, err);
    CHECK(clash == nullptr);
    CHECK(err.find("could not set up host forwarding rule") != std::string::npos);

    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);  // in progress: slirp accepts on poll
    auto is_syn = [](const Frame& f) {
        return f.size() >= 54 && get16be(f, 12) == 0x0800 && f[23] == 6 && std::equal(f.begin() + 30, f.begin() + 34, kGuestIp) &&
               get16be(f, 36) == 22 && (f[47] & 0x02);
    };
    CHECK(poll_until(*slirp, [&] {
        for (const Frame& f : sink.frames)
            if (is_syn(f)) return true;
        return false;
    }));
    close(c);
}

TEST_CASE("virtio-net host: guest driver -> virtio-net -> slirp ARP -> receive buffer") {
    dev::Clock clock;
    std::string err;
    auto slirp = host::HostSlirp::create({}, clock, err);
    REQUIRE_MESSAGE(slirp, err);
    dev::VirtioNet net(*slirp);
    Driver d(net, false);
    d.init(dev::virtio::net::kFMac, 2);
    uint64_t rx = d.alloc(1526);
    d.add(dev::virtio::net::kRxQueue, {{rx, 1526, true}});
    d.kick(dev::virtio::net::kRxQueue);
    Frame arp = arp_request(kGatewayIp);
    uint64_t h = d.alloc(12), p = d.alloc(arp.size());
    d.fill(p, arp);
    d.add(dev::virtio::net::kTxQueue, {{h, 12, false}, {p, uint32_t(arp.size()), false}});
    d.kick(dev::virtio::net::kTxQueue);
    REQUIRE(poll_until(*slirp, [&] { return d.used_idx(dev::virtio::net::kRxQueue) == 1; }));
    uint32_t id, len;
    REQUIRE(d.get_used(dev::virtio::net::kRxQueue, id, len));
    REQUIRE(len >= 12 + 42);
    Frame got = d.bytes(rx + 12, len - 12);
    CHECK(get16be(got, 12) == 0x0806);
    CHECK(get16be(got, 20) == 2);
    CHECK(std::equal(got.begin() + 28, got.begin() + 32, kGatewayIp));
    CHECK(d.irq.level);
}

TEST_CASE("virtio-net host: tap either opens or explains why not") {
    std::string err;
    auto tap = host::HostTap::open("", err);
    if (tap) {
        CHECK_FALSE(tap->ifname().empty());
    } else {
        MESSAGE("tap unavailable here: " << err);
        CHECK(err.find("-netdev tap") == 0);
        CHECK(err.size() > 20);
    }
    CHECK(host::HostTap::open(std::string(40, 'x'), err) == nullptr);
    CHECK(err.find("too long") != std::string::npos);
}

TEST_CASE("virtio-rng host: host entropy is not constant") {
    host::HostEntropy e;
    std::vector<uint8_t> a(600), b(600);
    e.fill(a.data(), a.size());
    e.fill(b.data(), b.size());
    CHECK(a != b);
    CHECK(std::count(a.begin(), a.end(), 0) < 50);
}
