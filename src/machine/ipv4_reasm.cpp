// Ipv4Reassembler: see ipv4_reasm.h. Field offsets are RFC 791 section 3.1's header layout.
#include "machine/ipv4_reasm.h"

#include <algorithm>
#include <cstring>

namespace m86::host {

namespace {

constexpr size_t kMinHeader = 20;         // IHL 5
constexpr uint32_t kMaxDatagram = 65535;  // the total length field's limit
constexpr size_t kOffTotalLen = 2, kOffId = 4, kOffFrag = 6, kOffProto = 9, kOffChecksum = 10, kOffSrc = 12,
                 kOffDst = 16;
constexpr uint16_t kFlagDf = 0x4000, kFlagMf = 0x2000, kFragOffsetMask = 0x1fff;  // offset in 8-byte units

uint16_t get16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
uint32_t get32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
void put16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8), p[1] = uint8_t(v); }

// The one's complement sum of the header's 16-bit words (RFC 791 / RFC 1071): 0xffff over a header
// whose checksum field is right.
uint16_t ones_sum(const uint8_t* p, size_t n) {
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2) s += get16(p + i);
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return uint16_t(s);
}

}  // namespace

bool Ipv4Reassembler::is_fragment(const uint8_t* packet, size_t len) {
    return len >= kMinHeader && packet[0] >> 4 == 4 &&
           (get16(packet + kOffFrag) & (kFlagMf | kFragOffsetMask)) != 0;
}

Ipv4Reassembler::Verdict Ipv4Reassembler::input(const uint8_t* p, size_t len, uint64_t now_ns,
                                                std::vector<uint8_t>& out) {
    if (!is_fragment(p, len)) return Verdict::Whole;
    stats_.fragments++;
    expire(now_ns);

    const size_t hlen = size_t(p[0] & 0xf) * 4;
    const size_t total = get16(p + kOffTotalLen);  // bytes past it in `len` are link-layer padding
    const uint16_t frag = get16(p + kOffFrag);
    const bool more = frag & kFlagMf;
    const uint32_t off = uint32_t(frag & kFragOffsetMask) * 8, n = uint32_t(total - hlen), end = off + n;
    if (hlen < kMinHeader || hlen > len || ones_sum(p, hlen) != 0xffff || total < hlen || total > len ||
        n == 0 || (more && n % 8 != 0) || end > kMaxDatagram - kMinHeader) {
        stats_.malformed++;
        return Verdict::Dropped;
    }

    // RFC 791: fragments belong together when source, destination, protocol and identification match.
    const uint32_t src = get32(p + kOffSrc), dst = get32(p + kOffDst);
    const uint16_t id = get16(p + kOffId);
    const uint8_t proto = p[kOffProto];
    Datagram* d = nullptr;
    for (auto& q : pending_)
        if (q->src == src && q->dst == dst && q->id == id && q->proto == proto) d = q.get();
    if (!d) {
        while (pending_.size() >= limits_.max_datagrams && !pending_.empty()) erase(0), stats_.evicted++;
        if (limits_.max_datagrams == 0) return Verdict::Dropped;
        pending_.push_back(std::make_unique<Datagram>());
        d = pending_.back().get();
        d->src = src, d->dst = dst, d->id = id, d->proto = proto, d->first_ns = now_ns;
    }
    if (d->poisoned) return Verdict::Dropped;

    // Ends that contradict each other: a second, different last fragment; data past the last one.
    const bool contradicts = more ? d->have_last && end > d->end
                                  : (d->have_last && end != d->end) || (!d->have_last && d->end > end);
    if (contradicts) {
        stats_.inconsistent++;
        poison(*d);
        return Verdict::Dropped;
    }
    // RFC 5722: any overlap (an exact duplicate included) discards the datagram.
    const uint32_t first_block = off / 8, last_block = (end + 7) / 8;
    for (uint32_t b = first_block; b < last_block; b++) {
        if (d->blocks[b / 64] >> (b % 64) & 1) {
            stats_.overlaps++;
            poison(*d);
            return Verdict::Dropped;
        }
    }

    // Room for the data: grow geometrically (few reallocations however the fragments arrive) and
    // count what is allocated, not what is used.
    if (end > d->data.size()) {
        const size_t old_cap = d->data.capacity();
        if (end > old_cap) {
            const size_t new_cap = std::max<size_t>(end, std::min<size_t>(2 * old_cap, kMaxDatagram));
            if (!make_room(new_cap - old_cap, d)) {
                stats_.evicted++;
                for (size_t i = 0; i < pending_.size(); i++)
                    if (pending_[i].get() == d) erase(i);
                return Verdict::Dropped;
            }
            d->data.reserve(new_cap);
            bytes_ += d->data.capacity() - old_cap;
        }
        d->data.resize(end);
    }
    for (uint32_t b = first_block; b < last_block; b++) d->blocks[b / 64] |= uint64_t(1) << (b % 64);
    std::memcpy(d->data.data() + off, p + hlen, n);
    d->received += n;
    if (off == 0) d->header.assign(p, p + hlen);
    if (!more)
        d->have_last = true, d->end = end;
    else
        d->end = std::max(d->end, end);

    // Complete: the last fragment is in and, with no overlaps, the bytes held cover [0, end).
    if (!d->have_last || d->received != d->end) return Verdict::Held;
    size_t index = 0;
    while (pending_[index].get() != d) index++;
    if (d->header.size() + d->end > kMaxDatagram) {  // a first fragment with options pushed it over
        stats_.inconsistent++;
        poison(*d);
        return Verdict::Dropped;
    }
    out.assign(d->header.begin(), d->header.end());
    out.insert(out.end(), d->data.begin(), d->data.begin() + d->end);
    uint8_t* h = out.data();
    put16(h + kOffTotalLen, uint16_t(out.size()));
    put16(h + kOffFrag, get16(h + kOffFrag) & kFlagDf);  // MF and offset cleared
    put16(h + kOffChecksum, 0);
    put16(h + kOffChecksum, uint16_t(~ones_sum(h, d->header.size())));
    stats_.reassembled++;
    erase(index);
    return Verdict::Done;
}

void Ipv4Reassembler::expire(uint64_t now_ns) {
    for (size_t i = pending_.size(); i-- > 0;) {
        const Datagram& d = *pending_[i];
        if (now_ns >= d.first_ns && now_ns - d.first_ns >= limits_.timeout_ns) {
            if (!d.poisoned) stats_.timeouts++;
            erase(i);
        }
    }
}

void Ipv4Reassembler::poison(Datagram& d) {
    bytes_ -= d.data.capacity();
    std::vector<uint8_t>().swap(d.data);
    std::vector<uint8_t>().swap(d.header);
    d.poisoned = true;
}

void Ipv4Reassembler::erase(size_t index) {
    bytes_ -= pending_[index]->data.capacity();
    pending_.erase(pending_.begin() + long(index));
}

bool Ipv4Reassembler::make_room(size_t more, const Datagram* keep) {
    if (more > limits_.max_bytes) return false;
    while (bytes_ + more > limits_.max_bytes) {
        size_t i = 0;
        while (i < pending_.size() && (pending_[i].get() == keep || pending_[i]->data.capacity() == 0)) i++;
        if (i == pending_.size()) return false;
        erase(i);
        stats_.evicted++;
    }
    return true;
}

}  // namespace m86::host
