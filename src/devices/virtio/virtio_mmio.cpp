// VirtioMmio: register decoding, feature negotiation, status/reset and interrupt logic of the
// virtio-mmio transport (virtio 1.x spec 4.2; see virtio_mmio.h).
#include "devices/virtio/virtio_mmio.h"

#include <cstdio>

namespace m86::dev::virtio {

namespace {
// At most this many NEEDS_RESET messages per transport: a guest that resets and re-breaks the
// device in a loop must not flood the host's terminal.
constexpr unsigned kMaxErrorLogs = 8;

bool pow2(uint64_t v) { return v && !(v & (v - 1)); }
}  // namespace

VirtioMmio::VirtioMmio(VirtioDevice& device, DmaMemory& dma, IrqLine irq, bool legacy)
    : dev_(device), dma_(dma), irq_(irq), legacy_(legacy) {
    dev_.bind(this);
    queues_.reserve(dev_.num_queues());
    for (unsigned i = 0; i < dev_.num_queues(); i++) {
        queues_.emplace_back(dev_.queue_max_size(i));
        queues_.back().attach(&dma_, [this](const std::string& m) { fail(m); });
    }
    log_ = [this](const std::string& m) { std::fprintf(stderr, "micro86: %s: %s\n", dev_.name(), m.c_str()); };
}

uint64_t VirtioMmio::offered() const {
    return dev_.device_features() | kFIndirectDesc | kFEventIdx | (legacy_ ? kFAnyLayout : kFVersion1);
}

uint64_t VirtioMmio::negotiated() const {
    return legacy_ ? (s_.driver_features & offered()) : s_.accepted;
}

Virtqueue* VirtioMmio::selected() { return s_.queue_sel < queues_.size() ? &queues_[s_.queue_sel] : nullptr; }

void VirtioMmio::log(const std::string& msg) {
    if (log_) log_(msg);
}

void VirtioMmio::set_clock(Clock* clock) {
    defer_timer_.reset();
    if (clock) defer_timer_ = std::make_unique<Timer>(*clock, [this](uint64_t) { run_deferred(); });
}

void VirtioMmio::defer(unsigned queue) {
    if (queue >= queues_.size() || queue >= 32) return;
    deferred_ |= 1u << queue;
    if (defer_timer_ && !defer_timer_->armed()) defer_timer_->arm(defer_timer_->clock().now() + kDeferNs);
}

bool VirtioMmio::run_deferred() {
    // Each notify() may defer again (its next budget spent too): that re-arms the timer.
    uint32_t pending = deferred_;
    deferred_ = 0;
    for (unsigned i = 0; i < queues_.size(); i++)
        if ((pending & (1u << i)) && active() && queues_[i].ready()) dev_.notify(i);
    return deferred_ != 0;
}

void VirtioMmio::update_irq() {
    bool level = s_.isr != 0;
    if (level != irq_level_) {
        irq_level_ = level;
        irq_.set(level);
    }
}

void VirtioMmio::update_features() {
    uint64_t f = negotiated();
    for (auto& q : queues_) q.set_features(f & kFEventIdx, f & kFIndirectDesc);
}

void VirtioMmio::used(unsigned queue) {
    if (!active() || queue >= queues_.size()) return;
    if (queues_[queue].notify_needed()) {
        s_.isr |= kIntUsedBuffer;
        update_irq();
    }
}

void VirtioMmio::config_changed() {
    s_.config_generation++;
    if (s_.status & kStatusDriverOk) {
        s_.isr |= kIntConfigChange;
        update_irq();
    }
}

void VirtioMmio::fail(const std::string& msg) {
    if (s_.needs_reset) return;  // one message per failure; the device is already stopped
    s_.needs_reset = true;
    s_.status |= kStatusNeedsReset;
    if (error_logs_ < kMaxErrorLogs) {
        error_logs_++;
        log("device needs reset: " + msg + (error_logs_ == kMaxErrorLogs ? " (further errors not logged)" : ""));
    }
    // 2.1.2: a modern device signals NEEDS_RESET with a configuration change notification.
    if (!legacy_ && (s_.status & kStatusDriverOk)) {
        s_.isr |= kIntConfigChange;
        update_irq();
    }
}

void VirtioMmio::reset() {
    State fresh;
    fresh.guest_page_size = s_.guest_page_size;
    fresh.config_generation = s_.config_generation;
    s_ = fresh;
    for (auto& q : queues_) q.reset();
    deferred_ = 0;  // the device drops its in-flight work in reset()
    if (defer_timer_) defer_timer_->cancel();
    update_features();
    dev_.reset();
    update_irq();
}

VirtioMmio::Snapshot VirtioMmio::snapshot() const {
    Snapshot snap{s_, {}};
    for (const auto& q : queues_) snap.queues.push_back(q.state());
    return snap;
}

void VirtioMmio::restore(const Snapshot& snap) {
    s_ = snap.transport;
    for (size_t i = 0; i < queues_.size(); i++) queues_[i].state() = i < snap.queues.size() ? snap.queues[i] : Virtqueue::State{};
    update_features();
    irq_level_ = !(s_.isr != 0);  // force update_irq() to drive the line
    update_irq();
}

void VirtioMmio::write_status(uint32_t value) {
    if (value == 0) {  // 4.2.2.1: writing zero resets the device
        reset();
        return;
    }
    value &= ~kStatusNeedsReset;  // the device's bit
    const uint32_t old = s_.status;
    if (!legacy_ && (value & kStatusFeaturesOk) && !(old & kStatusFeaturesOk)) {
        // 3.1.1 / 6.1: the driver may accept only offered bits; a non-transitional (Version 2) device
        // requires VERSION_1. Refused -> FEATURES_OK reads back clear.
        uint64_t f = s_.driver_features;
        if ((f & ~offered()) || !(f & kFVersion1) || !dev_.accept_features(f)) {
            value &= ~kStatusFeaturesOk;
        } else {
            s_.accepted = f;
            update_features();
        }
    }
    s_.status = value | (s_.needs_reset ? kStatusNeedsReset : 0);
    if ((value & kStatusDriverOk) && !(old & kStatusDriverOk) && active()) {
        // Buffers made available before DRIVER_OK are processed now.
        for (unsigned i = 0; i < queues_.size() && active(); i++)
            if (queues_[i].ready()) dev_.notify(i);
    }
}

void VirtioMmio::setup_legacy_queue(Virtqueue& q, uint32_t pfn) {
    auto& qs = q.state();
    qs.legacy_pfn = pfn;
    if (pfn == 0) {  // the driver releases the queue
        qs.ready = false;
        qs.desc = qs.avail = qs.used = 0;
        return;
    }
    if (!pow2(s_.guest_page_size)) {
        fail("GuestPageSize " + std::to_string(s_.guest_page_size) + " is not a power of two");
        return;
    }
    if (!pow2(qs.legacy_align)) {
        fail("QueueAlign " + std::to_string(qs.legacy_align) + " is not a power of two");
        return;
    }
    // 2.7.2 legacy layout: descriptors, then the available ring (with used_event), then the used
    // ring at the next QueueAlign boundary.
    uint64_t desc = uint64_t(pfn) * s_.guest_page_size;
    uint64_t avail = desc + kDescSize * qs.num;
    uint64_t avail_end = avail + 6 + 2ull * qs.num;
    uint64_t align = qs.legacy_align;
    qs.desc = desc, qs.avail = avail, qs.used = (avail_end + align - 1) & ~(align - 1);
    q.enable();
}

uint32_t VirtioMmio::read_reg(unsigned offset) {
    Virtqueue* q = selected();
    switch (offset) {
        case reg::kMagicValue: return kMagic;
        case reg::kVersion: return legacy_ ? kVersionLegacy : kVersionModern;
        case reg::kDeviceId: return dev_.device_id();
        case reg::kVendorId: return kVendorQemu;
        case reg::kDeviceFeatures:
            return s_.device_features_sel < 2 ? uint32_t(offered() >> (32 * s_.device_features_sel)) : 0;
        case reg::kQueueNumMax: return q ? q->max_size() : 0;
        case reg::kInterruptStatus: return s_.isr;
        case reg::kStatus: return s_.status;
        default: break;
    }
    if (legacy_) {
        switch (offset) {
            case reg::kLegacyQueuePfn: return q ? q->state().legacy_pfn : 0;
            default: return 0;
        }
    }
    switch (offset) {
        case reg::kQueueReady: return q ? q->ready() : 0;
        case reg::kQueueDescLow: return q ? uint32_t(q->state().desc) : 0;
        case reg::kQueueDescHigh: return q ? uint32_t(q->state().desc >> 32) : 0;
        case reg::kQueueDriverLow: return q ? uint32_t(q->state().avail) : 0;
        case reg::kQueueDriverHigh: return q ? uint32_t(q->state().avail >> 32) : 0;
        case reg::kQueueDeviceLow: return q ? uint32_t(q->state().used) : 0;
        case reg::kQueueDeviceHigh: return q ? uint32_t(q->state().used >> 32) : 0;
        // 4.2.2: no shared memory regions; a non-existent region's length reads as all ones.
        case reg::kShmLenLow:
        case reg::kShmLenHigh:
        case reg::kShmBaseLow:
        case reg::kShmBaseHigh: return ~0u;
        case reg::kConfigGeneration: return s_.config_generation;
        default: return 0;
    }
}

void VirtioMmio::write_reg(unsigned offset, uint32_t value) {
    Virtqueue* q = selected();
    auto set_half = [](uint64_t& r, bool high, uint32_t v) {
        r = high ? (r & 0xffffffffull) | uint64_t(v) << 32 : (r & ~0xffffffffull) | v;
    };
    switch (offset) {
        case reg::kDeviceFeaturesSel: s_.device_features_sel = value; return;
        case reg::kDriverFeaturesSel: s_.driver_features_sel = value; return;
        case reg::kDriverFeatures:
            if (s_.driver_features_sel >= 2 || (s_.status & kStatusFeaturesOk)) return;
            set_half(s_.driver_features, s_.driver_features_sel == 1, value);
            if (legacy_) update_features();
            return;
        case reg::kQueueSel: s_.queue_sel = value; return;
        case reg::kQueueNum:
            if (q && !q->ready()) q->state().num = uint16_t(value > 0xffff ? 0xffff : value);
            return;
        case reg::kQueueNotify:
            // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index.
            if (value < queues_.size() && active() && queues_[value].ready()) dev_.notify(value);
            return;
        case reg::kInterruptAck:
            s_.isr &= ~value;
            update_irq();
            return;
        case reg::kStatus: write_status(value); return;
        default: break;
    }
    if (legacy_) {
        switch (offset) {
            case reg::kLegacyGuestPageSize: s_.guest_page_size = value; return;
            case reg::kLegacyQueueAlign:
                if (q) q->state().legacy_align = value;
                return;
            case reg::kLegacyQueuePfn:
                if (q) setup_legacy_queue(*q, value);
                return;
            default: return;
        }
    }
    if (!q) return;
    auto& qs = q->state();
    switch (offset) {
        case reg::kQueueReady:
            if ((value & 1) && !qs.ready) q->enable();
            if (!(value & 1)) qs.ready = false;
            return;
        default: break;
    }
    if (qs.ready) return;  // 4.2.2.3: addresses are written only while the queue is disabled
    switch (offset) {
        case reg::kQueueDescLow: set_half(qs.desc, false, value); return;
        case reg::kQueueDescHigh: set_half(qs.desc, true, value); return;
        case reg::kQueueDriverLow: set_half(qs.avail, false, value); return;
        case reg::kQueueDriverHigh: set_half(qs.avail, true, value); return;
        case reg::kQueueDeviceLow: set_half(qs.used, false, value); return;
        case reg::kQueueDeviceHigh: set_half(qs.used, true, value); return;
        default: return;
    }
}

uint64_t VirtioMmio::read(uint64_t offset, unsigned size) {
    if (offset >= reg::kConfig) {
        // 4.2.2.2: the configuration space takes 8/16/32-bit accesses (a 64-bit one is two). Bytes
        // past the device's configuration read as all ones.
        const auto& cfg = dev_.config();
        uint64_t v = 0;
        for (unsigned i = 0; i < size; i++) {
            uint64_t o = offset - reg::kConfig + i;
            v |= uint64_t(o < cfg.size() ? cfg[o] : 0xff) << (8 * i);
        }
        return v;
    }
    // 4.2.2.2: registers take aligned 32-bit accesses only; anything else reads 0 as in QEMU.
    if (size != 4 || (offset & 3)) return 0;
    return read_reg(unsigned(offset));
}

void VirtioMmio::write(uint64_t offset, unsigned size, uint64_t value) {
    if (offset >= reg::kConfig) {
        uint8_t b[8];
        for (unsigned i = 0; i < size && i < 8; i++) b[i] = uint8_t(value >> (8 * i));
        dev_.write_config(unsigned(offset - reg::kConfig), b, size);
        return;
    }
    if (size != 4 || (offset & 3)) return;
    write_reg(unsigned(offset), uint32_t(value));
}

}  // namespace m86::dev::virtio
