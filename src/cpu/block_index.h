// The code cache's index: block key (physical address and decode mode) -> the block, owned.
//
// Every jump-cache miss looks a block up here, and workloads that create processes (fork, exec,
// page reuse) miss often: a lookup must cost a few loads, not a division and a chain of heap nodes
// as std::unordered_map's does. Open addressing with linear probing in a power-of-two table,
// Fibonacci hashing of the key, tombstones for removed keys; the table doubles at 1/2 load
// (tombstones included) and is rebuilt without tombstones then.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace m86::cpu {

struct Block;

class BlockIndex {
public:
    BlockIndex() : slots_(kMinSlots) {}

    Block* find(uint64_t key) const {
        for (size_t i = home(key);; i = (i + 1) & mask()) {
            const Slot& s = slots_[i];
            if (s.key == key && s.block) return s.block.get();
            if (s.key == kEmpty) return nullptr;
        }
    }
    // Store b under key (no block may be stored under it).
    void insert(uint64_t key, std::unique_ptr<Block> b) {
        if ((used_ + 1) * 2 > slots_.size()) rehash(size_ * 4 > slots_.size() ? slots_.size() * 2 : slots_.size());
        size_t i = home(key);
        while (slots_[i].key != kEmpty && slots_[i].block) i = (i + 1) & mask();
        if (slots_[i].key == kEmpty) used_++;  // (a tombstone is reused: used_ unchanged)
        slots_[i] = Slot{key, std::move(b)};
        size_++;
    }
    // Take the block stored under key out of the index (nullptr if none).
    std::unique_ptr<Block> take(uint64_t key) {
        for (size_t i = home(key);; i = (i + 1) & mask()) {
            Slot& s = slots_[i];
            if (s.key == key && s.block) {
                size_--;
                return std::move(s.block);  // the slot stays a tombstone: key set, no block
            }
            if (s.key == kEmpty) return nullptr;
        }
    }
    // Take every block out, in no particular order.
    std::vector<std::unique_ptr<Block>> take_all() {
        std::vector<std::unique_ptr<Block>> all;
        all.reserve(size_);
        for (Slot& s : slots_)
            if (s.block) all.push_back(std::move(s.block));
        slots_ = std::vector<Slot>(kMinSlots);
        size_ = used_ = 0;
        return all;
    }
    size_t size() const { return size_; }

private:
    static constexpr uint64_t kEmpty = ~0ull;  // never a key: keys are phys * 8 + mode, mode < 7
    static constexpr size_t kMinSlots = 1024;
    struct Slot {
        uint64_t key = kEmpty;
        std::unique_ptr<Block> block;  // null with a key set: a tombstone
    };
    size_t mask() const { return slots_.size() - 1; }
    size_t home(uint64_t key) const {
        return size_t((key * 0x9e3779b97f4a7c15ull) >> (64 - __builtin_ctzll(slots_.size())));
    }
    void rehash(size_t n) {
        std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(n));
        size_ = used_ = 0;
        for (Slot& s : old)
            if (s.block) insert(s.key, std::move(s.block));
    }

    std::vector<Slot> slots_;
    size_t size_ = 0;  // blocks stored
    size_t used_ = 0;  // slots with a key (blocks and tombstones)
};

}  // namespace m86::cpu
