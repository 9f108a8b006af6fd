// The command line, in QEMU's spellings, so that someone running QEMU's microvm can swap the
// binary: `micro86 -M microvm,pit=off -m 512M -kernel bzImage -append console=ttyS0 -nographic`.
//
// parse_options() turns argv into a VmConfig or one clear error message naming the offending
// option. It does no I/O (files are opened by the board), so it is fully unit-testable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "machine/device_options.h"

namespace m86::machine {

enum class OnOffAuto { On, Off, Auto };

// A character device backend: -serial stdio | file:PATH | none | chardev:ID, -chardev ...
struct CharDevSpec {
    enum class Kind { None, Stdio, File, Null } kind = Kind::None;
    std::string id;    // for -chardev
    std::string path;  // Kind::File
    bool append = false;  // Kind::File, -chardev file,append=on: append instead of truncating
};

// -device isa-debug-exit[,iobase=N][,iosize=N] (QEMU's defaults: 0x501, 2).
struct DebugExitSpec {
    uint16_t iobase = 0x501;
    uint16_t iosize = 2;
};

// One -device DRIVER[,prop=value...], in command-line order.
struct DeviceSpec {
    std::string driver;
    std::vector<std::pair<std::string, std::string>> props;
};

struct VmConfig {
    // -M microvm,...
    OnOffAuto pit = OnOffAuto::Auto, pic = OnOffAuto::Auto, rtc = OnOffAuto::Auto;
    bool isa_serial = true;
    bool option_roms = true;  // x-option-roms
    bool auto_kernel_cmdline = true;
    uint64_t ram_size = 128ull << 20;  // QEMU's default -m
    unsigned cpus = 1;
    unsigned max_cpus = 0;  // -smp maxcpus=N (0: the same as cpus)
    std::string kernel, initrd, append, bios;
    // Firmware: -bios PATH|NAME (a NAME is also looked up in the data directories, as QEMU does),
    // -L DIR adds a data directory searched before the built-in ones. --direct-boot (micro86's own
    // option) loads -kernel straight into RAM instead of running firmware.
    std::vector<std::string> data_dirs;
    bool direct_boot = false;
    bool jit = true;  // --no-jit: interpret every block
    bool stats = false;  // --stats: figures on stderr at exit
    uint32_t jit_check = 0;  // --jit-check[=N]: the lockstep checker (cpu.h, jit_check.cpp); N, or 0: off
    std::vector<DeviceSpec> devices;         // every -device, in order
    std::vector<DebugExitSpec> debug_exits;  // the isa-debug-exit ones among them
    VirtioConfig virtio;                     // -drive, -netdev, -global, virtio -device (device_options.h)
    bool no_reboot = false;
    bool nodefaults = false;
    bool nographic = false;
    std::vector<CharDevSpec> chardevs;   // -chardev
    std::vector<CharDevSpec> serials;    // -serial, in order (the first is COM1)
    // Time: realtime (default) or deterministic (-icount shift=N): virtual ns = instructions << N.
    bool deterministic = false;
    unsigned icount_shift = 0;
    std::vector<std::string> notes;  // things to tell the user once (e.g. -enable-kvm is ignored)
    bool help = false, version = false;
};

// Parse arguments (argv without the program name). On error returns nullopt and sets `error` to a
// one-line message that names the option.
std::optional<VmConfig> parse_options(const std::vector<std::string>& args, std::string& error);

// "512M", "1G", "2048" (MiB when no suffix, as QEMU), "1.5G". Returns false if malformed.
bool parse_size(const std::string& s, uint64_t& bytes);

extern const char* const kVmUsage;

}  // namespace m86::machine
