// VirtioRng and SeededEntropy (virtio 1.x spec 5.4; see rng.h).
#include "devices/virtio/rng.h"

#include <algorithm>
#include <cstring>

namespace m86::dev {

using namespace virtio;

namespace {
uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

SeededEntropy::SeededEntropy(uint64_t seed) {
    for (auto& w : s_) w = splitmix64(seed);
}

uint64_t SeededEntropy::next() {
    // xoshiro256** (Blackman & Vigna).
    uint64_t result = rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0], s_[3] ^= s_[1], s_[1] ^= s_[2], s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

void SeededEntropy::fill(uint8_t* buf, size_t n) {
    while (n) {
        uint64_t v = next();
        size_t k = std::min<size_t>(n, 8);
        for (size_t i = 0; i < k; i++) buf[i] = uint8_t(v >> (8 * i));  // little-endian on every host
        buf += k, n -= k;
    }
}

void VirtioRng::notify(unsigned index) {
    if (index != 0) return;
    Virtqueue& q = transport().queue(0);
    Chain c;
    bool any = false;
    while (q.pop(c) == Virtqueue::Pop::Ok) {
        size_t n = size_t(std::min<uint64_t>(c.writable_len, rng::kMaxPerRequest));
        buf_.resize(n);
        source_.fill(buf_.data(), n);
        if (!write_bytes(transport().dma(), c.writable, 0, buf_.data(), n)) {
            transport().fail("request buffer not in guest RAM");
            return;
        }
        if (!q.push(c.head, uint32_t(n))) return;
        any = true;
    }
    if (any) transport().used(0);
}

}  // namespace m86::dev
