// VirtioBlk: the virtio block device (virtio 1.x spec, 5.2; device ID 2) over an injected
// BlockBackend (the board gives host::HostBlockFile, tests a file or a memory image).
//
// One request queue. A request is a chain: the 16-byte header (le32 type, le32 reserved, le64
// sector - always in 512-byte units, 5.2.6) and any data the device reads, then the data the device
// writes and, last, the one-byte status (OK / IOERR / UNSUPP). Types: IN, OUT, FLUSH, GET_ID (the
// 20-byte serial), DISCARD and WRITE_ZEROES (16-byte segments: le64 sector, le32 num_sectors,
// le32 flags with bit 0 = unmap). I/O is synchronous, in bounded turns: one notification moves at
// most virtio::kWorkPerTurn bytes. A longer read or write (a request may be 4 GiB) stays in flight
// - the device remembers the chain and how far it got - and the transport calls notify() again on
// a later turn (VirtioTransport::defer); the request completes (status, used ring, interrupt) when
// its last byte has moved. Requests complete in ring order; a reset drops the one in flight.
//
// Offered features: SEG_MAX, BLK_SIZE, FLUSH (a flush reaches the disk through the backend's
// flush, i.e. fsync), RO for read-only backends, and DISCARD / WRITE_ZEROES only when the backend
// can punch holes (and the disk is writable).
//
// Checks: a data length that is not a whole number of sectors, or a range past the capacity, fails
// with IOERR before the backend sees it (no host access outside the image); writes to a read-only
// disk fail with IOERR; unknown types return UNSUPP. A chain without room for the header or the
// status byte is a driver bug (5.2.6.1) and puts the device into NEEDS_RESET.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "devices/virtio/virtio_mmio.h"

namespace m86::dev {

// A disk image. Offsets and lengths are in bytes; the device only asks for ranges inside size()
// (rounded up to whole sectors).
class BlockBackend {
public:
    virtual ~BlockBackend() = default;
    virtual uint64_t size() const = 0;
    virtual bool read_only() const = 0;
    // Reads past the end of the underlying file return zeros.
    virtual bool read(uint64_t offset, void* dst, size_t len) = 0;
    virtual bool write(uint64_t offset, const void* src, size_t len) = 0;
    // Makes every completed write durable (fsync).
    virtual bool flush() = 0;
    // Whether discard() and write_zeroes(may_unmap = true) can deallocate: a range reads back as
    // zeros afterwards.
    virtual bool can_discard() const { return false; }
    virtual bool discard(uint64_t offset, uint64_t len) { (void)offset, (void)len; return false; }
    // Makes the range read as zeros; may deallocate it if `may_unmap`. Default: writes zeros.
    virtual bool write_zeroes(uint64_t offset, uint64_t len, bool may_unmap);
};

namespace virtio::blk {
// 5.2.3 feature bits.
constexpr uint64_t kFSizeMax = 1ull << 1, kFSegMax = 1ull << 2, kFGeometry = 1ull << 4, kFRo = 1ull << 5,
                   kFBlkSize = 1ull << 6, kFFlush = 1ull << 9, kFTopology = 1ull << 10, kFConfigWce = 1ull << 11,
                   kFMq = 1ull << 12, kFDiscard = 1ull << 13, kFWriteZeroes = 1ull << 14;
// 5.2.4 configuration layout (byte offsets of struct virtio_blk_config).
constexpr unsigned kCfgCapacity = 0, kCfgSizeMax = 8, kCfgSegMax = 12, kCfgGeometry = 16, kCfgBlkSize = 20,
                   kCfgTopology = 24, kCfgWriteback = 32, kCfgNumQueues = 34, kCfgMaxDiscardSectors = 36,
                   kCfgMaxDiscardSeg = 40, kCfgDiscardAlignment = 44, kCfgMaxWriteZeroesSectors = 48,
                   kCfgMaxWriteZeroesSeg = 52, kCfgWriteZeroesMayUnmap = 56, kConfigSize = 60;
// 5.2.6 request types and status values.
constexpr uint32_t kTIn = 0, kTOut = 1, kTFlush = 4, kTGetId = 8, kTDiscard = 11, kTWriteZeroes = 13;
constexpr uint8_t kSOk = 0, kSIoErr = 1, kSUnsupp = 2;
constexpr unsigned kHeaderSize = 16, kSegmentSize = 16, kIdBytes = 20;
constexpr uint32_t kDwzFlagUnmap = 1;
constexpr uint64_t kSectorSize = 512;
constexpr uint16_t kQueueSize = 256;
constexpr uint32_t kSegMax = kQueueSize - 2;  // header and status take two descriptors, as QEMU
constexpr uint32_t kMaxDwzSectors = 0x3fffff;  // 2 GiB - 512 per segment
constexpr uint32_t kMaxDwzSegments = 32;
}  // namespace virtio::blk

class VirtioBlk : public virtio::VirtioDevice {
public:
    // `serial` is what GET_ID returns (at most 20 bytes used; QEMU's `serial` property, default
    // empty). The backend must outlive the device.
    explicit VirtioBlk(BlockBackend& backend, std::string serial = {});

    const char* name() const override { return "virtio-blk"; }
    uint32_t device_id() const override { return virtio::kIdBlock; }
    uint64_t device_features() const override { return features_; }
    unsigned num_queues() const override { return 1; }
    uint16_t queue_max_size(unsigned) const override { return virtio::blk::kQueueSize; }
    void notify(unsigned index) override;
    void reset() override { io_ = {}; }

    uint64_t capacity() const { return capacity_; }  // in 512-byte sectors
    // A read or write is in flight (waiting for its next turn).
    bool busy() const { return io_.active; }

private:
    // The request being processed: its chain, and for IN/OUT the data still to move.
    struct InFlight {
        bool active = false;
        virtio::Chain chain;
        bool rw = false, write = false;  // a read/write with data still to move
        uint64_t base = 0, len = 0, pos = 0;
        uint8_t status = 0;
    };
    // Parses io_.chain and runs everything but the data of a read/write. Returns false if the
    // transport failed (DMA error reported).
    bool start();
    // Moves read/write data, at most `budget` bytes (decremented). Returns false if the transport failed.
    bool transfer(uint64_t& budget);
    // Writes the status byte. Returns false if the transport failed.
    bool finish();
    uint8_t start_rw(const virtio::Chain& c, bool write, uint64_t sector);
    uint8_t discard_or_zero(const virtio::Chain& c, bool discard, bool& ok);
    bool range_ok(uint64_t sector, uint64_t sectors) const {
        return sector <= capacity_ && sectors <= capacity_ - sector;
    }

    BlockBackend& backend_;
    std::string serial_;
    uint64_t capacity_;
    uint64_t features_;
    std::vector<uint8_t> bounce_;
    InFlight io_;
};

}  // namespace m86::dev
