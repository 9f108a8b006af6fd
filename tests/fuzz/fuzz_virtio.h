// The device set-up fuzz_virtio runs each input against, shared with make_corpus (which builds the
// seeds with the same driver, so the rings sit where the harness expects them).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>

#include "devices/test_virtio_driver.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/console.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"

namespace m86::fuzz {

constexpr uint64_t kRam = 64 << 10, kRingBase = 0x1000, kDisk = 64 << 10;
constexpr uint16_t kQueueSize = 16;
// config bits (see fuzz_virtio.cpp).
constexpr uint8_t kDevBlk = 0, kDevNet = 1, kDevConsole = 2, kDevRng = 3, kLegacy = 4, kEventIdx = 8,
                  kIndirect = 16, kReadOnly = 32;

// A disk image in memory that stops the fuzzer on any access outside it.
struct FuzzDisk : dev::BlockBackend {
    uint8_t data[kDisk] = {};
    bool ro = false;
    uint64_t size() const override { return kDisk; }
    bool read_only() const override { return ro; }
    bool read(uint64_t off, void* dst, size_t len) override {
        if (off > kDisk || len > kDisk - off) __builtin_trap();
        std::memcpy(dst, data + off, len);
        return true;
    }
    bool write(uint64_t off, const void* src, size_t len) override {
        if (off > kDisk || len > kDisk - off || ro) __builtin_trap();
        std::memcpy(data + off, src, len);
        return true;
    }
    bool flush() override { return true; }
    bool can_discard() const override { return true; }
    bool discard(uint64_t off, uint64_t len) override {
        if (off > kDisk || len > kDisk - off) __builtin_trap();
        std::memset(data + off, 0, len);
        return true;
    }
};

struct NullNet : dev::NetBackend {
    void send(const uint8_t*, size_t) override {}
};

struct VirtioRig {
    FuzzDisk disk;
    NullNet netback;
    dev::SeededEntropy entropy{1};
    std::unique_ptr<dev::virtio::VirtioDevice> device;
    dev::VirtioNet* net = nullptr;
    dev::VirtioConsole* console = nullptr;
    std::unique_ptr<test::Driver> driver;

    explicit VirtioRig(uint8_t config) {
        disk.ro = config & kReadOnly;
        switch (config & 3) {
            case kDevBlk: device = std::make_unique<dev::VirtioBlk>(disk, "fuzz"); break;
            case kDevNet: device = std::make_unique<dev::VirtioNet>(netback), net = static_cast<dev::VirtioNet*>(device.get()); break;
            case kDevConsole:
                device = std::make_unique<dev::VirtioConsole>(nullptr, 80, 25);
                console = static_cast<dev::VirtioConsole*>(device.get());
                break;
            default: device = std::make_unique<dev::VirtioRng>(entropy); break;
        }
        driver = std::make_unique<test::Driver>(*device, (config & kLegacy) != 0, kRam);
        driver->t->set_log([](const std::string&) {});
        uint64_t want = ~0ull & ~(dev::virtio::kFEventIdx | dev::virtio::kFIndirectDesc);
        if (config & kEventIdx) want |= dev::virtio::kFEventIdx;
        if (config & kIndirect) want |= dev::virtio::kFIndirectDesc;
        driver->init(want, device->num_queues(), kQueueSize);
    }
};

}  // namespace m86::fuzz
