// VirtioNet: the virtio network device (virtio 1.x spec, 5.1; device ID 1) over an injected
// NetBackend (host::HostSlirp for `-netdev user`, host::HostTap for `-netdev tap`, a fake in tests).
//
// Queues: 0 = receiveq1, 1 = transmitq1 (no control queue, no multiqueue). Every frame is preceded
// by a struct virtio_net_hdr: 12 bytes when VIRTIO_F_VERSION_1 is negotiated (num_buffers included,
// set to 1 since MRG_RXBUF is not offered, 5.1.6.4), 10 bytes with a legacy driver. No offloads are
// offered, so the header the device writes is all zeros (GSO_NONE) and the one it reads is ignored.
//
// Offered features: MAC (the address in config space) and STATUS (config.status = LINK_UP).
//
// Receive: a frame from the backend goes into the next receive buffer (one chain per frame). If the
// driver has posted no buffer, up to kRxBacklog frames wait and are delivered on the next receive
// notification; beyond that, frames are dropped (as a NIC's full receive FIFO drops them; TCP
// retransmits). A frame larger than the posted buffer is dropped and the buffer kept. Frames
// arriving before DRIVER_OK are dropped.
// Transmit: each chain is one frame (after the header); it is handed to the backend at once.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <vector>

#include "devices/virtio/virtio_mmio.h"

namespace m86::dev {

// Frames from the network to the guest.
class NetReceiver {
public:
    virtual ~NetReceiver() = default;
    // One Ethernet frame (no FCS). Returns false if it was dropped.
    virtual bool receive(const uint8_t* frame, size_t len) = 0;
};

// The host side of a network card.
class NetBackend {
public:
    virtual ~NetBackend() = default;
    // One Ethernet frame from the guest.
    virtual void send(const uint8_t* frame, size_t len) = 0;
    // Where the backend delivers frames for the guest (may be called from inside send()).
    void set_receiver(NetReceiver* r) { receiver_ = r; }

protected:
    NetReceiver* receiver_ = nullptr;
};

namespace virtio::net {
// 5.1.3 feature bits.
constexpr uint64_t kFCsum = 1ull << 0, kFGuestCsum = 1ull << 1, kFMtu = 1ull << 3, kFMac = 1ull << 5,
                   kFMrgRxbuf = 1ull << 15, kFStatus = 1ull << 16, kFCtrlVq = 1ull << 17, kFMq = 1ull << 22;
// 5.1.4 configuration layout.
constexpr unsigned kCfgMac = 0, kCfgStatus = 6, kConfigSize = 8;  // mac[6], le16 status (no MQ/MTU fields)
constexpr uint16_t kStatusLinkUp = 1;
constexpr unsigned kHdrLegacy = 10, kHdrModern = 12, kHdrNumBuffers = 10;
constexpr unsigned kRxQueue = 0, kTxQueue = 1;
constexpr uint16_t kQueueSize = 256;
constexpr size_t kMaxFrame = 65535 + 14;  // an IP datagram's largest size plus the Ethernet header
constexpr size_t kRxBacklog = 64;
}  // namespace virtio::net

class VirtioNet : public virtio::VirtioDevice, public NetReceiver {
public:
    using Mac = std::array<uint8_t, 6>;
    // QEMU's default MAC for the first NIC: 52:54:00:12:34:56.
    static constexpr Mac kDefaultMac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

    // Registers itself as the backend's receiver. The backend must outlive the device.
    explicit VirtioNet(NetBackend& backend, Mac mac = kDefaultMac);
    ~VirtioNet() override;

    const char* name() const override { return "virtio-net"; }
    uint32_t device_id() const override { return virtio::kIdNet; }
    uint64_t device_features() const override { return virtio::net::kFMac | virtio::net::kFStatus; }
    unsigned num_queues() const override { return 2; }
    uint16_t queue_max_size(unsigned) const override { return virtio::net::kQueueSize; }
    void notify(unsigned index) override;
    void reset() override;

    // NetReceiver: a frame for the guest.
    bool receive(const uint8_t* frame, size_t len) override;

    // Link state (config.status, with a configuration change interrupt).
    void set_link(bool up);
    const Mac& mac() const { return mac_; }

    struct Stats {
        uint64_t rx_frames = 0, tx_frames = 0, rx_dropped = 0, tx_dropped = 0;
    };
    const Stats& stats() const { return stats_; }

private:
    unsigned hdr_len() const;
    // Delivers one frame into a posted buffer: 1 = delivered, 0 = no buffer, -1 = dropped/error.
    int deliver(const uint8_t* frame, size_t len);
    void drain_backlog();
    void transmit();

    NetBackend& backend_;
    Mac mac_;
    bool link_up_ = true;
    std::deque<std::vector<uint8_t>> backlog_;
    std::vector<uint8_t> tx_buf_, rx_buf_;
    Stats stats_;
    bool logged_big_rx_ = false, logged_big_tx_ = false;
};

}  // namespace m86::dev
