#include "machine/options.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>

namespace m86::machine {

const char* const kVmUsage =
    "usage: micro86 [options]            (QEMU microvm spellings; run a guest)\n"
    "       micro86 snippet FILE ...     (run raw machine code; see 'micro86 snippet --help')\n"
    "\n"
    "Machine:\n"
    "  -M, -machine microvm[,prop=value...]   the board; properties as in QEMU's microvm:\n"
    "        pit=on|off|auto  pic=on|off|auto  rtc=on|off|auto  isa-serial=on|off\n"
    "        x-option-roms=on|off  auto-kernel-cmdline=on|off  acpi=off (on is not supported)\n"
    "  -m SIZE            guest RAM (default 128M; suffixes K M G T, no suffix = MiB)\n"
    "  -smp N             number of CPUs (also cpus=N,maxcpus=M,...)\n"
    "  -cpu MODEL         accepted and ignored: micro86 emulates its own CPU model\n"
    "  -enable-kvm, -accel NAME   accepted and ignored: micro86 emulates in software\n"
    "Boot:\n"
    "  -kernel FILE       bzImage, ELF vmlinux with a PVH note, or a multiboot (v1) kernel\n"
    "  -initrd FILE       initial ramdisk; for multiboot: modules \"file args,file args\" (,, = comma)\n"
    "  -append CMDLINE    kernel command line\n"
    "  -bios FILE         firmware image (default with -kernel: qboot.rom from the QEMU data\n"
    "                     directories, as QEMU's microvm; without one, the kernel boots directly)\n"
    "  -L DIR             a directory searched first for firmware and option ROMs\n"
    "  --direct-boot      load -kernel straight into RAM (bzImage, PVH ELF or multiboot), no firmware\n"
    "  --no-jit           interpret every block (the JIT is on by default where micro86 has one)\n"
    "  --stats            print run-loop and execution figures to stderr at exit\n"
    "  --jit-check[=N]    run JIT blocks also through the interpreter and compare, aborting on the\n"
    "                     first difference; every run, or with N each block's first 16 runs and\n"
    "                     then one in N (slow: for finding JIT bugs)\n"
    "  -no-reboot         exit instead of resetting when the guest reboots (triple fault)\n"
    "Devices and I/O:\n"
    "  -serial stdio|file:PATH|none|null|chardev:ID   the next ISA serial port's backend\n"
    "  -chardev stdio,id=ID | file,id=ID,path=PATH[,append=on] | null,id=ID\n"
    "  -device isa-debug-exit[,iobase=N][,iosize=N]   a write of V exits with status (V<<1)|1\n"
    "  -drive id=ID,file=PATH,format=raw,if=none[,readonly=on][,discard=ignore]   a raw disk image\n"
    "  -device virtio-blk-device,drive=ID[,serial=S]  a virtio disk (/dev/vdX)\n"
    "  -netdev user,id=ID[,hostfwd=tcp::HOSTPORT-:GUESTPORT...]   user-mode network (libslirp)\n"
    "  -netdev tap,id=ID[,ifname=NAME],script=no,downscript=no       a host tap interface\n"
    "  -device virtio-net-device,netdev=ID[,mac=52:54:00:..]   a virtio NIC\n"
    "  -device virtio-serial-device -device virtconsole,chardev=ID   a virtio console (hvc0)\n"
    "  -device virtio-rng-device                      host entropy for the guest (/dev/hwrng)\n"
    "        any virtio device: bus=virtio-mmio-bus.N picks transport N (default: the highest free)\n"
    "  -global virtio-mmio.force-legacy=true|false    virtio-mmio register layout (default true, as QEMU)\n"
    "  -nographic         no display; serial on stdio (the default for micro86)\n"
    "  -display none, -nodefaults, -no-user-config   accepted (micro86 has no display or config files)\n"
    "Time:\n"
    "  -icount shift=N    deterministic time: 2^N ns of virtual time per guest instruction;\n"
    "                     the same inputs give the same output on any host\n"
    "Other:\n"
    "  -h, --help         this text\n"
    "  --version          the version\n";

bool parse_size(const std::string& s, uint64_t& bytes) {
    if (s.empty()) return false;
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    if (errno || end == s.c_str() || v < 0 || !std::isfinite(v)) return false;
    std::string suf(end);
    double mult;
    if (suf.empty() || suf == "M" || suf == "m" || suf == "MB" || suf == "MiB") mult = 1 << 20;
    else if (suf == "G" || suf == "g" || suf == "GB" || suf == "GiB") mult = double(1ull << 30);
    else if (suf == "K" || suf == "k" || suf == "KB" || suf == "KiB") mult = 1 << 10;
    else if (suf == "T" || suf == "t" || suf == "TB" || suf == "TiB") mult = double(1ull << 40);
    else if (suf == "B" || suf == "b") mult = 1;
    else return false;
    double b = v * mult;
    if (b >= 18446744073709551616.0) return false;
    bytes = uint64_t(b);
    return true;
}

namespace {

// Split "a,b=c,d" into items; the first item may be a bare value (the machine type).
std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t p = s.find(sep, start);
        out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
        if (p == std::string::npos) break;
        start = p + 1;
    }
    return out;
}

bool parse_bool(const std::string& v, bool& out) {
    if (v == "on" || v == "yes" || v == "true" || v == "y") return out = true, true;
    if (v == "off" || v == "no" || v == "false" || v == "n") return out = false, true;
    return false;
}

bool parse_onoffauto(const std::string& v, OnOffAuto& out) {
    if (v == "auto") return out = OnOffAuto::Auto, true;
    bool b;
    if (!parse_bool(v, b)) return false;
    out = b ? OnOffAuto::On : OnOffAuto::Off;
    return true;
}

std::string parse_machine(const std::string& arg, VmConfig& c) {
    auto items = split(arg, ',');
    for (size_t i = 0; i < items.size(); i++) {
        const std::string& it = items[i];
        auto eq = it.find('=');
        if (eq == std::string::npos) {
            if (i == 0) {
                if (it != "microvm")
                    return fmt::format("-M {}: micro86 emulates only the 'microvm' machine", it);
                continue;
            }
            return fmt::format("-M: property '{}' needs a value (prop=value)", it);
        }
        std::string k = it.substr(0, eq), v = it.substr(eq + 1);
        if (k == "type") {
            if (v != "microvm") return fmt::format("-M type={}: micro86 emulates only the 'microvm' machine", v);
        } else if (k == "pit" || k == "pic" || k == "rtc") {
            OnOffAuto& dst = k == "pit" ? c.pit : k == "pic" ? c.pic : c.rtc;
            if (!parse_onoffauto(v, dst)) return fmt::format("-M {}={}: expected on, off or auto", k, v);
        } else if (k == "isa-serial" || k == "x-option-roms" || k == "auto-kernel-cmdline") {
            bool& dst = k == "isa-serial" ? c.isa_serial : k == "x-option-roms" ? c.option_roms : c.auto_kernel_cmdline;
            if (!parse_bool(v, dst)) return fmt::format("-M {}={}: expected on or off", k, v);
        } else if (k == "acpi") {
            if (v == "on")
                return "-M acpi=on: micro86 implements microvm with acpi=off only (the kernel finds devices "
                       "through the MP table and the command line)";
            if (v != "off" && v != "auto") return fmt::format("-M acpi={}: expected off", v);
        } else if (k == "accel") {
            c.notes.push_back("micro86 emulates the CPU in software; the machine's accel property is ignored");
        } else {
            return fmt::format("-M: unknown or unsupported microvm property '{}'", k);
        }
    }
    return "";
}

std::string parse_chardev_backend(const std::string& v, CharDevSpec& out, bool for_serial) {
    if (v == "stdio" || v == "mon:stdio") return out.kind = CharDevSpec::Kind::Stdio, "";
    if (v == "none") return out.kind = CharDevSpec::Kind::None, "";
    if (v == "null") return out.kind = CharDevSpec::Kind::Null, "";
    if (v.rfind("file:", 0) == 0 && v.size() > 5) {
        out.kind = CharDevSpec::Kind::File;
        out.path = v.substr(5);
        return "";
    }
    if (for_serial && v.rfind("chardev:", 0) == 0 && v.size() > 8) {
        out.kind = CharDevSpec::Kind::None;
        out.id = v.substr(8);
        return "";
    }
    return fmt::format("-serial {}: supported backends are stdio, file:PATH, none, null and chardev:ID", v);
}

// A number as QEMU's integer properties take it: decimal, 0x hex or 0 octal.
bool parse_uint(const std::string& v, uint64_t max, uint64_t& out) {
    if (v.empty() || v[0] == '-' || v[0] == '+') return false;
    char* end = nullptr;
    errno = 0;
    unsigned long long n = std::strtoull(v.c_str(), &end, 0);
    if (errno || *end || n > max) return false;
    out = n;
    return true;
}

std::string parse_device(const std::string& arg, VmConfig& c) {
    auto items = split(arg, ',');
    DeviceSpec d;
    d.driver = items[0];
    if (d.driver.rfind("driver=", 0) == 0) d.driver = d.driver.substr(7);
    for (size_t i = 1; i < items.size(); i++) {
        auto eq = items[i].find('=');
        if (eq == std::string::npos) return fmt::format("-device {}: property '{}' needs a value", d.driver, items[i]);
        d.props.emplace_back(items[i].substr(0, eq), items[i].substr(eq + 1));
    }
    if (d.driver == "isa-debug-exit") {
        DebugExitSpec x;
        for (const auto& [k, v] : d.props) {
            uint64_t n;
            if (k == "iobase") {
                if (!parse_uint(v, 0xffff, n)) return fmt::format("-device isa-debug-exit: iobase={}: expected a port number", v);
                x.iobase = uint16_t(n);
            } else if (k == "iosize") {
                if (!parse_uint(v, 0xffff, n) || n == 0)
                    return fmt::format("-device isa-debug-exit: iosize={}: expected a size from 1 to 0xffff", v);
                x.iosize = uint16_t(n);
            } else if (k != "id") {
                return fmt::format("-device isa-debug-exit: unknown property '{}' (iobase, iosize)", k);
            }
        }
        if (uint32_t(x.iobase) + x.iosize > 0x10000)
            return fmt::format("-device isa-debug-exit: ports 0x{:x}+0x{:x} run past 0xffff", x.iobase, x.iosize);
        c.debug_exits.push_back(x);
    } else if (is_virtio_driver(d.driver)) {
        if (std::string e = parse_virtio_device(d.driver, d.props, c.virtio); !e.empty()) return e;
    } else {
        return fmt::format("-device {}: unknown or unsupported device (micro86 has isa-debug-exit, virtio-blk-device, "
                           "virtio-net-device, virtio-serial-device, virtconsole, virtio-rng-device)",
                           d.driver);
    }
    c.devices.push_back(std::move(d));
    return "";
}

std::string parse_chardev(const std::string& arg, VmConfig& c) {
    auto items = split(arg, ',');
    CharDevSpec d;
    const std::string& backend = items[0];
    if (backend == "stdio") d.kind = CharDevSpec::Kind::Stdio;
    else if (backend == "file") d.kind = CharDevSpec::Kind::File;
    else if (backend == "null") d.kind = CharDevSpec::Kind::Null;
    else return fmt::format("-chardev {}: supported backends are stdio, file and null", backend);
    for (size_t i = 1; i < items.size(); i++) {
        auto eq = items[i].find('=');
        std::string k = items[i].substr(0, eq), v = eq == std::string::npos ? "" : items[i].substr(eq + 1);
        if (k == "id") d.id = v;
        else if (k == "path") d.path = v;
        else if (k == "append") {
            if (v == "on" || v == "yes" || v == "true") d.append = true;
            else if (v == "off" || v == "no" || v == "false") d.append = false;
            else return fmt::format("-chardev: append={}: expected on or off", v);
        } else if (k == "mux" || k == "signal" || k == "logfile") continue;  // accepted
        else return fmt::format("-chardev: unknown property '{}'", k);
    }
    if (d.id.empty()) return "-chardev: missing id=";
    if (d.kind == CharDevSpec::Kind::File && d.path.empty()) return "-chardev file: missing path=";
    for (const auto& o : c.chardevs)
        if (o.id == d.id) return fmt::format("-chardev: duplicate id '{}'", d.id);
    c.chardevs.push_back(d);
    return "";
}

}  // namespace

std::optional<VmConfig> parse_options(const std::vector<std::string>& args, std::string& error) {
    VmConfig c;
    bool kvm_noted = false;
    auto note_kvm = [&] {
        if (!kvm_noted)
            c.notes.push_back("micro86 emulates the CPU in software (no KVM/HVF); -enable-kvm/-accel/-cpu are ignored");
        kvm_noted = true;
    };
    for (size_t i = 0; i < args.size(); i++) {
        std::string a = args[i];
        if (a.rfind("--", 0) == 0 && a.size() > 2) a = a.substr(1);  // QEMU accepts --opt too
        auto value = [&](std::string& out) {
            if (i + 1 >= args.size()) {
                error = fmt::format("option {} needs a value", args[i]);
                return false;
            }
            out = args[++i];
            return true;
        };
        std::string v;
        if (a == "-h" || a == "-help") {
            c.help = true;
        } else if (a == "-version") {
            c.version = true;
        } else if (a == "-M" || a == "-machine") {
            if (!value(v)) return std::nullopt;
            if (std::string e = parse_machine(v, c); !e.empty()) return error = e, std::nullopt;
        } else if (a == "-m") {
            if (!value(v)) return std::nullopt;
            std::string sz = v;
            for (const auto& it : split(v, ','))
                if (it.rfind("size=", 0) == 0) sz = it.substr(5);
                else if (it.find('=') != std::string::npos) return error = fmt::format("-m {}: only size= is supported", v), std::nullopt;
            if (!parse_size(sz, c.ram_size) || c.ram_size < (2ull << 20))
                return error = fmt::format("-m {}: expected a RAM size of at least 2M such as 512M or 2G", v), std::nullopt;
            if (c.ram_size > (1ull << 40))
                return error = fmt::format("-m {}: at most 1T of guest RAM is supported", v), std::nullopt;
        } else if (a == "-smp") {
            if (!value(v)) return std::nullopt;
            long n = -1, maxn = 0;
            for (const auto& it : split(v, ',')) {
                if (it.rfind("maxcpus=", 0) == 0) {
                    char* end = nullptr;
                    std::string num = it.substr(8);
                    maxn = std::strtol(num.c_str(), &end, 10);
                    if (num.empty() || *end || maxn < 1 || maxn > 64)
                        return error = fmt::format("-smp {}: expected maxcpus from 1 to 64", v), std::nullopt;
                    continue;
                }
                std::string num = it.rfind("cpus=", 0) == 0 ? it.substr(5) : it;
                if (it.find('=') != std::string::npos && it.rfind("cpus=", 0) != 0 && it.rfind("maxcpus=", 0) != 0 &&
                    it.rfind("sockets=", 0) != 0 && it.rfind("cores=", 0) != 0 && it.rfind("threads=", 0) != 0)
                    return error = fmt::format("-smp {}: unknown property in '{}'", v, it), std::nullopt;
                if (it.find('=') == std::string::npos || it.rfind("cpus=", 0) == 0) {
                    char* end = nullptr;
                    n = std::strtol(num.c_str(), &end, 10);
                    if (num.empty() || *end) n = -1;
                }
            }
            if (n < 1 || n > 64) return error = fmt::format("-smp {}: expected a CPU count from 1 to 64", v), std::nullopt;
            if (maxn && maxn < n)
                return error = fmt::format("-smp {}: maxcpus must be at least the CPU count", v), std::nullopt;
            c.cpus = unsigned(n);
            c.max_cpus = unsigned(maxn);
        } else if (a == "-kernel") {
            if (!value(c.kernel)) return std::nullopt;
        } else if (a == "-initrd") {
            if (!value(c.initrd)) return std::nullopt;
        } else if (a == "-append") {
            if (!value(c.append)) return std::nullopt;
        } else if (a == "-bios") {
            if (!value(c.bios)) return std::nullopt;
        } else if (a == "-L") {
            if (!value(v)) return std::nullopt;
            c.data_dirs.push_back(v);
        } else if (a == "-direct-boot") {
            c.direct_boot = true;
        } else if (a == "-no-jit") {
            c.jit = false;
        } else if (a == "-stats") {
            c.stats = true;
        } else if (a == "-jit-check" || a.starts_with("-jit-check=")) {
            c.jit_check = 1;
            if (a.size() > 10) {
                const std::string n = a.substr(11);
                char* end = nullptr;
                errno = 0;
                const unsigned long v = std::strtoul(n.c_str(), &end, 10);
                if (n.empty() || *end || errno || v < 1 || v > 1000000 || n[0] == '-')
                    return error = fmt::format("--jit-check={}: expected a sampling rate from 1 to 1000000", n), std::nullopt;
                c.jit_check = uint32_t(v);
            }
        } else if (a == "-device") {
            if (!value(v)) return std::nullopt;
            if (std::string e = parse_device(v, c); !e.empty()) return error = e, std::nullopt;
        } else if (a == "-drive" || a == "-netdev" || a == "-global") {
            if (!value(v)) return std::nullopt;
            std::string e = a == "-drive" ? parse_drive(v, c.virtio) : a == "-netdev" ? parse_netdev(v, c.virtio) : parse_global(v, c.virtio);
            if (!e.empty()) return error = e, std::nullopt;
        } else if (a == "-no-reboot") {
            c.no_reboot = true;
        } else if (a == "-nodefaults") {
            c.nodefaults = true;
        } else if (a == "-no-user-config") {
        } else if (a == "-nographic") {
            c.nographic = true;
        } else if (a == "-display") {
            if (!value(v)) return std::nullopt;
            if (v != "none") return error = fmt::format("-display {}: micro86 has no display; only 'none'", v), std::nullopt;
        } else if (a == "-serial") {
            if (!value(v)) return std::nullopt;
            CharDevSpec s;
            if (std::string e = parse_chardev_backend(v, s, true); !e.empty()) return error = e, std::nullopt;
            c.serials.push_back(s);
        } else if (a == "-chardev") {
            if (!value(v)) return std::nullopt;
            if (std::string e = parse_chardev(v, c); !e.empty()) return error = e, std::nullopt;
        } else if (a == "-enable-kvm") {
            note_kvm();
        } else if (a == "-accel" || a == "-cpu") {
            if (!value(v)) return std::nullopt;
            note_kvm();
        } else if (a == "-icount") {
            if (!value(v)) return std::nullopt;
            for (const auto& it : split(v, ',')) {
                std::string num = it.rfind("shift=", 0) == 0 ? it.substr(6) : it;
                if (it.rfind("sleep=", 0) == 0 || it.rfind("align=", 0) == 0) continue;
                char* end = nullptr;
                long n = std::strtol(num.c_str(), &end, 10);
                if (num.empty() || *end || n < 0 || n > 10)
                    return error = fmt::format("-icount {}: expected shift=N with N from 0 to 10", v), std::nullopt;
                c.icount_shift = unsigned(n);
            }
            c.deterministic = true;
        } else {
            error = fmt::format("unknown or unsupported option '{}' (see micro86 --help)", args[i]);
            return std::nullopt;
        }
    }
    // Resolve -serial chardev:ID references.
    for (auto& s : c.serials) {
        if (s.id.empty()) continue;
        bool found = false;
        for (const auto& d : c.chardevs)
            if (d.id == s.id) {
                std::string id = s.id;
                s = d;
                s.id = id;
                found = true;
            }
        if (!found) return error = fmt::format("-serial chardev:{}: no -chardev with that id", s.id), std::nullopt;
    }
    // virtio devices: drive=/netdev=/chardev= references (device_options.h).
    {
        std::vector<std::string> ids;
        for (const auto& d : c.chardevs) ids.push_back(d.id);
        if (std::string e = finish_virtio_config(c.virtio, ids); !e.empty()) return error = e, std::nullopt;
    }
    // QEMU's default: the first serial port on stdio with -nographic (micro86 has no other display).
    if (c.serials.empty() && !c.nodefaults) c.serials.push_back({CharDevSpec::Kind::Stdio, "", ""});
    if (c.serials.size() > 1) return error = "-serial: microvm has one ISA serial port", std::nullopt;
    if (!c.initrd.empty() && c.kernel.empty()) return error = "-initrd needs -kernel", std::nullopt;
    if (!c.append.empty() && c.kernel.empty()) return error = "-append needs -kernel", std::nullopt;
    if (c.direct_boot && c.kernel.empty()) return error = "--direct-boot needs -kernel", std::nullopt;
    if (c.direct_boot && !c.bios.empty())
        return error = "--direct-boot and -bios exclude each other (direct boot runs no firmware)", std::nullopt;
    return c;
}

}  // namespace m86::machine
