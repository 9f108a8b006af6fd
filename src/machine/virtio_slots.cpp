// VirtioSlots: building the transports, devices and host backends, and serving them from the
// board's run loop (see virtio_slots.h).
#include "machine/virtio_slots.h"

#include <fmt/format.h>

#include <algorithm>

#include "devices/virtio/blk.h"
#include "devices/virtio/console.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "machine/host.h"
#include "machine/host_block.h"
#include "machine/host_entropy.h"
#include "machine/host_net.h"
#include "machine/host_slirp.h"
#include "machine/host_tap.h"
#include "machine/layout.h"

namespace m86::machine {

using dev::virtio::VirtioMmio;

namespace {

// The seed of virtio-rng's generator in deterministic mode ("micro86" in ASCII): a fixed value, so
// a run's random bytes are the same on every host.
constexpr uint64_t kRngSeed = 0x6d6963726f3836ull;

// An unpopulated transport (QEMU's virtio_mmio_read without a backend): the magic, the version
// and the vendor ID, zero elsewhere; writes are ignored.
class EmptyTransport : public dev::Device {
public:
    explicit EmptyTransport(bool legacy) : legacy_(legacy) {}
    uint64_t read(uint64_t offset, unsigned size) override {
        if (size != 4) return 0;
        namespace reg = dev::virtio::reg;
        switch (offset) {
        case reg::kMagicValue: return dev::virtio::kMagic;
        case reg::kVersion: return legacy_ ? dev::virtio::kVersionLegacy : dev::virtio::kVersionModern;
        case reg::kVendorId: return dev::virtio::kVendorQemu;
        default: return 0;
        }
    }
    void write(uint64_t, unsigned, uint64_t) override {}

private:
    bool legacy_;
};

// A drive opened with discard=ignore (QEMU's default; micro86's is unmap): discards do not punch holes,
// so the device does not offer DISCARD / WRITE_ZEROES with unmap.
class NoDiscard : public dev::BlockBackend {
public:
    explicit NoDiscard(dev::BlockBackend& b) : b_(b) {}
    uint64_t size() const override { return b_.size(); }
    bool read_only() const override { return b_.read_only(); }
    bool read(uint64_t off, void* dst, size_t len) override { return b_.read(off, dst, len); }
    bool write(uint64_t off, const void* src, size_t len) override { return b_.write(off, src, len); }
    bool flush() override { return b_.flush(); }
    bool write_zeroes(uint64_t off, uint64_t len, bool) override { return b_.write_zeroes(off, len, false); }

private:
    dev::BlockBackend& b_;
};

// A NIC with no -netdev: frames from the guest go nowhere (QEMU warns about such a NIC too).
class NullNet : public dev::NetBackend {
public:
    void send(const uint8_t*, size_t) override {}
};

// virtio-console output to a host character device.
class ConsoleOut : public dev::ConsoleBackend {
public:
    explicit ConsoleOut(host::CharDev* cd) : cd_(cd) {}
    void write(const uint8_t* data, size_t n) override {
        if (cd_) cd_->write(data, n);
    }

private:
    host::CharDev* cd_;
};

}  // namespace

struct VirtioSlots::Impl {
    // Host backends (owned here; devices hold references, so these are declared first and
    // destroyed last).
    std::vector<std::unique_ptr<host::HostBlockFile>> disks;     // one per -drive, in order
    std::vector<std::unique_ptr<dev::BlockBackend>> disk_views;  // NoDiscard wrappers
    std::vector<std::unique_ptr<host::HostNetBackend>> nets;     // one per -netdev, in order
    std::vector<std::unique_ptr<dev::NetBackend>> null_nets;
    std::vector<std::unique_ptr<host::CharDev>> chardevs;        // opened here (not the board's)
    std::vector<std::unique_ptr<ConsoleOut>> console_outs;
    std::unique_ptr<dev::EntropySource> entropy;
    // Devices and transports.
    std::vector<std::unique_ptr<dev::virtio::VirtioDevice>> devices;
    VirtioMmio* slots[layout::kVirtioMmioCount] = {};
    std::vector<std::unique_ptr<VirtioMmio>> transports;
    std::vector<std::unique_ptr<EmptyTransport>> empties;
    // What the run loop serves.
    std::vector<host::PollSource*> poll_sources;
    struct ConsoleInput {
        dev::VirtioConsole* console;
        host::CharDev* in;
    };
    std::vector<ConsoleInput> inputs;
};

VirtioSlots::VirtioSlots(const VmConfig& cfg) : cfg_(cfg.virtio), impl_(std::make_unique<Impl>()) {}

VirtioSlots::~VirtioSlots() = default;

std::unique_ptr<VirtioSlots> VirtioSlots::create(const VmConfig& cfg, const Wiring& w, std::string& error) {
    std::unique_ptr<VirtioSlots> vs(new VirtioSlots(cfg));
    Impl& im = *vs->impl_;
    const VirtioConfig& vc = vs->cfg_;

    // Every -drive is opened at start, used or not (as QEMU does): a bad image is an error now.
    // One image under two -drives would be two writers of one file (and our own lock would call
    // the second "locked by another process"): said plainly here instead.
    std::vector<std::pair<host::FileId, const DriveSpec*>> seen;
    for (const DriveSpec& d : vc.drives) {
        host::FileId id;
        if (host::file_id(d.file, id)) {
            for (const auto& [other, spec] : seen)
                if (other == id) {
                    error = fmt::format("-drive id={},file={}: the same image is already given as -drive id={}",
                                        d.id, d.file, spec->id);
                    return nullptr;
                }
            seen.push_back({id, &d});
        }
    }
    for (const DriveSpec& d : vc.drives) {
        std::string e;
        auto f = host::HostBlockFile::open(d.file, d.readonly, e);
        if (!f) {
            error = fmt::format("-drive id={},file={}: {}", d.id, d.file, e);
            return nullptr;
        }
        im.disks.push_back(std::move(f));
    }
    for (const NetdevSpec& n : vc.netdevs) {
        std::string e;
        std::unique_ptr<host::HostNetBackend> b;
        if (n.kind == NetdevSpec::Kind::User) b = host::HostSlirp::create(n.user, *w.clock, e);
        else b = host::HostTap::open(n.ifname, e);
        if (!b) {
            error = fmt::format("-netdev {},id={}: {}", n.kind == NetdevSpec::Kind::User ? "user" : "tap", n.id, e);
            return nullptr;
        }
        im.poll_sources.push_back(b.get());
        im.nets.push_back(std::move(b));
    }

    auto chardev = [&](const std::string& id, host::CharDev*& out) -> bool {
        out = nullptr;
        if (id.empty()) return true;
        auto it = std::find_if(cfg.chardevs.begin(), cfg.chardevs.end(), [&](const CharDevSpec& c) { return c.id == id; });
        if (it == cfg.chardevs.end()) {
            error = fmt::format("-device virtconsole,chardev={}: no -chardev with that id", id);
            return false;
        }
        switch (it->kind) {
        case CharDevSpec::Kind::Stdio:
            if (w.stdio) {
                out = w.stdio;
                return true;
            }
            im.chardevs.push_back(host::open_stdio_chardev());
            break;
        case CharDevSpec::Kind::File: {
            std::string e;
            auto f = host::open_file_chardev(it->path, it->append, e);
            if (!f) {
                error = fmt::format("-chardev file,id={},path={}: {}", id, it->path, e);
                return false;
            }
            im.chardevs.push_back(std::move(f));
            break;
        }
        default:
            im.chardevs.push_back(host::open_null_chardev());
            break;
        }
        out = im.chardevs.back().get();
        return true;
    };

    for (const VirtioDeviceSpec& d : vc.devices) {
        std::unique_ptr<dev::virtio::VirtioDevice> dev;
        switch (d.kind) {
        case VirtioDeviceSpec::Kind::Blk: {
            size_t i = size_t(std::find_if(vc.drives.begin(), vc.drives.end(),
                                           [&](const DriveSpec& s) { return s.id == d.drive; }) - vc.drives.begin());
            if (i >= vc.drives.size()) {
                error = fmt::format("-device virtio-blk-device,drive={}: no -drive with that id", d.drive);
                return nullptr;
            }
            dev::BlockBackend* backend = im.disks[i].get();
            if (!vc.drives[i].discard) {
                im.disk_views.push_back(std::make_unique<NoDiscard>(*backend));
                backend = im.disk_views.back().get();
            }
            dev = std::make_unique<dev::VirtioBlk>(*backend, d.serial);
            break;
        }
        case VirtioDeviceSpec::Kind::Net: {
            dev::NetBackend* backend = nullptr;
            for (size_t i = 0; i < vc.netdevs.size(); i++)
                if (vc.netdevs[i].id == d.netdev) backend = im.nets[i].get();
            if (!backend) {
                im.null_nets.push_back(std::make_unique<NullNet>());
                backend = im.null_nets.back().get();
            }
            dev = std::make_unique<dev::VirtioNet>(*backend, d.mac);
            break;
        }
        case VirtioDeviceSpec::Kind::Console: {
            host::CharDev* cd = nullptr;
            if (d.has_port && !chardev(d.chardev, cd)) return nullptr;
            im.console_outs.push_back(std::make_unique<ConsoleOut>(cd));
            auto con = std::make_unique<dev::VirtioConsole>(cd ? im.console_outs.back().get() : nullptr);
            if (cd && cd->input_fd() >= 0) im.inputs.push_back({con.get(), cd});
            dev = std::move(con);
            break;
        }
        case VirtioDeviceSpec::Kind::Rng:
            if (!im.entropy) {
                if (cfg.deterministic) im.entropy = std::make_unique<dev::SeededEntropy>(kRngSeed);
                else im.entropy = std::make_unique<host::HostEntropy>();
            }
            dev = std::make_unique<dev::VirtioRng>(*im.entropy);
            break;
        }
        const unsigned irq = layout::kVirtioMmioFirstIrq + d.slot;
        const uint64_t base = layout::kVirtioMmioBase + d.slot * layout::kVirtioMmioSize;
        auto t = std::make_unique<VirtioMmio>(*dev, *w.dma, dev::IrqLine{w.isa_irq, irq}, vc.force_legacy);
        std::string name = fmt::format("{}@0x{:x}", dev->name(), base);
        t->set_log([name](const std::string& m) { fmt::print(stderr, "micro86: {}: {}\n", name, m); });
        t->set_clock(w.clock);  // large requests continue on later turns of the run loop
        im.slots[d.slot] = t.get();
        im.devices.push_back(std::move(dev));
        im.transports.push_back(std::move(t));
    }

    try {
        for (unsigned s = 0; s < layout::kVirtioMmioCount; s++) {
            const uint64_t base = layout::kVirtioMmioBase + s * layout::kVirtioMmioSize;
            dev::Device* d = im.slots[s];
            if (!d) {
                im.empties.push_back(std::make_unique<EmptyTransport>(vc.force_legacy));
                d = im.empties.back().get();
            }
            w.mmio->map(base, layout::kVirtioMmioSize, d, fmt::format("virtio-mmio.{}", s));
        }
    } catch (const dev::BusError& e) {
        error = e.what();
        return nullptr;
    }
    return vs;
}

dev::virtio::VirtioMmio* VirtioSlots::transport(unsigned slot) const {
    return slot < layout::kVirtioMmioCount ? impl_->slots[slot] : nullptr;
}

void VirtioSlots::reset() {
    for (auto& t : impl_->transports) t->write(dev::virtio::reg::kStatus, 4, 0);
}

bool VirtioSlots::open_outputs(std::string& error) {
    for (size_t i = 0; i < impl_->chardevs.size(); i++) {
        std::string e;
        if (!impl_->chardevs[i]->open_output(e)) {
            error = fmt::format("-chardev: {}", e);
            return false;
        }
    }
    return true;
}

bool VirtioSlots::takes_input_from(const host::CharDev* cd) const {
    if (!cd) return false;
    return std::any_of(impl_->inputs.begin(), impl_->inputs.end(), [&](const Impl::ConsoleInput& i) { return i.in == cd; });
}

bool VirtioSlots::can_wake() const { return !impl_->poll_sources.empty() || !impl_->inputs.empty(); }

bool VirtioSlots::service() {
    Impl& im = *impl_;
    if (!im.poll_sources.empty()) host::poll_sources(im.poll_sources, {}, 0);
    bool quit = false;
    for (auto& in : im.inputs) {
        uint8_t buf[256];
        size_t room = std::min(in.console->input_space(), sizeof buf);
        if (room) {
            size_t n = in.in->read(buf, room);
            if (n) in.console->input(buf, n);
        }
        quit |= in.in->quit_requested();
    }
    return quit;
}

void VirtioSlots::wait(const std::vector<int>& fds, int64_t timeout_ns) {
    Impl& im = *impl_;
    std::vector<int> all = fds;
    for (auto& in : im.inputs)
        if (in.in->input_fd() >= 0 && in.console->input_space() > 0) all.push_back(in.in->input_fd());
    if (im.poll_sources.empty()) {
        host::wait_for_input(all, timeout_ns);
        return;
    }
    int ms = timeout_ns < 0 ? -1 : int(std::min<int64_t>((timeout_ns + 999'999) / 1'000'000, 1'000'000));
    host::poll_sources(im.poll_sources, all, ms);
}

}  // namespace m86::machine
