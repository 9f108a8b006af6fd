// Multiboot v1 loader and configurator (see multiboot.h). The buffer layout and the checks follow
// what QEMU's load_multiboot does, so a kernel sees the same addresses under micro86 as under QEMU:
//
//   load_addr: kernel image (+ zeroed bss), rounded up to a page
//              module list (16 bytes per module), command lines, boot loader name, rounded up
//              module 1 (page aligned), module 2, ...
#include "machine/boot/multiboot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "devices/fw_cfg.h"
#include "machine/layout.h"

namespace m86::machine::boot {

namespace {

constexpr uint32_t kPage = 4096;

template <class T> T get(const std::vector<uint8_t>& b, size_t off) {
    T v{};
    if (off + sizeof(T) <= b.size()) std::memcpy(&v, b.data() + off, sizeof(T));
    return v;
}
template <class T> void put(std::vector<uint8_t>& b, size_t off, T v) { std::memcpy(b.data() + off, &v, sizeof(T)); }
uint64_t page_align(uint64_t v) { return (v + kPage - 1) & ~uint64_t(kPage - 1); }

// A 32-bit x86 ELF: the image spanning the PT_LOAD segments' physical addresses, as QEMU's
// load_elf() places them (entry adjusted from virtual to physical when the executable segment
// that holds it is linked at a different virtual address).
bool load_elf32(const std::vector<uint8_t>& f, uint32_t& low, std::vector<uint8_t>& image, uint32_t& entry,
                uint64_t ram_end, std::string& error) {
    if (f.size() < 52 || std::memcmp(f.data(), "\x7f" "ELF", 4) != 0) {
        error = "multiboot header without the address fields (flag 16), and not an ELF file";
        return false;
    }
    if (f[4] == 2 && get<uint16_t>(f, 18) == 62) {
        error = "Cannot load x86-64 image, give a 32bit one (a multiboot ELF kernel must be 32-bit)";
        return false;
    }
    if (f[4] != 1 || f[5] != 1 || get<uint16_t>(f, 18) != 3) {
        error = "multiboot ELF kernel is not a little-endian 32-bit x86 (EM_386) executable";
        return false;
    }
    uint32_t phoff = get<uint32_t>(f, 28), e_entry = get<uint32_t>(f, 24);
    unsigned phentsize = get<uint16_t>(f, 42), phnum = get<uint16_t>(f, 44);
    if (phentsize < 32 || phoff > f.size() || uint64_t(phnum) * phentsize > f.size() - phoff) {
        error = "ELF program headers are out of the file";
        return false;
    }
    struct Seg {
        uint32_t paddr, off, filesz, memsz;
    };
    std::vector<Seg> segs;
    uint64_t lo = ~0ull, hi = 0;
    entry = e_entry;
    for (unsigned i = 0; i < phnum; i++) {
        size_t ph = phoff + size_t(i) * phentsize;
        if (get<uint32_t>(f, ph) != 1) continue;  // PT_LOAD
        Seg s{get<uint32_t>(f, ph + 12), get<uint32_t>(f, ph + 4), get<uint32_t>(f, ph + 16), get<uint32_t>(f, ph + 20)};
        uint32_t vaddr = get<uint32_t>(f, ph + 8), flags = get<uint32_t>(f, ph + 24);
        if (s.off > f.size() || s.filesz > f.size() - s.off || s.memsz < s.filesz) {
            error = fmt::format("ELF segment {} is malformed (outside the file, or memsz < filesz)", i);
            return false;
        }
        if (vaddr != s.paddr && e_entry >= vaddr && e_entry - vaddr < s.filesz && (flags & 1))  // PF_X
            entry = e_entry - vaddr + s.paddr;
        lo = std::min<uint64_t>(lo, s.paddr);
        hi = std::max<uint64_t>(hi, uint64_t(s.paddr) + s.memsz);
        segs.push_back(s);
    }
    if (segs.empty()) {
        error = "multiboot ELF kernel has no loadable segments";
        return false;
    }
    if (hi > (1ull << 32)) {
        error = "multiboot ELF kernel does not fit below 4 GiB";
        return false;
    }
    if (hi - lo > (1ull << 31)) {
        error = "multiboot ELF kernel spans more than 2 GiB";
        return false;
    }
    if (hi > ram_end) {  // checked before the image is allocated
        error = fmt::format("multiboot ELF kernel spans 0x{:x}..0x{:x}, beyond the end of guest RAM at 0x{:x} "
                            "(segments too far apart or too large; or give the guest more memory with -m)",
                            lo, hi, ram_end);
        return false;
    }
    low = uint32_t(lo);
    image.assign(hi - lo, 0);
    for (const auto& s : segs) std::memcpy(image.data() + (s.paddr - lo), f.data() + s.off, s.filesz);
    return true;
}

// The a.out kludge: the header's address fields say which part of the file goes where.
bool load_aout(const std::vector<uint8_t>& f, const MultibootHeader& h, std::vector<uint8_t>& image, uint64_t ram_end,
               std::string& error) {
    if (h.header_addr < h.load_addr) {
        error = "multiboot header: header_addr is below load_addr";
        return false;
    }
    if (h.header_addr - h.load_addr > h.offset) {
        error = "multiboot header: header_addr - load_addr is larger than the header's offset in the file";
        return false;
    }
    uint32_t text_offset = h.offset - (h.header_addr - h.load_addr);
    uint64_t load_size;
    if (h.load_end_addr) {
        if (h.load_end_addr < h.load_addr) {
            error = "multiboot header: load_end_addr is below load_addr";
            return false;
        }
        load_size = h.load_end_addr - h.load_addr;
    } else {
        load_size = f.size() - text_offset;
    }
    if (load_size > uint64_t(UINT32_MAX) - h.load_addr) {
        error = "multiboot kernel does not fit in the 32-bit address space";
        return false;
    }
    if (text_offset + load_size > f.size()) {
        error = fmt::format("multiboot kernel: the header asks for {} bytes from offset {}, but the file has {}",
                            load_size, text_offset, f.size());
        return false;
    }
    uint64_t kernel_size = load_size;
    if (h.bss_end_addr) {
        if (h.bss_end_addr < h.load_addr + load_size) {
            error = "multiboot header: bss_end_addr is below the end of the loaded image";
            return false;
        }
        kernel_size = h.bss_end_addr - h.load_addr;
    }
    if (uint64_t(h.load_addr) + kernel_size > ram_end) {  // checked before the image is allocated
        error = fmt::format("multiboot kernel needs 0x{:x}..0x{:x} (load_addr to {}), beyond the end of guest RAM "
                            "at 0x{:x}",
                            h.load_addr, uint64_t(h.load_addr) + kernel_size,
                            h.bss_end_addr ? "bss_end_addr" : "the end of the loaded image", ram_end);
        return false;
    }
    image.assign(kernel_size, 0);
    std::memcpy(image.data(), f.data() + text_offset, load_size);
    return true;
}

}  // namespace

bool find_multiboot_header(const std::vector<uint8_t>& f, MultibootHeader& out) {
    size_t limit = std::min<size_t>(f.size(), mb::kSearchBytes);
    for (size_t i = 0; i + 12 <= limit && i < mb::kSearchBytes - 48; i += 4) {
        if (get<uint32_t>(f, i) != mb::kHeaderMagic) continue;
        uint32_t flags = get<uint32_t>(f, i + 4);
        if (uint32_t(mb::kHeaderMagic + flags + get<uint32_t>(f, i + 8)) != 0) continue;
        out = MultibootHeader{};
        out.offset = uint32_t(i);
        out.flags = flags;
        out.header_addr = get<uint32_t>(f, i + 12);
        out.load_addr = get<uint32_t>(f, i + 16);
        out.load_end_addr = get<uint32_t>(f, i + 20);
        out.bss_end_addr = get<uint32_t>(f, i + 24);
        out.entry_addr = get<uint32_t>(f, i + 28);
        return true;
    }
    return false;
}

std::vector<std::string> split_module_list(const std::string& list) {
    std::vector<std::string> out;
    std::string cur;
    for (size_t i = 0; i < list.size(); i++) {
        if (list[i] == ',') {
            if (i + 1 < list.size() && list[i + 1] == ',') {
                cur += ',';
                i++;
                continue;
            }
            out.push_back(cur);
            cur.clear();
            continue;
        }
        cur += list[i];
    }
    out.push_back(cur);
    return out;
}

bool build_multiboot(const std::vector<uint8_t>& file, const std::string& kernel_name, const std::string& cmdline,
                     const std::string& modules, const FileReader& read, MultibootImage& out, std::string& error,
                     uint64_t ram_end) {
    out = MultibootImage{};
    MultibootHeader h;
    if (!find_multiboot_header(file, h)) {
        error = "no multiboot header (magic 0x1BADB002 with a valid checksum) in the first 8 KiB";
        return false;
    }
    if (h.flags & mb::kVideoMode) out.notes.push_back("the multiboot kernel asks for a video mode; micro86 has no display");
    std::vector<uint8_t> image;
    if (h.flags & mb::kAoutKludge) {
        if (!load_aout(file, h, image, ram_end, error)) return false;
        out.load_addr = h.load_addr;
        out.entry = h.entry_addr;
    } else if (!load_elf32(file, out.load_addr, image, out.entry, ram_end, error)) {
        return false;
    }

    // Room for the module list and the strings after the kernel (as QEMU sizes it: the whole
    // -initrd string counts once for all module command lines).
    std::vector<std::string> mods;
    if (!modules.empty()) mods = split_module_list(modules);
    uint64_t mbinfo = page_align(image.size());
    uint64_t cmdline_len = kernel_name.size() + 1 + cmdline.size() + 1;
    if (!modules.empty()) cmdline_len += modules.size() + 1;
    uint64_t cmdlines = mbinfo + mods.size() * mb::kModSize;
    uint64_t loader = cmdlines + cmdline_len;
    uint64_t size = page_align(loader + std::strlen(mb::kLoaderName) + 1);
    std::vector<uint8_t>& b = out.buf;
    b = std::move(image);
    b.resize(size, 0);

    auto add_string = [&](uint64_t& at, const std::string& s) {
        uint32_t addr = uint32_t(out.load_addr + at);
        std::memcpy(b.data() + at, s.c_str(), s.size() + 1);
        at += s.size() + 1;
        return addr;
    };
    for (size_t i = 0; i < mods.size(); i++) {
        uint32_t str = add_string(cmdlines, mods[i]);
        std::string path = mods[i].substr(0, mods[i].find(' '));
        std::vector<uint8_t> data;
        std::string e;
        if (!read(path, data, e)) {
            error = fmt::format("multiboot module '{}': {}", path, e);
            return false;
        }
        uint64_t start = b.size();
        if (out.load_addr + start + data.size() > std::min<uint64_t>(ram_end, 1ull << 32)) {
            error = fmt::format("multiboot module '{}' does not fit in guest RAM (below 0x{:x})", path,
                                std::min<uint64_t>(ram_end, 1ull << 32));
            return false;
        }
        b.resize(page_align(start + data.size()), 0);
        if (!data.empty()) std::memcpy(b.data() + start, data.data(), data.size());
        uint64_t m = mbinfo + i * mb::kModSize;
        put<uint32_t>(b, m + 0, uint32_t(out.load_addr + start));
        put<uint32_t>(b, m + 4, uint32_t(out.load_addr + start + data.size()));
        put<uint32_t>(b, m + 8, str);
    }
    uint32_t kcmd = add_string(cmdlines, kernel_name + " " + cmdline);
    uint32_t lname = add_string(loader, mb::kLoaderName);
    if (out.load_addr + uint64_t(b.size()) > (1ull << 32)) {
        error = "the multiboot kernel and its modules do not fit below 4 GiB";
        return false;
    }

    out.info.assign(mb::kInfoSize, 0);
    put<uint32_t>(out.info, mb::kInfoFlags, mb::kInfoMemory | mb::kInfoBootDevice | mb::kInfoCmdline | mb::kInfoMods |
                                                mb::kInfoMmap | mb::kInfoLoaderName);
    put<uint32_t>(out.info, mb::kInfoBootDev, mb::kBootDevice);
    put<uint32_t>(out.info, mb::kInfoCmdlinePtr, kcmd);
    put<uint32_t>(out.info, mb::kInfoModsCount, uint32_t(mods.size()));
    put<uint32_t>(out.info, mb::kInfoModsAddr, uint32_t(out.load_addr + mbinfo));
    put<uint32_t>(out.info, mb::kInfoMmapAddr, mb::kMmapAddr);
    put<uint32_t>(out.info, mb::kInfoLoaderNamePtr, lname);
    return true;
}

bool load_multiboot(const MultibootImage& m, const std::vector<E820Entry>& map, GuestRam& ram, cpu::CpuState& s,
                    std::string& error) {
    if (!ram.ptr(m.load_addr, m.buf.size())) {
        error = fmt::format("the multiboot kernel and modules (0x{:x}..0x{:x}) are not all in guest RAM; "
                            "give the guest more memory (-m)",
                            m.load_addr, m.load_addr + m.buf.size());
        return false;
    }
    // The kernel must leave room for what the boot writes below it: the GDT of the entry state
    // and the memory map + information structure.
    uint64_t buf_end = m.load_addr + m.buf.size();
    for (auto [lo, hi] : {std::pair<uint64_t, uint64_t>{layout::kBootGdt, layout::kBootGdt + 0x20},
                          {mb::kMmapAddr, mb::kMbiAddr + mb::kInfoSize}})
        if (m.load_addr < hi && buf_end > lo) {
            error = fmt::format("the multiboot kernel (0x{:x}..0x{:x}) overlaps the boot data at 0x{:x}..0x{:x}",
                                m.load_addr, buf_end, lo, hi);
            return false;
        }
    ram.write(m.load_addr, m.buf.data(), m.buf.size());

    std::vector<uint8_t> info = m.info;
    // Memory sizes as qboot reports them: 639 KiB of low memory (the last KiB holds the MP table),
    // and the RAM from 1 MiB up to the end of low RAM.
    uint64_t low = ram.low_size();
    put<uint32_t>(info, mb::kInfoMemLower, 639);
    put<uint32_t>(info, mb::kInfoMemUpper, uint32_t(low > (1u << 20) ? (low - (1u << 20)) >> 10 : 0));
    size_t n = std::min<size_t>(map.size(), (mb::kMbiAddr - mb::kMmapAddr) / mb::kMmapEntrySize);
    std::vector<uint8_t> mmap(n * mb::kMmapEntrySize, 0);
    for (size_t i = 0; i < n; i++) {
        size_t o = i * mb::kMmapEntrySize;
        put<uint32_t>(mmap, o, mb::kMmapEntrySize - 4);
        put<uint64_t>(mmap, o + 4, map[i].addr);
        put<uint64_t>(mmap, o + 12, map[i].size);
        put<uint32_t>(mmap, o + 20, map[i].type);
    }
    put<uint32_t>(info, mb::kInfoMmapLength, uint32_t(mmap.size()));
    ram.write(mb::kMmapAddr, mmap.data(), mmap.size());
    ram.write(mb::kMbiAddr, info.data(), info.size());

    // The machine state the specification promises (3.2): flat 32-bit protected mode, paging off,
    // interrupts off, EAX = magic, EBX = the info structure.
    enter_protected_mode(ram, s);
    s.gpr[cpu::RAX] = mb::kBootMagic;
    s.gpr[cpu::RBX] = mb::kMbiAddr;
    s.rip = m.entry;
    return true;
}

void multiboot_fw_cfg(const MultibootImage& m, dev::FwCfg& fw) {
    using namespace dev::fwcfg;
    fw.set_u32(kKernelEntry, m.entry);
    fw.set_u32(kKernelAddr, m.load_addr);
    fw.set_u32(kKernelSize, uint32_t(m.buf.size()));
    fw.set(kKernelData, m.buf);
    fw.set_u32(kInitrdAddr, mb::kMbiAddr);
    fw.set_u32(kInitrdSize, uint32_t(m.info.size()));
    fw.set(kInitrdData, m.info);
}

}  // namespace m86::machine::boot
