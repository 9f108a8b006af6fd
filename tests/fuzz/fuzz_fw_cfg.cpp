// fuzz_fw_cfg: libFuzzer harness for fw_cfg's port interface and DMA (QEMU's docs/specs/fw_cfg.rst)
// with items as the board adds them (numbered keys, files, a writable file, kernel data larger than
// one DMA turn would be in a real boot), over 64 KiB of guest RAM and a deterministic clock, so long
// transfers continue on the clock's timer as on the board.
//
// Input: records until the input ends: [op][args]. op % 8:
//   0 select:       [key: 2 bytes LE]                     16-bit write to the selector port
//   1 data reads:   [count: 1 byte]                       8-bit reads of the data port
//   2 DMA high:     [value: 4 bytes]                      32-bit write at +0 (high address half)
//   3 DMA start:    [at: 2 bytes LE][access: 16 bytes]    FWCfgDmaAccess written at `at` in RAM
//                                                         (big-endian, as the guest writes it),
//                                                         then the 32-bit low-half write starts it
//   4 time:         [turns: 1 byte]                       run the clock through that many events
//   5 RAM:          [at: 2 bytes LE][n: 1 byte][n bytes]  guest writes into RAM
//   6 reset / 64-bit DMA start: [value: 8 bytes]          op bit 3: reset; else a 64-bit write at +0
//   7 DMA reads:    [offset: 1 byte]                      the signature register
// Seeds: tests/fuzz/corpus/fw_cfg/ (make_corpus.cpp).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/clock.h"
#include "devices/fw_cfg.h"

using namespace m86::dev;

namespace {
constexpr size_t kRam = 64 << 10;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<uint8_t> ram(kRam, 0);
    RamDma mem;
    mem.add_region(0, ram.data(), ram.size());
    ClockConfig cc;
    cc.mode = ClockMode::Deterministic;
    Clock clock(cc);
    FwCfg fw(&mem);
    fw.set_clock(&clock);
    fw.set_u32(fwcfg::kNbCpus, 2);
    fw.set_u64(fwcfg::kRamSize, kRam);
    fw.set_string(fwcfg::kCmdlineData, "console=ttyS0");
    fw.set(fwcfg::kKernelData, std::vector<uint8_t>(20000, 0x90));
    fw.add_file("etc/e820", std::vector<uint8_t>(20, 1));
    fw.add_file("etc/boot-fail-wait", {0, 0, 0, 0});
    fw.add_file("opt/writable", std::vector<uint8_t>(64, 0), true);

    size_t pos = 0;
    auto take = [&](size_t n, uint64_t& v) {
        v = 0;
        for (size_t i = 0; i < n; i++) v |= uint64_t(pos < size ? data[pos++] : 0) << (8 * i);
    };
    while (pos < size) {
        const uint8_t op = data[pos++];
        uint64_t a = 0, b = 0;
        switch (op & 7) {
            case 0: take(2, a), fw.io().write(0, 2, a); break;
            case 1:
                take(1, a);
                for (uint64_t i = 0; i < a; i++) (void)fw.io().read(op >> 7, 1);  // data reads at 0x511 or 0x510
                break;
            case 2: take(4, a), fw.dma().write(fwcfg::kDmaAddrHigh, 4, a); break;
            case 3: {
                take(2, a);
                a %= kRam - 16;
                for (unsigned i = 0; i < 16; i++) ram[a + i] = pos < size ? data[pos++] : 0;
                fw.dma().write(fwcfg::kDmaAddrLow, 4, __builtin_bswap32(uint32_t(a)));
                break;
            }
            case 4:
                take(1, a);
                for (uint64_t i = 0; i < a && clock.next_deadline() != kNever; i++) {
                    clock.idle_until(clock.next_deadline());
                    clock.run_due();
                }
                break;
            case 5:
                take(2, a), take(1, b);
                for (uint64_t i = 0; i < b && pos < size; i++) ram[(a + i) % kRam] = data[pos++];
                break;
            case 6:
                take(8, a);
                if (op & 8)
                    fw.reset();
                else
                    fw.dma().write(fwcfg::kDmaAddrHigh, 8, a);
                break;
            case 7: take(1, a), (void)fw.dma().read(a % (8 - (op >> 7)), 1 + (op >> 7)); break;
        }
    }
    // Whatever is still in flight finishes (bounded: every turn moves data or ends the transfer).
    for (unsigned i = 0; i < 64 && clock.next_deadline() != kNever; i++) {
        clock.idle_until(clock.next_deadline());
        clock.run_due();
    }
    return 0;
}
