// fuzz_net: libFuzzer harness for the network path a guest drives. Ethernet frames go through
// virtio-net's transmit queue or straight into the slirp backend, through HostSlirp's fragment
// guard (Ipv4Reassembler) into the real libslirp; slirp's answers come back through VirtioNet's
// receive path. The clock moves on between frames, so reassembly and slirp timeouts fire.
//
// Input: records [op: 1 byte][length: 2 bytes, big-endian][frame: length bytes] until the input
// ends (a short last record takes what is left). op bit 0: 1 = through the virtio-net transmit
// queue (a 12-byte virtio_net_hdr and the frame in two descriptors), 0 = straight to
// HostSlirp::send(); op bits 1-7: seconds the clock moves on before the frame (0-127).
// Seeds: tests/fuzz/corpus/net/ (written by make_net_corpus.cpp).
//
// Every input gets a fresh stack, restricted (restrict=on) so that no frame opens a host socket
// or reaches a service on this machine. What runs: the guard, ARP, DHCP, TFTP refusals, ICMP echo
// to the gateway, TCP/UDP input up to the restriction, NDP, ICMPv6 echo. libslirp is the system's
// uninstrumented library: a memory error inside it shows only when it crashes.
#define DOCTEST_CONFIG_DISABLE  // the test driver's REQUIREs compile to nothing here
#include <cstddef>
#include <cstdint>
#include <string>

#include "devices/clock.h"
#include "devices/test_virtio_driver.h"
#include "devices/virtio/net.h"
#include "machine/host_slirp.h"

using namespace m86;
namespace vnet = m86::dev::virtio::net;

namespace {

// Guest RAM: the two rings, one transmit header and frame buffer, kRxCount receive buffers.
constexpr uint64_t kRam = 128 << 10, kRxBufferSize = 1526, kTxFrameSize = 65536;
constexpr unsigned kRxCount = 16;

void poll_once(host::HostSlirp& s) {
    std::vector<pollfd> fds;
    int timeout = 0;
    s.add_poll_fds(fds, timeout);
    s.process_poll_fds(fds, false);  // nothing polled: only slirp's timers and timeouts run
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dev::Clock clock(dev::ClockConfig{dev::ClockMode::Deterministic});
    host::SlirpOptions opt;
    opt.restricted = true;
    std::string err;
    auto slirp = host::HostSlirp::create(opt, clock, err);
    if (!slirp) __builtin_trap();
    dev::VirtioNet net(*slirp);
    test::Driver d(net, false, kRam);
    d.t->set_log([](const std::string&) {});
    d.init(vnet::kFMac, 2);
    const uint64_t tx_header = d.alloc(vnet::kHdrModern), tx_frame = d.alloc(kTxFrameSize);
    const uint64_t rx = d.alloc(kRxCount * kRxBufferSize);
    if (rx + kRxCount * kRxBufferSize > kRam) __builtin_trap();
    for (unsigned i = 0; i < kRxCount; i++)
        d.add(vnet::kRxQueue, {{rx + i * kRxBufferSize, uint32_t(kRxBufferSize), true}});
    d.kick(vnet::kRxQueue);

    size_t pos = 0;
    while (pos < size) {
        const uint8_t op = data[pos++];
        size_t len = 0;
        for (int i = 0; i < 2 && pos < size; i++) len = len << 8 | data[pos++];
        len = std::min(len, size - pos);
        const uint8_t* frame = data + pos;
        pos += len;

        clock.idle_until(clock.now() + uint64_t(op >> 1) * dev::kNsPerSec);
        clock.run_due();
        if (op & 1) {
            if (len > kTxFrameSize) continue;
            d.fill(tx_frame, std::vector<uint8_t>(frame, frame + len));
            d.add(vnet::kTxQueue, {{tx_header, vnet::kHdrModern, false}, {tx_frame, uint32_t(len), false}});
            d.kick(vnet::kTxQueue);
        } else {
            slirp->send(frame, len);
        }
        poll_once(*slirp);
        // Hand the receive buffers slirp filled back to the device.
        uint32_t id, used_len;
        bool any = false;
        while (d.get_used(vnet::kRxQueue, id, used_len)) {
            d.add(vnet::kRxQueue, {{rx + (id % kRxCount) * kRxBufferSize, uint32_t(kRxBufferSize), true}});
            any = true;
        }
        if (any) d.kick(vnet::kRxQueue);
        d.ack_interrupts();
    }
    return 0;
}
