// virtio-net (5.1), virtio-console (5.3) and virtio-rng (5.4) driven by the test driver, with fake
// host backends: a loopback network backend, a recording console backend, seeded entropy.
#include <doctest/doctest.h>

#include <string>

#include "devices/virtio/console.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "test_virtio_driver.h"

using namespace m86::test;
using namespace m86::dev;
using namespace m86::dev::virtio;

namespace {

// Records what the guest sends; with `loopback`, sends every frame straight back.
struct FakeNet : NetBackend {
    std::vector<std::vector<uint8_t>> sent;
    bool loopback = false;
    void send(const uint8_t* f, size_t n) override {
        sent.emplace_back(f, f + n);
        if (loopback && receiver_) receiver_->receive(f, n);
    }
    bool inject(const std::vector<uint8_t>& f) { return receiver_->receive(f.data(), f.size()); }
};

std::vector<uint8_t> frame(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; i++) v[i] = uint8_t(seed ^ (i * 13));
    return v;
}

constexpr uint32_t kRxBuf = 1526;  // Linux's small receive buffer: 12-byte header + 1514 + VLAN

// Posts one receive buffer; returns its address.
uint64_t post_rx(Driver& d, uint32_t len = kRxBuf) {
    uint64_t b = d.alloc(len);
    d.add(net::kRxQueue, {{b, len, true}});
    return b;
}

// Transmits one frame with a zero header of `hdr` bytes, split header / payload.
void transmit(Driver& d, unsigned hdr, const std::vector<uint8_t>& f) {
    uint64_t h = d.alloc(hdr), p = d.alloc(f.size());
    d.fill(p, f);
    d.add(net::kTxQueue, {{h, hdr, false}, {p, uint32_t(f.size()), false}});
    d.kick(net::kTxQueue);
}

}  // namespace

TEST_CASE("virtio-net: MAC and link status in config space; link changes interrupt") {
    FakeNet backend;
    VirtioNet net(backend, {0x02, 0x11, 0x22, 0x33, 0x44, 0x55});
    Driver d(net, false);
    CHECK(d.reg(reg::kDeviceId) == 1);
    uint64_t f = d.device_features();
    CHECK((f & net::kFMac) != 0);
    CHECK((f & net::kFStatus) != 0);
    CHECK((f & net::kFMrgRxbuf) == 0);
    const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
    for (unsigned i = 0; i < 6; i++) CHECK(d.config(net::kCfgMac + i, 1) == mac[i]);
    CHECK(d.config(net::kCfgStatus, 2) == net::kStatusLinkUp);
    d.init(net::kFMac | net::kFStatus, 2);
    uint32_t gen = d.reg(reg::kConfigGeneration);
    net.set_link(false);
    CHECK(d.config(net::kCfgStatus, 2) == 0);
    CHECK(d.reg(reg::kConfigGeneration) == gen + 1);
    CHECK(d.reg(reg::kInterruptStatus) == kIntConfigChange);
    CHECK(d.irq.level);
    CHECK_FALSE(backend.inject(frame(60, 1)));  // link down: dropped
}

TEST_CASE("virtio-net: transmit strips the header, receive prepends it (loopback)") {
    for (bool legacy : {true, false}) {
        CAPTURE(legacy);
        FakeNet backend;
        backend.loopback = true;
        VirtioNet net(backend);
        Driver d(net, legacy);
        d.init(net::kFMac | net::kFStatus, 2);
        // 5.1.6: 12 bytes with VERSION_1, 10 for a legacy driver without MRG_RXBUF.
        const unsigned hdr = legacy ? 10 : 12;
        uint64_t rx = post_rx(d);
        d.kick(net::kRxQueue);
        auto f = frame(98, 0x5a);
        transmit(d, hdr, f);
        REQUIRE(backend.sent.size() == 1);
        CHECK(backend.sent[0] == f);
        uint32_t id, len;
        REQUIRE(d.get_used(net::kTxQueue, id, len));
        CHECK(len == 0);
        REQUIRE(d.get_used(net::kRxQueue, id, len));
        CHECK(len == hdr + f.size());
        std::vector<uint8_t> want_hdr(hdr, 0);
        if (hdr == 12) want_hdr[10] = 1;  // num_buffers = 1
        CHECK(d.bytes(rx, hdr) == want_hdr);
        CHECK(d.bytes(rx + hdr, f.size()) == f);
        CHECK(d.irq.level);
        CHECK(net.stats().tx_frames == 1);
        CHECK(net.stats().rx_frames == 1);
    }
}

TEST_CASE("virtio-net: frames wait for receive buffers in a bounded backlog") {
    FakeNet backend;
    VirtioNet net(backend);
    Driver d(net, false);
    CHECK_FALSE(backend.inject(frame(60, 0)));  // before DRIVER_OK: dropped
    d.init(0, 2);
    auto f1 = frame(60, 1), f2 = frame(70, 2), f3 = frame(80, 3);
    CHECK(backend.inject(f1));
    CHECK(backend.inject(f2));
    CHECK(backend.inject(f3));
    CHECK(d.used_idx(net::kRxQueue) == 0);
    uint64_t a = post_rx(d), b = post_rx(d);
    d.kick(net::kRxQueue);
    CHECK(d.used_idx(net::kRxQueue) == 2);
    CHECK(d.bytes(a + 12, f1.size()) == f1);
    CHECK(d.bytes(b + 12, f2.size()) == f2);
    uint64_t c = post_rx(d);
    d.kick(net::kRxQueue);
    CHECK(d.bytes(c + 12, f3.size()) == f3);
    // The backlog holds kRxBacklog frames; more are dropped.
    for (size_t i = 0; i < net::kRxBacklog; i++) CHECK(backend.inject(frame(60, uint8_t(i))));
    CHECK_FALSE(backend.inject(frame(60, 0xff)));
    CHECK(net.stats().rx_dropped == 2);  // one before DRIVER_OK, one now
    // A reset empties the backlog.
    d.init(0, 2);
    post_rx(d);
    d.kick(net::kRxQueue);
    CHECK(d.used_idx(net::kRxQueue) == 0);
}

TEST_CASE("virtio-net: a frame larger than the receive buffer is dropped and the buffer kept") {
    FakeNet backend;
    VirtioNet net(backend);
    Driver d(net, false);
    d.init(0, 2);
    uint64_t small = post_rx(d, 100);
    d.kick(net::kRxQueue);
    CHECK_FALSE(backend.inject(frame(200, 1)));
    CHECK(d.used_idx(net::kRxQueue) == 0);
    CHECK(d.logs.size() == 1);  // logged once, not a device error
    CHECK_FALSE(d.needs_reset());
    auto f = frame(80, 2);
    CHECK(backend.inject(f));
    CHECK(d.used_idx(net::kRxQueue) == 1);
    CHECK(d.bytes(small + 12, f.size()) == f);
}

TEST_CASE("virtio-net: a transmit chain shorter than the header needs reset") {
    FakeNet backend;
    VirtioNet net(backend);
    Driver d(net, false);
    d.init(0, 2);
    d.add(net::kTxQueue, {{d.alloc(8), 8, false}});
    d.kick(net::kTxQueue);
    CHECK(d.needs_reset());
    CHECK(d.logs.size() == 1);
    CHECK(backend.sent.empty());
}

namespace {
struct Recorder : ConsoleBackend {
    std::string out;
    void write(const uint8_t* p, size_t n) override { out.append(reinterpret_cast<const char*>(p), n); }
};
}  // namespace

TEST_CASE("virtio-console: output, input with backpressure, emergency write, size") {
    for (bool legacy : {true, false}) {
        CAPTURE(legacy);
        Recorder rec;
        VirtioConsole con(&rec, 80, 25);
        Driver d(con, legacy);
        CHECK(d.reg(reg::kDeviceId) == 3);
        uint64_t f = d.device_features();
        CHECK((f & console::kFMultiport) == 0);  // single port: hvc0
        CHECK((f & console::kFSize) != 0);
        CHECK((f & console::kFEmergWrite) != 0);
        CHECK(d.config(console::kCfgCols, 2) == 80);
        CHECK(d.config(console::kCfgRows, 2) == 25);

        // Emergency write works before the queues exist.
        d.t->write(reg::kConfig + console::kCfgEmergWr, 4, 'E');
        CHECK(rec.out == "E");

        // Input typed before the driver is ready waits.
        const std::string typed = "hello, guest\n";
        CHECK(con.input(reinterpret_cast<const uint8_t*>(typed.data()), typed.size()) == typed.size());
        d.init(console::kFSize | console::kFEmergWrite, 2);
        uint64_t in1 = d.alloc(5), in2 = d.alloc(64);
        d.add(console::kRxQueue, {{in1, 5, true}});
        d.add(console::kRxQueue, {{in2, 64, true}});
        d.kick(console::kRxQueue);
        uint32_t id, len;
        REQUIRE(d.get_used(console::kRxQueue, id, len));
        CHECK(len == 5);
        REQUIRE(d.get_used(console::kRxQueue, id, len));
        CHECK(len == typed.size() - 5);
        std::string got;
        for (auto b : d.bytes(in1, 5)) got += char(b);
        for (auto b : d.bytes(in2, len)) got += char(b);
        CHECK(got == typed);

        // Output: two chains, the second of two buffers.
        const std::string a = "boot: ", b1 = "ok", b2 = "\r\n";
        uint64_t pa = d.alloc(a.size()), pb = d.alloc(4);
        d.fill(pa, {a.begin(), a.end()});
        d.fill(pb, {'o', 'k', '\r', '\n'});
        d.add(console::kTxQueue, {{pa, uint32_t(a.size()), false}});
        d.add(console::kTxQueue, {{pb, 2, false}, {pb + 2, 2, false}});
        d.kick(console::kTxQueue);
        CHECK(rec.out == "Eboot: ok\r\n");

        // Backpressure: the input buffer is bounded and input() says how much it took.
        std::vector<uint8_t> big(console::kInputBuffer + 100, 'x');
        CHECK(con.input(big.data(), big.size()) == console::kInputBuffer);
        CHECK(con.input_space() == 0);

        con.set_size(100, 40);
        CHECK(d.config(console::kCfgCols, 2) == 100);
        CHECK((d.reg(reg::kInterruptStatus) & kIntConfigChange) != 0);
        CHECK_FALSE(d.needs_reset());
    }
}

TEST_CASE("virtio-rng: seeded entropy is reproducible; one request gets at most 64 KiB") {
    SeededEntropy s1(7), s2(7), s3(8);
    std::vector<uint8_t> a(100), b(100), c(100);
    s1.fill(a.data(), a.size());
    s2.fill(b.data(), b.size());
    s3.fill(c.data(), c.size());
    CHECK(a == b);
    CHECK(a != c);

    SeededEntropy src(7);
    VirtioRng rng(src);
    Driver d(rng, true);
    d.init(0, 1);
    uint64_t buf = d.alloc(100 * 1024);
    d.add(0, {{buf, 100 * 1024, true}});
    d.kick(0);
    uint32_t id, len;
    REQUIRE(d.get_used(0, id, len));
    CHECK(len == rng::kMaxPerRequest);
    SeededEntropy ref(7);
    std::vector<uint8_t> want(rng::kMaxPerRequest);
    ref.fill(want.data(), want.size());
    CHECK(d.bytes(buf, want.size()) == want);
    CHECK(d.rd(buf + rng::kMaxPerRequest, 1) == 0);  // nothing written past the reported length
}
