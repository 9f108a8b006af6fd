// The virtio part of the command line, in QEMU's spellings and with QEMU's meaning:
//   -drive id=ID,file=PATH,format=raw,if=none[,readonly=on]     + -device virtio-blk-device,drive=ID
//   -netdev user,id=ID[,hostfwd=tcp::HOSTPORT-:GUESTPORT]...    + -device virtio-net-device,netdev=ID[,mac=..]
//   -netdev tap,id=ID[,ifname=NAME],script=no,downscript=no
//   -device virtio-serial-device + -device virtconsole,chardev=ID  (with -chardev stdio,id=ID: hvc0)
//   -device virtio-rng-device
//   -global virtio-mmio.force-legacy=true|false                  (microvm's default: legacy)
//
// Parsing only (no I/O, unit-testable): the result is a VirtioConfig that the board turns into
// transports and host backends (virtio_slots.h). The parser also assigns each virtio device its
// virtio-mmio slot the way QEMU's microvm does: every -device that needs a transport takes, in
// command-line order, the HIGHEST free slot (QEMU's bus lookup finds the most recently created
// transport first), so one disk lands at 0xfeb00e00 / IRQ 12, the next device at 0xfeb00c00 /
// IRQ 11; `bus=virtio-mmio-bus.N` picks slot N explicitly, as in QEMU.
//
// options.cpp calls these from its own option loop: parse_drive / parse_netdev / parse_global for
// those options, parse_virtio_device for a -device whose driver is_virtio_driver(), and
// finish_virtio_config once every option is in (it resolves the drive=/netdev=/chardev= references).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "machine/host_slirp.h"

namespace m86::machine {

// -drive (raw images only; the interface must be if=none, the disk is attached by -device).
struct DriveSpec {
    std::string id;
    std::string file;
    bool readonly = false;
    // Guest discards / write-zeroes with unmap punch holes in the image where the host's file
    // system can (the default; QEMU's default is discard=ignore); discard=ignore|off turns it off.
    bool discard = true;
    bool used = false;     // taken by a -device (a drive can back one device)
};

// -netdev user|tap.
struct NetdevSpec {
    enum class Kind { User, Tap } kind = Kind::User;
    std::string id;
    host::SlirpOptions user;  // Kind::User
    std::string ifname;       // Kind::Tap (empty: the kernel picks tapN)
    bool used = false;
};

// One virtio device on the command line (virtconsole is a port of a virtio-serial-device, not a
// device of its own, so it is folded into that device's entry).
struct VirtioDeviceSpec {
    enum class Kind { Blk, Net, Console, Rng } kind = Kind::Blk;
    unsigned slot = 0;  // virtio-mmio transport index 0..7
    std::string id;     // the -device id= (may be empty)
    // Blk
    std::string drive;
    std::string serial;  // GET_ID string
    // Net
    std::string netdev;  // empty: a NIC with no backend (frames are dropped), as QEMU allows
    std::array<uint8_t, 6> mac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    bool mac_given = false;
    // Console (virtio-serial-device): its virtconsole port, if any
    bool has_port = false;
    std::string chardev;  // the port's -chardev id (empty: no backend)
};

struct VirtioConfig {
    std::vector<DriveSpec> drives;
    std::vector<NetdevSpec> netdevs;
    std::vector<VirtioDeviceSpec> devices;  // in command-line order
    bool force_legacy = true;               // -global virtio-mmio.force-legacy (QEMU microvm default)

    // Slots with a device, and the suffix QEMU's microvm appends to the kernel command line with
    // auto-kernel-cmdline=on: " virtio_mmio.device=512@0x<base>:<irq>" per populated slot, highest
    // slot first (the order QEMU walks its bus).
    std::vector<unsigned> populated_slots() const;
    std::string cmdline_suffix() const;
};

// The -device drivers handled here.
bool is_virtio_driver(const std::string& driver);
// Each returns an empty string on success, else a one-line error naming the option and the item.
std::string parse_drive(const std::string& arg, VirtioConfig& c);
std::string parse_netdev(const std::string& arg, VirtioConfig& c);
// -global DRIVER.PROP=VALUE or -global driver=D,property=P,value=V.
std::string parse_global(const std::string& arg, VirtioConfig& c);
std::string parse_virtio_device(const std::string& driver,
                                const std::vector<std::pair<std::string, std::string>>& props, VirtioConfig& c);
// After all options: checks that every drive=/netdev=/chardev= names something that exists
// (`chardev_ids`: the ids of every -chardev) and that nothing is used twice.
std::string finish_virtio_config(VirtioConfig& c, const std::vector<std::string>& chardev_ids);

}  // namespace m86::machine
