// A guest's-eye view of a HostSlirp for tests: a receiver that keeps every frame slirp sends, and
// polling until a condition holds (slirp answers from inside its poll processing).
#pragma once

#include <chrono>
#include <vector>

#include "devices/virtio/net.h"
#include "machine/host_slirp.h"

namespace m86::test {

struct FrameSink : dev::NetReceiver {
    std::vector<std::vector<uint8_t>> frames;
    bool receive(const uint8_t* f, size_t n) override {
        frames.emplace_back(f, f + n);
        return true;
    }
};

// Polls `s` (and `read_fds`) until `done()` or two seconds pass; returns done().
template <class F>
bool poll_until(host::HostSlirp& s, F done, const std::vector<int>& read_fds = {}) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!done()) {
        if (std::chrono::steady_clock::now() > end) return false;
        host::poll_sources({&s}, read_fds, 20);
    }
    return true;
}

}  // namespace m86::test
