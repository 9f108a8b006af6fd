// Parsing of -drive, -netdev, -global and the virtio -device drivers (see device_options.h).
#include "machine/device_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "machine/layout.h"

namespace m86::machine {

namespace {

using Props = std::vector<std::pair<std::string, std::string>>;

// QEMU's option syntax: items separated by commas, ",," is a literal comma.
std::vector<std::string> split_opts(const std::string& s) {
    std::vector<std::string> out(1);
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == ',') {
            if (i + 1 < s.size() && s[i + 1] == ',') {
                out.back() += ',';
                i++;
            } else {
                out.emplace_back();
            }
        } else {
            out.back() += s[i];
        }
    }
    return out;
}

// "k=v" items (the first item may be a bare value when `implied_key` is given: -netdev user,...).
std::string to_props(const std::string& opt, const std::string& arg, const char* implied_key, Props& out) {
    auto items = split_opts(arg);
    for (size_t i = 0; i < items.size(); i++) {
        const std::string& it = items[i];
        auto eq = it.find('=');
        if (eq == std::string::npos) {
            if (i == 0 && implied_key) {
                out.emplace_back(implied_key, it);
                continue;
            }
            return fmt::format("{} {}: '{}' needs a value (key=value)", opt, arg, it);
        }
        out.emplace_back(it.substr(0, eq), it.substr(eq + 1));
    }
    return "";
}

bool parse_bool(const std::string& v, bool& out) {
    if (v == "on" || v == "yes" || v == "true" || v == "y") return out = true, true;
    if (v == "off" || v == "no" || v == "false" || v == "n") return out = false, true;
    return false;
}

bool parse_mac(const std::string& s, std::array<uint8_t, 6>& mac) {
    if (s.size() != 17) return false;
    for (unsigned i = 0; i < 6; i++) {
        if (i < 5 && s[i * 3 + 2] != ':' && s[i * 3 + 2] != '-') return false;
        auto hex = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        int hi = hex(s[i * 3]), lo = hex(s[i * 3 + 1]);
        if (hi < 0 || lo < 0) return false;
        mac[i] = uint8_t(hi << 4 | lo);
    }
    return true;
}

bool slot_taken(const VirtioConfig& c, unsigned slot) {
    return std::any_of(c.devices.begin(), c.devices.end(), [&](const VirtioDeviceSpec& d) { return d.slot == slot; });
}

// The slot for a new device: `bus=virtio-mmio-bus.N` names one, else the highest free slot.
std::string assign_slot(const std::string& driver, const std::string& bus, const VirtioConfig& c, unsigned& slot) {
    if (!bus.empty()) {
        const std::string prefix = "virtio-mmio-bus.";
        char* end = nullptr;
        unsigned long n = bus.rfind(prefix, 0) == 0 ? std::strtoul(bus.c_str() + prefix.size(), &end, 10) : 0;
        if (bus.rfind(prefix, 0) != 0 || bus.size() == prefix.size() || *end || n >= layout::kVirtioMmioCount)
            return fmt::format("-device {}: bus={}: microvm's virtio-mmio buses are virtio-mmio-bus.0 to .{}", driver, bus,
                               layout::kVirtioMmioCount - 1);
        if (slot_taken(c, unsigned(n)))
            return fmt::format("-device {}: bus={} already has a device", driver, bus);
        slot = unsigned(n);
        return "";
    }
    for (unsigned s = layout::kVirtioMmioCount; s-- > 0;)
        if (!slot_taken(c, s)) {
            slot = s;
            return "";
        }
    return fmt::format("-device {}: all {} virtio-mmio transports of microvm are in use", driver, layout::kVirtioMmioCount);
}

}  // namespace

std::vector<unsigned> VirtioConfig::populated_slots() const {
    std::vector<unsigned> s;
    for (const auto& d : devices) s.push_back(d.slot);
    std::sort(s.rbegin(), s.rend());
    return s;
}

std::string VirtioConfig::cmdline_suffix() const {
    std::string out;
    for (unsigned slot : populated_slots())
        out += fmt::format(" virtio_mmio.device=512@0x{:x}:{}", layout::kVirtioMmioBase + slot * layout::kVirtioMmioSize,
                           layout::kVirtioMmioFirstIrq + slot);
    return out;
}

bool is_virtio_driver(const std::string& d) {
    return d == "virtio-blk-device" || d == "virtio-net-device" || d == "virtio-serial-device" || d == "virtconsole" ||
           d == "virtio-rng-device";
}

std::string parse_drive(const std::string& arg, VirtioConfig& c) {
    Props props;
    if (auto e = to_props("-drive", arg, nullptr, props); !e.empty()) return e;
    DriveSpec d;
    std::string iface, format;
    for (const auto& [k, v] : props) {
        if (k == "id") {
            d.id = v;
        } else if (k == "file") {
            d.file = v;
        } else if (k == "format") {
            format = v;
        } else if (k == "if") {
            iface = v;
        } else if (k == "readonly" || k == "read-only") {
            if (!parse_bool(v, d.readonly)) return fmt::format("-drive {}={}: expected on or off", k, v);
        } else if (k == "discard") {
            if (v == "unmap" || v == "on") d.discard = true;
            else if (v == "ignore" || v == "off") d.discard = false;
            else return fmt::format("-drive discard={}: expected ignore or unmap", v);
        } else if (k == "media") {
            if (v != "disk") return fmt::format("-drive media={}: micro86 has disks only", v);
        } else if (k == "cache" || k == "aio" || k == "cache.direct" || k == "cache.no-flush" || k == "detect-zeroes") {
            // Accepted: micro86 always writes through the host's page cache and makes a guest flush
            // durable with fsync (QEMU's cache=writeback semantics).
        } else {
            return fmt::format("-drive: unknown or unsupported property '{}' (micro86 understands id, file, format=raw, "
                               "if=none, readonly, discard, media=disk, cache, aio)", k);
        }
    }
    if (d.file.empty()) return "-drive: missing file=PATH";
    if (!format.empty() && format != "raw")
        return fmt::format("-drive format={}: micro86 supports raw images only", format);
    if (iface != "none")
        return fmt::format("-drive {}: microvm has no {} interface: give if=none and attach the drive with "
                           "-device virtio-blk-device,drive=ID",
                           arg, iface.empty() ? "default (if=ide)" : "if=" + iface);
    if (d.id.empty()) d.id = fmt::format("none{}", c.drives.size());  // QEMU's name for an anonymous if=none drive
    for (const auto& o : c.drives)
        if (o.id == d.id) return fmt::format("-drive: duplicate id '{}'", d.id);
    c.drives.push_back(std::move(d));
    return "";
}

std::string parse_netdev(const std::string& arg, VirtioConfig& c) {
    Props props;
    if (auto e = to_props("-netdev", arg, "type", props); !e.empty()) return e;
    NetdevSpec n;
    std::string type;
    for (const auto& [k, v] : props)
        if (k == "type") type = v;
    if (type == "user") n.kind = NetdevSpec::Kind::User;
    else if (type == "tap") n.kind = NetdevSpec::Kind::Tap;
    else if (type.empty()) return "-netdev: missing the backend type (user or tap)";
    else return fmt::format("-netdev {}: unsupported network backend (micro86 has user and tap)", type);
    for (const auto& [k, v] : props) {
        if (k == "type") continue;
        if (k == "id") {
            n.id = v;
        } else if (n.kind == NetdevSpec::Kind::User) {
            std::string e;
            if (!n.user.set(k, v, e)) return e;
        } else if (k == "ifname") {
            n.ifname = v;
        } else if (k == "script" || k == "downscript") {
            if (v != "no")
                return fmt::format("-netdev tap,{}={}: micro86 runs no network scripts; give {}=no and configure the "
                                   "interface yourself",
                                   k, v, k);
        } else if (k == "vhost") {
            bool b;
            if (!parse_bool(v, b)) return fmt::format("-netdev tap,vhost={}: expected on or off", v);
            if (b) return "-netdev tap,vhost=on: micro86 has no vhost (it emulates without KVM)";
        } else {
            return fmt::format("-netdev tap: unknown or unsupported option '{}' (micro86 understands id, ifname, "
                               "script=no, downscript=no)",
                               k);
        }
    }
    if (n.id.empty()) return fmt::format("-netdev {}: missing id=", type);
    for (const auto& o : c.netdevs)
        if (o.id == n.id) return fmt::format("-netdev: duplicate id '{}'", n.id);
    c.netdevs.push_back(std::move(n));
    return "";
}

std::string parse_global(const std::string& arg, VirtioConfig& c) {
    std::string driver, prop, value;
    if (arg.find("driver=") == 0 || arg.find(",property=") != std::string::npos) {
        Props props;
        if (auto e = to_props("-global", arg, nullptr, props); !e.empty()) return e;
        for (const auto& [k, v] : props) {
            if (k == "driver") driver = v;
            else if (k == "property") prop = v;
            else if (k == "value") value = v;
            else return fmt::format("-global {}: unknown key '{}' (driver=, property=, value=)", arg, k);
        }
    } else {
        auto dot = arg.find('.'), eq = arg.find('=');
        if (dot == std::string::npos || eq == std::string::npos || eq < dot)
            return fmt::format("-global {}: expected DRIVER.PROPERTY=VALUE", arg);
        driver = arg.substr(0, dot), prop = arg.substr(dot + 1, eq - dot - 1), value = arg.substr(eq + 1);
    }
    if (driver == "virtio-mmio" && prop == "force-legacy") {
        if (!parse_bool(value, c.force_legacy))
            return fmt::format("-global virtio-mmio.force-legacy={}: expected true or false", value);
        return "";
    }
    return fmt::format("-global {}.{}: unsupported global property (micro86 has virtio-mmio.force-legacy)", driver, prop);
}

std::string parse_virtio_device(const std::string& driver, const Props& props, VirtioConfig& c) {
    auto unknown = [&](const std::string& k, const char* known) {
        return fmt::format("-device {}: unknown or unsupported property '{}' (micro86 understands {})", driver, k, known);
    };
    if (driver == "virtconsole") {
        std::string chardev;
        for (const auto& [k, v] : props) {
            if (k == "chardev") chardev = v;
            else if (k != "id" && k != "name" && k != "bus") return unknown(k, "chardev, name, id");
        }
        // The port joins the newest virtio-serial-device that has no port yet (micro86's device has
        // one port, the console: port 0, hvc0).
        for (auto it = c.devices.rbegin(); it != c.devices.rend(); ++it)
            if (it->kind == VirtioDeviceSpec::Kind::Console && !it->has_port) {
                it->has_port = true;
                it->chardev = chardev;
                return "";
            }
        bool any = std::any_of(c.devices.begin(), c.devices.end(),
                               [](const VirtioDeviceSpec& d) { return d.kind == VirtioDeviceSpec::Kind::Console; });
        return any ? "-device virtconsole: micro86's virtio-serial-device has one port; add another "
                     "-device virtio-serial-device for a second console"
                   : "-device virtconsole: no virtio-serial bus: give -device virtio-serial-device before it";
    }
    VirtioDeviceSpec d;
    std::string bus;
    const char* known;
    if (driver == "virtio-blk-device") {
        d.kind = VirtioDeviceSpec::Kind::Blk;
        known = "drive, serial, id, bus";
    } else if (driver == "virtio-net-device") {
        d.kind = VirtioDeviceSpec::Kind::Net;
        known = "netdev, mac, id, bus";
    } else if (driver == "virtio-serial-device") {
        d.kind = VirtioDeviceSpec::Kind::Console;
        known = "id, bus";
    } else if (driver == "virtio-rng-device") {
        d.kind = VirtioDeviceSpec::Kind::Rng;
        known = "id, bus";
    } else {
        return fmt::format("-device {}: not a virtio device micro86 knows", driver);
    }
    for (const auto& [k, v] : props) {
        if (k == "id") d.id = v;
        else if (k == "bus") bus = v;
        else if (k == "drive" && d.kind == VirtioDeviceSpec::Kind::Blk) d.drive = v;
        else if (k == "serial" && d.kind == VirtioDeviceSpec::Kind::Blk) d.serial = v;
        else if (k == "netdev" && d.kind == VirtioDeviceSpec::Kind::Net) d.netdev = v;
        else if (k == "mac" && d.kind == VirtioDeviceSpec::Kind::Net) {
            if (!parse_mac(v, d.mac)) return fmt::format("-device {}: mac={}: expected six hex bytes like 52:54:00:12:34:56", driver, v);
            if (d.mac[0] & 1) return fmt::format("-device {}: mac={} is a multicast address", driver, v);
            d.mac_given = true;
        } else {
            return unknown(k, known);
        }
    }
    if (d.kind == VirtioDeviceSpec::Kind::Blk && d.drive.empty())
        return "-device virtio-blk-device: drive property not set (give drive=ID of a -drive ...,if=none)";
    if (auto e = assign_slot(driver, bus, c, d.slot); !e.empty()) return e;
    c.devices.push_back(std::move(d));
    return "";
}

std::string finish_virtio_config(VirtioConfig& c, const std::vector<std::string>& chardev_ids) {
    unsigned nics = 0;
    for (auto& d : c.devices) {
        if (d.kind == VirtioDeviceSpec::Kind::Blk) {
            auto it = std::find_if(c.drives.begin(), c.drives.end(), [&](const DriveSpec& s) { return s.id == d.drive; });
            if (it == c.drives.end())
                return fmt::format("-device virtio-blk-device,drive={}: no -drive with id={}", d.drive, d.drive);
            if (it->used) return fmt::format("-device virtio-blk-device,drive={}: the drive is already in use", d.drive);
            it->used = true;
        } else if (d.kind == VirtioDeviceSpec::Kind::Net) {
            // QEMU's default MACs: 52:54:00:12:34:56, then :57, ... for each NIC without mac=.
            if (!d.mac_given) d.mac[5] = uint8_t(0x56 + nics++);
            if (d.netdev.empty()) continue;
            auto it = std::find_if(c.netdevs.begin(), c.netdevs.end(), [&](const NetdevSpec& s) { return s.id == d.netdev; });
            if (it == c.netdevs.end())
                return fmt::format("-device virtio-net-device,netdev={}: no -netdev with id={}", d.netdev, d.netdev);
            if (it->used) return fmt::format("-device virtio-net-device,netdev={}: the netdev is already in use", d.netdev);
            it->used = true;
        } else if (d.kind == VirtioDeviceSpec::Kind::Console && !d.chardev.empty()) {
            if (std::find(chardev_ids.begin(), chardev_ids.end(), d.chardev) == chardev_ids.end())
                return fmt::format("-device virtconsole,chardev={}: no -chardev with id={}", d.chardev, d.chardev);
            for (const auto& o : c.devices)
                if (&o != &d && o.kind == VirtioDeviceSpec::Kind::Console && o.chardev == d.chardev)
                    return fmt::format("-device virtconsole,chardev={}: the chardev is already in use", d.chardev);
        }
    }
    return "";
}

}  // namespace m86::machine
