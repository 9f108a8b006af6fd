// VirtioRng: the virtio entropy device (virtio 1.x spec, 5.4; device ID 4), fed from an injected
// EntropySource: the host's random generator in realtime mode (host::HostEntropy), a seeded
// generator in deterministic mode (SeededEntropy, so a run is reproducible byte for byte).
//
// One queue (requestq). Each chain's writable part is filled with random bytes, at most
// kMaxPerRequest per chain (5.4.6: the device may write fewer bytes than the buffer holds; the used
// length says how many). No features, no configuration space.
#pragma once

#include <cstdint>
#include <vector>

#include "devices/virtio/virtio_mmio.h"

namespace m86::dev {

class EntropySource {
public:
    virtual ~EntropySource() = default;
    virtual void fill(uint8_t* buf, size_t n) = 0;
};

// A deterministic generator (splitmix64 seeding xoshiro256**): the same seed gives the same bytes
// on every host. Not for cryptography - for reproducible test runs.
class SeededEntropy : public EntropySource {
public:
    explicit SeededEntropy(uint64_t seed);
    void fill(uint8_t* buf, size_t n) override;
    uint64_t next();

private:
    uint64_t s_[4];
};

namespace virtio::rng {
constexpr uint16_t kQueueSize = 8;  // QEMU's virtio-rng queue size
constexpr size_t kMaxPerRequest = 64 * 1024;
}  // namespace virtio::rng

class VirtioRng : public virtio::VirtioDevice {
public:
    explicit VirtioRng(EntropySource& source) : source_(source) {}

    const char* name() const override { return "virtio-rng"; }
    uint32_t device_id() const override { return virtio::kIdRng; }
    uint64_t device_features() const override { return 0; }
    unsigned num_queues() const override { return 1; }
    uint16_t queue_max_size(unsigned) const override { return virtio::rng::kQueueSize; }
    void notify(unsigned index) override;

private:
    EntropySource& source_;
    std::vector<uint8_t> buf_;
};

}  // namespace m86::dev
