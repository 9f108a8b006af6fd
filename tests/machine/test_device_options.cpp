// Unit tests for the virtio part of the command line (device_options.h): -drive, -netdev, -global,
// the virtio -device drivers, the slot assignment and the auto-kernel-cmdline suffix. Expected slot
// order and command-line strings are what QEMU 7.2's microvm produced for the same options
// (qemu-system-x86_64 -M microvm,acpi=off ... printed "Kernel command line: ..."; see
// tests/e2e/virtio.py, which compares against QEMU live when it is installed).
#include <doctest/doctest.h>

#include "machine/options.h"

using namespace m86::machine;

namespace {
std::optional<VmConfig> parse(std::vector<std::string> a, std::string* err = nullptr) {
    std::string e;
    auto c = parse_options(a, e);
    if (err) *err = e;
    return c;
}
std::string error_of(std::vector<std::string> a) {
    std::string e;
    auto c = parse(std::move(a), &e);
    return c ? std::string("(parsed)") : e;
}
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("device options: QEMU's second microvm example parses with the same meaning") {
    std::string err;
    auto c = parse({"-M", "microvm,x-option-roms=off,pit=off,pic=off,isa-serial=off,rtc=off", "-enable-kvm", "-cpu",
                    "host", "-m", "512m", "-smp", "2", "-kernel", "vmlinux", "-append", "console=hvc0 root=/dev/vda",
                    "-nodefaults", "-no-user-config", "-nographic", "-chardev", "stdio,id=virtiocon0", "-device",
                    "virtio-serial-device", "-device", "virtconsole,chardev=virtiocon0", "-drive",
                    "id=test,file=test.img,format=raw,if=none", "-device", "virtio-blk-device,drive=test", "-netdev",
                    "tap,id=tap0,script=no,downscript=no", "-device", "virtio-net-device,netdev=tap0"},
                   &err);
    REQUIRE_MESSAGE(c, err);
    const VirtioConfig& v = c->virtio;
    CHECK(v.force_legacy);  // microvm's default
    REQUIRE(v.drives.size() == 1);
    CHECK(v.drives[0].id == "test");
    CHECK(v.drives[0].file == "test.img");
    CHECK_FALSE(v.drives[0].readonly);
    REQUIRE(v.netdevs.size() == 1);
    CHECK(v.netdevs[0].kind == NetdevSpec::Kind::Tap);
    CHECK(v.netdevs[0].ifname.empty());
    REQUIRE(v.devices.size() == 3);
    // Command-line order, highest free slot first.
    CHECK(v.devices[0].kind == VirtioDeviceSpec::Kind::Console);
    CHECK(v.devices[0].slot == 7);
    CHECK(v.devices[0].has_port);
    CHECK(v.devices[0].chardev == "virtiocon0");
    CHECK(v.devices[1].kind == VirtioDeviceSpec::Kind::Blk);
    CHECK(v.devices[1].slot == 6);
    CHECK(v.devices[2].kind == VirtioDeviceSpec::Kind::Net);
    CHECK(v.devices[2].slot == 5);
    CHECK(v.devices[2].netdev == "tap0");
    CHECK(v.cmdline_suffix() ==
          " virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11 virtio_mmio.device=512@0xfeb00a00:10");
    CHECK(v.populated_slots() == std::vector<unsigned>{7, 6, 5});
}

TEST_CASE("device options: slots - highest first, bus= picks one, at most eight") {
    std::string err;
    auto c = parse({"-kernel", "k", "-device", "virtio-rng-device", "-device", "virtio-rng-device,bus=virtio-mmio-bus.0",
                    "-device", "virtio-rng-device"},
                   &err);
    REQUIRE_MESSAGE(c, err);
    REQUIRE(c->virtio.devices.size() == 3);
    CHECK(c->virtio.devices[0].slot == 7);
    CHECK(c->virtio.devices[1].slot == 0);
    CHECK(c->virtio.devices[2].slot == 6);
    CHECK(c->virtio.cmdline_suffix() ==
          " virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11 virtio_mmio.device=512@0xfeb00000:5");
    // No devices: nothing appended.
    auto none = parse({"-kernel", "k"});
    REQUIRE(none);
    CHECK(none->virtio.cmdline_suffix().empty());

    std::vector<std::string> nine = {"-kernel", "k"};
    for (int i = 0; i < 9; i++) nine.insert(nine.end(), {"-device", "virtio-rng-device"});
    CHECK(has(error_of(nine), "all 8 virtio-mmio transports"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-rng-device,bus=virtio-mmio-bus.8"}), "virtio-mmio-bus.0 to .7"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-rng-device,bus=virtio-mmio-bus.3", "-device",
                        "virtio-rng-device,bus=virtio-mmio-bus.3"}),
              "already has a device"));
}

TEST_CASE("device options: -drive") {
    std::string err;
    auto c = parse({"-kernel", "k", "-drive", "id=a,file=x,,y.img,format=raw,if=none,readonly=on,cache=none", "-drive",
                    "file=z.img,if=none,discard=ignore", "-device", "virtio-blk-device,drive=a,serial=S1"},
                   &err);
    REQUIRE_MESSAGE(c, err);
    REQUIRE(c->virtio.drives.size() == 2);
    CHECK(c->virtio.drives[0].file == "x,y.img");  // ",," is a literal comma (QEMU's option syntax)
    CHECK(c->virtio.drives[0].readonly);
    CHECK(c->virtio.drives[0].discard);  // the default
    CHECK(c->virtio.drives[1].id == "none1");
    CHECK_FALSE(c->virtio.drives[1].discard);
    CHECK(c->virtio.devices[0].serial == "S1");

    CHECK(has(error_of({"-kernel", "k", "-drive", "id=a,file=x.img,format=qcow2,if=none"}), "raw images only"));
    CHECK(has(error_of({"-kernel", "k", "-drive", "id=a,file=x.img"}), "if=none"));
    CHECK(has(error_of({"-kernel", "k", "-drive", "id=a,file=x.img,if=virtio"}), "if=virtio"));
    CHECK(has(error_of({"-kernel", "k", "-drive", "id=a,if=none"}), "file="));
    CHECK(has(error_of({"-kernel", "k", "-drive", "id=a,file=x,if=none,bogus=1"}), "'bogus'"));
    CHECK(has(error_of({"-kernel", "k", "-drive", "id=a,file=x,if=none", "-drive", "id=a,file=y,if=none"}), "duplicate"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-blk-device"}), "drive property not set"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-blk-device,drive=q"}), "no -drive with id=q"));
    CHECK(has(error_of({"-kernel", "k", "-drive", "id=a,file=x,if=none", "-device", "virtio-blk-device,drive=a",
                        "-device", "virtio-blk-device,drive=a"}),
              "already in use"));
}

TEST_CASE("device options: -netdev and virtio-net") {
    std::string err;
    auto c = parse({"-kernel", "k", "-netdev", "user,id=n0,hostfwd=tcp::2222-:22,hostfwd=udp:127.0.0.1:5353-:53",
                    "-netdev", "tap,id=t0,ifname=tap7,script=no,downscript=no", "-device", "virtio-net-device,netdev=n0",
                    "-device", "virtio-net-device,netdev=t0,mac=52:54:00:ab:cd:ef", "-device", "virtio-net-device"},
                   &err);
    REQUIRE_MESSAGE(c, err);
    const auto& v = c->virtio;
    REQUIRE(v.netdevs.size() == 2);
    CHECK(v.netdevs[0].kind == NetdevSpec::Kind::User);
    REQUIRE(v.netdevs[0].user.hostfwd.size() == 2);
    CHECK(v.netdevs[0].user.hostfwd[0].host_port == 2222);
    CHECK(v.netdevs[0].user.hostfwd[0].guest_port == 22);
    CHECK(v.netdevs[0].user.hostfwd[1].udp);
    CHECK(v.netdevs[1].ifname == "tap7");
    REQUIRE(v.devices.size() == 3);
    // QEMU's default MACs count only the NICs without mac=: ...:56, then ...:57.
    CHECK(v.devices[0].mac == std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
    CHECK(v.devices[1].mac == std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef});
    CHECK(v.devices[2].mac == std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0x57});
    CHECK(v.devices[2].netdev.empty());

    CHECK(has(error_of({"-kernel", "k", "-netdev", "socket,id=s"}), "socket"));
    CHECK(has(error_of({"-kernel", "k", "-netdev", "user"}), "missing id"));
    CHECK(has(error_of({"-kernel", "k", "-netdev", "user,id=a,frob=1"}), "frob"));
    CHECK(has(error_of({"-kernel", "k", "-netdev", "user,id=a,hostfwd=tcp::x-:22"}), "hostfwd"));
    CHECK(has(error_of({"-kernel", "k", "-netdev", "tap,id=t,script=/etc/qemu-ifup"}), "script=no"));
    CHECK(has(error_of({"-kernel", "k", "-netdev", "tap,id=t,vhost=on"}), "vhost"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-net-device,netdev=zz"}), "no -netdev with id=zz"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-net-device,mac=01:00:00:00:00:01"}), "multicast"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-net-device,mac=52:54"}), "mac="));
}

TEST_CASE("device options: console, rng, -global") {
    CHECK(has(error_of({"-kernel", "k", "-chardev", "stdio,id=c", "-device", "virtconsole,chardev=c"}),
              "virtio-serial-device before it"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-serial-device", "-device", "virtconsole,chardev=nope"}),
              "no -chardev with id=nope"));
    CHECK(has(error_of({"-kernel", "k", "-chardev", "stdio,id=c", "-device", "virtio-serial-device", "-device",
                        "virtconsole,chardev=c", "-device", "virtconsole,chardev=c"}),
              "one port"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-rng-device,rng=rng0"}), "'rng'"));
    CHECK(has(error_of({"-kernel", "k", "-device", "virtio-gpu-device"}), "virtio-gpu-device"));

    auto c = parse({"-kernel", "k", "-global", "virtio-mmio.force-legacy=false"});
    REQUIRE(c);
    CHECK_FALSE(c->virtio.force_legacy);
    c = parse({"-kernel", "k", "-global", "driver=virtio-mmio,property=force-legacy,value=false"});
    REQUIRE(c);
    CHECK_FALSE(c->virtio.force_legacy);
    CHECK(has(error_of({"-kernel", "k", "-global", "virtio-mmio.force-legacy=maybe"}), "true or false"));
    CHECK(has(error_of({"-kernel", "k", "-global", "virtio-blk-device.num-queues=2"}), "unsupported global"));
    CHECK(has(error_of({"-kernel", "k", "-global", "nonsense"}), "DRIVER.PROPERTY=VALUE"));
}
