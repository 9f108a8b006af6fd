// VirtioMmio: the virtio-mmio transport (virtio 1.x spec, 4.2 "Virtio Over MMIO"), one 512-byte
// register window per device: registers at 0x000..0x0ff, the device's configuration space from 0x100.
//
// Two register layouts, chosen at construction like QEMU's `force-legacy` property:
//   - modern (Version 2, 4.2.2): 64-bit feature words through DeviceFeaturesSel/DriverFeaturesSel,
//     FEATURES_OK negotiation (VIRTIO_F_VERSION_1 required), per-queue QueueReady and 64-bit
//     descriptor / driver (avail) / device (used) area addresses, ConfigGeneration;
//   - legacy (Version 1, 4.2.4): GuestPageSize, QueuePFN and QueueAlign place a queue's three parts
//     contiguously (desc at PFN * page size, avail right after, used at the next QueueAlign
//     boundary); features take effect as written (no FEATURES_OK). QEMU's microvm uses this layout
//     by default.
//
// The transport owns the device's virtqueues and the interrupt status. A device type (blk, net,
// console, rng) is a VirtioDevice: it declares its ID, feature bits, queues and configuration space,
// and processes a queue when the driver notifies it; it reaches the transport only through the
// VirtioTransport interface (guest memory, queues, used-buffer and config-change interrupts, error).
//
// Interrupts: InterruptStatus bit 0 = used buffer, bit 1 = configuration change; the IRQ line is
// high while any bit is set and drops when the driver acknowledges them (InterruptACK) - a level, as
// QEMU drives it.
//
// Errors: a malformed ring or descriptor chain (see virtqueue.h), or a device-detected protocol
// violation, sets DEVICE_NEEDS_RESET (status bit 0x40, 2.1.2) and, in the modern layout, raises a
// configuration-change interrupt; the message is logged once. The device then ignores notifications
// until the driver resets it by writing 0 to Status. Nothing a guest writes can crash or hang the
// host.
//
// Queues are processed only after DRIVER_OK (3.1.1 / 2.1.2: a device must not consume buffers
// before); setting DRIVER_OK processes every enabled queue once, so notifications that arrived
// before are not lost.
//
// Board wiring, per populated slot i (QEMU fills the highest slot first):
//     VirtioBlk blk(disk_backend);                       // or VirtioNet / VirtioConsole / VirtioRng
//     VirtioMmio mmio(blk, ram_dma, IrqLine{&gsi_router, irq}, force_legacy);
//     mmio_bus.map(kVirtioMmioBase + i * kMmioSize, kMmioSize, &mmio, "virtio-mmio");
// Device work happens synchronously inside the guest's QueueNotify / Status writes, and inside the
// host-side calls the board makes (VirtioNet::receive from a network backend, VirtioConsole::input).
//
// Bounded work: one notification does at most about kWorkPerTurn bytes of data movement (a device
// counts what it copies). A device with more to do (a 4 GiB disk request, a long run of requests, a
// huge console write) keeps its place and calls defer(queue); the transport then calls notify(queue)
// again on a later turn of the board's run loop - from a Timer kDeferNs ahead on the Clock given with
// set_clock() (so deterministic mode stays deterministic), or, without a clock, when the owner calls
// run_deferred() (tests, fuzzers). The guest sees the request complete (used ring + interrupt) only
// when all of it is done, as on a real disk that takes time; vCPUs, timers and host I/O run between
// the chunks.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "devices/clock.h"
#include "devices/device.h"
#include "devices/virtio/virtqueue.h"

namespace m86::dev::virtio {

// 4.2.2 register offsets (modern); legacy-only registers from 4.2.4.
namespace reg {
constexpr unsigned kMagicValue = 0x000, kVersion = 0x004, kDeviceId = 0x008, kVendorId = 0x00c,
                   kDeviceFeatures = 0x010, kDeviceFeaturesSel = 0x014, kDriverFeatures = 0x020,
                   kDriverFeaturesSel = 0x024, kLegacyGuestPageSize = 0x028, kQueueSel = 0x030,
                   kQueueNumMax = 0x034, kQueueNum = 0x038, kLegacyQueueAlign = 0x03c, kLegacyQueuePfn = 0x040,
                   kQueueReady = 0x044, kQueueNotify = 0x050, kInterruptStatus = 0x060, kInterruptAck = 0x064,
                   kStatus = 0x070, kQueueDescLow = 0x080, kQueueDescHigh = 0x084, kQueueDriverLow = 0x090,
                   kQueueDriverHigh = 0x094, kQueueDeviceLow = 0x0a0, kQueueDeviceHigh = 0x0a4,
                   kShmSel = 0x0ac, kShmLenLow = 0x0b0, kShmLenHigh = 0x0b4, kShmBaseLow = 0x0b8,
                   kShmBaseHigh = 0x0bc, kConfigGeneration = 0x0fc, kConfig = 0x100;
}  // namespace reg

constexpr uint64_t kMmioSize = 0x200;          // microvm spaces its transports 512 bytes apart
constexpr uint32_t kMagic = 0x74726976;        // "virt"
constexpr uint32_t kVendorQemu = 0x554d4551;   // "QEMU", what QEMU's transports report
constexpr uint32_t kVersionLegacy = 1, kVersionModern = 2;

// Bounded work per guest operation (see the file comment): data bytes a device moves per turn, and
// how far ahead on the virtual clock the next turn is scheduled (> 0: a timer re-armed at now()
// would run again inside the same Clock::run_due()).
constexpr uint64_t kWorkPerTurn = 4ull << 20;
constexpr uint64_t kDeferNs = 1000;

// 2.1 device status bits.
constexpr uint32_t kStatusAcknowledge = 1, kStatusDriver = 2, kStatusDriverOk = 4, kStatusFeaturesOk = 8,
                   kStatusNeedsReset = 0x40, kStatusFailed = 0x80;
// 4.2.2 InterruptStatus bits.
constexpr uint32_t kIntUsedBuffer = 1, kIntConfigChange = 2;

// 6 "Reserved Feature Bits" (bit numbers as masks).
constexpr uint64_t kFNotifyOnEmpty = 1ull << 24;  // legacy
constexpr uint64_t kFAnyLayout = 1ull << 27;      // legacy; implied by VERSION_1
constexpr uint64_t kFIndirectDesc = 1ull << 28;
constexpr uint64_t kFEventIdx = 1ull << 29;
constexpr uint64_t kFVersion1 = 1ull << 32;

// 5 device IDs.
constexpr uint32_t kIdNet = 1, kIdBlock = 2, kIdConsole = 3, kIdRng = 4;

class Virtqueue;

// What a device type sees of its transport.
class VirtioTransport {
public:
    virtual ~VirtioTransport() = default;
    virtual DmaMemory& dma() = 0;
    virtual Virtqueue& queue(unsigned index) = 0;
    // Features both sides agreed on (modern: as accepted with FEATURES_OK; legacy: as written).
    virtual uint64_t negotiated() const = 0;
    bool has(uint64_t feature) const { return (negotiated() & feature) != 0; }
    // DRIVER_OK is set and the device is not in NEEDS_RESET: queues may be processed.
    virtual bool active() const = 0;
    // Buffers were pushed to `queue`'s used ring: raise the used-buffer interrupt unless the driver
    // suppressed it.
    virtual void used(unsigned queue) = 0;
    // The device changed its configuration space: bump ConfigGeneration, raise the interrupt.
    virtual void config_changed() = 0;
    // A protocol violation by the driver: enter DEVICE_NEEDS_RESET, log `msg` (once).
    virtual void fail(const std::string& msg) = 0;
    // A diagnostic line (the device's name is prefixed).
    virtual void log(const std::string& msg) = 0;
    // The device stopped processing `queue` with work left (its kWorkPerTurn budget spent): call
    // notify(queue) again on a later turn, if the transport is still active then.
    virtual void defer(unsigned queue) = 0;
};

// A virtio device type. The transport calls these; the device answers through transport().
class VirtioDevice {
public:
    virtual ~VirtioDevice() = default;
    virtual const char* name() const = 0;  // "virtio-blk", for messages
    virtual uint32_t device_id() const = 0;
    // Device-type feature bits offered (the transport adds VERSION_1 / ring features itself).
    virtual uint64_t device_features() const = 0;
    virtual unsigned num_queues() const = 0;
    virtual uint16_t queue_max_size(unsigned index) const = 0;
    // The driver notified `index` (only called while the transport is active()).
    virtual void notify(unsigned index) = 0;
    // The driver reset the device (Status = 0): drop in-flight state; queues are already reset.
    virtual void reset() {}
    // Device-specific checks when the driver accepts features (FEATURES_OK). Return false to refuse.
    virtual bool accept_features(uint64_t) { return true; }
    // A driver write to the configuration space (offset relative to 0x100). Default: read-only.
    virtual void write_config(unsigned offset, const uint8_t* data, unsigned size) { (void)offset, (void)data, (void)size; }

    // The configuration space as bytes (little-endian fields, 4.2.2.2: the driver reads it through
    // 8/16/32-bit accesses).
    const std::vector<uint8_t>& config() const { return config_; }

    void bind(VirtioTransport* t) { transport_ = t; }
    VirtioTransport& transport() const { return *transport_; }

protected:
    void config_put(unsigned offset, uint64_t value, unsigned size) {
        if (config_.size() < offset + size) config_.resize(offset + size);
        for (unsigned i = 0; i < size; i++) config_[offset + i] = uint8_t(value >> (8 * i));
    }
    std::vector<uint8_t> config_;
    VirtioTransport* transport_ = nullptr;
};

class VirtioMmio : public Device, public VirtioTransport {
public:
    struct State {
        uint32_t status = 0;
        uint32_t isr = 0;  // InterruptStatus
        uint32_t device_features_sel = 0, driver_features_sel = 0;
        uint64_t driver_features = 0;   // as written by the driver
        uint64_t accepted = 0;          // modern: latched at FEATURES_OK
        uint32_t queue_sel = 0;
        uint32_t config_generation = 0;
        uint32_t guest_page_size = 4096;  // legacy; survives a device reset (Linux writes it once at probe)
        bool needs_reset = false;
    };
    using LogFn = std::function<void(const std::string&)>;

    // `device` must outlive the transport. `legacy` selects the Version 1 register layout.
    VirtioMmio(VirtioDevice& device, DmaMemory& dma, IrqLine irq, bool legacy);

    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, unsigned size, uint64_t value) override;

    // Where diagnostics go; the default prints "micro86: <name>: <msg>" to stderr.
    void set_log(LogFn fn) { log_ = std::move(fn); }
    // The clock deferred device work is scheduled on (the board's). Without one, deferred work
    // waits for run_deferred().
    void set_clock(Clock* clock);
    // Whether a device deferred work, and running it now (what the clock's timer does). Returns
    // whether work is still deferred afterwards.
    bool deferred() const { return deferred_ != 0; }
    bool run_deferred();
    bool legacy() const { return legacy_; }
    // All feature bits offered to the driver.
    uint64_t offered() const;
    const State& state() const { return s_; }
    VirtioDevice& device() const { return dev_; }

    // The transport's and its queues' state as plain data (the device type's own state - a disk's
    // contents, a network backlog - is not included).
    struct Snapshot {
        State transport;
        std::vector<Virtqueue::State> queues;
    };
    Snapshot snapshot() const;
    // Restores a snapshot taken from a transport of the same device type and layout (re-derives
    // the negotiated ring features and the IRQ level).
    void restore(const Snapshot& snap);
    bool irq_level() const { return irq_level_; }

    // ---- VirtioTransport ----
    DmaMemory& dma() override { return dma_; }
    Virtqueue& queue(unsigned index) override { return queues_[index]; }
    uint64_t negotiated() const override;
    bool active() const override { return (s_.status & kStatusDriverOk) && !s_.needs_reset; }
    void used(unsigned queue) override;
    void config_changed() override;
    void fail(const std::string& msg) override;
    void log(const std::string& msg) override;
    void defer(unsigned queue) override;

private:
    uint32_t read_reg(unsigned offset);
    void write_reg(unsigned offset, uint32_t value);
    void write_status(uint32_t value);
    void reset();
    void update_features();
    void update_irq();
    Virtqueue* selected();
    void setup_legacy_queue(Virtqueue& q, uint32_t pfn);

    VirtioDevice& dev_;
    DmaMemory& dma_;
    IrqLine irq_;
    bool legacy_;
    State s_;
    std::vector<Virtqueue> queues_;
    LogFn log_;
    bool irq_level_ = false;
    unsigned error_logs_ = 0;
    uint32_t deferred_ = 0;  // bit i: queue i has deferred work
    std::unique_ptr<Timer> defer_timer_;
};

}  // namespace m86::dev::virtio
