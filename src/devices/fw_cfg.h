// FwCfg: QEMU's firmware configuration device as the x86 machines (and microvm) expose it through
// I/O ports (QEMU docs/specs/fw_cfg.rst; key numbers from QEMU's include/standard-headers/linux/
// qemu_fw_cfg.h and hw/i386/fw_cfg.h). It is how qboot finds the e820 map, the CPU count and the
// kernel, initrd and command line.
//
//     io.map(0x510, 2, &fw.io(), ...)    offset 0: 16-bit selector write; offsets 0/1: 8-bit data
//                                        read (the ports overlap as in QEMU: any 8-bit read is data)
//     io.map(0x514, 8, &fw.dma(), ...)   DMA address register, big-endian halves: a 32-bit write at
//                                        +0 sets the high half, at +4 the low half and starts the
//                                        transfer (a 64-bit write at +0 does both); reads give
//                                        "QEMU CFG". Map it only if has_dma().
//
// Items: numbered keys (set / set_u16 / set_u32 / set_u64 / set_string; integers little-endian as
// QEMU stores them) and named files (add_file), listed in the big-endian file directory at key
// 0x19, sorted by name with selectors from 0x20 in that order, as QEMU does for current machine
// types (adding a file renumbers the ones after it). The constructor adds what QEMU's fw_cfg core
// adds itself: the signature, the ID (bit 1 = DMA), a zero UUID.
//
// Data reads past the end of an item, or of an unset/invalid key, return 0. DMA transfers (control
// bits select/read/skip/write, error bit on failure) go through the injected DmaMemory, which
// checks every guest address: a transfer touching memory that is not guest RAM sets the error bit
// and never reaches the host. Writes through DMA are allowed only to items added as writable,
// within their size.
//
// Bounded work: one transfer moves at most fwcfg::kDmaPerTurn bytes per OUT. With a clock
// (set_clock: the board's), a longer one continues from a Timer on later turns of the run loop, and
// the control word is written (0, or the error bit) only when it is done: the guest polls it, as
// QEMU's fw_cfg.rst allows ("otherwise, the transfer is still in progress"; Linux and qboot poll).
// A new transfer started while one is in flight ends the old one with the error bit. Without a
// clock (unit tests) a transfer completes inside the OUT.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "devices/clock.h"
#include "devices/device.h"

namespace m86::dev {

namespace fwcfg {
// Selector keys.
enum Key : uint16_t {
    kSignature = 0x00,
    kId = 0x01,
    kUuid = 0x02,
    kRamSize = 0x03,
    kNoGraphic = 0x04,
    kNbCpus = 0x05,
    kMachineId = 0x06,
    kKernelAddr = 0x07,
    kKernelSize = 0x08,
    kKernelCmdline = 0x09,
    kInitrdAddr = 0x0a,
    kInitrdSize = 0x0b,
    kBootDevice = 0x0c,
    kNuma = 0x0d,
    kBootMenu = 0x0e,
    kMaxCpus = 0x0f,
    kKernelEntry = 0x10,
    kKernelData = 0x11,
    kInitrdData = 0x12,
    kCmdlineAddr = 0x13,
    kCmdlineSize = 0x14,
    kCmdlineData = 0x15,
    kSetupAddr = 0x16,
    kSetupSize = 0x17,
    kSetupData = 0x18,
    kFileDir = 0x19,
    kFileFirst = 0x20,
    // x86 arch-local keys (FW_CFG_ARCH_LOCAL + n, hw/i386/fw_cfg.h).
    kAcpiTables = 0x8000,
    kSmbiosEntries = 0x8001,
    kIrq0Override = 0x8002,
    kE820Table = 0x8003,
    kHpet = 0x8004,
};
constexpr uint16_t kWriteChannel = 0x4000, kArchLocal = 0x8000, kEntryMask = 0x3fff, kInvalid = 0xffff;
constexpr unsigned kFileSlots = 0x20;    // QEMU's default x-file-slots
constexpr unsigned kMaxFilePath = 56;    // including the terminating NUL
constexpr unsigned kFileEntrySize = 64;  // be32 size, be16 select, u16 reserved, name[56]
// FW_CFG_ID bits.
constexpr uint32_t kVersionTraditional = 0x01, kVersionDma = 0x02;
// FWCfgDmaAccess.control bits; the selector sits in the upper 16 bits.
constexpr uint32_t kDmaError = 0x01, kDmaRead = 0x02, kDmaSkip = 0x04, kDmaSelect = 0x08, kDmaWrite = 0x10;
constexpr unsigned kDmaAccessSize = 16;  // be32 control, be32 length, be64 address
constexpr char kDmaSignature[9] = "QEMU CFG";
// Port offsets.
constexpr unsigned kDmaAddrHigh = 0, kDmaAddrLow = 4;
// Bytes of guest memory one DMA turn reads or writes, and the virtual time between turns.
constexpr uint64_t kDmaPerTurn = 4ull << 20;
constexpr uint64_t kDmaTurnNs = 1000;
}  // namespace fwcfg

class FwCfg {
   public:
    struct State {
        uint16_t selector = fwcfg::kSignature;
        uint32_t offset = 0;
        uint64_t dma_addr = 0;
    };

    explicit FwCfg(DmaMemory* dma = nullptr);
    FwCfg(const FwCfg&) = delete;
    FwCfg& operator=(const FwCfg&) = delete;

    Device& io() { return io_; }
    Device& dma() { return dma_port_; }
    bool has_dma() const { return dma_mem_ != nullptr; }
    // The clock long DMA transfers continue on (see the file comment).
    void set_clock(Clock* clock);
    // A DMA transfer is in flight (its next turn is scheduled).
    bool dma_busy() const { return op_.active; }

    // Numbered items (add or replace).
    void set(uint16_t key, std::vector<uint8_t> data);
    void set_u16(uint16_t key, uint16_t v);
    void set_u32(uint16_t key, uint32_t v);
    void set_u64(uint16_t key, uint64_t v);
    void set_string(uint16_t key, const std::string& s);  // with its terminating NUL, as QEMU
    // Named files: add (std::invalid_argument on a duplicate, a name too long, or no free slot)
    // or add-or-replace. Returns the file's selector at the time of the call.
    uint16_t add_file(const std::string& name, std::vector<uint8_t> data, bool writable = false);
    uint16_t set_file(const std::string& name, std::vector<uint8_t> data);
    // The data of an item (nullptr if the key holds nothing), e.g. for tests and for the board.
    const std::vector<uint8_t>* item(uint16_t key) const;

    void reset();  // selects the signature, as QEMU's device reset does
    const State& state() const { return s_; }
    void restore(const State& s) { s_ = s; }

   private:
    struct Item {
        std::vector<uint8_t> data;
        bool writable = false;
    };
    struct File {
        std::string name;
        Item item;
    };
    class IoPort : public Device {
       public:
        FwCfg* fw = nullptr;
        uint64_t read(uint64_t offset, unsigned size) override;
        void write(uint64_t offset, unsigned size, uint64_t value) override;
    };
    class DmaPort : public Device {
       public:
        FwCfg* fw = nullptr;
        uint64_t read(uint64_t offset, unsigned size) override;
        void write(uint64_t offset, unsigned size, uint64_t value) override;
    };

    Item* lookup(uint16_t key);
    void select(uint16_t key);
    uint8_t read_data();
    void rebuild_directory();
    void dma_transfer();
    void dma_turn();
    void dma_complete(uint32_t result);

    // The DMA transfer in flight: where its FWCfgDmaAccess is, what it does, what is left.
    struct DmaOp {
        bool active = false, read = false, write = false;
        uint64_t at = 0, addr = 0;
        uint32_t length = 0, result = 0;
    };
    DmaOp op_;
    std::unique_ptr<Timer> dma_timer_;

    State s_;
    DmaMemory* dma_mem_;
    std::array<Item, fwcfg::kFileFirst> generic_;  // keys below kFileFirst
    std::map<uint16_t, Item> arch_;                // arch-local keys, by entry number
    std::vector<File> files_;                      // sorted by name
    IoPort io_;
    DmaPort dma_port_;
};

}  // namespace m86::dev
