// Firmware boot: data-file search, image checks, and the fw_cfg items of QEMU's microvm (see
// firmware.h). Item layouts: QEMU docs/specs/fw_cfg.rst; the setup header: Linux
// Documentation/arch/x86/boot.rst ("THE REAL-MODE KERNEL HEADER"); the device tree: the Devicetree
// Specification v0.4, chapter 5 ("Flattened Devicetree (DTB) Format").
#include "machine/boot/firmware.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "devices/fw_cfg.h"
#include "machine/layout.h"

namespace m86::machine::boot {

using namespace dev::fwcfg;

namespace {

template <class T> void put(std::vector<uint8_t>& b, size_t off, T v) { std::memcpy(b.data() + off, &v, sizeof(T)); }
template <class T> T get(const std::vector<uint8_t>& b, size_t off) {
    T v{};
    if (off + sizeof(T) <= b.size()) std::memcpy(&v, b.data() + off, sizeof(T));
    return v;
}

bool readable_file(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return false;
    std::ifstream f(path, std::ios::binary);
    return f.good();
}

// Setup header offsets (boot.rst).
constexpr size_t kSetupSects = 0x1f1, kVidMode = 0x1fa, kHeaderMagic = 0x202, kVersion = 0x206,
                 kTypeOfLoader = 0x210, kLoadflags = 0x211, kRamdiskImage = 0x218, kRamdiskSize = 0x21c,
                 kHeapEndPtr = 0x224, kCmdLinePtr = 0x228, kInitrdAddrMax = 0x22c, kXloadflags = 0x236;
// Old (protocol < 2.02) command line protocol: magic and offset at 0x20 in the zero page.
constexpr size_t kOldCmdMagic = 0x20, kOldCmdOffset = 0x22;
constexpr uint16_t kOldCmdMagicValue = 0xA33F;
constexpr uint8_t kLoadedHigh = 0x01, kCanUseHeap = 0x80;
constexpr uint16_t kXlfCanBeLoadedAbove4G = 0x02;
constexpr uint8_t kLoaderQemu = 0xB0;  // "B" = QEMU's loader ID, revision 0

// The initrd items and header fields (shared by bzImage and PVH).
bool add_initrd(dev::FwCfg& fw, const std::vector<uint8_t>& initrd, uint32_t initrd_max, uint32_t* addr,
                std::string& error) {
    if (initrd.size() >= initrd_max) {
        error = fmt::format("initrd is too large ({} bytes; at most {} fit below the end of low RAM)", initrd.size(),
                            initrd_max);
        return false;
    }
    *addr = uint32_t((initrd_max - initrd.size()) & ~uint64_t(4095));
    fw.set_u32(kInitrdAddr, *addr);
    fw.set_u32(kInitrdSize, uint32_t(initrd.size()));
    fw.set(kInitrdData, initrd);
    return true;
}

}  // namespace

std::vector<std::string> default_data_dirs() {
    std::vector<std::string> d;
    // MICRO86_DATA_DIRS=dir:dir replaces the built-in list (tests use it to hide installed files).
    if (const char* env = std::getenv("MICRO86_DATA_DIRS"); env) {
        std::string all = env;
        for (size_t at = 0; at <= all.size();) {
            size_t end = all.find(':', at);
            if (end == std::string::npos) end = all.size();
            if (end > at) d.push_back(all.substr(at, end - at));
            at = end + 1;
        }
        return d;
    }
    for (const char* p : {"/usr/share/qemu", "/usr/local/share/qemu", "/usr/share/qboot", "/opt/homebrew/share/qemu",
                          "/usr/local/opt/qemu/share/qemu", "/opt/local/share/qemu", "/usr/pkg/share/qemu"})
        d.push_back(p);
    return d;
}

std::string find_data_file(const std::string& name, const std::vector<std::string>& extra_dirs) {
    if (name.empty()) return "";
    if (name.find('/') != std::string::npos || readable_file(name)) return readable_file(name) ? name : "";
    std::vector<std::string> dirs = extra_dirs;
    for (auto& d : default_data_dirs()) dirs.push_back(d);
    for (const auto& d : dirs) {
        std::string p = d + "/" + name;
        if (readable_file(p)) return p;
    }
    return "";
}

bool check_firmware(const std::vector<uint8_t>& image, std::string& error) {
    if (image.empty() || image.size() % kFirmwareAlign != 0) {
        error = fmt::format("a firmware image must be a non-empty multiple of 64 KiB (this one is {} bytes)",
                            image.size());
        return false;
    }
    if (image.size() > kFirmwareMax) {
        error = fmt::format("firmware images of more than {} MiB are not supported", kFirmwareMax >> 20);
        return false;
    }
    return true;
}

std::vector<uint8_t> microvm_e820_file(uint64_t below_4g, uint64_t above_4g) {
    std::vector<uint8_t> b;
    auto add = [&](uint64_t addr, uint64_t len, uint32_t type) {
        size_t o = b.size();
        b.resize(o + 20);
        put<uint64_t>(b, o, addr);
        put<uint64_t>(b, o + 8, len);
        put<uint32_t>(b, o + 16, type);
    };
    add(0, below_4g, kE820Ram);
    if (above_4g) add(layout::kHighRamBase, above_4g, kE820Ram);
    return b;
}

void microvm_fw_cfg(dev::FwCfg& fw, const MicrovmFwCfgInfo& info) {
    // hw/nvram/fw_cfg.c, fw_cfg_init1 / fw_cfg_reboot / the machine-reset hook.
    fw.set_u16(kNoGraphic, info.nographic ? 1 : 0);
    fw.set_u16(kBootMenu, 0);
    fw.set_file("etc/boot-fail-wait", {0xff, 0xff, 0xff, 0xff});  // reboot-timeout: -1 (never)
    fw.set_file("bootorder", {});
    fw.set_file("bios-geometry", {});
    // hw/i386/microvm.c, microvm_memory_init.
    fw.set_u16(kNbCpus, uint16_t(info.cpus));
    fw.set_u16(kMaxCpus, uint16_t(std::max(info.max_cpus, info.cpus)));
    fw.set_u64(kRamSize, info.ram_size);
    fw.set_u32(kIrq0Override, 1);
    // The reserved-entry table of old BIOSes: a count and 16 entries of 20 bytes, all empty.
    fw.set(kE820Table, std::vector<uint8_t>(4 + 16 * 20, 0));
    fw.set_file("etc/e820", microvm_e820_file(info.below_4g, info.above_4g));
}

bool linux_fw_cfg(dev::FwCfg& fw, const std::vector<uint8_t>& file, const std::string& cmdline,
                  const std::vector<uint8_t>& initrd, uint64_t below_4g, std::string& error) {
    std::vector<uint8_t> header(file.begin(), file.begin() + std::min<size_t>(file.size(), 8192));
    header.resize(8192, 0);
    uint16_t protocol = get<uint32_t>(header, kHeaderMagic) == 0x53726448 ? get<uint16_t>(header, kVersion) : 0;
    // The same size checks as direct boot: the firmware would copy a truncated kernel and loop.
    if (protocol && !check_bzimage_size(file, error)) return false;
    uint32_t real_addr, cmdline_addr, prot_addr;
    uint32_t cmdline_size = uint32_t((cmdline.size() + 16) & ~size_t(15));
    if (protocol < 0x200 || !(header[kLoadflags] & kLoadedHigh)) {  // low kernel
        real_addr = 0x90000, cmdline_addr = 0x9a000 - cmdline_size, prot_addr = 0x10000;
    } else if (protocol < 0x202) {  // high but ancient kernel
        real_addr = 0x90000, cmdline_addr = 0x9a000 - cmdline_size, prot_addr = 0x100000;
    } else {  // high and recent
        real_addr = 0x10000, cmdline_addr = 0x20000, prot_addr = 0x100000;
    }
    uint64_t initrd_max;
    if (protocol >= 0x20c && (get<uint16_t>(header, kXloadflags) & kXlfCanBeLoadedAbove4G))
        initrd_max = UINT32_MAX;
    else if (protocol >= 0x203)
        initrd_max = get<uint32_t>(header, kInitrdAddrMax);
    else
        initrd_max = 0x37ffffff;
    if (initrd_max >= below_4g) initrd_max = below_4g - 1;

    fw.set_u32(kCmdlineAddr, cmdline_addr);
    fw.set_u32(kCmdlineSize, uint32_t(cmdline.size() + 1));
    fw.set_string(kCmdlineData, cmdline);
    if (protocol >= 0x202) {
        put<uint32_t>(header, kCmdLinePtr, cmdline_addr);
    } else {
        put<uint16_t>(header, kOldCmdMagic, kOldCmdMagicValue);
        put<uint16_t>(header, kOldCmdOffset, uint16_t(cmdline_addr - real_addr));
    }
    // vga=normal|ext|ask|N sets the video mode field (x86_load_linux).
    if (size_t at = cmdline.find("vga="); at != std::string::npos) {
        std::string v = cmdline.substr(at + 4);
        uint32_t mode;
        if (v.rfind("normal", 0) == 0) mode = 0xffff;
        else if (v.rfind("ext", 0) == 0) mode = 0xfffe;
        else if (v.rfind("ask", 0) == 0) mode = 0xfffd;
        else {
            char* end = nullptr;
            errno = 0;
            unsigned long n = std::strtoul(v.c_str(), &end, 0);
            if (end == v.c_str() || errno || n > UINT32_MAX || (*end && *end != ' ')) {
                error = "invalid 'vga=' kernel parameter";
                return false;
            }
            mode = uint32_t(n);
        }
        put<uint16_t>(header, kVidMode, uint16_t(mode));
    }
    if (protocol >= 0x200) header[kTypeOfLoader] = kLoaderQemu;
    if (protocol >= 0x201) {
        header[kLoadflags] |= kCanUseHeap;
        put<uint16_t>(header, kHeapEndPtr, uint16_t(cmdline_addr - real_addr - 0x200));
    }
    if (!initrd.empty()) {
        if (protocol < 0x200) {
            error = "this kernel is too old to load an initrd (boot protocol < 2.00)";
            return false;
        }
        uint32_t addr;
        if (!add_initrd(fw, initrd, uint32_t(initrd_max), &addr, error)) return false;
        put<uint32_t>(header, kRamdiskImage, addr);
        put<uint32_t>(header, kRamdiskSize, uint32_t(initrd.size()));
    }
    size_t setup_size = size_t((header[kSetupSects] ? header[kSetupSects] : 4) + 1) * 512;
    if (setup_size > file.size()) {
        error = "invalid kernel header (the setup code is larger than the file)";
        return false;
    }
    std::vector<uint8_t> setup(file.begin(), file.begin() + setup_size);
    std::memcpy(setup.data(), header.data(), std::min(setup.size(), header.size()));
    fw.set_u32(kKernelAddr, prot_addr);
    fw.set_u32(kKernelSize, uint32_t(file.size() - setup_size));
    fw.set(kKernelData, std::vector<uint8_t>(file.begin() + setup_size, file.end()));
    fw.set_u32(kSetupAddr, real_addr);
    fw.set_u32(kSetupSize, uint32_t(setup_size));
    fw.set(kSetupData, std::move(setup));
    return true;
}

bool pvh_fw_cfg(dev::FwCfg& fw, const KernelImage& k, const std::string& cmdline, const std::vector<uint8_t>& initrd,
                uint64_t below_4g, std::string& error) {
    uint64_t lo = ~0ull, hi = 0;
    for (const auto& s : k.segments) {
        lo = std::min(lo, s.paddr);
        hi = std::max(hi, s.paddr + s.mem_size);
    }
    fw.set_u32(kKernelEntry, k.pvh_entry);
    fw.set_u32(kKernelAddr, uint32_t(lo));
    fw.set_u32(kKernelSize, uint32_t(hi - lo));
    fw.set_u32(kCmdlineSize, uint32_t(cmdline.size() + 1));
    fw.set_string(kCmdlineData, cmdline);
    std::vector<uint8_t> header(k.file.begin(), k.file.begin() + std::min<size_t>(k.file.size(), 8192));
    header.resize(8192, 0);
    fw.set_u32(kSetupSize, uint32_t(header.size()));
    fw.set(kSetupData, std::move(header));
    if (!initrd.empty()) {
        uint32_t addr;
        if (!add_initrd(fw, initrd, uint32_t(below_4g - 1), &addr, error)) return false;
    }
    return true;
}

bool load_elf_segments(const KernelImage& k, GuestRam& ram, std::string& error) {
    for (const auto& seg : k.segments) {
        uint8_t* p = ram.ptr(seg.paddr, seg.mem_size);
        if (!p) {
            error = fmt::format("ELF segment at 0x{:x} ({} bytes) is outside guest RAM", seg.paddr, seg.mem_size);
            return false;
        }
        std::memcpy(p, k.file.data() + seg.file_offset, seg.file_size);
        std::memset(p + seg.file_size, 0, seg.mem_size - seg.file_size);
    }
    return true;
}

void add_option_rom(dev::FwCfg& fw, const std::string& name, std::vector<uint8_t> data) {
    std::string file = "genroms/" + name;
    fw.set_file(file, std::move(data));
    // bootorder: one OpenFirmware device path per boot device, newline-separated, NUL-terminated.
    std::string path = "/rom@" + file;
    std::vector<uint8_t> order(path.begin(), path.end());
    order.push_back(0);
    fw.set_file("bootorder", std::move(order));
}

// ---- etc/fdt -------------------------------------------------------------------------------------
//
// QEMU builds the tree with libfdt's read-write functions on a zeroed 1 MiB buffer: a new property
// is spliced in at the start of its node and a new subnode before the node's existing subnodes,
// the strings block grows at its end, and a property's padding bytes keep whatever the splice left
// there. To give the guest the same bytes, this replays QEMU's calls (hw/i386/microvm-dt.c, in
// its order) on a small model of those splicing rules.

namespace {

class RwFdt {
   public:
    static constexpr uint32_t kSize = 0x100000, kRsvmap = 0x30, kStruct = 0x40;
    RwFdt() : b_(kSize, 0) {
        // What fdt_create/fdt_finish leave for an empty root: BEGIN_NODE "", END_NODE, END.
        put32(kStruct, kBeginNode), put32(kStruct + 8, kEndNode), put32(kStruct + 12, kEnd);
        size_struct_ = 16;
    }
    void add_subnode(const std::string& parent, const std::string& name) {
        uint32_t o = node(parent);
        o = next(o);
        while (tag(o) == kProp || tag(o) == kNop) o = next(o);
        uint32_t namelen = uint32_t(name.size());
        uint32_t len = 4 + align(namelen + 1) + 4;
        splice_struct(o, len);
        put32(o, kBeginNode);
        std::memset(&b_[o + 4], 0, align(namelen + 1));
        std::memcpy(&b_[o + 4], name.data(), namelen);
        put32(o + len - 4, kEndNode);
    }
    void setprop(const std::string& path, const std::string& name, const std::vector<uint8_t>& v) {
        uint32_t o = next(node(path));
        uint32_t nameoff = add_string(name);
        splice_struct(o, 12 + align(uint32_t(v.size())));
        put32(o, kProp), put32(o + 4, uint32_t(v.size())), put32(o + 8, nameoff);
        if (!v.empty()) std::memcpy(&b_[o + 12], v.data(), v.size());
    }
    std::vector<uint8_t> finish() {
        put32(0, 0xd00dfeed);
        put32(4, kSize);
        put32(8, kStruct);
        put32(12, kStruct + size_struct_);
        put32(16, kRsvmap);
        put32(20, 17);  // version
        put32(24, 16);  // last compatible version
        put32(28, 0);   // boot CPU
        put32(32, size_strings_);
        put32(36, size_struct_);
        return std::move(b_);
    }

   private:
    static constexpr uint32_t kBeginNode = 1, kEndNode = 2, kProp = 3, kNop = 4, kEnd = 9;
    static uint32_t align(uint32_t n) { return (n + 3) & ~3u; }
    void put32(uint32_t o, uint32_t v) {
        for (int i = 0; i < 4; i++) b_[o + i] = uint8_t(v >> (24 - 8 * i));
    }
    uint32_t tag(uint32_t o) const { return uint32_t(b_[o]) << 24 | b_[o + 1] << 16 | b_[o + 2] << 8 | b_[o + 3]; }
    uint32_t next(uint32_t o) const {
        switch (tag(o)) {
            case kBeginNode: return o + 4 + align(uint32_t(std::strlen(reinterpret_cast<const char*>(&b_[o + 4]))) + 1);
            case kProp: return o + 12 + align(tag(o + 4));
            default: return o + 4;
        }
    }
    // "/" or "/name" (a child of the root).
    uint32_t node(const std::string& path) const {
        if (path == "/") return kStruct;
        std::string want = path.substr(1);
        int depth = 0;
        for (uint32_t o = kStruct; tag(o) != kEnd; o = next(o)) {
            if (tag(o) == kBeginNode) {
                if (depth == 1 && want == reinterpret_cast<const char*>(&b_[o + 4])) return o;
                depth++;
            } else if (tag(o) == kEndNode) {
                depth--;
            }
        }
        throw std::logic_error("fdt: no node " + path);
    }
    // fdt_splice_: open `len` bytes at `at`; the bytes there keep their old contents.
    void splice(uint32_t at, uint32_t len) {
        uint32_t end = kStruct + size_struct_ + size_strings_;
        std::memmove(&b_[at + len], &b_[at], end - at);
    }
    void splice_struct(uint32_t at, uint32_t len) {
        splice(at, len);
        size_struct_ += len;
    }
    // fdt_find_add_string_: an existing match (also the tail of a longer string), else appended.
    uint32_t add_string(const std::string& s) {
        const char* tab = reinterpret_cast<const char*>(&b_[kStruct + size_struct_]);
        for (uint32_t i = 0; i + s.size() + 1 <= size_strings_; i++)
            if (std::memcmp(tab + i, s.c_str(), s.size() + 1) == 0) return i;
        uint32_t at = size_strings_;
        splice(kStruct + size_struct_ + size_strings_, uint32_t(s.size() + 1));
        std::memcpy(&b_[kStruct + size_struct_ + at], s.c_str(), s.size() + 1);
        size_strings_ += uint32_t(s.size() + 1);
        return at;
    }
    std::vector<uint8_t> b_;
    uint32_t size_struct_ = 0, size_strings_ = 0;
};

std::vector<uint8_t> cells(std::initializer_list<uint32_t> v) {
    std::vector<uint8_t> b;
    for (uint32_t c : v)
        for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(c >> s));
    return b;
}
std::vector<uint8_t> str(const std::string& s) {
    std::vector<uint8_t> b(s.begin(), s.end());
    b.push_back(0);
    return b;
}

}  // namespace

std::vector<uint8_t> microvm_fdt(const FdtDevices& d) {
    constexpr uint32_t kPhandle = 0x8000;  // QEMU's first allocated phandle
    RwFdt f;
    auto irq = [&](const std::string& node, uint32_t pin) {
        f.setprop(node, "interrupt-parent", cells({kPhandle}));
        f.setprop(node, "interrupts", cells({pin, 0}));
    };
    f.setprop("/", "compatible", str("linux,microvm"));
    f.setprop("/", "#address-cells", cells({2}));
    f.setprop("/", "#size-cells", cells({2}));
    f.add_subnode("/", "chosen");
    // The I/O APIC (QEMU's first pass over the system bus).
    std::string io = fmt::format("/ioapic1@{:x}", layout::kIoapicBase);
    f.add_subnode("/", io.substr(1));
    f.setprop(io, "compatible", str("intel,ce4100-ioapic"));
    f.setprop(io, "interrupt-controller", {});
    f.setprop(io, "#interrupt-cells", cells({2}));
    f.setprop(io, "#address-cells", cells({2}));
    f.setprop(io, "reg", cells({0, uint32_t(layout::kIoapicBase), 0, uint32_t(layout::kIoapicSize)}));
    f.setprop(io, "phandle", cells({kPhandle}));
    f.setprop(io, "linux,phandle", cells({kPhandle}));
    // The populated virtio-mmio transports; QEMU's bus lists the most recently created (highest)
    // slot first.
    std::vector<unsigned> slots = d.virtio_slots;
    std::sort(slots.rbegin(), slots.rend());
    for (unsigned slot : slots) {
        uint64_t base = layout::kVirtioMmioBase + slot * layout::kVirtioMmioSize;
        std::string n = fmt::format("/virtio_mmio@{:x}", base);
        f.add_subnode("/", n.substr(1));
        f.setprop(n, "compatible", str("virtio,mmio"));
        f.setprop(n, "reg", cells({uint32_t(base >> 32), uint32_t(base), 0, uint32_t(layout::kVirtioMmioSize)}));
        f.setprop(n, "dma-coherent", {});
        irq(n, layout::kVirtioMmioFirstIrq + slot);
    }
    // The ISA bus: the serial port (created after the RTC, so listed first), then the RTC.
    if (d.serial) {
        std::string n = fmt::format("/serial@{:x}", layout::kCom1);
        f.add_subnode("/", n.substr(1));
        f.setprop(n, "compatible", str("ns16550"));
        f.setprop(n, "reg", cells({0, layout::kCom1, 0, 8}));
        irq(n, layout::kCom1Irq);
        f.setprop("/chosen", "stdout-path", str(n));
    }
    if (d.rtc) {
        std::string n = fmt::format("/rtc@{:x}", layout::kRtc);
        f.add_subnode("/", n.substr(1));
        f.setprop(n, "compatible", str("motorola,mc146818"));
        f.setprop(n, "reg", cells({0, layout::kRtc, 0, 8}));
        irq(n, layout::kRtcIrq);
    }
    return f.finish();
}

}  // namespace m86::machine::boot
