// Firmware boot: finding the firmware image, and the fw_cfg items QEMU's microvm offers it.
//
//   find_data_file()      a firmware or option ROM file: the name as a path if it exists, else in
//                         the data directories (-L dirs first, then where distributions install
//                         QEMU's: /usr/share/qemu, ...), as QEMU's qemu_find_file does
//   check_firmware()      the image rules of QEMU's x86_bios_rom_init: a non-empty multiple of 64 KiB
//   microvm_fw_cfg()      the board items of hw/i386/microvm.c (microvm_memory_init) and of the
//                         fw_cfg core (hw/nvram/fw_cfg.c): CPU counts, RAM size, IRQ0 override,
//                         the e820 table etc/e820 (RAM below 4 GiB from 0, RAM above 4 GiB),
//                         NOGRAPHIC, BOOT_MENU, etc/boot-fail-wait, bios-geometry and bootorder
//   linux_fw_cfg()        a bzImage split as QEMU's x86_load_linux splits it for the firmware: the
//                         real-mode setup (with the setup header patched: loader type, heap,
//                         command line and initrd addresses) and the protected-mode kernel, the
//                         command line and the initrd, each with its load address and size
//   pvh_fw_cfg()          the same for an ELF vmlinux with a PVH note (QEMU's load_elfboot): entry,
//                         address range, the first 8 KiB as "setup" (qboot recognises the ELF magic
//                         there and takes its PVH path); QEMU loads the ELF segments into memory
//                         itself, so the caller does too (load_elf_segments)
//   add_option_rom()      an option ROM as QEMU's rom_add_option publishes it with
//                         x-option-roms=on: file genroms/NAME and a bootorder entry
//   microvm_fdt()         etc/fdt, the device tree QEMU's microvm-dt.c builds for firmware
//
// Values that QEMU computes the same way whatever the guest, and that tests/e2e/fw_cfg_vs_qemu.py
// compares item by item against QEMU 7.2 running the same command line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "machine/boot/linux.h"
#include "machine/guest_ram.h"

namespace m86::dev {
class FwCfg;
}

namespace m86::machine::boot {

constexpr const char* kQbootName = "qboot.rom";  // QEMU's firmware for microvm with acpi=off
constexpr uint64_t kFirmwareAlign = 64 * 1024;   // QEMU requires a multiple of 64 KiB
constexpr uint64_t kFirmwareMax = 16ull << 20;   // below 4 GiB, clear of the IOAPIC/LAPIC pages
constexpr uint64_t kIsaBiosMax = 128 * 1024;     // the part aliased to end at 1 MiB

// The built-in data directories, in search order (MICRO86_DATA_DIRS=dir:dir replaces them).
std::vector<std::string> default_data_dirs();
// Find `name`: if it contains a '/' or exists as given, that path (when readable); otherwise the
// first data directory (extra_dirs first) holding it. Returns "" when not found.
std::string find_data_file(const std::string& name, const std::vector<std::string>& extra_dirs);

bool check_firmware(const std::vector<uint8_t>& image, std::string& error);

struct MicrovmFwCfgInfo {
    unsigned cpus = 1, max_cpus = 1;
    uint64_t ram_size = 0;        // all guest RAM
    uint64_t below_4g = 0, above_4g = 0;
    bool nographic = false;
};
void microvm_fw_cfg(dev::FwCfg& fw, const MicrovmFwCfgInfo& info);
// The etc/e820 contents: packed { u64 address, u64 length, u32 type } entries.
std::vector<uint8_t> microvm_e820_file(uint64_t below_4g, uint64_t above_4g);

// x86_load_linux for a bzImage. `below_4g` bounds the initrd placement. Fails (with QEMU's
// reasons) on an initrd too large or a malformed header or vga= parameter.
bool linux_fw_cfg(dev::FwCfg& fw, const std::vector<uint8_t>& file, const std::string& cmdline,
                  const std::vector<uint8_t>& initrd, uint64_t below_4g, std::string& error);
bool pvh_fw_cfg(dev::FwCfg& fw, const KernelImage& k, const std::string& cmdline, const std::vector<uint8_t>& initrd,
                uint64_t below_4g, std::string& error);

// The option ROM QEMU adds for each kind of kernel (loaded from the data directories).
constexpr const char* kLinuxbootDma = "linuxboot_dma.bin";
constexpr const char* kMultibootDma = "multiboot_dma.bin";
constexpr const char* kPvhRom = "pvh.bin";
// QEMU loads a PVH kernel's segments into memory itself (as ROM blobs copied at reset).
bool load_elf_segments(const KernelImage& k, GuestRam& ram, std::string& error);
void add_option_rom(dev::FwCfg& fw, const std::string& name, std::vector<uint8_t> data);

// Devices the device tree lists (microvm-dt.c): the populated virtio-mmio transports by index,
// the ISA serial port and the RTC when present.
struct FdtDevices {
    std::vector<unsigned> virtio_slots;
    bool serial = false, rtc = false;
};
std::vector<uint8_t> microvm_fdt(const FdtDevices& d);

}  // namespace m86::machine::boot
