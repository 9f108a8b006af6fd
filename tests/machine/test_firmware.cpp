// Unit tests for firmware boot: the fw_cfg items of QEMU's microvm (read back through the device's
// port interface, as firmware reads them), the bzImage split for firmware boot, the option ROM and
// bootorder files, the device tree, the firmware search, and the new command-line options.
// Expected values: QEMU docs/specs/fw_cfg.rst (item formats), Linux boot.rst (setup header
// fields), the Devicetree Specification v0.4 chapter 5 (DTB format), and the facts of QEMU's
// microvm (hw/i386/microvm.c, x86.c) listed in DESIGN.md.
#include <doctest/doctest.h>

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "devices/debug_exit.h"
#include "devices/fw_cfg.h"
#include "machine/boot/firmware.h"
#include "machine/options.h"

using namespace m86;
using namespace m86::machine;
using namespace m86::machine::boot;
using namespace m86::dev::fwcfg;

namespace {

// Reads items the way firmware does without DMA: select with a 16-bit write, then data bytes.
struct Reader {
    dev::FwCfg& fw;
    void select(uint16_t key) { fw.io().write(0, 2, key); }
    std::vector<uint8_t> bytes(uint16_t key, size_t n) {
        select(key);
        std::vector<uint8_t> v(n);
        for (auto& b : v) b = uint8_t(fw.io().read(1, 1));
        return v;
    }
    uint64_t le(uint16_t key, unsigned n) {
        auto b = bytes(key, n);
        uint64_t v = 0;
        for (unsigned i = 0; i < n; i++) v |= uint64_t(b[i]) << (8 * i);
        return v;
    }
    struct File {
        uint32_t size;
        uint16_t select;
    };
    std::map<std::string, File> dir() {
        select(kFileDir);
        auto rd = [&](unsigned n) {
            uint64_t v = 0;
            for (unsigned i = 0; i < n; i++) v = v << 8 | uint8_t(fw.io().read(1, 1));
            return v;
        };
        std::map<std::string, File> out;
        unsigned count = unsigned(rd(4));
        for (unsigned i = 0; i < count; i++) {
            File f;
            f.size = uint32_t(rd(4));
            f.select = uint16_t(rd(2));
            rd(2);
            char name[56];
            for (auto& c : name) c = char(rd(1));
            out[name] = f;
        }
        return out;
    }
};

template <class T> T get(const std::vector<uint8_t>& b, size_t o) {
    T v{};
    REQUIRE(o + sizeof v <= b.size());
    std::memcpy(&v, b.data() + o, sizeof v);
    return v;
}
template <class T> void put(std::vector<uint8_t>& b, size_t o, T v) { std::memcpy(b.data() + o, &v, sizeof v); }

// A bzImage header: protocol 2.15, 4 setup sectors, loaded high.
std::vector<uint8_t> bzimage(uint16_t xloadflags, uint32_t initrd_addr_max = 0x7fffffff) {
    std::vector<uint8_t> f(5 * 512 + 8192, 0);
    for (size_t i = 5 * 512; i < f.size(); i++) f[i] = uint8_t(i * 13);
    f[0x1f1] = 4;
    put<uint16_t>(f, 0x1fe, 0xaa55);
    put<uint32_t>(f, 0x202, 0x53726448);
    put<uint16_t>(f, 0x206, 0x020f);
    f[0x211] = 0x01;  // LOADED_HIGH
    put<uint32_t>(f, 0x22c, initrd_addr_max);
    put<uint16_t>(f, 0x236, xloadflags);
    put<uint16_t>(f, 0x1fa, 0xffff);
    return f;
}

}  // namespace

TEST_CASE("firmware: microvm's fw_cfg items (CPU counts, RAM, IRQ0 override, e820, core files)") {
    dev::FwCfg fw;
    MicrovmFwCfgInfo info;
    info.cpus = 2, info.max_cpus = 4;
    info.ram_size = 4ull << 30, info.below_4g = 3ull << 30, info.above_4g = 1ull << 30;
    info.nographic = true;
    microvm_fw_cfg(fw, info);
    Reader r{fw};
    CHECK(r.le(kNbCpus, 2) == 2);
    CHECK(r.le(kMaxCpus, 2) == 4);
    CHECK(r.le(kRamSize, 8) == 4ull << 30);
    CHECK(r.le(kIrq0Override, 4) == 1);
    CHECK(r.le(kNoGraphic, 2) == 1);
    CHECK(r.le(kBootMenu, 2) == 0);
    REQUIRE(fw.item(kE820Table));
    CHECK(fw.item(kE820Table)->size() == 4 + 16 * 20);  // count + 16 reserved entries, all empty

    auto dir = r.dir();
    REQUIRE(dir.count("etc/e820"));
    REQUIRE(dir["etc/e820"].size == 2 * 20);
    auto e = r.bytes(dir["etc/e820"].select, 40);
    CHECK(get<uint64_t>(e, 0) == 0);
    CHECK(get<uint64_t>(e, 8) == 3ull << 30);
    CHECK(get<uint32_t>(e, 16) == 1);
    CHECK(get<uint64_t>(e, 20) == 4ull << 30);
    CHECK(get<uint64_t>(e, 28) == 1ull << 30);
    CHECK(get<uint32_t>(e, 36) == 1);
    REQUIRE(dir.count("etc/boot-fail-wait"));
    CHECK(r.le(dir["etc/boot-fail-wait"].select, 4) == 0xffffffff);  // -1: never retry
    CHECK(dir["bootorder"].size == 0);
    CHECK(dir["bios-geometry"].size == 0);
    // Files are listed sorted by name, with selectors from 0x20 in that order.
    uint16_t prev = 0;
    for (auto& [name, f] : dir) {
        CHECK(f.select > prev);
        prev = f.select;
    }

    auto small = microvm_e820_file(512ull << 20, 0);
    REQUIRE(small.size() == 20);
    CHECK(get<uint64_t>(small, 8) == 512ull << 20);
}

TEST_CASE("firmware: a bzImage is split into setup and kernel with the header patched for the firmware") {
    auto f = bzimage(0x0003);  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
    std::vector<uint8_t> initrd(10000, 0x5a);
    dev::FwCfg fw;
    std::string err;
    const uint64_t ram = 256ull << 20;
    REQUIRE_MESSAGE(linux_fw_cfg(fw, f, "console=ttyS0 vga=ext", initrd, ram, err), err);
    Reader r{fw};
    // A high, recent kernel: real-mode part at 0x10000, command line at 0x20000, kernel at 1 MiB.
    CHECK(r.le(kSetupAddr, 4) == 0x10000);
    CHECK(r.le(kSetupSize, 4) == 5 * 512);
    CHECK(r.le(kKernelAddr, 4) == 0x100000);
    CHECK(r.le(kKernelSize, 4) == 8192);
    CHECK(r.le(kCmdlineAddr, 4) == 0x20000);
    CHECK(r.le(kCmdlineSize, 4) == std::strlen("console=ttyS0 vga=ext") + 1);
    auto cmd = r.bytes(kCmdlineData, 22);
    CHECK(std::string(reinterpret_cast<char*>(cmd.data())) == "console=ttyS0 vga=ext");
    CHECK(*fw.item(kKernelData) == std::vector<uint8_t>(f.begin() + 5 * 512, f.end()));

    // The initrd goes as high as it fits below the end of RAM (the kernel can take it anywhere
    // below 4 GiB), page aligned.
    uint32_t rd = uint32_t(r.le(kInitrdAddr, 4));
    CHECK(rd == ((ram - 1 - initrd.size()) & ~0xfffull));
    CHECK(r.le(kInitrdSize, 4) == initrd.size());
    CHECK(*fw.item(kInitrdData) == initrd);

    // The setup item: the file's first sectors with the header fields a boot loader fills in.
    const auto& setup = *fw.item(kSetupData);
    REQUIRE(setup.size() == 5 * 512);
    CHECK(setup[0x210] == 0xb0);                       // type_of_loader: QEMU
    CHECK(setup[0x211] == (0x01 | 0x80));              // loadflags: LOADED_HIGH | CAN_USE_HEAP
    CHECK(get<uint16_t>(setup, 0x224) == 0xfe00);      // heap_end_ptr: cmdline - setup - 0x200
    CHECK(get<uint32_t>(setup, 0x228) == 0x20000);     // cmd_line_ptr
    CHECK(get<uint32_t>(setup, 0x218) == rd);          // ramdisk_image
    CHECK(get<uint32_t>(setup, 0x21c) == initrd.size());  // ramdisk_size
    CHECK(get<uint16_t>(setup, 0x1fa) == 0xfffe);      // vid_mode from vga=ext
    CHECK(std::memcmp(setup.data(), f.data(), 0x1f0) == 0);  // the rest is the file's

    // Without XLF_CAN_BE_LOADED_ABOVE_4G, initrd_addr_max bounds the placement.
    dev::FwCfg fw2;
    REQUIRE(linux_fw_cfg(fw2, bzimage(0x0001, 0x37ffffff), "", initrd, 2ull << 30, err));
    CHECK(Reader{fw2}.le(kInitrdAddr, 4) == ((0x37ffffffull - initrd.size()) & ~0xfffull));
    // An initrd that cannot fit, and a malformed vga=, are errors.
    dev::FwCfg fw3;
    CHECK_FALSE(linux_fw_cfg(fw3, bzimage(3), "", std::vector<uint8_t>(3 << 20), 2 << 20, err));
    CHECK_FALSE(linux_fw_cfg(fw3, bzimage(3), "vga=bogus", {}, ram, err));
}

TEST_CASE("firmware: option ROMs appear as genroms/NAME with a bootorder entry") {
    dev::FwCfg fw;
    microvm_fw_cfg(fw, MicrovmFwCfgInfo{1, 1, 128 << 20, 128 << 20, 0, false});
    add_option_rom(fw, "linuxboot_dma.bin", std::vector<uint8_t>(1536, 0x55));
    Reader r{fw};
    auto dir = r.dir();
    REQUIRE(dir.count("genroms/linuxboot_dma.bin"));
    CHECK(dir["genroms/linuxboot_dma.bin"].size == 1536);
    const std::string path = "/rom@genroms/linuxboot_dma.bin";
    REQUIRE(dir["bootorder"].size == path.size() + 1);
    auto b = r.bytes(dir["bootorder"].select, path.size() + 1);
    CHECK(std::string(b.begin(), b.end() - 1) == path);
    CHECK(b.back() == 0);
}

TEST_CASE("firmware: etc/fdt is a valid flattened device tree of the microvm devices") {
    FdtDevices d;
    d.virtio_slots = {7, 6};
    d.serial = true;
    d.rtc = true;
    auto b = microvm_fdt(d);
    auto be = [&](size_t o) { return uint32_t(b[o]) << 24 | b[o + 1] << 16 | b[o + 2] << 8 | b[o + 3]; };
    REQUIRE(b.size() == 0x100000);
    CHECK(be(0) == 0xd00dfeed);
    CHECK(be(4) == 0x100000);  // totalsize
    CHECK(be(20) == 17);       // version
    CHECK(be(24) == 16);       // last compatible version
    uint32_t st = be(8), strs = be(12), rsv = be(16);
    CHECK(rsv % 8 == 0);
    CHECK(be(rsv) == 0);  // empty reservation map
    CHECK(be(rsv + 12) == 0);
    CHECK(strs == st + be(36));
    // Walk the structure block: collect node names and each node's properties.
    std::map<std::string, std::map<std::string, std::vector<uint8_t>>> nodes;
    std::string cur;
    int depth = 0;
    uint32_t o = st;
    for (;;) {
        uint32_t tag = be(o);
        if (tag == 1) {
            std::string name(reinterpret_cast<const char*>(&b[o + 4]));
            cur = depth == 0 ? "/" : "/" + name;
            nodes[cur];
            depth++;
            o += 4 + ((name.size() + 1 + 3) & ~3u);
        } else if (tag == 3) {
            uint32_t len = be(o + 4), nameoff = be(o + 8);
            std::string pname(reinterpret_cast<const char*>(&b[strs + nameoff]));
            nodes[cur][pname] = std::vector<uint8_t>(b.begin() + o + 12, b.begin() + o + 12 + len);
            o += 12 + ((len + 3) & ~3u);
        } else if (tag == 2) {
            depth--;
            o += 4;
        } else {
            REQUIRE(tag == 9);
            break;
        }
    }
    CHECK(depth == 0);
    auto s = [](const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); };
    CHECK(s(nodes["/"]["compatible"]) == std::string("linux,microvm", 14));
    REQUIRE(nodes.count("/ioapic1@fec00000"));
    CHECK(nodes["/ioapic1@fec00000"].count("interrupt-controller"));
    REQUIRE(nodes.count("/virtio_mmio@feb00e00"));
    REQUIRE(nodes.count("/virtio_mmio@feb00c00"));
    CHECK_FALSE(nodes.count("/virtio_mmio@feb00000"));
    auto& v7 = nodes["/virtio_mmio@feb00e00"];
    CHECK(s(v7["compatible"]) == std::string("virtio,mmio", 12));
    CHECK(v7["reg"] == std::vector<uint8_t>{0, 0, 0, 0, 0xfe, 0xb0, 0x0e, 0, 0, 0, 0, 0, 0, 0, 2, 0});
    CHECK(v7["interrupts"] == std::vector<uint8_t>{0, 0, 0, 12, 0, 0, 0, 0});  // slot 7: IRQ 12
    CHECK(nodes["/virtio_mmio@feb00c00"]["interrupts"][3] == 11);
    CHECK(v7["interrupt-parent"] == nodes["/ioapic1@fec00000"]["phandle"]);
    CHECK(nodes["/serial@3f8"]["interrupts"][3] == 4);
    CHECK(nodes["/rtc@70"]["interrupts"][3] == 8);
    CHECK(s(nodes["/chosen"]["stdout-path"]) == std::string("/serial@3f8", 12));

    auto bare = microvm_fdt(FdtDevices{});
    CHECK(std::search(bare.begin(), bare.end(), std::begin("serial"), std::end("serial") - 1) == bare.end());
}

TEST_CASE("firmware: image checks and the data-directory search") {
    std::string err;
    CHECK(check_firmware(std::vector<uint8_t>(64 * 1024), err));
    CHECK(check_firmware(std::vector<uint8_t>(256 * 1024), err));
    CHECK_FALSE(check_firmware(std::vector<uint8_t>(), err));
    CHECK_FALSE(check_firmware(std::vector<uint8_t>(65536 + 512), err));
    CHECK_FALSE(check_firmware(std::vector<uint8_t>(32ull << 20), err));

    namespace fs = std::filesystem;
    fs::path dir = fs::temp_directory_path() / fmt::format("m86-fw-test-{}", ::getpid());
    fs::create_directories(dir);
    { std::ofstream(dir / "test-firmware.rom") << "x"; }
    CHECK(find_data_file("test-firmware.rom", {dir.string()}) == (dir / "test-firmware.rom").string());
    CHECK(find_data_file((dir / "test-firmware.rom").string(), {}) == (dir / "test-firmware.rom").string());
    CHECK(find_data_file("no-such-firmware.rom", {dir.string()}).empty());
    CHECK(find_data_file((dir / "nope.rom").string(), {}).empty());
    fs::remove_all(dir);
}

TEST_CASE("options: firmware, direct boot and isa-debug-exit") {
    std::string err;
    auto c = parse_options({"-kernel", "k", "-bios", "qboot.rom", "-L", "/opt/fw", "-smp", "2,maxcpus=4"}, err);
    REQUIRE_MESSAGE(c, err);
    CHECK(c->bios == "qboot.rom");
    CHECK(c->data_dirs == std::vector<std::string>{"/opt/fw"});
    CHECK(c->cpus == 2);
    CHECK(c->max_cpus == 4);
    CHECK_FALSE(c->direct_boot);

    c = parse_options({"-kernel", "k", "--direct-boot"}, err);
    REQUIRE(c);
    CHECK(c->direct_boot);
    CHECK_FALSE(parse_options({"--direct-boot"}, err));                              // needs -kernel
    CHECK_FALSE(parse_options({"-kernel", "k", "--direct-boot", "-bios", "x"}, err));  // contradictory

    c = parse_options({"-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-device", "isa-debug-exit"}, err);
    REQUIRE_MESSAGE(c, err);
    REQUIRE(c->debug_exits.size() == 2);
    CHECK(c->debug_exits[0].iobase == 0xf4);
    CHECK(c->debug_exits[0].iosize == 4);
    CHECK(c->debug_exits[1].iobase == 0x501);  // QEMU's defaults
    CHECK(c->debug_exits[1].iosize == 2);
    REQUIRE(c->devices.size() == 2);
    CHECK(c->devices[0].driver == "isa-debug-exit");
    CHECK_FALSE(parse_options({"-device", "isa-debug-exit,iobase=0x10000"}, err));
    CHECK_FALSE(parse_options({"-device", "isa-debug-exit,iobase=0xfffe,iosize=4"}, err));
    CHECK_FALSE(parse_options({"-device", "isa-debug-exit,iobase=0,iosize=0x10000"}, err));
    CHECK_FALSE(parse_options({"-device", "isa-debug-exit,iosize=0"}, err));
    CHECK_FALSE(parse_options({"-device", "isa-debug-exit,colour=red"}, err));
    CHECK_FALSE(parse_options({"-device", "no-such-device"}, err));
    CHECK(err.find("no-such-device") != std::string::npos);
}

TEST_CASE("isa-debug-exit: a write of V asks for exit status (V << 1) | 1, at the access width") {
    struct Sink : dev::ExitSink {
        int status = -1;
        void request_exit(int s) override { status = s; }
    } sink;
    dev::DebugExit d(&sink);
    CHECK(d.read(0, 1) == 0);
    d.write(0, 1, 0x21);
    CHECK(sink.status == 0x43);
    d.write(1, 1, 0);
    CHECK(sink.status == 1);
    d.write(0, 1, 0x1ff);  // an 8-bit write carries only 0xff
    CHECK(sink.status == 0x1ff);
    d.write(0, 4, 0x12345678);
    CHECK(sink.status == int((0x12345678u << 1) | 1));
}
