#include "machine/microvm.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "cpu/cpuid.h"
#include "cpu/decode.h"
#include "jit/jit.h"
#include "machine/boot/firmware.h"
#include "machine/boot/linux.h"
#include "machine/boot/multiboot.h"
#include "machine/host.h"
#include "machine/layout.h"
#include "machine/virtio_slots.h"

namespace m86::machine {

using cpu::StopReason;

// ---- glue between a cpu::Cpu and its dev::Lapic --------------------------------------------------

struct Microvm::Vcpu : public cpu::Platform, public dev::CpuPins {
    std::unique_ptr<cpu::Cpu> cpu;
    std::unique_ptr<dev::Lapic> lapic;

    // cpu::Platform
    int intr_acknowledge() override { return lapic->acknowledge(); }
    bool msr_read(uint32_t msr, uint64_t* value) override {
        if (msr == dev::lapic::kMsrApicBase || msr == dev::lapic::kMsrTscDeadline ||
            (msr >= dev::lapic::kMsrX2apicFirst && msr <= dev::lapic::kMsrX2apicLast))
            return lapic->msr_read(msr, value);
        return false;
    }
    bool msr_write(uint32_t msr, uint64_t value) override {
        if (msr == dev::lapic::kMsrApicBase || msr == dev::lapic::kMsrTscDeadline ||
            (msr >= dev::lapic::kMsrX2apicFirst && msr <= dev::lapic::kMsrX2apicLast))
            return lapic->msr_write(msr, value);
        return false;
    }
    void tpr_written(uint8_t cr8) override { lapic->set_cr8(cr8); }

    // dev::CpuPins
    void set_intr(bool level) override { cpu->set_intr(level); }
    void nmi() override { cpu->raise_nmi(); }
    void init() override {
        lapic->init_reset();
        cpu->raise_init();
    }
    void sipi(uint8_t vector) override { cpu->raise_sipi(vector); }
};

// The UART's transmit side, buffered so a console line costs one host write, not one per byte.
class Microvm::SerialOut : public dev::SerialBackend {
public:
    explicit SerialOut(host::CharDev* out) : out_(out) {}
    void transmit(uint8_t byte) override {
        buf_.push_back(byte);
        if (buf_.size() >= 4096 || byte == '\n') flush();
    }
    void flush() {
        if (!buf_.empty() && out_) out_->write(buf_.data(), buf_.size());
        buf_.clear();
    }

private:
    host::CharDev* out_;
    std::vector<uint8_t> buf_;
};

// Guest physical memory as devices see it for DMA (QEMU's address_space_memory): RAM below and
// above 4 GiB and the firmware through both of its aliases. Every access is checked as a whole
// before any byte moves; writes drop the decoded code of the pages they touch in every vCPU.
class Microvm::PhysDma : public dev::DmaMemory {
public:
    explicit PhysDma(Microvm& vm) : vm_(vm) {}
    bool read(uint64_t addr, void* dst, uint64_t len) override {
        if (!check(addr, len)) return false;
        auto* d = static_cast<uint8_t*>(dst);
        walk(addr, len, [&](uint8_t* p, uint64_t n) { std::memcpy(d, p, n), d += n; });
        return true;
    }
    bool write(uint64_t addr, const void* src, uint64_t len) override {
        if (!check(addr, len)) return false;
        auto* s = static_cast<const uint8_t*>(src);
        walk(addr, len, [&](uint8_t* p, uint64_t n) { std::memcpy(p, s, n), s += n; });
        vm_.code_written(addr, len);
        return true;
    }
    bool fill(uint64_t addr, uint8_t byte, uint64_t len) override {
        if (!check(addr, len)) return false;
        walk(addr, len, [&](uint8_t* p, uint64_t n) { std::memset(p, byte, n); });
        vm_.code_written(addr, len);
        return true;
    }

private:
    // Host pointer for `addr` and how many bytes follow it in the same backing.
    uint8_t* at(uint64_t addr, uint64_t* avail) {
        if (uint8_t* f = vm_.firmware_at(addr, avail)) return f;
        GuestRam& ram = vm_.ram_;
        if (addr < ram.low_size()) {
            uint64_t end = ram.low_size();
            if (vm_.isa_size_ && addr < vm_.isa_base_) end = std::min(end, vm_.isa_base_);  // the alias hides RAM
            *avail = end - addr;
            return ram.ptr(addr, 1);
        }
        if (addr >= layout::kHighRamBase && addr - layout::kHighRamBase < ram.high_size()) {
            *avail = ram.high_size() - (addr - layout::kHighRamBase);
            return ram.ptr(addr, 1);
        }
        return nullptr;
    }
    bool check(uint64_t addr, uint64_t len) {
        if (addr + len < addr) return false;
        while (len) {
            uint64_t avail;
            if (!at(addr, &avail)) return false;
            uint64_t n = std::min(len, avail);
            addr += n, len -= n;
        }
        return true;
    }
    template <class F> void walk(uint64_t addr, uint64_t len, F f) {
        while (len) {
            uint64_t avail;
            uint8_t* p = at(addr, &avail);
            uint64_t n = std::min(len, avail);
            f(p, n);
            addr += n, len -= n;
        }
    }
    Microvm& vm_;
};

// ---- construction --------------------------------------------------------------------------------

namespace {
dev::ClockConfig clock_config(const VmConfig& c) {
    dev::ClockConfig cc;
    if (c.deterministic) {
        cc.mode = dev::ClockMode::Deterministic;
        cc.ps_per_instruction = 1000ull << c.icount_shift;
    }
    return cc;
}
}  // namespace

Microvm::Microvm(const VmConfig& cfg) : cfg_(cfg), ram_(cfg.ram_size), clock_(clock_config(cfg)) {
    tsc_scale_.hz = cpu::cpuid::kTscHz;
}

Microvm::~Microvm() { flush_output(); }

std::unique_ptr<Microvm> Microvm::create(const VmConfig& cfg, std::string& error) {
    std::unique_ptr<Microvm> vm;
    try {
        vm.reset(new Microvm(cfg));
    } catch (const std::bad_alloc&) {
        error = fmt::format("cannot allocate {} MiB of guest RAM", cfg.ram_size >> 20);
        return nullptr;
    }
    if (!vm->build(error)) return nullptr;
    if (!vm->open_outputs(error)) return nullptr;
    return vm;
}

bool Microvm::build(std::string& error) {
    using namespace layout;
    dma_ = std::make_unique<PhysDma>(*this);
    fw_cfg_ = std::make_unique<dev::FwCfg>(dma_.get());
    fw_cfg_->set_clock(&clock_);  // long DMA transfers continue on later turns of the run loop
    try {
        // The I/O APIC and the APIC bus.
        ioapic_ = std::make_unique<dev::Ioapic>(&apic_bus_, uint8_t(cfg_.cpus + 1));  // ID as in the MP table
        apic_bus_.add_eoi_listener(ioapic_.get());
        mmio_.map(kIoapicBase, kIoapicSize, ioapic_.get(), "ioapic");

        // The 8259 pair: its INTR output reaches LINT0 of every LAPIC (virtual-wire / ExtINT).
        bool have_pic = cfg_.pic != OnOffAuto::Off;
        if (have_pic) {
            pic_ = std::make_unique<dev::Pic8259>(dev::IrqLine{&lint0_, 0});
            io_.map(kPicMaster, 2, &pic_->master(), "pic-master");
            io_.map(kPicSlave, 2, &pic_->slave(), "pic-slave");
            io_.map(kPicElcr, 2, &pic_->elcr(), "elcr");
        }
        // ISA IRQ routing: IRQ n -> PIC pin n and IOAPIC pin n, except IRQ0 -> IOAPIC pin 2.
        for (unsigned irq = 0; irq < 16; irq++) {
            if (pic_) isa_irq_.connect(irq, dev::IrqLine{pic_.get(), irq});
            if (irq != 2) isa_irq_.connect(irq, dev::IrqLine{ioapic_.get(), irq == 0 ? 2u : irq});
        }
        if (cfg_.pit != OnOffAuto::Off) {
            pit_ = std::make_unique<dev::Pit8254>(clock_, dev::IrqLine{&isa_irq_, 0});
            io_.map(kPit, 4, pit_.get(), "pit");
            io_.map(kPort61, 1, &pit_->port61(), "port61");
        }
        if (cfg_.rtc != OnOffAuto::Off) {
            rtc_ = std::make_unique<dev::Rtc146818>(clock_, dev::IrqLine{&isa_irq_, kRtcIrq});
            rtc_->set_memory_sizes(ram_.low_size(), ram_.high_size());
            io_.map(kRtc, 2, rtc_.get(), "rtc");
        }
        if (cfg_.isa_serial) {
            const CharDevSpec* spec = cfg_.serials.empty() ? nullptr : &cfg_.serials[0];
            if (spec && spec->kind == CharDevSpec::Kind::Stdio) {
                serial_host_ = host::open_stdio_chardev();
            } else if (spec && spec->kind == CharDevSpec::Kind::File) {
                std::string e;
                serial_host_ = host::open_file_chardev(spec->path, spec->append, e);
                if (!serial_host_) {
                    error = fmt::format("-serial file:{}: {}", spec->path, e);
                    return false;
                }
            } else {
                serial_host_ = host::open_null_chardev();
            }
            serial_out_ = std::make_unique<SerialOut>(serial_host_.get());
            uart_ = std::make_unique<dev::Uart16550>(clock_, dev::IrqLine{&isa_irq_, kCom1Irq}, serial_out_.get());
            io_.map(kCom1, 8, uart_.get(), "com1");
        }
        // fw_cfg (always present on microvm, as in QEMU) and any isa-debug-exit devices.
        io_.map(kFwCfgSelector, 2, &fw_cfg_->io(), "fw_cfg");
        io_.map(kFwCfgDma, 8, &fw_cfg_->dma(), "fw_cfg-dma");
        for (const auto& x : cfg_.debug_exits) {
            debug_exits_.push_back(std::make_unique<dev::DebugExit>(this));
            io_.map(x.iobase, x.iosize, debug_exits_.back().get(), "isa-debug-exit");
        }

        // vCPUs and their local APICs.
        auto code = cpu::make_code_cache();  // shared: one vCPU's code patch reaches all of them
        if (cfg_.jit) code->set_translator(jit::make_translator(), jit::kDefaultThreshold);
        for (unsigned i = 0; i < cfg_.cpus; i++) {
            auto v = std::make_unique<Vcpu>();
            v->cpu = std::make_unique<cpu::Cpu>(*this, code);
            v->cpu->apic_id = i;
            v->cpu->num_cpus = cfg_.cpus;
            v->cpu->is_bsp = i == 0;
            v->cpu->stop_on_exception = false;
            v->cpu->return_on_yield = true;  // a long REP lets the loop below serve timers and input
            v->cpu->jit_check = cfg_.jit_check != 0;
            v->cpu->jit_check_every = std::max(cfg_.jit_check, 1u);
            v->cpu->platform = v.get();
            dev::LapicConfig lc;
            lc.apic_id = i;
            lc.bsp = i == 0;
            lc.bus_hz = cpu::cpuid::kCrystalHz;
            lc.tsc = tsc_scale_;
            v->lapic = std::make_unique<dev::Lapic>(clock_, lc, v.get(), &apic_bus_, &apic_bus_, pic_.get());
            apic_bus_.add_lapic(v->lapic.get());
            lint0_.connect(0, dev::IrqLine{v->lapic.get(), dev::lapic::kLint0});
            vcpus_.push_back(std::move(v));
        }

        // The eight virtio-mmio transports with the devices and host backends of the command line.
        VirtioSlots::Wiring vw;
        vw.dma = dma_.get();
        vw.isa_irq = &isa_irq_;
        vw.mmio = &mmio_;
        vw.clock = &clock_;
        if (uart_ && !cfg_.serials.empty() && cfg_.serials[0].kind == CharDevSpec::Kind::Stdio)
            vw.stdio = serial_host_.get();  // one terminal: a virtconsole on stdio shares it
        virtio_ = VirtioSlots::create(cfg_, vw, error);
        if (!virtio_) return false;
    } catch (const dev::BusError& e) {
        error = e.what();
        return false;
    }
    if (!setup_boot(error)) return false;
    try {
        build_fw_cfg();
    } catch (const std::exception& e) {
        error = e.what();
        return false;
    }
    reset_machine();
    return true;
}

// The kernel command line the guest gets (QEMU's microvm appends the virtio-mmio devices here
// with auto-kernel-cmdline).
std::string Microvm::kernel_cmdline() const {
    return cfg_.auto_kernel_cmdline ? cfg_.append + virtio_->cmdline_suffix() : cfg_.append;
}

// virtio-mmio slots with a device behind them (for etc/fdt and the command line).
std::vector<unsigned> Microvm::populated_virtio_slots() const { return virtio_->populated(); }

bool Microvm::load_firmware(const std::string& path, std::string& error) {
    std::string e;
    inputs_.push_back({"-bios", path});
    if (!host::read_file(path, fw_image_, e, boot::kFirmwareMax)) {
        error = fmt::format("-bios {}: {}", path, e);
        return false;
    }
    if (!boot::check_firmware(fw_image_, e)) {
        error = fmt::format("-bios {}: {}", path, e);
        fw_image_.clear();
        return false;
    }
    fw_mem_ = host::GuestMemory(fw_image_.size());
    fw_base_ = layout::kFirmwareTop - fw_image_.size();
    isa_size_ = std::min<uint64_t>(fw_image_.size(), boot::kIsaBiosMax);
    isa_base_ = layout::kHighMemBase - isa_size_;
    return true;
}

// Pick the boot path, load the firmware and/or the kernel, and add the kernel's fw_cfg items.
bool Microvm::setup_boot(std::string& error) {
    std::string fw_path;
    if (!cfg_.bios.empty()) {
        // A path names the file itself: read_file says what is wrong with it (not a regular
        // file, unreadable, missing) rather than "no such file".
        fw_path = cfg_.bios.find('/') != std::string::npos ? cfg_.bios : boot::find_data_file(cfg_.bios, cfg_.data_dirs);
        if (fw_path.empty()) {
            error = fmt::format("-bios {}: no such file (also looked in the data directories: -L, /usr/share/qemu, ...)",
                                cfg_.bios);
            return false;
        }
    } else if (!cfg_.direct_boot && !cfg_.kernel.empty()) {
        fw_path = boot::find_data_file(boot::kQbootName, cfg_.data_dirs);
        if (fw_path.empty())
            fmt::print(stderr, "micro86: no {} firmware found (-L DIR, /usr/share/qemu, ...: Debian's "
                               "qemu-system-data has it); booting the kernel directly\n", boot::kQbootName);
    }
    if (cfg_.kernel.empty() && fw_path.empty()) {
        error = "nothing to boot: give -kernel (and -initrd/-append), or -bios with a firmware image";
        return false;
    }

    std::vector<uint8_t> kfile, initrd;
    std::string e;
    auto fail = [&](const std::string& what, const std::string& why) {
        error = fmt::format("{}: {}", what, why);
        return false;
    };
    // Inputs are bounded by guest RAM: a kernel or initrd larger than RAM cannot be loaded anyway,
    // and nothing larger is ever allocated for it.
    const uint64_t max_input = std::min<uint64_t>(ram_.size(), host::kMaxInputFile);
    if (!cfg_.kernel.empty()) {
        inputs_.push_back({"-kernel", cfg_.kernel});
        if (!host::read_file(cfg_.kernel, kfile, e, max_input)) return fail("-kernel " + cfg_.kernel, e);
    }
    const std::string cmdline = kernel_cmdline();
    const uint64_t below_4g = ram_.low_size();
    // The kind of kernel, in QEMU's order: a Linux setup header, else a multiboot header, else an
    // ELF vmlinux with a PVH note.
    bool is_linux = kfile.size() >= 0x206 && kfile[0x202] == 'H' && kfile[0x203] == 'd' && kfile[0x204] == 'r' &&
                    kfile[0x205] == 'S';
    boot::MultibootHeader mbh;
    bool is_multiboot = !kfile.empty() && !is_linux && boot::find_multiboot_header(kfile, mbh);

    if (!cfg_.kernel.empty() && !is_multiboot && !cfg_.initrd.empty()) {
        inputs_.push_back({"-initrd", cfg_.initrd});
        if (!host::read_file(cfg_.initrd, initrd, e, max_input)) return fail("-initrd " + cfg_.initrd, e);
    }

    if (is_multiboot) {
        boot::MultibootImage mb;
        boot::FileReader reader = [this, max_input](const std::string& p, std::vector<uint8_t>& out, std::string& err) {
            inputs_.push_back({"-initrd (multiboot module)", p});
            return host::read_file(p, out, err, max_input);
        };
        // The information structure gets -append as given: QEMU builds it before its machine reset
        // adds the virtio-mmio devices (to the fw_cfg command line only).
        if (!boot::build_multiboot(kfile, cfg_.kernel, cfg_.append, cfg_.initrd, reader, mb, e, below_4g))
            return fail("-kernel " + cfg_.kernel, e);
        for (const auto& n : mb.notes) fmt::print(stderr, "micro86: note: {}\n", n);
        boot::multiboot_fw_cfg(mb, *fw_cfg_);
        option_rom_ = boot::kMultibootDma;
        if (fw_path.empty()) {
            direct_loader_ = [this, mb = std::move(mb)](std::string& err) {
                cpu::CpuState st;
                if (!boot::load_multiboot(mb, boot::microvm_e820(ram_), ram_, st, err)) return false;
                boot_state_ = st;
                return true;
            };
        }
    } else if (!cfg_.kernel.empty()) {
        boot::KernelImage k;
        bool parsed = boot::parse_kernel(kfile, k, e);
        if (!parsed && !(is_linux && !fw_path.empty())) return fail("-kernel " + cfg_.kernel, e);
        if (is_linux) {
            if (!boot::linux_fw_cfg(*fw_cfg_, kfile, cmdline, initrd, below_4g, e)) return fail("-kernel " + cfg_.kernel, e);
            option_rom_ = boot::kLinuxbootDma;
        } else {
            if (!boot::pvh_fw_cfg(*fw_cfg_, k, cmdline, initrd, below_4g, e)) return fail("-kernel " + cfg_.kernel, e);
            option_rom_ = boot::kPvhRom;
        }
        if (fw_path.empty()) {
            boot::BootConfig bc;
            bc.cmdline = cmdline;
            bc.cpus = cfg_.cpus;
            bc.initrd = std::move(initrd);
            direct_loader_ = [this, k = std::move(k), bc = std::move(bc)](std::string& err) {
                cpu::CpuState st;
                if (!boot::load_linux(k, bc, ram_, st, err)) return false;
                boot_state_ = st;
                return true;
            };
        } else if (!is_linux && !boot::load_elf_segments(k, ram_, e)) {
            return fail("-kernel " + cfg_.kernel, e);
        }
    }
    if (!cfg_.kernel.empty()) {
        // QEMU's microvm rewrites the command line items at machine reset for every kind of kernel
        // (microvm_fix_kernel_cmdline, which also appends the virtio-mmio devices).
        fw_cfg_->set_u32(dev::fwcfg::kCmdlineSize, uint32_t(cmdline.size() + 1));
        fw_cfg_->set_string(dev::fwcfg::kCmdlineData, cmdline);
    }
    if (!fw_path.empty() && !load_firmware(fw_path, error)) return false;
    // Direct boot: load now (reporting any problem at start), and again at every machine reset,
    // as QEMU copies its ROM blobs back into memory at reset.
    if (direct_loader_) {
        if (!direct_loader_(e)) return fail("-kernel " + cfg_.kernel, e);
        have_boot_state_ = true;
    }
    return true;
}

bool Microvm::open_outputs(std::string& error) {
    // The outputs: the ISA serial port's file, and every file -chardev a virtconsole uses.
    struct Output {
        std::string what, path;
    };
    std::vector<Output> outs;
    if (uart_ && !cfg_.serials.empty() && cfg_.serials[0].kind == CharDevSpec::Kind::File) {
        const CharDevSpec& s = cfg_.serials[0];
        outs.push_back({s.id.empty() ? "-serial file:" + s.path : "-chardev file,id=" + s.id, s.path});
    }
    for (const auto& d : cfg_.virtio.devices) {
        if (d.chardev.empty()) continue;
        for (const auto& c : cfg_.chardevs)
            if (c.id == d.chardev && c.kind == CharDevSpec::Kind::File)
                outs.push_back({"-chardev file,id=" + c.id, c.path});
    }
    for (const auto& d : cfg_.virtio.drives) inputs_.push_back({"-drive id=" + d.id, d.file});

    for (size_t i = 0; i < outs.size(); i++) {
        host::FileId out_id;
        bool exists = host::file_id(outs[i].path, out_id);
        if (exists) {
            for (const auto& [what, path] : inputs_) {
                host::FileId in_id;
                if (host::file_id(path, in_id) && in_id == out_id) {
                    error = fmt::format("{}: this file is also the input {} {}; refusing to overwrite it", outs[i].what,
                                        what, path);
                    return false;
                }
            }
        }
        // A file that does not exist yet is named by its directory's identity and its own name,
        // so "log" and "./log" are one file too.
        auto where = [](const std::string& path) {
            auto slash = path.rfind('/');
            std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
            host::FileId d;
            if (!host::file_id(dir, d)) return std::pair<host::FileId, std::string>{{}, path};
            return std::pair<host::FileId, std::string>{d, path.substr(slash == std::string::npos ? 0 : slash + 1)};
        };
        for (size_t j = 0; j < i; j++) {
            host::FileId other;
            bool same = exists ? host::file_id(outs[j].path, other) && other == out_id
                               : where(outs[j].path) == where(outs[i].path);
            if (same) {
                error = fmt::format("{}: the same file is already the output of {}; two outputs cannot share one file",
                                    outs[i].what, outs[j].what);
                return false;
            }
        }
    }
    // Everything is checked: only now are output files created or truncated.
    std::string e;
    if (serial_host_ && !serial_host_->open_output(e)) {
        error = fmt::format("-serial: {}", e);
        return false;
    }
    return virtio_->open_outputs(error);
}

// The board's fw_cfg items (hw/i386/microvm.c and the fw_cfg core), the option ROM QEMU would add
// for the kernel (with x-option-roms=on), and the device tree.
void Microvm::build_fw_cfg() {
    boot::MicrovmFwCfgInfo info;
    info.cpus = cfg_.cpus;
    info.max_cpus = cfg_.max_cpus ? cfg_.max_cpus : cfg_.cpus;
    info.ram_size = ram_.size();
    info.below_4g = ram_.low_size();
    info.above_4g = ram_.high_size();
    info.nographic = cfg_.nographic;
    boot::microvm_fw_cfg(*fw_cfg_, info);
    if (cfg_.option_roms && !option_rom_.empty()) {
        std::string path = boot::find_data_file(option_rom_, cfg_.data_dirs), e;
        std::vector<uint8_t> rom;
        if (!path.empty() && host::read_file(path, rom, e)) boot::add_option_rom(*fw_cfg_, option_rom_, std::move(rom));
    }
    boot::FdtDevices fdt;
    fdt.virtio_slots = populated_virtio_slots();
    fdt.serial = uart_ && !cfg_.serials.empty() && cfg_.serials[0].kind != CharDevSpec::Kind::None;
    fdt.rtc = rtc_ != nullptr;
    fw_cfg_->set_file("etc/fdt", boot::microvm_fdt(fdt));
}

void Microvm::reset_machine() {
    if (firmware_boot()) {
        // As QEMU's ROM reset: the firmware starts again from its pristine image.
        std::memcpy(fw_mem_.data(), fw_image_.data(), fw_image_.size());
    }
    if (direct_loader_ && resets_++ > 0) {
        std::string e;
        if (!direct_loader_(e)) {
            fmt::print(stderr, "micro86: reloading -kernel at reset: {}\n", e);
            quit_ = true;
            exit_status_ = 1;
        }
    }
    fw_cfg_->reset();
    virtio_->reset();
    if (!vcpus_.empty()) vcpus_[0]->cpu->code().invalidate_all();  // shared by every vCPU
    for (auto& v : vcpus_) {
        v->cpu->reset();
        v->lapic->reset();
    }
    if (have_boot_state_) {
        // Direct boot: the BSP starts at the kernel's entry with the state the loader built.
        cpu::Cpu& bsp = *vcpus_[0]->cpu;
        cpu::CpuState st = boot_state_;
        st.x87 = bsp.s.x87;
        st.mxcsr = bsp.s.mxcsr;
        st.apic_base = bsp.s.apic_base;
        bsp.s = st;
        bsp.update_mode();
        bsp.tlb_flush();
    }
}

cpu::Cpu& Microvm::cpu(unsigned i) { return *vcpus_.at(i)->cpu; }

// ---- cpu::Bus ------------------------------------------------------------------------------------

uint8_t* Microvm::firmware_at(uint64_t addr, uint64_t* avail) {
    if (fw_image_.empty()) return nullptr;
    uint64_t off;
    if (addr >= fw_base_ && addr < layout::kFirmwareTop) {
        off = addr - fw_base_;
        if (avail) *avail = layout::kFirmwareTop - addr;
    } else if (addr >= isa_base_ && addr < layout::kHighMemBase) {
        off = fw_image_.size() - isa_size_ + (addr - isa_base_);
        if (avail) *avail = layout::kHighMemBase - addr;
    } else {
        return nullptr;
    }
    return fw_mem_.data() + off;
}

void Microvm::code_written(uint64_t addr, uint64_t len) {
    if (len == 0) return;
    // The code cache is shared by the vCPUs: one invalidation retires the page's blocks for all;
    // every vCPU also leaves the block it is in (the running one may have just been overwritten).
    auto drop = [&](uint64_t page) {
        if (vcpus_.empty() || !vcpus_[0]->cpu->code().page_has_code(page)) return;
        for (auto& v : vcpus_) v->cpu->code_page_written(page);
    };
    for (uint64_t p = addr & cpu::kPageMask; p < addr + len; p += cpu::kPageSize) {
        drop(p);
        // The same firmware byte under its other address.
        if (!fw_image_.empty()) {
            if (p >= fw_base_ && p - fw_base_ >= fw_image_.size() - isa_size_)
                drop(isa_base_ + (p - fw_base_ - (fw_image_.size() - isa_size_)));
            else if (p >= isa_base_ && p < layout::kHighMemBase)
                drop(fw_base_ + fw_image_.size() - isa_size_ + (p - isa_base_));
        }
    }
}

dev::DmaMemory& Microvm::dma() { return *dma_; }

// Firmware pages read through the host mapping but are written through mmio_write (the write gets
// no host pointer), so the board sees every write and can keep both aliases' decoded code coherent.
uint8_t* Microvm::page_ptr(uint64_t page, bool write) {
    if (uint8_t* f = firmware_at(page)) return write ? nullptr : f;
    return ram_.ptr(page, cpu::kPageSize);
}

uint64_t Microvm::mmio_read(uint64_t addr, unsigned size) {
    if (uint8_t* f = firmware_at(addr)) {
        uint64_t v = 0;
        std::memcpy(&v, f, size);
        return v;
    }
    dev::Lapic& l = *vcpus_[current_]->lapic;
    if (l.mmio_enabled() && (addr & ~(layout::kLapicSize - 1)) == l.base_address())
        return l.read(addr & (layout::kLapicSize - 1), size);
    return mmio_.read(addr, size);
}

void Microvm::mmio_write(uint64_t addr, unsigned size, uint64_t value) {
    if (uint8_t* f = firmware_at(addr)) {
        std::memcpy(f, &value, size);
        code_written(addr, size);
        return;
    }
    dev::Lapic& l = *vcpus_[current_]->lapic;
    if (l.mmio_enabled() && (addr & ~(layout::kLapicSize - 1)) == l.base_address()) {
        l.write(addr & (layout::kLapicSize - 1), size, value);
        return;
    }
    mmio_.write(addr, size, value);
}

uint32_t Microvm::io_read(uint16_t port, unsigned size) { return io_.in(port, size); }

void Microvm::io_write(uint16_t port, unsigned size, uint32_t value) { io_.out(port, size, value); }

void Microvm::request_exit(int status) {
    exit_status_ = status;
    quit_ = true;
    vcpus_[current_]->cpu->request_stop();
}

uint64_t Microvm::tsc(uint64_t icount) {
    uint64_t now = clock_.now();
    if (clock_.mode() == dev::ClockMode::Deterministic)  // time inside the running slice
        now += ((icount - slice_start_icount_) << cfg_.icount_shift);
    return tsc_scale_.ticks(now);
}

// ---- the run loop --------------------------------------------------------------------------------

void Microvm::flush_output() {
    if (serial_out_) serial_out_->flush();
}

void Microvm::poll_input() {
    if (virtio_->service()) quit_ = true;  // network backends, virtio console input (Ctrl-A x there)
    if (!serial_host_) return;
    if (serial_host_->quit_requested()) {
        quit_ = true;
        return;
    }
    if (!uart_ || virtio_->takes_input_from(serial_host_.get())) return;  // the terminal feeds hvc0
    uint8_t buf[64];
    size_t room = std::min<size_t>(uart_->rx_space(), sizeof buf);
    if (room == 0) return;
    size_t n = serial_host_->read(buf, room);
    for (size_t i = 0; i < n; i++) uart_->receive(buf[i]);
    if (serial_host_->quit_requested()) quit_ = true;
}

void Microvm::print_stats() const {
    uint64_t insns = 0;
    for (const auto& v : vcpus_) insns += v->cpu->icount;
    fmt::print(stderr, "micro86 stats: {} instructions retired on {} vCPU(s)\n", insns, vcpus_.size());
    if (cfg_.jit_check) {
        uint64_t ok = 0, un = 0;
        for (const auto& v : vcpus_) ok += v->cpu->jit_checked, un += v->cpu->jit_unchecked;
        fmt::print(stderr, "  jit-check: {} block runs checked, {} unchecked (MMIO, ports, MSRs, TSC)\n", ok, un);
    }
    fmt::print(stderr, "  run loop: {} passes, {} idle waits, {} idle waits skipped for a pending wake-up\n",
               stats_.passes, stats_.idle_waits, stats_.idle_skipped);
    const cpu::CodeCache& code = vcpus_[0]->cpu->code();
    fmt::print(stderr, "  code cache: {} blocks now, {} decoded, {} lookups, {} invalidations (generation {})\n",
               code.size(), code.stats.decoded, code.stats.lookups, code.stats.invalidations, code.generation());
}

bool Microvm::wake_pending() const {
    for (const auto& v : vcpus_)
        if (v->cpu->wake_pending()) return true;
    return false;
}

int Microvm::run() {
    constexpr uint64_t kSlice = 20000;  // instructions per vCPU turn
    uint64_t last_poll = host::monotonic_ns();
    while (!quit_) {
        stats_.passes++;
        bool all_idle = true;
        for (unsigned i = 0; i < vcpus_.size() && !quit_; i++) {
            current_ = i;
            cpu::Cpu& c = *vcpus_[i]->cpu;
            uint64_t slice = kSlice;
            if (clock_.mode() == dev::ClockMode::Deterministic && clock_.next_deadline() != dev::kNever) {
                uint64_t ns = clock_.ns_until(clock_.next_deadline());
                slice = std::clamp<uint64_t>(ns >> cfg_.icount_shift, 1, kSlice);
            }
            slice_start_icount_ = c.icount;
            vcpus_[i]->lapic->set_tsc_offset(c.s.tsc_offset);
            StopReason r = c.run(slice);
            uint64_t ran = c.icount - slice_start_icount_;
            if (clock_.mode() == dev::ClockMode::Deterministic) clock_.advance(ran);
            if (r == StopReason::Shutdown) {
                flush_output();
                if (cfg_.no_reboot) {
                    quit_ = true;
                    exit_status_ = 0;
                    break;
                }
                reset_machine();
                all_idle = false;
                break;
            }
            if (r != StopReason::Halt) all_idle = false;
            if (clock_.due()) clock_.run_due();
        }
        if (quit_) break;
        uint64_t now_host = host::monotonic_ns();
        if (now_host - last_poll > 2'000'000 || all_idle) {  // terminal input every 2 ms of host time
            poll_input();
            flush_output();
            last_poll = now_host;
        }
        // A vCPU that halted early in the pass may since have been sent an interrupt (an IPI
        // from a later vCPU, a device completion, a timer run just above): it must run again
        // now, not after the next timer deadline. Checked after the whole pass and every event.
        if (all_idle && wake_pending()) {
            stats_.idle_skipped++;
            all_idle = false;
        }
        if (all_idle) {
            stats_.idle_waits++;
            uint64_t deadline = clock_.next_deadline();
            if (clock_.mode() == dev::ClockMode::Deterministic) {
                if (deadline == dev::kNever) {
                    // Nothing can ever wake the guest except input.
                    std::vector<int> fds;
                    if (serial_host_ && serial_host_->input_fd() >= 0) fds.push_back(serial_host_->input_fd());
                    if (fds.empty() && !virtio_->can_wake()) {
                        fmt::print(stderr, "\nmicro86: every vCPU is halted with no timer or input that could wake it\n");
                        quit_ = true;
                        exit_status_ = 1;
                        break;
                    }
                    virtio_->wait(fds, -1);
                } else {
                    clock_.idle_until(deadline);
                }
            } else {
                std::vector<int> fds;
                if (serial_host_ && serial_host_->input_fd() >= 0) fds.push_back(serial_host_->input_fd());
                int64_t wait = deadline == dev::kNever ? 100'000'000 : int64_t(clock_.ns_until(deadline));
                if (wait > 0) virtio_->wait(fds, std::min<int64_t>(wait, 100'000'000));
            }
            if (clock_.due()) clock_.run_due();
        }
    }
    flush_output();
    return exit_status_;
}

}  // namespace m86::machine
