// Virtqueue: the device side of a split virtqueue (virtio 1.x spec, 2.7 "Split Virtqueues"; the
// legacy layout of 2.7.2 / 4.2.4 uses the same rings at addresses derived from one page number).
//
// Guest memory holds three areas the driver allocated: the descriptor table (16-byte entries:
// le64 addr, le32 len, le16 flags, le16 next), the available ring (le16 flags, le16 idx,
// le16 ring[num], le16 used_event) and the used ring (le16 flags, le16 idx, {le32 id, le32 len}[num],
// le16 avail_event). The device consumes chains with pop(), returns them with push(), and asks
// notify_needed() whether the driver wants an interrupt for what it pushed (VIRTQ_AVAIL_F_NO_INTERRUPT,
// or the used_event index with VIRTIO_F_EVENT_IDX, 2.7.7 / 2.7.10).
//
// Invariants: every access to guest memory goes through DmaMemory and is checked; every index and
// length the driver supplies is validated before use (2.7.5.x driver requirements): the avail index
// may run at most `num` entries ahead, a head or `next` index must be < the table size, a chain may
// not be longer than its table (so a loop is caught), an indirect descriptor must not carry NEXT and
// its table (a multiple of 16 bytes, not empty) must not hold another indirect descriptor, readable
// descriptors must precede writable ones, and each direction's total length must fit in 32 bits.
// Any violation calls the error callback once with a message and makes the operation return
// Error; the transport then puts the device into DEVICE_NEEDS_RESET. Nothing is ever written outside
// guest RAM, nothing loops longer than the table size.
//
// Buffer contents are moved with read_bytes()/write_bytes(), which treat a chain's readable (or
// writable) descriptors as one byte stream, so devices accept any message framing (VIRTIO_F_ANY_LAYOUT
// semantics, which virtio 1.x makes mandatory).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "devices/device.h"

namespace m86::dev::virtio {

// 2.7.5 descriptor flags.
constexpr uint16_t kDescFNext = 1, kDescFWrite = 2, kDescFIndirect = 4;
// 2.7.6 / 2.7.8 ring flags.
constexpr uint16_t kAvailFNoInterrupt = 1, kUsedFNoNotify = 1;
constexpr uint64_t kDescSize = 16;
constexpr uint64_t kUsedElemSize = 8;
constexpr uint32_t kMaxQueueSize = 32768;  // 2.7: the largest split-ring Queue Size
// An indirect table is addressed by 16-bit `next` fields: at most this many entries are reachable.
constexpr uint32_t kMaxIndirectEntries = 65536;

// One guest buffer (a descriptor's address and length).
struct Segment {
    uint64_t addr;
    uint32_t len;
};

// A descriptor chain taken from the available ring.
struct Chain {
    uint16_t head = 0;
    std::vector<Segment> readable;  // device-readable (driver -> device), in chain order
    std::vector<Segment> writable;  // device-writable (device -> driver), in chain order
    uint64_t readable_len = 0, writable_len = 0;
    void clear() {
        head = 0, readable.clear(), writable.clear();
        readable_len = writable_len = 0;
    }
};

// Copy bytes [offset, offset + n) of the stream formed by `segs` out of / into guest memory.
// Returns false if the range is not inside the segments or a segment is not guest RAM (nothing is
// copied past the failing segment).
bool read_bytes(DmaMemory& dma, const std::vector<Segment>& segs, uint64_t offset, void* dst, uint64_t n);
bool write_bytes(DmaMemory& dma, const std::vector<Segment>& segs, uint64_t offset, const void* src,
                 uint64_t n);

class Virtqueue {
public:
    // Everything a queue holds, as plain data (save/restore). Addresses are guest physical.
    struct State {
        uint16_t num = 0;           // Queue Size chosen by the driver (QueueNum)
        bool ready = false;         // enabled: QueueReady = 1 (modern) or QueuePFN != 0 (legacy)
        uint64_t desc = 0, avail = 0, used = 0;
        uint32_t legacy_pfn = 0;    // legacy QueuePFN as written
        uint32_t legacy_align = 4096;  // legacy QueueAlign (the used ring's alignment)
        uint16_t last_avail = 0;    // the next available-ring entry the device will take
        uint16_t used_idx = 0;      // the device's copy of used->idx
        uint16_t signalled_used = 0;   // used_idx when notify_needed() last ran (EVENT_IDX)
        bool signalled_valid = false;  // false until the first decision after a reset
    };
    enum class Pop { Empty, Ok, Error };
    using ErrorFn = std::function<void(const std::string&)>;

    explicit Virtqueue(uint16_t max_size = 0) : max_size_(max_size) {}

    // Wiring, done once by the transport.
    void attach(DmaMemory* dma, ErrorFn on_error) { dma_ = dma, on_error_ = std::move(on_error); }
    // The negotiated ring features that change the device's behaviour.
    void set_features(bool event_idx, bool indirect) { event_idx_ = event_idx, indirect_ = indirect; }

    uint16_t max_size() const { return max_size_; }
    bool ready() const { return s_.ready; }
    State& state() { return s_; }
    const State& state() const { return s_; }
    void reset() { s_ = State{}; }

    // Checks the layout the driver chose (size a power of two <= max_size, ring alignment 2.7) and
    // enables the queue. Reports an error (and stays disabled) if it is invalid.
    bool enable();

    // Takes the next available chain into `c`. With EVENT_IDX, also publishes avail_event so the
    // driver notifies the device for the next entry.
    Pop pop(Chain& c);
    // Gives the last popped chain back to the ring (a device that cannot use it now).
    void unpop();
    // Returns chain `head` to the driver with `written` bytes written into its writable part.
    bool push(uint16_t head, uint32_t written);
    // After one or more push(): whether the driver wants a used-buffer notification now.
    // Returns false on an error (reported).
    bool notify_needed();

private:
    struct Desc {
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
    };
    bool fail(const std::string& msg);
    bool read16(uint64_t addr, uint16_t& v, const char* what);
    bool write16(uint64_t addr, uint16_t v, const char* what);
    bool read_desc(uint64_t table, uint32_t index, Desc& d);
    bool publish_avail_event();

    State s_;
    uint16_t max_size_;
    DmaMemory* dma_ = nullptr;
    ErrorFn on_error_;
    bool event_idx_ = false, indirect_ = false;
};

}  // namespace m86::dev::virtio
