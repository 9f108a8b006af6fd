// HostEntropy: the host's random number generator as a dev::EntropySource, for virtio-rng in
// realtime mode (deterministic runs use dev::SeededEntropy instead). Part of the host layer.
#pragma once

#include "devices/virtio/rng.h"

namespace m86::host {

class HostEntropy : public dev::EntropySource {
public:
    // getentropy() (Linux glibc >= 2.25, macOS, the BSDs), falling back to /dev/urandom.
    void fill(uint8_t* buf, size_t n) override;
};

}  // namespace m86::host
