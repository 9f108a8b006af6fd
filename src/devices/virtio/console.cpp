// VirtioConsole: single-port virtio console (virtio 1.x spec 5.3; see console.h).
#include "devices/virtio/console.h"

#include <algorithm>

namespace m86::dev {

using namespace virtio;
using namespace virtio::console;

VirtioConsole::VirtioConsole(ConsoleBackend* backend, uint16_t cols, uint16_t rows)
    : backend_(backend), features_(kFEmergWrite | (cols || rows ? kFSize : 0)) {
    config_.assign(kConfigSize, 0);
    config_put(kCfgCols, cols, 2);
    config_put(kCfgRows, rows, 2);
    config_put(kCfgMaxNrPorts, 1, 4);
}

void VirtioConsole::set_size(uint16_t cols, uint16_t rows) {
    if (!(features_ & kFSize)) return;
    config_put(kCfgCols, cols, 2);
    config_put(kCfgRows, rows, 2);
    if (transport_) transport().config_changed();
}

void VirtioConsole::write_config(unsigned offset, const uint8_t* data, unsigned size) {
    // 5.3.6: the driver writes a character to emerg_wr (a le32; the low byte is the character).
    if (offset == kCfgEmergWr && size >= 1 && (features_ & kFEmergWrite) && backend_) backend_->write(data, 1);
}

size_t VirtioConsole::input(const uint8_t* data, size_t n) {
    size_t take = std::min(n, input_space());
    pending_.insert(pending_.end(), data, data + take);
    if (transport_ && transport().active()) deliver_input();
    return take;
}

void VirtioConsole::notify(unsigned index) {
    if (index == kRxQueue) deliver_input();
    if (index == kTxQueue) transmit();
}

void VirtioConsole::deliver_input() {
    Virtqueue& q = transport().queue(kRxQueue);
    bool any = false;
    Chain c;
    while (!pending_.empty() && q.ready() && q.pop(c) == Virtqueue::Pop::Ok) {
        size_t n = size_t(std::min<uint64_t>(pending_.size(), c.writable_len));
        buf_.assign(pending_.begin(), pending_.begin() + n);
        if (!write_bytes(transport().dma(), c.writable, 0, buf_.data(), n)) {
            transport().fail("receive buffer not in guest RAM");
            return;
        }
        pending_.erase(pending_.begin(), pending_.begin() + n);
        if (!q.push(c.head, uint32_t(n))) return;
        any = true;
    }
    if (any) transport().used(kRxQueue);
}

void VirtioConsole::transmit() {
    Virtqueue& q = transport().queue(kTxQueue);
    bool any = false;
    uint64_t budget = kWorkPerTurn;
    for (;;) {
        if (!tx_active_) {
            if (budget == 0) {  // more chains may wait: the next turn takes them
                transport().defer(kTxQueue);
                break;
            }
            if (q.pop(tx_) != Virtqueue::Pop::Ok) break;
            tx_active_ = true, tx_pos_ = 0;
        }
        while (tx_pos_ < tx_.readable_len && budget > 0) {
            size_t n = size_t(std::min<uint64_t>({tx_.readable_len - tx_pos_, kOutputChunk, budget}));
            buf_.resize(n);
            if (!read_bytes(transport().dma(), tx_.readable, tx_pos_, buf_.data(), n)) {
                transport().fail("transmit buffer not in guest RAM");
                return;
            }
            if (backend_) backend_->write(buf_.data(), n);
            tx_pos_ += n, budget -= n;
        }
        if (tx_pos_ < tx_.readable_len) {  // budget spent: the rest on the next turn
            transport().defer(kTxQueue);
            break;
        }
        tx_active_ = false;
        if (!q.push(tx_.head, 0)) return;
        any = true;
        budget -= std::min<uint64_t>(budget, 64);  // each chain costs something, even an empty one
    }
    if (any) transport().used(kTxQueue);
}

}  // namespace m86::dev
