// VirtioConsole: the virtio console device (virtio 1.x spec, 5.3; device ID 3) as QEMU's
// `virtio-serial-device` with one `virtconsole` port: without VIRTIO_CONSOLE_F_MULTIPORT the device
// has a single port, port 0, which Linux makes the console hvc0.
//
// Queues: 0 = receiveq (port 0 input, device -> driver), 1 = transmitq (port 0 output).
// Offered features: EMERG_WRITE (a 32-bit write to config emerg_wr outputs one character, usable
// before the queues are set up) and SIZE when the board gives a terminal size (cols, rows).
//
// Output goes to an injected ConsoleBackend at once, in bounded turns: one notification passes at
// most virtio::kWorkPerTurn bytes; the rest of a long write (a chain may hold 4 GiB) waits for the
// next turn (VirtioTransport::defer) and the chain is returned when all of it is out. Input is pushed by the board with input():
// bytes are copied into the receive buffers the driver posted; what does not fit waits in a
// bounded buffer (kInputBuffer bytes; input() returns how many bytes it took, so the board keeps the
// rest - backpressure instead of loss) and is delivered when the driver posts more buffers. Pending
// input survives a device reset (the host side of the port is not reset by the guest).
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "devices/virtio/virtio_mmio.h"

namespace m86::dev {

// Where console output goes (the board adapts a host::CharDev).
class ConsoleBackend {
public:
    virtual ~ConsoleBackend() = default;
    virtual void write(const uint8_t* data, size_t n) = 0;
};

namespace virtio::console {
// 5.3.3 feature bits.
constexpr uint64_t kFSize = 1ull << 0, kFMultiport = 1ull << 1, kFEmergWrite = 1ull << 2;
// 5.3.4 configuration layout.
constexpr unsigned kCfgCols = 0, kCfgRows = 2, kCfgMaxNrPorts = 4, kCfgEmergWr = 8, kConfigSize = 12;
constexpr unsigned kRxQueue = 0, kTxQueue = 1;
constexpr uint16_t kQueueSize = 128;
constexpr size_t kInputBuffer = 4096;
constexpr size_t kOutputChunk = 4096;
}  // namespace virtio::console

class VirtioConsole : public virtio::VirtioDevice {
public:
    // cols/rows = 0: no VIRTIO_CONSOLE_F_SIZE. The backend may be null (output discarded).
    explicit VirtioConsole(ConsoleBackend* backend, uint16_t cols = 0, uint16_t rows = 0);

    const char* name() const override { return "virtio-console"; }
    uint32_t device_id() const override { return virtio::kIdConsole; }
    uint64_t device_features() const override { return features_; }
    unsigned num_queues() const override { return 2; }
    uint16_t queue_max_size(unsigned) const override { return virtio::console::kQueueSize; }
    void notify(unsigned index) override;
    void reset() override { tx_active_ = false, tx_pos_ = 0; }
    void write_config(unsigned offset, const uint8_t* data, unsigned size) override;

    // Host input for the guest. Returns the number of bytes taken (the rest did not fit).
    size_t input(const uint8_t* data, size_t n);
    // How many more bytes input() would take now.
    size_t input_space() const { return virtio::console::kInputBuffer - pending_.size(); }
    // Terminal size change (only with SIZE): config update and interrupt.
    void set_size(uint16_t cols, uint16_t rows);
    void set_backend(ConsoleBackend* b) { backend_ = b; }

private:
    void deliver_input();
    void transmit();

    ConsoleBackend* backend_;
    uint64_t features_;
    std::deque<uint8_t> pending_;
    std::vector<uint8_t> buf_;
    // The transmit chain being written out, and how much of it is done.
    virtio::Chain tx_;
    bool tx_active_ = false;
    uint64_t tx_pos_ = 0;
};

}  // namespace m86::dev
