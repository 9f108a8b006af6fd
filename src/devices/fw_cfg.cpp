// FwCfg: item storage, the file directory, the port interface and DMA transfers (semantics of
// QEMU's docs/specs/fw_cfg.rst, "Guest-side DMA Interface").
#include "devices/fw_cfg.h"

#include <algorithm>
#include <stdexcept>

namespace m86::dev {

using namespace fwcfg;

namespace {
void put_be(uint8_t* p, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; i++) p[i] = uint8_t(v >> (8 * (n - 1 - i)));
}
uint64_t get_be(const uint8_t* p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}
std::vector<uint8_t> le_bytes(uint64_t v, unsigned n) {
    std::vector<uint8_t> out(n);
    for (unsigned i = 0; i < n; i++) out[i] = uint8_t(v >> (8 * i));
    return out;
}
// A value the guest wrote to a big-endian register through a little-endian port.
uint64_t from_be(uint64_t v, unsigned size) {
    return size == 8 ? __builtin_bswap64(v) : __builtin_bswap32(uint32_t(v));
}
}  // namespace

FwCfg::FwCfg(DmaMemory* dma) : dma_mem_(dma) {
    io_.fw = this;
    dma_port_.fw = this;
    set(kSignature, {'Q', 'E', 'M', 'U'});
    set_u32(kId, kVersionTraditional | (dma ? kVersionDma : 0));
    set(kUuid, std::vector<uint8_t>(16, 0));
}

void FwCfg::reset() {
    select(kSignature);
    s_.dma_addr = 0;
    op_ = {};  // a transfer in flight is dropped, as the guest that started it is gone
    if (dma_timer_) dma_timer_->cancel();
}

void FwCfg::set_clock(Clock* clock) {
    dma_timer_.reset();
    if (clock) dma_timer_ = std::make_unique<Timer>(*clock, [this](uint64_t) { dma_turn(); });
}

void FwCfg::set(uint16_t key, std::vector<uint8_t> data) {
    if (key & kArchLocal) {
        arch_[key & kEntryMask] = Item{std::move(data), false};
    } else if ((key & kEntryMask) < kFileFirst) {
        generic_[key & kEntryMask] = Item{std::move(data), false};
    } else {
        throw std::invalid_argument("fw_cfg: key " + std::to_string(key) + " is in the file range");
    }
}
void FwCfg::set_u16(uint16_t key, uint16_t v) { set(key, le_bytes(v, 2)); }
void FwCfg::set_u32(uint16_t key, uint32_t v) { set(key, le_bytes(v, 4)); }
void FwCfg::set_u64(uint16_t key, uint64_t v) { set(key, le_bytes(v, 8)); }
void FwCfg::set_string(uint16_t key, const std::string& s) {
    std::vector<uint8_t> d(s.begin(), s.end());
    d.push_back(0);
    set(key, std::move(d));
}

uint16_t FwCfg::add_file(const std::string& name, std::vector<uint8_t> data, bool writable) {
    if (name.empty() || name.size() >= kMaxFilePath)
        throw std::invalid_argument("fw_cfg: file name '" + name + "' is empty or longer than 55 bytes");
    if (files_.size() >= kFileSlots)
        throw std::invalid_argument("fw_cfg: no free file slot for '" + name + "'");
    auto at = std::lower_bound(files_.begin(), files_.end(), name,
                               [](const File& f, const std::string& n) { return f.name < n; });
    if (at != files_.end() && at->name == name)
        throw std::invalid_argument("fw_cfg: duplicate file '" + name + "'");
    at = files_.insert(at, File{name, Item{std::move(data), writable}});
    rebuild_directory();
    return uint16_t(kFileFirst + (at - files_.begin()));
}

uint16_t FwCfg::set_file(const std::string& name, std::vector<uint8_t> data) {
    for (size_t i = 0; i < files_.size(); i++)
        if (files_[i].name == name) {
            files_[i].item.data = std::move(data);
            rebuild_directory();
            return uint16_t(kFileFirst + i);
        }
    return add_file(name, std::move(data));
}

// FW_CFG_FILE_DIR: be32 count, then kFileSlots entries of be32 size, be16 select, u16 reserved,
// char name[56]; the item keeps its full size whatever the count (QEMU allocates all slots).
void FwCfg::rebuild_directory() {
    std::vector<uint8_t> dir(4 + kFileSlots * kFileEntrySize, 0);
    put_be(dir.data(), files_.size(), 4);
    for (size_t i = 0; i < files_.size(); i++) {
        uint8_t* e = dir.data() + 4 + i * kFileEntrySize;
        put_be(e, files_[i].item.data.size(), 4);
        put_be(e + 4, kFileFirst + i, 2);
        std::copy(files_[i].name.begin(), files_[i].name.end(), e + 8);
    }
    generic_[kFileDir] = Item{std::move(dir), false};
}

FwCfg::Item* FwCfg::lookup(uint16_t key) {
    if (key == kInvalid) return nullptr;
    uint16_t n = key & kEntryMask;
    if (key & kArchLocal) {
        auto it = arch_.find(n);
        return it == arch_.end() ? nullptr : &it->second;
    }
    if (n < kFileFirst) return &generic_[n];
    return size_t(n - kFileFirst) < files_.size() ? &files_[n - kFileFirst].item : nullptr;
}

// Selecting resets the data offset; keys beyond the last file slot select nothing.
void FwCfg::select(uint16_t key) {
    s_.offset = 0;
    s_.selector = (key & kEntryMask) >= kFileFirst + kFileSlots ? kInvalid : key;
}

uint8_t FwCfg::read_data() {
    Item* it = lookup(s_.selector);
    if (!it || s_.offset >= it->data.size()) return 0;
    return it->data[s_.offset++];
}

uint64_t FwCfg::IoPort::read(uint64_t, unsigned size) {
    // 8-bit reads at either port return data; wider reads are not accepted (all ones).
    return size == 1 ? fw->read_data() : all_ones(size);
}

void FwCfg::IoPort::write(uint64_t, unsigned size, uint64_t value) {
    // A 16-bit write selects; 8-bit data writes are ignored since QEMU 2.4.
    if (size == 2) fw->select(uint16_t(value));
}

uint64_t FwCfg::DmaPort::read(uint64_t offset, unsigned size) {
    uint64_t v = 0;
    for (unsigned i = 0; i < size && offset + i < 8; i++)
        v |= uint64_t(uint8_t(kDmaSignature[offset + i])) << (8 * i);
    return v;
}

void FwCfg::DmaPort::write(uint64_t offset, unsigned size, uint64_t value) {
    if (!fw->dma_mem_) return;
    if (size == 4 && offset == kDmaAddrHigh) {
        fw->s_.dma_addr = from_be(value, 4) << 32;
    } else if (size == 4 && offset == kDmaAddrLow) {
        fw->s_.dma_addr |= from_be(value, 4);
        fw->dma_transfer();
    } else if (size == 8 && offset == kDmaAddrHigh) {
        fw->s_.dma_addr = from_be(value, 8);
        fw->dma_transfer();
    }
}

void FwCfg::dma_transfer() {
    uint64_t at = s_.dma_addr;
    s_.dma_addr = 0;  // the register reads as 0 after an operation
    if (op_.active) dma_complete(op_.result | kDmaError);  // a driver that did not wait: fail the old one
    uint8_t raw[kDmaAccessSize];
    if (!dma_mem_->read(at, raw, sizeof raw)) {
        uint8_t status[4];
        put_be(status, kDmaError, 4);
        dma_mem_->write(at, status, 4);
        return;
    }
    uint32_t control = uint32_t(get_be(raw, 4));
    op_ = {};
    op_.at = at;
    op_.length = uint32_t(get_be(raw + 4, 4));
    op_.addr = get_be(raw + 8, 8);
    if (control & kDmaSelect) select(uint16_t(control >> 16));
    op_.read = control & kDmaRead;
    op_.write = !op_.read && (control & kDmaWrite);
    if (!op_.read && !op_.write && !(control & kDmaSkip)) op_.length = 0;
    op_.active = true;
    if (dma_timer_) {
        dma_turn();
    } else {
        while (op_.active) dma_turn();
    }
}

// One turn of the transfer in flight: at most kDmaPerTurn bytes of guest memory read or written.
void FwCfg::dma_turn() {
    if (!op_.active) return;
    uint64_t budget = kDmaPerTurn;
    while (op_.length > 0 && !(op_.result & kDmaError) && budget > 0) {
        Item* it = lookup(s_.selector);  // looked up each time: the guest may have changed the selection
        uint64_t avail = it && s_.offset < it->data.size() ? it->data.size() - s_.offset : 0;
        uint64_t len;
        if (avail == 0) {
            // Past the end (or nothing selected): reads give zeros, writes fail, skips just count.
            len = op_.read ? std::min<uint64_t>(op_.length, budget) : op_.length;
            if (op_.read && !dma_mem_->fill(op_.addr, 0, len)) op_.result |= kDmaError;
            if (op_.write) op_.result |= kDmaError;
        } else {
            len = std::min<uint64_t>(op_.length, avail);
            // A write must fit the item entirely and the item must be writable.
            if (op_.write && (!it->writable || len != op_.length)) op_.result |= kDmaError;
            if (op_.read || op_.write) len = std::min(len, budget);
            if (op_.read && !dma_mem_->write(op_.addr, it->data.data() + s_.offset, len)) op_.result |= kDmaError;
            if (op_.write && !(op_.result & kDmaError) && !dma_mem_->read(op_.addr, it->data.data() + s_.offset, len))
                op_.result |= kDmaError;
            s_.offset += uint32_t(len);
        }
        if (op_.read || op_.write) budget -= std::min(budget, len);
        op_.addr += len;
        op_.length -= uint32_t(len);
    }
    if (op_.length > 0 && !(op_.result & kDmaError)) {
        if (dma_timer_) dma_timer_->arm(dma_timer_->clock().now() + kDmaTurnNs);
        return;
    }
    dma_complete(op_.result);
}

void FwCfg::dma_complete(uint32_t result) {
    uint8_t status[4];
    put_be(status, result, 4);
    dma_mem_->write(op_.at, status, 4);
    op_ = {};
    if (dma_timer_) dma_timer_->cancel();
}

const std::vector<uint8_t>* FwCfg::item(uint16_t key) const {
    Item* it = const_cast<FwCfg*>(this)->lookup(key);
    return it && !it->data.empty() ? &it->data : nullptr;
}

}  // namespace m86::dev
