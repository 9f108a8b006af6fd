// Multiboot (version 1) kernels, loaded the way QEMU's hw/i386/multiboot.c loads them (the
// Multiboot Specification 0.6.96, "3.1 OS image format" and "3.3 Boot information format").
//
//   find_multiboot_header()  the header: magic 0x1BADB002 at a 4-byte aligned offset in the first
//                            8 KiB, with magic + flags + checksum == 0
//   build_multiboot()        the loader: the kernel image (a.out kludge: the header's address
//                            fields; otherwise a 32-bit ELF's PT_LOAD segments by physical
//                            address), the modules from -initrd ("file args,file args", ",," for a
//                            literal comma; page-aligned after the kernel, each with its whole
//                            string as its command line), the command lines ("KERNEL CMDLINE", as
//                            QEMU passes the kernel's file name first), the boot loader name and
//                            the module list, all in one buffer that starts at the load address;
//                            plus the 88-byte multiboot info structure for kMbiAddr
//   load_multiboot()         the configurator for direct boot: what QEMU's multiboot option ROM
//                            (or qboot) does with that at boot time: copies buffer and info into
//                            RAM, fills mem_lower/mem_upper and the memory map (at kMmapAddr), and
//                            sets the CPU for the entry: EAX = 0x2BADB002, EBX = info, flat 32-bit
//                            protected mode, paging and interrupts off
//   multiboot_fw_cfg()       the fw_cfg items QEMU hands to the firmware for the same kernel:
//                            kernel entry/address/size/data = the buffer, "initrd" = the info
//                            structure at kMbiAddr (qboot's boot_multiboot_from_fw_cfg reads it
//                            there and fills in memory sizes and the map from its e820 table)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cpu/state.h"
#include "machine/boot/linux.h"
#include "machine/guest_ram.h"

namespace m86::dev {
class FwCfg;
}

namespace m86::machine::boot {

namespace mb {
constexpr uint32_t kHeaderMagic = 0x1BADB002;
constexpr uint32_t kBootMagic = 0x2BADB002;  // EAX at the kernel's entry
constexpr unsigned kSearchBytes = 8192;       // the header lies within the first 8 KiB
// Header flags (3.1.2).
constexpr uint32_t kPageAlign = 1u << 0, kMemoryInfo = 1u << 1, kVideoMode = 1u << 2, kAoutKludge = 1u << 16;
// Info flags (3.3).
constexpr uint32_t kInfoMemory = 1u << 0, kInfoBootDevice = 1u << 1, kInfoCmdline = 1u << 2,
                   kInfoMods = 1u << 3, kInfoMmap = 1u << 6, kInfoLoaderName = 1u << 9;
// Info structure offsets.
constexpr unsigned kInfoFlags = 0, kInfoMemLower = 4, kInfoMemUpper = 8, kInfoBootDev = 12,
                   kInfoCmdlinePtr = 16, kInfoModsCount = 20, kInfoModsAddr = 24, kInfoMmapLength = 44,
                   kInfoMmapAddr = 48, kInfoLoaderNamePtr = 64, kInfoSize = 88;
constexpr unsigned kModSize = 16;  // mod_start, mod_end, string, reserved
constexpr unsigned kMmapEntrySize = 24;  // size (= 20, not counting itself), base, length, type
// Where QEMU puts the memory map and the info structure (both below 64 KiB, reachable from real
// mode by the option ROM).
constexpr uint32_t kMmapAddr = 0x9000, kMbiAddr = 0x9500;
constexpr uint32_t kBootDevice = 0x8000ffff;  // "BIOS drive 0x80, no partition", as QEMU
constexpr const char* kLoaderName = "qemu";   // what QEMU reports; kernels may check it
}  // namespace mb

struct MultibootHeader {
    uint32_t offset = 0;  // of the magic in the file
    uint32_t flags = 0;
    // Address fields (valid with kAoutKludge).
    uint32_t header_addr = 0, load_addr = 0, load_end_addr = 0, bss_end_addr = 0, entry_addr = 0;
};

// Returns true if `file` carries a valid multiboot header.
bool find_multiboot_header(const std::vector<uint8_t>& file, MultibootHeader& out);

struct MultibootImage {
    uint32_t entry = 0;
    uint32_t load_addr = 0;                // where `buf` goes
    std::vector<uint8_t> buf;              // kernel, module list, strings, modules (page-aligned size)
    std::vector<uint8_t> info;             // the multiboot info structure (kInfoSize bytes) for kMbiAddr
    std::vector<std::string> notes;        // things to tell the user (e.g. VBE requested)
};

// Reads a module file (the board passes host::read_file; tests pass an in-memory table).
using FileReader = std::function<bool(const std::string& path, std::vector<uint8_t>& out, std::string& error)>;

// The loader. `kernel_name` is the -kernel argument as given (it starts the kernel's command
// line); `modules` is the -initrd argument ("" for none).
// `ram_end` is the end of the guest RAM the image must fit below (the board passes its RAM below
// 4 GiB): every size the header or the program headers claim is checked against it before
// anything is allocated, so a 100-byte file cannot ask for gigabytes.
bool build_multiboot(const std::vector<uint8_t>& file, const std::string& kernel_name, const std::string& cmdline,
                     const std::string& modules, const FileReader& read, MultibootImage& out, std::string& error,
                     uint64_t ram_end = uint64_t(1) << 32);

// Split a -initrd module list the way QEMU's get_opt_value does: ',' separates, ",," is a comma.
std::vector<std::string> split_module_list(const std::string& list);

// Direct boot: place everything in RAM and set `cpu` for the entry. `map` is the memory map the
// kernel gets (the board's e820); mem_lower/mem_upper follow from the RAM below 4 GiB as qboot
// computes them (639 KiB, and the RAM above 1 MiB up to the first hole).
bool load_multiboot(const MultibootImage& mb, const std::vector<E820Entry>& map, GuestRam& ram, cpu::CpuState& cpu,
                    std::string& error);

// The fw_cfg items for firmware boot (what QEMU's load_multiboot adds).
void multiboot_fw_cfg(const MultibootImage& mb, dev::FwCfg& fw);

}  // namespace m86::machine::boot
