// Direct kernel boot: loaders (parse an image file) and configurators (build what the kernel
// expects to find in memory and in the CPU at its entry point).
//
//   parse_kernel()      bzImage (Linux boot protocol, Documentation/arch/x86/boot.rst) or an ELF
//                       vmlinux carrying the PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)
//   load_linux()        places kernel, initrd and command line in guest RAM, writes the zero page
//                       (bzImage, 64-bit entry) or hvm_start_info (PVH, 32-bit entry), the page
//                       tables and GDT the entry needs, and sets the boot CPU's registers
//   write_mptable()     an Intel MP table as qboot builds one, so a kernel without ACPI finds the
//                       IOAPIC, the interrupt routing and every CPU
//
// Every failure is a clear message in `error`; nothing here aborts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/state.h"
#include "machine/guest_ram.h"

namespace m86::machine::boot {

// One e820 entry (packed 20-byte layout in the zero page and in fw_cfg's etc/e820).
struct E820Entry {
    uint64_t addr, size;
    uint32_t type;
};
constexpr uint32_t kE820Ram = 1, kE820Reserved = 2;

// The memory map the guest sees: RAM below 640K up to the MP-table area, the BIOS area reserved,
// RAM from 1 MiB to the top of low RAM, and RAM above 4 GiB.
std::vector<E820Entry> microvm_e820(const GuestRam& ram);

enum class KernelFormat { BzImage, PvhElf };

struct KernelImage {
    KernelFormat format = KernelFormat::BzImage;
    std::vector<uint8_t> file;
    // bzImage
    unsigned setup_sects = 0;
    uint16_t protocol = 0;
    uint8_t loadflags = 0;
    uint16_t xloadflags = 0;
    uint32_t initrd_addr_max = 0x37ffffff;
    uint32_t cmdline_size = 255;
    uint32_t init_size = 0;
    uint32_t kernel_alignment = 0x200000;
    bool relocatable = false;
    // PVH ELF
    uint32_t pvh_entry = 0;
    struct Segment {
        uint64_t paddr, file_offset, file_size, mem_size;
    };
    std::vector<Segment> segments;
};

// A bzImage's header against the file's size, as every boot path checks it (direct boot and the
// firmware's fw_cfg items alike): the real-mode setup ((setup_sects + 1) * 512 bytes) and the
// protected-mode kernel (syssize 16-byte paragraphs) must both be in the file. A truncated kernel
// is an error at start, not a reboot loop in the guest.
bool check_bzimage_size(const std::vector<uint8_t>& file, std::string& error);

// Parse `file` (the whole kernel image). Returns false with a message if it is not a kernel micro86
// can boot directly.
bool parse_kernel(std::vector<uint8_t> file, KernelImage& out, std::string& error);

struct BootConfig {
    std::string cmdline;
    std::vector<uint8_t> initrd;  // empty: no initrd
    unsigned cpus = 1;
};

// Load the kernel and set `cpu` (the boot CPU's state) for its entry point.
bool load_linux(const KernelImage& k, const BootConfig& cfg, GuestRam& ram, cpu::CpuState& cpu,
                std::string& error);

// The MP table at layout::kMpTable (floating pointer + configuration table).
void write_mptable(GuestRam& ram, unsigned cpus);

// Write the GDT, identity page tables (first 4 GiB, 2 MiB pages) and set long-mode state in `cpu`
// with CS = 0x10 (64-bit code) and DS/ES/SS = 0x18 (Linux's __BOOT_CS/__BOOT_DS).
void enter_long_mode(GuestRam& ram, cpu::CpuState& cpu);
// Flat 32-bit protected mode, paging off, CS = 0x10 (32-bit code), data 0x18.
void enter_protected_mode(GuestRam& ram, cpu::CpuState& cpu);

}  // namespace m86::machine::boot
