// Bounded work per guest operation (issue 9): a virtio-blk request or a virtio-console write of many
// megabytes, or a long fw_cfg DMA transfer, no longer runs to the end inside the guest's one MMIO
// write or OUT. Each notification / OUT does a bounded turn (kWorkPerTurn, kDmaPerTurn); the rest
// runs on later turns - run_deferred() without a clock, the clock's timer on the board - and the
// guest sees completion only when all of it is done, with the same data and status as before.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "devices/clock.h"
#include "devices/fw_cfg.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/console.h"
#include "test_virtio_driver.h"

using namespace m86::test;
using namespace m86::dev;
using namespace m86::dev::virtio;

namespace {

constexpr uint64_t kBig = 3 * kWorkPerTurn + 64 * 512;  // four turns of work, sector-aligned

ClockConfig det() {
    ClockConfig c;
    c.mode = ClockMode::Deterministic;
    return c;
}

// Runs the clock forward through every due event until nothing is armed (or `limit` events ran).
unsigned drain(Clock& clock, unsigned limit = 1000) {
    unsigned n = 0;
    while (clock.next_deadline() != kNever && n < limit) {
        clock.idle_until(clock.next_deadline());
        clock.run_due();
        n++;
    }
    return n;
}

uint8_t pattern(uint64_t i) { return uint8_t(i * 7 + (i >> 12)); }

struct BlkRig {
    MemBlock disk{kBig};
    VirtioBlk blk{disk};
    Driver d{blk, false, kBig + (1 << 20)};
    uint64_t hdr = 0, data = 0, status = 0;
    BlkRig() {
        for (uint64_t i = 0; i < disk.data.size(); i++) disk.data[i] = pattern(i);
        d.init(0, 1);
        hdr = d.alloc(16), status = d.alloc(1), data = d.alloc(kBig, 4096);
    }
    // One read (IN) of `len` bytes from sector 0 into `data`.
    void read(uint32_t len) {
        d.w32(hdr, blk::kTIn), d.w32(hdr + 4, 0), d.w64(hdr + 8, 0);
        d.w8(status, 0xff);
        d.add(0, {{hdr, 16, false}, {data, len, true}, {status, 1, true}});
        d.kick(0);
    }
    bool data_ok(uint64_t len) const {
        for (uint64_t i = 0; i < len; i += 4093)
            if (d.ram[data + i] != pattern(i)) return false;
        return d.ram[data + len - 1] == pattern(len - 1);
    }
};

}  // namespace

TEST_CASE("virtio-blk: a normal request still completes inside the notification") {
    BlkRig r;
    r.read(128 * 1024);
    uint32_t id, len;
    REQUIRE(r.d.get_used(0, id, len));
    CHECK(len == 128 * 1024 + 1);
    CHECK(r.d.ram[r.status] == blk::kSOk);
    CHECK(r.data_ok(128 * 1024));
    CHECK_FALSE(r.blk.busy());
    CHECK_FALSE(r.d.t->deferred());
}

TEST_CASE("virtio-blk: a huge read is done in bounded turns and completes after further polls") {
    BlkRig r;
    r.read(uint32_t(kBig));
    // The notification returned after one turn: nothing completed, no interrupt, work deferred.
    CHECK(r.d.used_idx(0) == 0);
    CHECK(r.blk.busy());
    CHECK(r.d.t->deferred());
    CHECK_FALSE(r.d.irq.level);
    CHECK(r.d.ram[r.data + kWorkPerTurn] == 0);  // the second turn's bytes are not there yet
    unsigned turns = 1;
    while (r.d.t->run_deferred()) {
        CHECK(r.d.used_idx(0) == 0);
        turns++;
        REQUIRE(turns < 10);
    }
    turns++;
    CHECK(turns == 4);
    uint32_t id, len;
    REQUIRE(r.d.get_used(0, id, len));
    CHECK(len == kBig + 1);
    CHECK(r.d.ram[r.status] == blk::kSOk);
    CHECK(r.data_ok(kBig));
    CHECK(r.d.irq.level);
    CHECK_FALSE(r.blk.busy());
}

TEST_CASE("virtio-blk: with a clock, the deferred turns run from its timer; a later request waits its turn") {
    Clock clock(det());
    BlkRig r;
    r.d.t->set_clock(&clock);
    r.read(uint32_t(kBig));
    // A small write queued behind the big read completes after it, in ring order.
    uint64_t h2 = r.d.alloc(16), s2 = r.d.alloc(1), w = r.d.alloc(512);
    r.d.w32(h2, blk::kTOut), r.d.w32(h2 + 4, 0), r.d.w64(h2 + 8, 1);
    r.d.fill(w, std::vector<uint8_t>(512, 0xab));
    r.d.add(0, {{h2, 16, false}, {w, 512, false}, {s2, 1, true}});
    r.d.kick(0);
    CHECK(r.d.used_idx(0) == 0);
    CHECK(clock.next_deadline() == clock.now() + kDeferNs);
    CHECK(r.blk.busy());
    CHECK(drain(clock) == 2);  // the second kick ran a turn too: two timer turns are left
    CHECK(r.d.used_idx(0) == 2);
    uint32_t id, len;
    REQUIRE(r.d.get_used(0, id, len));
    CHECK(len == kBig + 1);
    REQUIRE(r.d.get_used(0, id, len));
    CHECK(len == 1);
    CHECK(r.d.ram[s2] == blk::kSOk);
    CHECK(r.disk.data[512] == 0xab);
    CHECK(r.data_ok(512));  // the read saw the disk before the write (ring order)
}

TEST_CASE("virtio-blk: a reset drops the request in flight and its deferred turns") {
    Clock clock(det());
    BlkRig r;
    r.d.t->set_clock(&clock);
    r.read(uint32_t(kBig));
    REQUIRE(r.blk.busy());
    r.d.reg(reg::kStatus, 0);
    CHECK_FALSE(r.blk.busy());
    CHECK_FALSE(r.d.t->deferred());
    CHECK(clock.next_deadline() == kNever);
    // The device works again after re-initialization.
    r.d.q.clear();
    r.d.init(0, 1);
    r.read(4096);
    CHECK(r.d.used_idx(0) == 1);
    CHECK(r.data_ok(4096));
}

namespace {
struct Count : ConsoleBackend {
    uint64_t bytes = 0;
    bool ok = true;
    void write(const uint8_t* data, size_t n) override {
        for (size_t i = 0; i < n; i++) ok = ok && data[i] == pattern(bytes + i);
        bytes += n;
    }
};
}  // namespace

TEST_CASE("virtio-console: a huge write goes out in bounded turns, the chain returns at the end") {
    Count out;
    VirtioConsole con(&out);
    constexpr uint64_t kLen = 2 * kWorkPerTurn + 1000;
    Driver d(con, false, kLen + (1 << 20));
    d.init(0, 2);
    uint64_t buf = d.alloc(kLen, 4096);
    for (uint64_t i = 0; i < kLen; i++) d.ram[buf + i] = pattern(i);
    d.add(console::kTxQueue, {{buf, uint32_t(kLen), false}});
    d.kick(console::kTxQueue);
    CHECK(out.bytes == kWorkPerTurn);
    CHECK(d.used_idx(console::kTxQueue) == 0);
    CHECK(d.t->run_deferred());
    CHECK(out.bytes == 2 * kWorkPerTurn);
    CHECK_FALSE(d.t->run_deferred());
    CHECK(out.bytes == kLen);
    CHECK(out.ok);
    CHECK(d.used_idx(console::kTxQueue) == 1);
    // A small write is still written at once.
    d.add(console::kTxQueue, {{buf, 100, false}});
    out.bytes = 0;
    d.kick(console::kTxQueue);
    CHECK(out.bytes == 100);
    CHECK(d.used_idx(console::kTxQueue) == 2);
}

namespace {
struct FwRig {
    std::vector<uint8_t> ram = std::vector<uint8_t>(3 * fwcfg::kDmaPerTurn, 0xcc);
    RamDma mem;
    Clock clock{det()};
    FwCfg fw{&mem};
    FwRig() {
        mem.add_region(0, ram.data(), ram.size());
        fw.set_clock(&clock);
    }
    uint32_t be32(uint64_t a) const {
        return uint32_t(ram[a]) << 24 | uint32_t(ram[a + 1]) << 16 | uint32_t(ram[a + 2]) << 8 | ram[a + 3];
    }
    void put_be(uint64_t a, uint64_t v, unsigned n) {
        for (unsigned i = 0; i < n; i++) ram[a + i] = uint8_t(v >> (8 * (n - 1 - i)));
    }
    void start(uint64_t at, uint32_t control, uint32_t length, uint64_t address) {
        put_be(at, control, 4), put_be(at + 4, length, 4), put_be(at + 8, address, 8);
        fw.dma().write(4, 4, __builtin_bswap32(uint32_t(at)));
    }
};
}  // namespace

TEST_CASE("fw_cfg: a long DMA read is done in bounded turns; the guest polls the control word") {
    FwRig r;
    const uint64_t n = 2 * fwcfg::kDmaPerTurn + 777;
    std::vector<uint8_t> item(n);
    for (uint64_t i = 0; i < n; i++) item[i] = pattern(i);
    r.fw.set(fwcfg::kKernelData, item);
    const uint32_t control = uint32_t(fwcfg::kKernelData) << 16 | fwcfg::kDmaSelect | fwcfg::kDmaRead;
    r.start(0x100, control, uint32_t(n), 0x1000);
    CHECK(r.fw.dma_busy());
    CHECK(r.be32(0x100) == control);  // still in progress
    CHECK(r.ram[0x1000 + fwcfg::kDmaPerTurn] == 0xcc);
    CHECK(drain(r.clock) == 2);
    CHECK_FALSE(r.fw.dma_busy());
    CHECK(r.be32(0x100) == 0);  // done, no error
    CHECK(std::memcmp(r.ram.data() + 0x1000, item.data(), n) == 0);

    // A short transfer still completes inside the OUT.
    r.start(0x100, control, 100, 0x1000);
    CHECK(r.be32(0x100) == 0);
    CHECK_FALSE(r.fw.dma_busy());
}

TEST_CASE("fw_cfg: a long DMA read of zeros past the end is bounded too; a new OUT fails the old transfer") {
    FwRig r;
    r.start(0x100, uint32_t(0x7ff0) << 16 | fwcfg::kDmaSelect | fwcfg::kDmaRead, uint32_t(2 * fwcfg::kDmaPerTurn), 0x1000);
    CHECK(r.fw.dma_busy());
    CHECK(r.ram[0x1000] == 0);
    CHECK(r.ram[0x1000 + fwcfg::kDmaPerTurn] == 0xcc);
    // The driver did not wait: the old transfer ends with the error bit, the new one runs.
    r.start(0x200, fwcfg::kDmaSkip, 0xffffffffu, 0);
    CHECK((r.be32(0x100) & fwcfg::kDmaError) != 0);
    CHECK(r.be32(0x200) == 0);  // a skip moves no memory: done at once
    CHECK_FALSE(r.fw.dma_busy());
    CHECK(r.clock.next_deadline() == kNever);
    // A 4 GiB read into memory that is not RAM fails at once.
    r.start(0x300, fwcfg::kDmaRead, 0xffffffffu, 0x7fff0000u);
    CHECK((r.be32(0x300) & fwcfg::kDmaError) != 0);
    CHECK_FALSE(r.fw.dma_busy());
}
