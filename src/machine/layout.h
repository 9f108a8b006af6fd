// The microvm board's physical memory map and I/O port map (QEMU's hw/i386/microvm.c with
// acpi=off), as named constants. Everything board-level that has an address takes it from here.
#pragma once

#include <cstdint>

namespace m86::machine::layout {

// ---- RAM -----------------------------------------------------------------------------------------
constexpr uint64_t kLowRamMax = 3ull << 30;   // RAM from 0 up to 3 GiB ...
constexpr uint64_t kHighRamBase = 4ull << 30; // ... and the rest continues at 4 GiB
constexpr uint64_t kBaseMemEnd = 0x9fc00;     // end of conventional memory below the EBDA / MP table
constexpr uint64_t kBiosAreaBase = 0xf0000;   // reserved BIOS area up to 1 MiB
constexpr uint64_t kHighMemBase = 0x100000;   // 1 MiB

// ---- firmware (qboot) ----------------------------------------------------------------------------
constexpr uint64_t kFirmwareTop = 4ull << 30;  // the image ends at 4 GiB, aliased to end at 1 MiB

// ---- MMIO ----------------------------------------------------------------------------------------
constexpr uint64_t kVirtioMmioBase = 0xfeb00000;  // 8 transports, 512 bytes apart
constexpr uint64_t kVirtioMmioSize = 0x200;
constexpr unsigned kVirtioMmioCount = 8;
constexpr unsigned kVirtioMmioFirstIrq = 5;        // transport i uses IRQ 5 + i (IOAPIC pins 5..12)
constexpr uint64_t kIoapicBase = 0xfec00000;
constexpr uint64_t kIoapicSize = 0x1000;
constexpr unsigned kIoapicPins = 24;
constexpr uint64_t kLapicBase = 0xfee00000;
constexpr uint64_t kLapicSize = 0x1000;

// ---- I/O ports -----------------------------------------------------------------------------------
constexpr uint16_t kPicMaster = 0x20, kPicSlave = 0xa0, kPicElcr = 0x4d0;
constexpr uint16_t kPit = 0x40;
constexpr uint16_t kPort61 = 0x61;  // NMI status / speaker control (PIT channel 2 gate and output)
constexpr uint16_t kRtc = 0x70;
constexpr uint16_t kCom1 = 0x3f8;
constexpr unsigned kCom1Irq = 4;
constexpr uint16_t kFwCfgSelector = 0x510, kFwCfgData = 0x511, kFwCfgDma = 0x514;
constexpr unsigned kRtcIrq = 8;

// ---- direct-boot placement (our own choice; nothing guest-visible depends on it) -----------------
constexpr uint64_t kBootGdt = 0x500;          // GDT for the 64-bit / 32-bit entry
constexpr uint64_t kBootPageTables = 0x9000;  // PML4, PDPT, PDs identity-mapping the first 4 GiB
constexpr uint64_t kZeroPage = 0x7000;        // struct boot_params
constexpr uint64_t kCmdline = 0x20000;        // kernel command line (up to cmdline_size)
constexpr uint64_t kCmdlineMax = 0x10000;
constexpr uint64_t kMpTable = 0x9fc00;        // MP floating pointer + table, where qboot puts them
constexpr uint64_t kPvhStartInfo = 0x6000;    // hvm_start_info + memory map for PVH boots
constexpr uint64_t kKernelDefault = 0x100000; // protected-mode kernel load address

}  // namespace m86::machine::layout
