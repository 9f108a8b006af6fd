// make_corpus DIR: writes the seed corpora of fuzz_cpu, fuzz_virtio, fuzz_fw_cfg and fuzz_devices
// into DIR/cpu, DIR/virtio, DIR/fw_cfg and DIR/devices (tests/fuzz/corpus/ holds their output;
// fuzz_net's seeds come from make_net_corpus). Each seed is a small, well-formed use of its target
// in the harness's input format (see each harness's file comment), for the fuzzer to mutate.
#define DOCTEST_CONFIG_DISABLE
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "devices/fw_cfg.h"
#include "fuzz_virtio.h"

using Bytes = std::vector<uint8_t>;

namespace {

std::string g_dir;
int g_failed = 0;

void write(const std::string& sub, const std::string& name, const Bytes& b) {
    std::filesystem::create_directories(g_dir + "/" + sub);
    std::string path = g_dir + "/" + sub + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(b.data(), 1, b.size(), f) != b.size()) g_failed = 1, std::perror(path.c_str());
    if (f) std::fclose(f);
}

Bytes cat(Bytes a, const Bytes& b) { return a.insert(a.end(), b.begin(), b.end()), a; }
Bytes le(uint64_t v, unsigned n) {
    Bytes b;
    for (unsigned i = 0; i < n; i++) b.push_back(uint8_t(v >> (8 * i)));
    return b;
}
Bytes be(uint64_t v, unsigned n) {
    Bytes b;
    for (unsigned i = 0; i < n; i++) b.push_back(uint8_t(v >> (8 * (n - 1 - i))));
    return b;
}

// ---- fuzz_cpu: [mode][code] ----
void cpu_seeds() {
    write("cpu", "loop64", {0, 0x48, 0xc7, 0xc0, 5, 0, 0, 0, 0x48, 0x01, 0xc3, 0x48, 0xff, 0xc8, 0x75, 0xf8, 0xf4});
    write("cpu", "loop64_jit", {4, 0x48, 0xc7, 0xc0, 0, 1, 0, 0, 0x48, 0x01, 0xc3, 0x48, 0xff, 0xc8, 0x75, 0xf8, 0xf4});
    write("cpu", "strings64", {0, 0xb9, 0, 1, 0, 0, 0xf3, 0xa4, 0xb9, 0x10, 0, 0, 0, 0xf3, 0x48, 0xab, 0xa6, 0xae, 0xf4});
    write("cpu", "sse_x87", {0, 0x66, 0x0f, 0xef, 0xc0, 0x0f, 0x28, 0xc8, 0x66, 0x0f, 0xfe, 0xc1, 0xd9, 0xe8, 0xd9, 0xc0,
                             0xde, 0xc1, 0xdd, 0x1b, 0xf4});
    write("cpu", "system64", {0, 0x0f, 0xa2, 0x0f, 0x31, 0x0f, 0x20, 0xc0, 0x31, 0xc9, 0x0f, 0x01, 0xd0, 0x0f, 0x20, 0xe0,
                              0x0f, 0x22, 0xe0, 0x0f, 0x01, 0xf8, 0xf4});
    write("cpu", "stack_mem64", {0, 0x53, 0x5b, 0xe8, 0, 0, 0, 0, 0x58, 0x8b, 0x03, 0x89, 0x06, 0x48, 0x0f, 0xc7, 0x0f,
                                 0xf0, 0x0f, 0xb1, 0x0b, 0xf4});
    write("cpu", "smc64", {0, 0xc6, 0x05, 0x01, 0, 0, 0, 0xf4, 0x90, 0x90, 0xf4});
    write("cpu", "muldiv64", {0, 0xb8, 7, 0, 0, 0, 0xbb, 3, 0, 0, 0, 0x48, 0xf7, 0xe3, 0x48, 0x99, 0x48, 0xf7, 0xfb, 0xf7,
                              0xf1, 0xf4});
    write("cpu", "loop32", {1, 0x31, 0xc0, 0x40, 0x3d, 0x10, 0, 0, 0, 0x75, 0xf8, 0xa5, 0x0f, 0xa2, 0xf4});
    write("cpu", "real16", {2, 0xb8, 0x34, 0x12, 0x8e, 0xd8, 0x89, 0x07, 0xb9, 4, 0, 0xf3, 0xa4, 0x0f, 0x01, 0xe0, 0xf4});
}

// ---- fuzz_virtio: [config][kicks][RAM from 0x1000] ----
using m86::test::Buf;
using m86::test::Driver;
namespace fz = m86::fuzz;

Bytes ram_image(Driver& d, uint8_t config, uint8_t kicks) {
    const uint64_t end = d.alloc(0, 1);
    return cat({config, kicks}, Bytes(d.ram.begin() + fz::kRingBase, d.ram.begin() + end));
}

void virtio_seeds() {
    using namespace m86::dev::virtio;
    for (uint8_t layout : {uint8_t(0), fz::kLegacy}) {
        for (bool indirect : {false, true}) {
            const uint8_t config = uint8_t(fz::kDevBlk | layout | (indirect ? fz::kIndirect : fz::kEventIdx));
            fz::VirtioRig r(config);
            Driver& d = *r.driver;
            auto req = [&](uint32_t type, uint64_t sector, uint32_t out_len, uint32_t in_len) {
                uint64_t h = d.alloc(16 + out_len), in = d.alloc(in_len + 1);
                d.w32(h, type), d.w64(h + 8, sector);
                std::vector<Buf> bufs = {{h, 16, false}};
                if (out_len) bufs.push_back({h + 16, out_len, false});
                if (in_len) bufs.push_back({in, in_len, true});
                bufs.push_back({in + in_len, 1, true});
                indirect ? d.add_indirect(0, bufs) : d.add(0, bufs);
            };
            req(blk::kTIn, 2, 0, 1024);
            req(blk::kTOut, 4, 512, 0);
            req(blk::kTFlush, 0, 0, 0);
            req(blk::kTGetId, 0, 0, 20);
            uint64_t h = d.alloc(32), st = d.alloc(1);
            d.w32(h, blk::kTWriteZeroes), d.w64(h + 16, 8), d.w32(h + 24, 4), d.w32(h + 28, 1);
            d.add(0, {{h, 32, false}, {st, 1, true}});
            write("virtio", std::string("blk") + (layout ? "_legacy" : "") + (indirect ? "_indirect" : ""),
                  ram_image(d, config, 0));
        }
    }
    {
        const uint8_t config = fz::kDevNet | fz::kEventIdx;
        fz::VirtioRig r(config);
        Driver& d = *r.driver;
        for (int i = 0; i < 2; i++) d.add(0, {{d.alloc(1526), 1526, true}});
        uint64_t hdr = d.alloc(12), frame = d.alloc(60);
        d.fill(frame, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06});
        d.add(1, {{hdr, 12, false}, {frame, 60, false}});
        write("virtio", "net", ram_image(d, config, 0x44));
    }
    {
        const uint8_t config = fz::kDevNet | fz::kLegacy;
        fz::VirtioRig r(config);
        Driver& d = *r.driver;
        d.add(0, {{d.alloc(10), 10, true}, {d.alloc(1514), 1514, true}});
        uint64_t frame = d.alloc(70);
        d.add(1, {{frame, 70, false}});
        write("virtio", "net_legacy", ram_image(d, config, 0x44));
    }
    {
        const uint8_t config = fz::kDevConsole;
        fz::VirtioRig r(config);
        Driver& d = *r.driver;
        d.add(0, {{d.alloc(64), 64, true}});
        uint64_t out = d.alloc(6);
        d.fill(out, {'h', 'e', 'l', 'l', 'o', '\n'});
        d.add(1, {{out, 3, false}, {out + 3, 3, false}});
        write("virtio", "console", ram_image(d, config, 0x44));
    }
    {
        const uint8_t config = fz::kDevRng | fz::kIndirect;
        fz::VirtioRig r(config);
        Driver& d = *r.driver;
        d.add(0, {{d.alloc(64), 64, true}});
        d.add_indirect(0, {{d.alloc(16), 16, true}, {d.alloc(48), 48, true}});
        write("virtio", "rng", ram_image(d, config, 0));
    }
}

// ---- fuzz_fw_cfg: [op][args]... ----
Bytes dma_start(uint16_t at, uint32_t control, uint32_t length, uint64_t addr) {
    return cat(cat({3}, le(at, 2)), cat(cat(be(control, 4), be(length, 4)), be(addr, 8)));
}

void fw_cfg_seeds() {
    using namespace m86::dev::fwcfg;
    write("fw_cfg", "pio_dir", {0, kFileDir, 0, 1, 64, 0, kSignature, 0, 1, 4, 0x81, 4, 7, 0});
    write("fw_cfg", "dma_dir", dma_start(0x100, uint32_t(kFileDir) << 16 | kDmaSelect | kDmaRead, 64, 0x2000));
    write("fw_cfg", "dma_kernel",
          cat(dma_start(0x100, uint32_t(kKernelData) << 16 | kDmaSelect | kDmaRead, 20000, 0x4000), {4, 8}));
    write("fw_cfg", "dma_write", cat(cat({5, 0, 0x20, 8, 1, 2, 3, 4, 5, 6, 7, 8}, dma_start(0x100, 0x22u << 16 | kDmaSelect | kDmaWrite, 64, 0x2000)),
                                     dma_start(0x100, 0x22u << 16 | kDmaSelect | kDmaRead, 64, 0x3000)));
    write("fw_cfg", "dma_skip_high", cat(cat(dma_start(0x100, uint32_t(kCmdlineData) << 16 | kDmaSelect | kDmaSkip, 8, 0),
                                             {2, 0, 0, 0, 0}),
                                         cat(dma_start(0x110, kDmaRead, 6, 0x2000), {6, 0, 0, 0, 0, 0, 0, 1, 0x20, 7, 0})));
    write("fw_cfg", "reset", cat(dma_start(0x100, uint32_t(kKernelData) << 16 | kDmaSelect | kDmaRead, 0xffff, 0x4000),
                                 {0x0e, 0, 0, 0, 0, 0, 0, 0, 0}));
}

// ---- fuzz_devices: [op][offset LE16][value LE32]... ----
Bytes rec(uint8_t op, uint16_t off, uint32_t v) { return cat(cat({op}, le(off, 2)), le(v, 4)); }

void device_seeds() {
    const uint8_t W = 8, W4 = 8 | 2 << 4;
    Bytes pic = cat(cat(rec(3 | W, 0, 0x11), rec(3 | W, 1, 0x20)), cat(rec(3 | W, 1, 4), rec(3 | W, 1, 1)));
    pic = cat(pic, cat(cat(rec(3 | W | 0x40, 0, 0x11), rec(3 | W | 0x40, 1, 0x28)), cat(rec(3 | W | 0x40, 1, 2), rec(3 | W | 0x40, 1, 1))));
    pic = cat(pic, cat(rec(3 | W, 1, 0xf8), rec(3 | W, 0, 0x0b)));
    Bytes pit = cat(cat(rec(4 | W, 3, 0x34), rec(4 | W, 0, 0x00)), cat(rec(4 | W, 0, 0x10), rec(7, 0, 0x40000)));
    pit = cat(pit, cat(cat(rec(4 | W, 3, 0xb6), rec(4 | W | 0xc0, 0, 1)), cat(rec(4, 0, 0), rec(4 | 0xc0, 0, 0))));
    write("devices", "pic_pit", cat(pic, pit));
    write("devices", "rtc", cat(cat(cat(rec(5 | W, 0, 0x0b), rec(5 | W, 1, 0x62)), cat(rec(5 | W, 0, 0x0a), rec(5 | W, 1, 0x26))),
                                cat(cat(rec(7, 0, 0x80000), rec(5 | W, 0, 0x0c)), cat(rec(5, 1, 0), rec(5, 0, 0)))));
    write("devices", "uart", cat(cat(cat(rec(6 | W, 3, 0x83), rec(6 | W, 0, 1)), cat(rec(6 | W, 3, 3), rec(6 | W, 1, 0x0f))),
                                 cat(cat(rec(6 | W, 2, 0xc7), rec(6 | W, 0, 'A')), cat(rec(7 | 0x40, 'x', 0x1000), rec(6, 0, 0)))));
    Bytes lapic = cat(cat(rec(0 | W4, 0xf0, 0x1ff), rec(0 | W4, 0x3e0, 0xb)), cat(rec(0 | W4, 0x320, 0x20030), rec(0 | W4, 0x380, 1000)));
    lapic = cat(lapic, cat(cat(rec(7, 0, 5000), rec(0 | W4, 0xb0, 0)), cat(rec(0 | 2 << 4, 0x390, 0), rec(0 | W4, 0x300, 0x000c4031))));
    lapic = cat(lapic, cat(rec(2 | W4, 0, 0x10), rec(2 | W4, 0x10, 0x8031)));
    lapic = cat(lapic, cat(rec(2 | W4, 0, 0x12), rec(2 | W4, 0x10, 0x30)));
    write("devices", "lapic_ioapic", cat(lapic, cat(rec(7, 0, 0x100000), rec(2 | 2 << 4, 0x10, 0))));
    Bytes x2 = cat(rec(1 | W, 0, 0xfee00c00), rec(1 | W | 0x80, 0x0f, 0x1ff));
    x2 = cat(x2, cat(cat(rec(1 | W | 0x80, 0x30, 0x000c4032), rec(1 | W | 0x40, 0, 100000)), cat(rec(7, 0, 200000), rec(1 | 0x80, 0x10, 0))));
    write("devices", "x2apic", x2);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    g_dir = argv[1];
    cpu_seeds();
    virtio_seeds();
    fw_cfg_seeds();
    device_seeds();
    return g_failed;
}
