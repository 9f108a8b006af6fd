// VirtioNet: receive and transmit paths of the virtio network device (virtio 1.x spec 5.1; see net.h).
#include "devices/virtio/net.h"

namespace m86::dev {

using namespace virtio;
using namespace virtio::net;

VirtioNet::VirtioNet(NetBackend& backend, Mac mac) : backend_(backend), mac_(mac) {
    config_.assign(kConfigSize, 0);
    for (unsigned i = 0; i < 6; i++) config_[kCfgMac + i] = mac_[i];
    config_put(kCfgStatus, kStatusLinkUp, 2);
    backend_.set_receiver(this);
}

VirtioNet::~VirtioNet() { backend_.set_receiver(nullptr); }

unsigned VirtioNet::hdr_len() const {
    // 5.1.6: the header includes num_buffers with VERSION_1 (or MRG_RXBUF, not offered here).
    return transport().has(kFVersion1) || transport().has(kFMrgRxbuf) ? kHdrModern : kHdrLegacy;
}

void VirtioNet::reset() { backlog_.clear(); }

void VirtioNet::set_link(bool up) {
    if (up == link_up_) return;
    link_up_ = up;
    config_put(kCfgStatus, up ? kStatusLinkUp : 0, 2);
    if (transport_) transport().config_changed();
}

void VirtioNet::notify(unsigned index) {
    if (index == kRxQueue) drain_backlog();
    if (index == kTxQueue) transmit();
}

int VirtioNet::deliver(const uint8_t* frame, size_t len) {
    Virtqueue& q = transport().queue(kRxQueue);
    if (!q.ready()) return 0;
    Chain c;
    switch (q.pop(c)) {
        case Virtqueue::Pop::Empty: return 0;
        case Virtqueue::Pop::Error: return -1;
        case Virtqueue::Pop::Ok: break;
    }
    const unsigned h = hdr_len();
    if (c.writable_len < h + len) {
        q.unpop();  // keep the buffer for a frame that fits
        stats_.rx_dropped++;
        if (!logged_big_rx_) {
            logged_big_rx_ = true;
            transport().log("dropping a " + std::to_string(len) + "-byte frame: the receive buffer holds " +
                            std::to_string(c.writable_len) + " bytes (logged once)");
        }
        return -1;
    }
    uint8_t hdr[kHdrModern] = {};  // flags 0, GSO_NONE, no checksum offload
    if (h == kHdrModern) hdr[kHdrNumBuffers] = 1;
    DmaMemory& dma = transport().dma();
    if (!write_bytes(dma, c.writable, 0, hdr, h) || !write_bytes(dma, c.writable, h, frame, len)) {
        transport().fail("receive buffer not in guest RAM");
        return -1;
    }
    if (!q.push(c.head, uint32_t(h + len))) return -1;
    stats_.rx_frames++;
    return 1;
}

bool VirtioNet::receive(const uint8_t* frame, size_t len) {
    if (!transport_ || !transport().active() || !link_up_ || len > kMaxFrame) {
        stats_.rx_dropped++;
        return false;
    }
    if (!backlog_.empty()) drain_backlog();
    if (backlog_.empty()) {
        int r = deliver(frame, len);
        if (r == 1) transport().used(kRxQueue);
        if (r != 0) return r == 1;
    }
    if (backlog_.size() >= kRxBacklog) {
        stats_.rx_dropped++;
        return false;
    }
    backlog_.emplace_back(frame, frame + len);
    return true;
}

void VirtioNet::drain_backlog() {
    bool any = false;
    while (!backlog_.empty() && transport().active()) {
        const auto& f = backlog_.front();
        int r = deliver(f.data(), f.size());
        if (r == 0) break;
        any |= r == 1;
        backlog_.pop_front();
    }
    if (any) transport().used(kRxQueue);
}

void VirtioNet::transmit() {
    Virtqueue& q = transport().queue(kTxQueue);
    Chain c;
    bool any = false;
    while (q.pop(c) == Virtqueue::Pop::Ok) {
        const unsigned h = hdr_len();
        if (c.readable_len < h) {
            transport().fail("transmit chain shorter than the virtio_net_hdr");
            return;
        }
        const uint64_t flen = c.readable_len - h;
        if (flen > kMaxFrame) {
            stats_.tx_dropped++;
            if (!logged_big_tx_) {
                logged_big_tx_ = true;
                transport().log("dropping a " + std::to_string(flen) + "-byte transmit frame (logged once)");
            }
        } else {
            tx_buf_.resize(size_t(flen));
            if (!read_bytes(transport().dma(), c.readable, h, tx_buf_.data(), flen)) {
                transport().fail("transmit buffer not in guest RAM");
                return;
            }
            stats_.tx_frames++;
            backend_.send(tx_buf_.data(), tx_buf_.size());
            if (!transport().active()) return;
        }
        if (!q.push(c.head, 0)) return;
        any = true;
    }
    if (any) transport().used(kTxQueue);
}

}  // namespace m86::dev
