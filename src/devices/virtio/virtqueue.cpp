// Virtqueue: split-ring descriptor walking with every guest-supplied value checked (see virtqueue.h).
#include "devices/virtio/virtqueue.h"

#include <algorithm>
#include <atomic>
#include <cstdio>

namespace m86::dev::virtio {

namespace {

// Ring field offsets (2.7.6 available ring, 2.7.8 used ring).
constexpr uint64_t kRingFlags = 0, kRingIdx = 2, kRingEntries = 4;

std::string fmt_msg(const char* f, auto... args) {
    char buf[256];
    std::snprintf(buf, sizeof buf, f, args...);
    return buf;
}

// Walks `segs` from byte `offset` for `n` bytes, calling fn(guest_addr, pos_in_buffer, len).
template <class F>
bool for_range(const std::vector<Segment>& segs, uint64_t offset, uint64_t n, F fn) {
    uint64_t pos = 0;
    for (const Segment& s : segs) {
        if (!n) break;
        if (offset >= s.len) {
            offset -= s.len;
            continue;
        }
        uint64_t k = std::min<uint64_t>(n, s.len - offset);
        if (!fn(s.addr + offset, pos, k)) return false;
        pos += k, n -= k, offset = 0;
    }
    return n == 0;
}

}  // namespace

bool read_bytes(DmaMemory& dma, const std::vector<Segment>& segs, uint64_t offset, void* dst, uint64_t n) {
    auto* d = static_cast<uint8_t*>(dst);
    return for_range(segs, offset, n,
                     [&](uint64_t addr, uint64_t pos, uint64_t k) { return dma.read(addr, d + pos, k); });
}

bool write_bytes(DmaMemory& dma, const std::vector<Segment>& segs, uint64_t offset, const void* src,
                 uint64_t n) {
    auto* s = static_cast<const uint8_t*>(src);
    return for_range(segs, offset, n,
                     [&](uint64_t addr, uint64_t pos, uint64_t k) { return dma.write(addr, s + pos, k); });
}

bool Virtqueue::fail(const std::string& msg) {
    if (on_error_) on_error_(msg);
    return false;
}

bool Virtqueue::read16(uint64_t addr, uint16_t& v, const char* what) {
    uint8_t b[2];
    if (!dma_ || !dma_->read(addr, b, 2)) return fail(fmt_msg("%s at 0x%llx is not in guest RAM", what, (unsigned long long)addr));
    v = uint16_t(b[0] | b[1] << 8);
    return true;
}

bool Virtqueue::write16(uint64_t addr, uint16_t v, const char* what) {
    uint8_t b[2] = {uint8_t(v), uint8_t(v >> 8)};
    if (!dma_ || !dma_->write(addr, b, 2)) return fail(fmt_msg("%s at 0x%llx is not in guest RAM", what, (unsigned long long)addr));
    return true;
}

bool Virtqueue::read_desc(uint64_t table, uint32_t index, Desc& d) {
    uint8_t b[kDescSize];
    uint64_t addr = table + kDescSize * index;
    if (!dma_ || addr < table || !dma_->read(addr, b, kDescSize))
        return fail(fmt_msg("descriptor %u at 0x%llx is not in guest RAM", index, (unsigned long long)addr));
    auto le = [&](unsigned o, unsigned n) {
        uint64_t v = 0;
        for (unsigned i = 0; i < n; i++) v |= uint64_t(b[o + i]) << (8 * i);
        return v;
    };
    d.addr = le(0, 8), d.len = uint32_t(le(8, 4)), d.flags = uint16_t(le(12, 2)), d.next = uint16_t(le(14, 2));
    return true;
}

bool Virtqueue::enable() {
    const uint16_t n = s_.num;
    if (n == 0 || n > max_size_ || (n & (n - 1)))
        return fail(fmt_msg("queue size %u is not a power of two between 1 and %u", n, max_size_));
    // 2.7 (table "Virtqueue Part Alignment"): descriptor table 16, available ring 2, used ring 4.
    if ((s_.desc & 15) || (s_.avail & 1) || (s_.used & 3))
        return fail(fmt_msg("misaligned rings: desc 0x%llx avail 0x%llx used 0x%llx",
                            (unsigned long long)s_.desc, (unsigned long long)s_.avail, (unsigned long long)s_.used));
    s_.ready = true;
    s_.last_avail = s_.used_idx = s_.signalled_used = 0;
    s_.signalled_valid = false;
    return true;
}

bool Virtqueue::publish_avail_event() {
    // 2.7.10: with EVENT_IDX the driver notifies when avail->idx passes this value.
    if (!event_idx_) return true;
    return write16(s_.used + kRingEntries + kUsedElemSize * s_.num, s_.last_avail, "avail_event");
}

void Virtqueue::unpop() {
    s_.last_avail--;
    publish_avail_event();
}

Virtqueue::Pop Virtqueue::pop(Chain& c) {
    c.clear();
    if (!s_.ready) return Pop::Empty;
    const uint16_t num = s_.num;
    uint16_t avail_idx;
    if (!read16(s_.avail + kRingIdx, avail_idx, "available ring")) return Pop::Error;
    uint16_t pending = uint16_t(avail_idx - s_.last_avail);
    if (pending == 0) {
        if (!publish_avail_event()) return Pop::Error;
        if (!event_idx_) return Pop::Empty;
        // 2.7.10: a driver on another CPU may have added a buffer before it could see the new
        // avail_event (and so will not notify): look once more after publishing it.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (!read16(s_.avail + kRingIdx, avail_idx, "available ring")) return Pop::Error;
        pending = uint16_t(avail_idx - s_.last_avail);
        if (pending == 0) return Pop::Empty;
    }
    if (pending > num) {
        fail(fmt_msg("available index moved from %u to %u, more than the queue size %u", s_.last_avail, avail_idx, num));
        return Pop::Error;
    }
    // Read the ring entry only after the index that published it (2.7.13.3).
    std::atomic_thread_fence(std::memory_order_acquire);
    uint16_t head;
    if (!read16(s_.avail + kRingEntries + 2ull * (s_.last_avail % num), head, "available ring entry")) return Pop::Error;
    if (head >= num) {
        fail(fmt_msg("head descriptor %u out of range (queue size %u)", head, num));
        return Pop::Error;
    }

    uint64_t table = s_.desc;
    uint32_t table_size = num;
    bool in_indirect = false;
    Desc d;
    if (!read_desc(table, head, d)) return Pop::Error;
    if (d.flags & kDescFIndirect) {
        // 2.7.5.3.1: only with VIRTIO_F_INDIRECT_DESC, never together with NEXT, a whole number of
        // descriptors. The WRITE flag of the indirect descriptor itself is ignored (2.7.5.3.2).
        if (!indirect_) {
            fail(fmt_msg("indirect descriptor %u without VIRTIO_F_INDIRECT_DESC", head));
            return Pop::Error;
        }
        if (d.flags & kDescFNext) {
            fail(fmt_msg("indirect descriptor %u also has NEXT set", head));
            return Pop::Error;
        }
        if (d.len == 0 || d.len % kDescSize) {
            fail(fmt_msg("indirect table length %u is not a non-zero multiple of 16", d.len));
            return Pop::Error;
        }
        table = d.addr;
        table_size = std::min<uint32_t>(d.len / kDescSize, kMaxIndirectEntries);
        in_indirect = true;
        if (!read_desc(table, 0, d)) return Pop::Error;
    }

    c.head = head;
    for (uint32_t count = 1;; count++) {
        if (count > table_size) {
            fail(fmt_msg("descriptor chain from head %u is longer than its table (%u entries): a loop", head, table_size));
            return Pop::Error;
        }
        if (d.flags & kDescFIndirect) {
            fail(in_indirect ? "indirect descriptor inside an indirect table"
                             : fmt_msg("indirect descriptor in the middle of the chain from head %u", head));
            return Pop::Error;
        }
        if (d.addr + d.len < d.addr) {
            fail(fmt_msg("buffer 0x%llx+0x%x wraps around the address space", (unsigned long long)d.addr, d.len));
            return Pop::Error;
        }
        if (d.flags & kDescFWrite) {
            c.writable.push_back({d.addr, d.len});
            c.writable_len += d.len;
        } else {
            // 2.7.4.2: device-writable descriptors come after all device-readable ones.
            if (!c.writable.empty()) {
                fail(fmt_msg("readable descriptor after a writable one in the chain from head %u", head));
                return Pop::Error;
            }
            c.readable.push_back({d.addr, d.len});
            c.readable_len += d.len;
        }
        if (c.readable_len > UINT32_MAX || c.writable_len > UINT32_MAX) {
            fail(fmt_msg("chain from head %u: total length overflows 32 bits", head));
            return Pop::Error;
        }
        if (!(d.flags & kDescFNext)) break;
        if (d.next >= table_size) {
            fail(fmt_msg("next descriptor %u out of range (table of %u)", d.next, table_size));
            return Pop::Error;
        }
        if (!read_desc(table, d.next, d)) return Pop::Error;
    }
    s_.last_avail++;
    return publish_avail_event() ? Pop::Ok : Pop::Error;
}

bool Virtqueue::push(uint16_t head, uint32_t written) {
    if (!s_.ready) return false;
    uint8_t e[kUsedElemSize];
    for (unsigned i = 0; i < 4; i++) e[i] = uint8_t(uint32_t(head) >> (8 * i)), e[4 + i] = uint8_t(written >> (8 * i));
    uint64_t at = s_.used + kRingEntries + kUsedElemSize * (s_.used_idx % s_.num);
    if (!dma_ || !dma_->write(at, e, sizeof e))
        return fail(fmt_msg("used ring entry at 0x%llx is not in guest RAM", (unsigned long long)at));
    // The element must be visible before the index that publishes it (2.7.8).
    std::atomic_thread_fence(std::memory_order_release);
    s_.used_idx++;
    return write16(s_.used + kRingIdx, s_.used_idx, "used ring");
}

bool Virtqueue::notify_needed() {
    if (!s_.ready) return false;
    std::atomic_thread_fence(std::memory_order_seq_cst);  // used idx visible before reading the driver's flags
    if (event_idx_) {
        // 2.7.10: notify if used_idx passed used_event since the last decision.
        uint16_t event;
        if (!read16(s_.avail + kRingEntries + 2ull * s_.num, event, "used_event")) return false;
        uint16_t now = s_.used_idx, old = s_.signalled_used;
        bool valid = s_.signalled_valid;
        s_.signalled_used = now, s_.signalled_valid = true;
        return !valid || uint16_t(now - event - 1) < uint16_t(now - old);
    }
    uint16_t flags;
    if (!read16(s_.avail + kRingFlags, flags, "available ring flags")) return false;
    return !(flags & kAvailFNoInterrupt);
}

}  // namespace m86::dev::virtio
