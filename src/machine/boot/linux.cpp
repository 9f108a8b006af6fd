// Direct Linux boot: bzImage (64-bit boot protocol) and PVH ELF loaders, zero page, e820, entry
// state. Field offsets are those of Documentation/arch/x86/boot.rst ("THE REAL-MODE KERNEL HEADER"
// and "THE 64-bit BOOT PROTOCOL") and arch/x86/include/uapi/asm/bootparam.h.
#include "machine/boot/linux.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "machine/layout.h"

namespace m86::machine::boot {

namespace {

// Setup header offsets (within the image file and within boot_params, which embeds it at 0x1f1).
constexpr size_t kSetupSects = 0x1f1, kBootFlag = 0x1fe, kHeaderMagic = 0x202, kVersion = 0x206,
                 kTypeOfLoader = 0x210, kLoadflags = 0x211, kCode32Start = 0x214, kRamdiskImage = 0x218,
                 kRamdiskSize = 0x21c, kHeapEndPtr = 0x224, kCmdLinePtr = 0x228, kInitrdAddrMax = 0x22c,
                 kKernelAlignment = 0x230, kRelocatable = 0x234, kXloadflags = 0x236, kCmdlineSize = 0x238,
                 kInitSize = 0x260, kVidMode = 0x1fa, kSyssize = 0x1f4;
// boot_params offsets outside the setup header.
constexpr size_t kExtRamdiskImage = 0x0c0, kExtRamdiskSize = 0x0c4, kExtCmdLinePtr = 0x0c8,
                 kE820Entries = 0x1e8, kE820Table = 0x2d0, kBootParamsSize = 4096;
constexpr unsigned kE820Max = 128;
constexpr uint8_t kLoadedHigh = 0x01, kCanUseHeap = 0x80;
constexpr uint16_t kXlfKernel64 = 0x01;

// PVH (xen/include/public/arch-x86/hvm/start_info.h, xen/include/public/elfnote.h).
constexpr uint32_t kXenElfnotePhys32Entry = 18;
constexpr uint32_t kHvmStartMagic = 0x336ec578;

template <class T> T get(const std::vector<uint8_t>& b, size_t off) {
    T v{};
    if (off + sizeof(T) <= b.size()) std::memcpy(&v, b.data() + off, sizeof(T));
    return v;
}
template <class T> void put(uint8_t* p, size_t off, T v) { std::memcpy(p + off, &v, sizeof(T)); }

bool parse_bzimage(KernelImage& k, std::string& error) {
    const auto& f = k.file;
    if (get<uint16_t>(f, kBootFlag) != 0xaa55) {
        error = "no boot sector signature (0xAA55 at offset 0x1fe)";
        return false;
    }
    k.protocol = get<uint16_t>(f, kVersion);
    if (k.protocol < 0x206) {
        error = fmt::format("boot protocol {}.{} is too old (micro86 needs 2.06 or later)", k.protocol >> 8,
                            k.protocol & 0xff);
        return false;
    }
    k.setup_sects = f[kSetupSects] ? f[kSetupSects] : 4;
    k.loadflags = f[kLoadflags];
    if (!(k.loadflags & kLoadedHigh)) {
        error = "not a bzImage (zImage kernels that load at 0x10000 are not supported)";
        return false;
    }
    k.xloadflags = k.protocol >= 0x20c ? get<uint16_t>(f, kXloadflags) : 0;
    k.initrd_addr_max = get<uint32_t>(f, kInitrdAddrMax);
    k.cmdline_size = get<uint32_t>(f, kCmdlineSize);
    k.kernel_alignment = get<uint32_t>(f, kKernelAlignment);
    k.relocatable = f[kRelocatable];
    k.init_size = k.protocol >= 0x20a ? get<uint32_t>(f, kInitSize) : 0;
    if (!check_bzimage_size(f, error)) return false;
    if (!(k.xloadflags & kXlfKernel64)) {
        error = "this kernel has no 64-bit entry point (XLF_KERNEL_64); 32-bit kernels are not supported yet";
        return false;
    }
    k.format = KernelFormat::BzImage;
    return true;
}

// ELF: find PT_LOAD segments and the PVH entry note.
bool parse_pvh_elf(KernelImage& k, std::string& error) {
    const auto& f = k.file;
    bool is64 = f[4] == 2;
    if (f[4] != 1 && f[4] != 2) {
        error = "ELF file of unknown class";
        return false;
    }
    if (f[5] != 1 || get<uint16_t>(f, 18) != (is64 ? 62 : 3)) {
        error = "ELF file is not a little-endian x86 executable";
        return false;
    }
    uint64_t phoff = is64 ? get<uint64_t>(f, 32) : get<uint32_t>(f, 28);
    unsigned phentsize = get<uint16_t>(f, is64 ? 54 : 42), phnum = get<uint16_t>(f, is64 ? 56 : 44);
    if (phentsize < (is64 ? 56u : 32u) || phoff > f.size() || uint64_t(phnum) * phentsize > f.size() - phoff) {
        error = "ELF program headers are out of the file";
        return false;
    }
    for (unsigned i = 0; i < phnum; i++) {
        size_t ph = phoff + size_t(i) * phentsize;
        uint32_t type = get<uint32_t>(f, ph);
        uint64_t off = is64 ? get<uint64_t>(f, ph + 8) : get<uint32_t>(f, ph + 4);
        uint64_t paddr = is64 ? get<uint64_t>(f, ph + 24) : get<uint32_t>(f, ph + 12);
        uint64_t filesz = is64 ? get<uint64_t>(f, ph + 32) : get<uint32_t>(f, ph + 16);
        uint64_t memsz = is64 ? get<uint64_t>(f, ph + 40) : get<uint32_t>(f, ph + 20);
        if (off > f.size() || filesz > f.size() - off) {
            error = fmt::format("ELF segment {} lies outside the file", i);
            return false;
        }
        if (type == 1) {  // PT_LOAD
            if (memsz < filesz) {
                error = fmt::format("ELF segment {} has memsz < filesz", i);
                return false;
            }
            k.segments.push_back({paddr, off, filesz, memsz});
        } else if (type == 4) {  // PT_NOTE: namesz, descsz, type, name (4-aligned), desc (4-aligned)
            for (uint64_t n = off; n + 12 <= off + filesz;) {
                uint32_t namesz = get<uint32_t>(f, n), descsz = get<uint32_t>(f, n + 4), ntype = get<uint32_t>(f, n + 8);
                uint64_t name = n + 12, desc = name + ((namesz + 3) & ~3u);
                uint64_t next = desc + ((uint64_t(descsz) + 3) & ~3ull);
                if (next > off + filesz) break;
                if (namesz == 4 && std::memcmp(f.data() + name, "Xen", 4) == 0 && ntype == kXenElfnotePhys32Entry &&
                    descsz >= 4)
                    k.pvh_entry = get<uint32_t>(f, desc);
                n = next;
            }
        }
    }
    if (!k.pvh_entry) {
        error = "ELF kernel without a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): build it with CONFIG_PVH=y";
        return false;
    }
    if (k.segments.empty()) {
        error = "ELF kernel has no loadable segments";
        return false;
    }
    k.format = KernelFormat::PvhElf;
    return true;
}

}  // namespace

std::vector<E820Entry> microvm_e820(const GuestRam& ram) {
    std::vector<E820Entry> m;
    uint64_t low = ram.low_size();
    m.push_back({0, std::min<uint64_t>(low, layout::kBaseMemEnd), kE820Ram});
    m.push_back({layout::kBaseMemEnd, 0xa0000 - layout::kBaseMemEnd, kE820Reserved});
    m.push_back({layout::kBiosAreaBase, layout::kHighMemBase - layout::kBiosAreaBase, kE820Reserved});
    if (low > layout::kHighMemBase) m.push_back({layout::kHighMemBase, low - layout::kHighMemBase, kE820Ram});
    if (ram.high_size()) m.push_back({layout::kHighRamBase, ram.high_size(), kE820Ram});
    return m;
}

bool check_bzimage_size(const std::vector<uint8_t>& f, std::string& error) {
    if (f.size() < 0x264) {
        error = fmt::format("truncated: {} bytes, shorter than the Linux setup header", f.size());
        return false;
    }
    uint16_t protocol = get<uint16_t>(f, kVersion);
    uint64_t setup_bytes = uint64_t((f[kSetupSects] ? f[kSetupSects] : 4) + 1) * 512;
    // syssize is 32 bits from protocol 2.04 on, 16 bits before.
    uint64_t sys_bytes = uint64_t(protocol >= 0x204 ? get<uint32_t>(f, kSyssize) : get<uint16_t>(f, kSyssize)) * 16;
    if (f.size() <= setup_bytes) {
        error = fmt::format("truncated: {} bytes, but the setup code alone is {} bytes", f.size(), setup_bytes);
        return false;
    }
    if (f.size() < setup_bytes + sys_bytes) {
        error = fmt::format("truncated bzImage: {} bytes, but its header says {} bytes of setup and {} of kernel "
                            "({} in all)",
                            f.size(), setup_bytes, sys_bytes, setup_bytes + sys_bytes);
        return false;
    }
    return true;
}

bool parse_kernel(std::vector<uint8_t> file, KernelImage& out, std::string& error) {
    out = KernelImage{};
    out.file = std::move(file);
    const auto& f = out.file;
    if (f.size() >= 0x264 && get<uint32_t>(f, kHeaderMagic) == 0x53726448)  // "HdrS"
        return parse_bzimage(out, error);
    if (f.size() >= 64 && std::memcmp(f.data(), "\x7f" "ELF", 4) == 0) return parse_pvh_elf(out, error);
    error = "not a kernel micro86 can boot directly (expected a bzImage or an ELF vmlinux with a PVH note)";
    return false;
}

void enter_long_mode(GuestRam& ram, cpu::CpuState& s) {
    using namespace cpu;
    // GDT: null, null, 0x10 = 64-bit code, 0x18 = data (Linux's __BOOT_CS / __BOOT_DS).
    const uint64_t gdt[4] = {0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull};
    ram.write(layout::kBootGdt, gdt, sizeof gdt);
    // Identity map of the first 4 GiB with 2 MiB pages: PML4, PDPT, 4 PDs.
    const uint64_t pml4 = layout::kBootPageTables, pdpt = pml4 + 0x1000, pd = pml4 + 0x2000;
    ram.put<uint64_t>(pml4, pdpt | 3);
    for (uint64_t g = 0; g < 4; g++) {
        ram.put<uint64_t>(pdpt + g * 8, (pd + g * 0x1000) | 3);
        for (uint64_t e = 0; e < 512; e++) ram.put<uint64_t>(pd + g * 0x1000 + e * 8, ((g << 30) | (e << 21)) | 0x83);
    }
    s.gdtr = {layout::kBootGdt, sizeof gdt - 1};
    s.idtr = {0, 0};
    s.cr0 = cr0::PE | cr0::ET | cr0::NE | cr0::PG;
    s.cr3 = pml4;
    s.cr4 = cr4::PAE;
    s.efer = efer::LME | efer::LMA;
    for (auto& sr : s.seg) sr = SegReg{0x18, 0, 0xffffffff, 0xc093};
    s.seg[CS] = SegReg{0x10, 0, 0xffffffff, 0xa09b};
    s.rflags = fl::kFixed1;
}

void enter_protected_mode(GuestRam& ram, cpu::CpuState& s) {
    using namespace cpu;
    const uint64_t gdt[4] = {0, 0, 0x00cf9b000000ffffull, 0x00cf93000000ffffull};
    ram.write(layout::kBootGdt, gdt, sizeof gdt);
    s.gdtr = {layout::kBootGdt, sizeof gdt - 1};
    s.idtr = {0, 0};
    s.cr0 = cr0::PE | cr0::ET;
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
    for (auto& sr : s.seg) sr = SegReg{0x18, 0, 0xffffffff, 0xc093};
    s.seg[CS] = SegReg{0x10, 0, 0xffffffff, 0xc09b};
    s.rflags = fl::kFixed1;
}

static bool place_initrd(const KernelImage& k, const BootConfig& cfg, GuestRam& ram, uint64_t kernel_end,
                         uint64_t max_addr, uint64_t* addr, std::string& error) {
    uint64_t top = std::min<uint64_t>(max_addr, ram.low_size() - 1) + 1;
    if (cfg.initrd.size() > top || ((top - cfg.initrd.size()) & ~0xfffull) < kernel_end) {
        error = fmt::format("the initrd ({} bytes) does not fit in guest RAM below 0x{:x} above the kernel; "
                            "give the guest more memory (-m)",
                            cfg.initrd.size(), top);
        return false;
    }
    (void)k;
    *addr = (top - cfg.initrd.size()) & ~0xfffull;
    ram.write(*addr, cfg.initrd.data(), cfg.initrd.size());
    return true;
}

bool load_linux(const KernelImage& k, const BootConfig& cfg, GuestRam& ram, cpu::CpuState& s, std::string& error) {
    if (cfg.cmdline.size() + 1 > layout::kCmdlineMax) {
        error = "kernel command line too long";
        return false;
    }
    ram.write(layout::kCmdline, cfg.cmdline.c_str(), cfg.cmdline.size() + 1);
    write_mptable(ram, cfg.cpus);
    auto e820 = microvm_e820(ram);

    if (k.format == KernelFormat::BzImage) {
        if (k.cmdline_size && cfg.cmdline.size() > k.cmdline_size) {
            error = fmt::format("kernel command line is {} bytes; this kernel accepts at most {}", cfg.cmdline.size(),
                                k.cmdline_size);
            return false;
        }
        size_t setup_bytes = size_t(k.setup_sects + 1) * 512;
        uint64_t kernel_size = k.file.size() - setup_bytes;
        uint64_t load = layout::kKernelDefault;
        uint64_t need = std::max<uint64_t>(kernel_size, k.init_size);
        if (!ram.ptr(load, need)) {
            error = fmt::format("the kernel needs {} MiB of RAM above 1 MiB to decompress; give the guest more (-m)",
                                (need + (1 << 20) - 1) >> 20);
            return false;
        }
        ram.write(load, k.file.data() + setup_bytes, kernel_size);

        uint8_t* bp = ram.ptr(layout::kZeroPage, kBootParamsSize);
        std::memset(bp, 0, kBootParamsSize);
        // Copy the setup header: from 0x1f1 to the end given by the byte at 0x201 (boot.rst).
        size_t hdr_end = std::min<size_t>(0x202 + k.file[0x201], setup_bytes);
        std::memcpy(bp + kSetupSects, k.file.data() + kSetupSects, hdr_end - kSetupSects);
        bp[kTypeOfLoader] = 0xff;  // "undefined" boot loader
        bp[kLoadflags] = uint8_t(k.loadflags | kCanUseHeap);
        put<uint16_t>(bp, kHeapEndPtr, 0xfe00);
        put<uint16_t>(bp, kVidMode, 0xffff);  // NORMAL_VGA
        put<uint32_t>(bp, kCode32Start, uint32_t(load));
        put<uint32_t>(bp, kCmdLinePtr, uint32_t(layout::kCmdline));
        put<uint32_t>(bp, kExtCmdLinePtr, uint32_t(layout::kCmdline >> 32));
        if (!cfg.initrd.empty()) {
            uint64_t addr;
            if (!place_initrd(k, cfg, ram, load + need, k.initrd_addr_max, &addr, error)) return false;
            put<uint32_t>(bp, kRamdiskImage, uint32_t(addr));
            put<uint32_t>(bp, kRamdiskSize, uint32_t(cfg.initrd.size()));
            put<uint32_t>(bp, kExtRamdiskImage, uint32_t(addr >> 32));
            put<uint32_t>(bp, kExtRamdiskSize, uint32_t(uint64_t(cfg.initrd.size()) >> 32));
        }
        unsigned n = unsigned(std::min<size_t>(e820.size(), kE820Max));
        bp[kE820Entries] = uint8_t(n);
        for (unsigned i = 0; i < n; i++) {
            put<uint64_t>(bp, kE820Table + i * 20, e820[i].addr);
            put<uint64_t>(bp, kE820Table + i * 20 + 8, e820[i].size);
            put<uint32_t>(bp, kE820Table + i * 20 + 16, e820[i].type);
        }
        enter_long_mode(ram, s);
        s.gpr[cpu::RSI] = layout::kZeroPage;
        s.rip = load + 0x200;  // the 64-bit entry point (startup_64)
        return true;
    }

    // PVH: load the segments at their physical addresses, then hvm_start_info.
    uint64_t end = 0;
    for (const auto& seg : k.segments) {
        if (!ram.ptr(seg.paddr, seg.mem_size)) {
            error = fmt::format("ELF segment at 0x{:x} ({} bytes) is outside guest RAM", seg.paddr, seg.mem_size);
            return false;
        }
        ram.write(seg.paddr, k.file.data() + seg.file_offset, seg.file_size);
        // Zero the bss, if any: a segment whose file part ends exactly at the top of RAM has no
        // byte after it, and ram.ptr() of that address is null.
        if (seg.mem_size > seg.file_size)
            std::memset(ram.ptr(seg.paddr + seg.file_size, seg.mem_size - seg.file_size), 0, seg.mem_size - seg.file_size);
        end = std::max(end, seg.paddr + seg.mem_size);
    }
    const uint64_t si = layout::kPvhStartInfo, modlist = si + 64, memmap = si + 128;
    uint8_t* p = ram.ptr(si, 0x1000);
    std::memset(p, 0, 0x1000);
    put<uint32_t>(p, 0, kHvmStartMagic);
    put<uint32_t>(p, 4, 1);  // version 1: has the memory map
    put<uint64_t>(p, 24, layout::kCmdline);
    put<uint64_t>(p, 40, memmap);
    put<uint32_t>(p, 48, uint32_t(e820.size()));
    for (size_t i = 0; i < e820.size() && i < 30; i++) {
        put<uint64_t>(p, 128 + i * 24, e820[i].addr);
        put<uint64_t>(p, 128 + i * 24 + 8, e820[i].size);
        put<uint32_t>(p, 128 + i * 24 + 16, e820[i].type);
    }
    if (!cfg.initrd.empty()) {
        uint64_t addr;
        if (!place_initrd(k, cfg, ram, end, 0xffffffff, &addr, error)) return false;
        put<uint32_t>(p, 12, 1);
        put<uint64_t>(p, 16, modlist);
        put<uint64_t>(p, 64, addr);
        put<uint64_t>(p, 72, cfg.initrd.size());
    }
    enter_protected_mode(ram, s);
    s.gpr[cpu::RBX] = si;
    s.rip = k.pvh_entry;
    return true;
}

}  // namespace m86::machine::boot
