// A virtio driver for tests: it plays the guest against a VirtioMmio transport, with the rings in a
// fake guest RAM (a host buffer behind RamDma at guest physical 0). It follows the spec's driver
// side (3.1.1 initialization, 4.2.3 MMIO queue setup for both register layouts, 2.7.13 supplying
// buffers) and offers raw access so tests can also build malformed rings on purpose.
#pragma once

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "devices/virtio/blk.h"
#include "devices/virtio/virtio_mmio.h"

namespace m86::test {

using namespace m86::dev;
using namespace m86::dev::virtio;

// Records the IRQ line's level.
struct IrqProbe : IrqSink {
    bool level = false;
    unsigned rises = 0;
    void set_irq(unsigned, bool l) override {
        if (l && !level) rises++;
        level = l;
    }
};

// A disk image in host memory.
struct MemBlock : BlockBackend {
    std::vector<uint8_t> data;
    bool ro = false, punch = false;
    unsigned flushes = 0;
    explicit MemBlock(size_t size, bool read_only = false) : data(size), ro(read_only) {}
    uint64_t size() const override { return data.size(); }
    bool read_only() const override { return ro; }
    bool read(uint64_t off, void* dst, size_t len) override {
        REQUIRE(off + len <= data.size());  // the device never asks outside the image
        std::memcpy(dst, data.data() + off, len);
        return true;
    }
    bool write(uint64_t off, const void* src, size_t len) override {
        REQUIRE(off + len <= data.size());
        if (ro) return false;
        std::memcpy(data.data() + off, src, len);
        return true;
    }
    bool flush() override { return ++flushes, true; }
    bool can_discard() const override { return punch; }
    bool discard(uint64_t off, uint64_t len) override {
        REQUIRE(off + len <= data.size());
        std::memset(data.data() + off, 0, len);
        return true;
    }
};

struct Buf {
    uint64_t addr;
    uint32_t len;
    bool write;  // device-writable
};

class Driver {
public:
    static constexpr uint64_t kRamSize = 1 << 20;  // the default

    struct Queue {
        uint16_t num = 0;
        uint64_t desc = 0, avail = 0, used = 0;
        uint16_t avail_idx = 0, used_seen = 0, next_desc = 0;
    };

    Driver(VirtioDevice& dev, bool legacy, uint64_t ram_size = kRamSize) : ram(ram_size, 0) {
        dma.add_region(0, ram.data(), ram.size());
        t = std::make_unique<VirtioMmio>(dev, dma, IrqLine{&irq, 0}, legacy);
        t->set_log([this](const std::string& m) { logs.push_back(m); });
    }

    // ---- raw guest memory ----
    void w8(uint64_t a, uint8_t v) { ram.at(a) = v; }
    void w16(uint64_t a, uint16_t v) { put(a, v, 2); }
    void w32(uint64_t a, uint32_t v) { put(a, v, 4); }
    void w64(uint64_t a, uint64_t v) { put(a, v, 8); }
    uint64_t rd(uint64_t a, unsigned n) const {
        uint64_t v = 0;
        for (unsigned i = 0; i < n; i++) v |= uint64_t(ram.at(a + i)) << (8 * i);
        return v;
    }
    void put(uint64_t a, uint64_t v, unsigned n) {
        for (unsigned i = 0; i < n; i++) ram.at(a + i) = uint8_t(v >> (8 * i));
    }
    uint64_t alloc(uint64_t size, uint64_t align = 16) {
        next_ = (next_ + align - 1) & ~(align - 1);
        uint64_t a = next_;
        next_ += size;
        REQUIRE(next_ <= ram.size());
        return a;
    }

    // ---- registers ----
    uint32_t reg(unsigned off) { return uint32_t(t->read(off, 4)); }
    void reg(unsigned off, uint32_t v) { t->write(off, 4, v); }
    uint32_t status() { return reg(reg::kStatus); }
    uint64_t device_features() {
        reg(reg::kDeviceFeaturesSel, 0);
        uint64_t f = reg(reg::kDeviceFeatures);
        reg(reg::kDeviceFeaturesSel, 1);
        return f | uint64_t(reg(reg::kDeviceFeatures)) << 32;
    }
    uint64_t config(unsigned off, unsigned size) { return t->read(reg::kConfig + off, size); }

    // 3.1.1: reset, ACKNOWLEDGE, DRIVER, features (`want` masked by what the device offers;
    // VERSION_1 added in the modern layout), FEATURES_OK, queues, DRIVER_OK. Returns the
    // negotiated features.
    uint64_t init(uint64_t want, unsigned nqueues, uint16_t qsize = 0) {
        reg(reg::kStatus, 0);
        reg(reg::kStatus, kStatusAcknowledge);
        reg(reg::kStatus, kStatusAcknowledge | kStatusDriver);
        uint64_t f = device_features() & (want | (t->legacy() ? 0 : kFVersion1));
        set_driver_features(f);
        uint32_t st = kStatusAcknowledge | kStatusDriver;
        if (!t->legacy()) {
            reg(reg::kStatus, st | kStatusFeaturesOk);
            REQUIRE((status() & kStatusFeaturesOk) != 0);
            st |= kStatusFeaturesOk;
        } else {
            reg(reg::kLegacyGuestPageSize, 4096);
        }
        q.assign(nqueues, Queue{});
        for (unsigned i = 0; i < nqueues; i++) setup_queue(i, qsize);
        reg(reg::kStatus, st | kStatusDriverOk);
        return f;
    }
    void set_driver_features(uint64_t f) {
        reg(reg::kDriverFeaturesSel, 0);
        reg(reg::kDriverFeatures, uint32_t(f));
        reg(reg::kDriverFeaturesSel, 1);
        reg(reg::kDriverFeatures, uint32_t(f >> 32));
    }
    // 4.2.3.2 (modern) / 4.2.4 (legacy) queue setup; qsize 0 = the device's maximum.
    void setup_queue(unsigned i, uint16_t qsize = 0) {
        if (q.size() <= i) q.resize(i + 1);
        Queue& Q = q[i];
        reg(reg::kQueueSel, i);
        uint32_t max = reg(reg::kQueueNumMax);
        REQUIRE(max > 0);
        Q.num = uint16_t(qsize ? qsize : max);
        reg(reg::kQueueNum, Q.num);
        if (t->legacy()) {
            // Legacy vring layout with QueueAlign 4096.
            uint64_t avail_off = 16ull * Q.num;
            uint64_t used_off = (avail_off + 6 + 2ull * Q.num + 4095) & ~4095ull;
            uint64_t size = used_off + 6 + 8ull * Q.num;
            uint64_t base = alloc(size, 4096);
            Q.desc = base, Q.avail = base + avail_off, Q.used = base + used_off;
            reg(reg::kLegacyQueueAlign, 4096);
            reg(reg::kLegacyQueuePfn, uint32_t(base / 4096));
        } else {
            Q.desc = alloc(16ull * Q.num, 16);
            Q.avail = alloc(6 + 2ull * Q.num, 2);
            Q.used = alloc(6 + 8ull * Q.num, 4);
            reg(reg::kQueueDescLow, uint32_t(Q.desc));
            reg(reg::kQueueDescHigh, uint32_t(Q.desc >> 32));
            reg(reg::kQueueDriverLow, uint32_t(Q.avail));
            reg(reg::kQueueDriverHigh, uint32_t(Q.avail >> 32));
            reg(reg::kQueueDeviceLow, uint32_t(Q.used));
            reg(reg::kQueueDeviceHigh, uint32_t(Q.used >> 32));
            reg(reg::kQueueReady, 1);
        }
    }

    // ---- descriptors and rings ----
    void write_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        uint64_t d = table + 16ull * i;
        w64(d, addr), w32(d + 8, len), w16(d + 12, flags), w16(d + 14, next);
    }
    // Puts `head` in the next available-ring slot and publishes it.
    void publish(unsigned qi, uint16_t head) {
        Queue& Q = q[qi];
        w16(Q.avail + 4 + 2ull * (Q.avail_idx % Q.num), head);
        Q.avail_idx++;
        w16(Q.avail + 2, Q.avail_idx);
    }
    // Adds a chain of buffers (readable first) and publishes it; returns the head index.
    uint16_t add(unsigned qi, const std::vector<Buf>& bufs) {
        Queue& Q = q[qi];
        uint16_t head = Q.next_desc;
        for (size_t k = 0; k < bufs.size(); k++) {
            uint16_t i = uint16_t((head + k) % Q.num), next = uint16_t((head + k + 1) % Q.num);
            bool last = k + 1 == bufs.size();
            write_desc(Q.desc, i, bufs[k].addr, bufs[k].len,
                       uint16_t((bufs[k].write ? kDescFWrite : 0) | (last ? 0 : kDescFNext)), last ? 0 : next);
        }
        Q.next_desc = uint16_t((head + bufs.size()) % Q.num);
        publish(qi, head);
        return head;
    }
    // The same through an indirect table (one main-table descriptor).
    uint16_t add_indirect(unsigned qi, const std::vector<Buf>& bufs) {
        Queue& Q = q[qi];
        uint64_t table = alloc(16 * bufs.size(), 16);
        for (size_t k = 0; k < bufs.size(); k++) {
            bool last = k + 1 == bufs.size();
            write_desc(table, unsigned(k), bufs[k].addr, bufs[k].len,
                       uint16_t((bufs[k].write ? kDescFWrite : 0) | (last ? 0 : kDescFNext)), last ? 0 : uint16_t(k + 1));
        }
        uint16_t head = Q.next_desc;
        write_desc(Q.desc, head, table, uint32_t(16 * bufs.size()), kDescFIndirect, 0);
        Q.next_desc = uint16_t((head + 1) % Q.num);
        publish(qi, head);
        return head;
    }
    void kick(unsigned qi) { reg(reg::kQueueNotify, qi); }
    uint16_t used_idx(unsigned qi) const { return uint16_t(rd(q[qi].used + 2, 2)); }
    // Takes the next used element, if any.
    bool get_used(unsigned qi, uint32_t& id, uint32_t& len) {
        Queue& Q = q[qi];
        if (Q.used_seen == used_idx(qi)) return false;
        uint64_t e = Q.used + 4 + 8ull * (Q.used_seen % Q.num);
        id = uint32_t(rd(e, 4)), len = uint32_t(rd(e + 4, 4));
        Q.used_seen++;
        return true;
    }
    void ack_interrupts() { reg(reg::kInterruptAck, reg(reg::kInterruptStatus)); }
    bool needs_reset() { return (status() & kStatusNeedsReset) != 0; }
    std::vector<uint8_t> bytes(uint64_t a, size_t n) const { return {ram.begin() + a, ram.begin() + a + n}; }
    void fill(uint64_t a, const std::vector<uint8_t>& v) {
        if (!v.empty()) std::memcpy(&ram.at(a), v.data(), v.size());
    }

    std::vector<uint8_t> ram;
    RamDma dma;
    IrqProbe irq;
    std::unique_ptr<VirtioMmio> t;
    std::vector<Queue> q;
    std::vector<std::string> logs;

private:
    uint64_t next_ = 0x1000;
};

}  // namespace m86::test
