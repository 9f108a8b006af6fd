// VirtioBlk: request parsing and execution of the virtio block device (virtio 1.x spec 5.2; see blk.h).
#include "devices/virtio/blk.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace m86::dev {

using namespace virtio;
using namespace virtio::blk;

namespace {
constexpr size_t kBounceSize = 128 * 1024;

uint64_t le(const uint8_t* p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= uint64_t(p[i]) << (8 * i);
    return v;
}
}  // namespace

bool BlockBackend::write_zeroes(uint64_t offset, uint64_t len, bool) {
    static const std::array<uint8_t, 64 * 1024> zeros{};
    while (len) {
        size_t n = size_t(std::min<uint64_t>(len, zeros.size()));
        if (!write(offset, zeros.data(), n)) return false;
        offset += n, len -= n;
    }
    return true;
}

VirtioBlk::VirtioBlk(BlockBackend& backend, std::string serial)
    : backend_(backend), serial_(std::move(serial)), bounce_(kBounceSize) {
    capacity_ = (backend_.size() + kSectorSize - 1) / kSectorSize;
    const bool ro = backend_.read_only();
    features_ = kFSegMax | kFBlkSize | kFFlush | (ro ? kFRo : 0);
    if (!ro && backend_.can_discard()) features_ |= kFDiscard | kFWriteZeroes;

    config_.assign(kConfigSize, 0);
    config_put(kCfgCapacity, capacity_, 8);
    config_put(kCfgSegMax, kSegMax, 4);
    config_put(kCfgBlkSize, kSectorSize, 4);
    config_put(kCfgNumQueues, 1, 2);
    if (features_ & kFDiscard) {
        config_put(kCfgMaxDiscardSectors, kMaxDwzSectors, 4);
        config_put(kCfgMaxDiscardSeg, kMaxDwzSegments, 4);
        config_put(kCfgDiscardAlignment, 1, 4);  // in 512-byte sectors: any sector
    }
    if (features_ & kFWriteZeroes) {
        config_put(kCfgMaxWriteZeroesSectors, kMaxDwzSectors, 4);
        config_put(kCfgMaxWriteZeroesSeg, kMaxDwzSegments, 4);
        config_put(kCfgWriteZeroesMayUnmap, 1, 1);
    }
}

void VirtioBlk::notify(unsigned index) {
    if (index != 0) return;
    Virtqueue& q = transport().queue(0);
    uint64_t budget = kWorkPerTurn;
    bool any = false;
    for (;;) {
        if (!io_.active) {
            if (budget == 0) {  // more requests may wait: take them on the next turn
                transport().defer(0);
                break;
            }
            if (q.pop(io_.chain) != Virtqueue::Pop::Ok) break;
            io_.active = true;
            if (!start()) return;
            budget -= std::min<uint64_t>(budget, kSectorSize);  // each request costs something
        }
        if (io_.rw && !transfer(budget)) return;
        if (io_.rw) {  // budget spent with data left: continue on the next turn
            transport().defer(0);
            break;
        }
        if (!finish()) return;
        // As QEMU: the used length is the whole device-writable part (data + status).
        const Chain& c = io_.chain;
        bool pushed = q.push(c.head, uint32_t(c.writable_len));
        io_ = {};
        if (!pushed) return;
        any = true;
    }
    if (any) transport().used(0);
}

bool VirtioBlk::start() {
    DmaMemory& dma = transport().dma();
    const Chain& c = io_.chain;
    if (c.readable_len < kHeaderSize || c.writable_len < 1) {
        transport().fail("request without a 16-byte header or a status byte");
        return false;
    }
    uint8_t h[kHeaderSize];
    if (!read_bytes(dma, c.readable, 0, h, kHeaderSize)) {
        transport().fail("request header not in guest RAM");
        return false;
    }
    const uint32_t type = uint32_t(le(h, 4));
    const uint64_t sector = le(h + 8, 8);
    bool ok = true;
    uint8_t& status = io_.status;
    switch (type) {
        case kTIn: status = start_rw(c, false, sector); break;
        case kTOut: status = start_rw(c, true, sector); break;
        case kTFlush: status = backend_.flush() ? kSOk : kSIoErr; break;
        case kTGetId: {
            // 5.2.6: 20 bytes, NUL-padded when the serial is shorter.
            uint8_t id[kIdBytes] = {};
            std::memcpy(id, serial_.data(), std::min<size_t>(serial_.size(), kIdBytes));
            ok = write_bytes(dma, c.writable, 0, id, std::min<uint64_t>(kIdBytes, c.writable_len - 1));
            status = kSOk;
            break;
        }
        case kTDiscard:
        case kTWriteZeroes:
            if (!(features_ & (type == kTDiscard ? kFDiscard : kFWriteZeroes))) {
                status = kSUnsupp;
                break;
            }
            status = discard_or_zero(c, type == kTDiscard, ok);
            break;
        default: status = kSUnsupp; break;
    }
    if (!ok) transport().fail("request buffer not in guest RAM");
    return ok;
}

bool VirtioBlk::finish() {
    const Chain& c = io_.chain;
    if (write_bytes(transport().dma(), c.writable, c.writable_len - 1, &io_.status, 1)) return true;
    transport().fail("request buffer not in guest RAM");
    return false;
}

uint8_t VirtioBlk::start_rw(const Chain& c, bool write, uint64_t sector) {
    const uint64_t len = write ? c.readable_len - kHeaderSize : c.writable_len - 1;
    if (len % kSectorSize || !range_ok(sector, len / kSectorSize)) return kSIoErr;
    if (write && backend_.read_only()) return kSIoErr;
    io_.rw = len > 0, io_.write = write;
    io_.base = sector * kSectorSize, io_.len = len, io_.pos = 0;
    return kSOk;
}

bool VirtioBlk::transfer(uint64_t& budget) {
    DmaMemory& dma = transport().dma();
    const Chain& c = io_.chain;
    while (io_.pos < io_.len && budget > 0) {
        size_t n = size_t(std::min<uint64_t>({io_.len - io_.pos, bounce_.size(), budget}));
        bool host_ok;
        if (io_.write) {
            if (!read_bytes(dma, c.readable, kHeaderSize + io_.pos, bounce_.data(), n)) {
                transport().fail("request buffer not in guest RAM");
                return false;
            }
            host_ok = backend_.write(io_.base + io_.pos, bounce_.data(), n);
        } else {
            host_ok = backend_.read(io_.base + io_.pos, bounce_.data(), n);
            if (host_ok && !write_bytes(dma, c.writable, io_.pos, bounce_.data(), n)) {
                transport().fail("request buffer not in guest RAM");
                return false;
            }
        }
        if (!host_ok) {  // the rest is not attempted: the request fails as a whole
            io_.status = kSIoErr;
            io_.rw = false;
            return true;
        }
        io_.pos += n, budget -= n;
    }
    if (io_.pos == io_.len) io_.rw = false;
    return true;
}

uint8_t VirtioBlk::discard_or_zero(const Chain& c, bool discard, bool& ok) {
    DmaMemory& dma = transport().dma();
    const uint64_t body = c.readable_len - kHeaderSize;
    if (body % kSegmentSize) return kSIoErr;
    const uint64_t count = body / kSegmentSize;
    if (count == 0 || count > kMaxDwzSegments) return kSUnsupp;
    struct Range {
        uint64_t sector;
        uint32_t sectors, flags;
    };
    std::array<Range, kMaxDwzSegments> r;
    // Validate every segment before touching the disk (5.2.6.2).
    for (unsigned i = 0; i < count; i++) {
        uint8_t b[kSegmentSize];
        if (!read_bytes(dma, c.readable, kHeaderSize + kSegmentSize * i, b, kSegmentSize)) return ok = false, kSIoErr;
        r[i] = {le(b, 8), uint32_t(le(b + 8, 4)), uint32_t(le(b + 12, 4))};
        if (r[i].flags & ~kDwzFlagUnmap) return kSUnsupp;
        if (discard && (r[i].flags & kDwzFlagUnmap)) return kSUnsupp;  // unmap is a write-zeroes flag
        if (r[i].sectors > kMaxDwzSectors || !range_ok(r[i].sector, r[i].sectors)) return kSIoErr;
    }
    if (backend_.read_only()) return kSIoErr;
    for (unsigned i = 0; i < count; i++) {
        uint64_t off = r[i].sector * kSectorSize, len = uint64_t(r[i].sectors) * kSectorSize;
        bool done = discard ? backend_.discard(off, len)
                            : backend_.write_zeroes(off, len, r[i].flags & kDwzFlagUnmap);
        if (!done) return kSIoErr;
    }
    return kSOk;
}

}  // namespace m86::dev
