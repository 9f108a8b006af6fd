#include "machine/microvm.h"

#include <fmt/format.h>

#include <algorithm>

#include "cpu/cpuid.h"
#include "machine/boot/linux.h"
#include "machine/host.h"
#include "machine/layout.h"

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
    return vm;
}

bool Microvm::build(std::string& error) {
    using namespace layout;
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
                serial_host_ = host::open_file_chardev(spec->path, e);
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

        // vCPUs and their local APICs.
        for (unsigned i = 0; i < cfg_.cpus; i++) {
            auto v = std::make_unique<Vcpu>();
            v->cpu = std::make_unique<cpu::Cpu>(*this);
            v->cpu->apic_id = i;
            v->cpu->num_cpus = cfg_.cpus;
            v->cpu->is_bsp = i == 0;
            v->cpu->stop_on_exception = false;
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
    } catch (const dev::BusError& e) {
        error = e.what();
        return false;
    }
    if (!load_kernel(error)) return false;
    reset_machine();
    return true;
}

bool Microvm::load_kernel(std::string& error) {
    if (cfg_.kernel.empty()) {
        error = "no -kernel given (firmware boot through qboot is not implemented yet)";
        return false;
    }
    std::vector<uint8_t> kfile, initrd;
    std::string e;
    if (!host::read_file(cfg_.kernel, kfile, e)) {
        error = fmt::format("-kernel {}: {}", cfg_.kernel, e);
        return false;
    }
    boot::KernelImage k;
    if (!boot::parse_kernel(std::move(kfile), k, e)) {
        error = fmt::format("-kernel {}: {}", cfg_.kernel, e);
        return false;
    }
    boot::BootConfig bc;
    bc.cmdline = cfg_.append;
    bc.cpus = cfg_.cpus;
    if (!cfg_.initrd.empty() && !host::read_file(cfg_.initrd, bc.initrd, e)) {
        error = fmt::format("-initrd {}: {}", cfg_.initrd, e);
        return false;
    }
    cpu::CpuState st;
    if (!boot::load_linux(k, bc, ram_, st, e)) {
        error = fmt::format("-kernel {}: {}", cfg_.kernel, e);
        return false;
    }
    boot_state_ = st;
    have_boot_state_ = true;
    return true;
}

void Microvm::reset_machine() {
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

uint8_t* Microvm::page_ptr(uint64_t page, bool) { return ram_.ptr(page, cpu::kPageSize); }

uint64_t Microvm::mmio_read(uint64_t addr, unsigned size) {
    dev::Lapic& l = *vcpus_[current_]->lapic;
    if (l.mmio_enabled() && (addr & ~(layout::kLapicSize - 1)) == l.base_address())
        return l.read(addr & (layout::kLapicSize - 1), size);
    return mmio_.read(addr, size);
}

void Microvm::mmio_write(uint64_t addr, unsigned size, uint64_t value) {
    dev::Lapic& l = *vcpus_[current_]->lapic;
    if (l.mmio_enabled() && (addr & ~(layout::kLapicSize - 1)) == l.base_address()) {
        l.write(addr & (layout::kLapicSize - 1), size, value);
        return;
    }
    mmio_.write(addr, size, value);
}

uint32_t Microvm::io_read(uint16_t port, unsigned size) { return io_.in(port, size); }

void Microvm::io_write(uint16_t port, unsigned size, uint32_t value) { io_.out(port, size, value); }

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
    if (!serial_host_) return;
    if (serial_host_->quit_requested()) {
        quit_ = true;
        return;
    }
    if (!uart_) return;
    uint8_t buf[64];
    size_t room = std::min<size_t>(uart_->rx_space(), sizeof buf);
    if (room == 0) return;
    size_t n = serial_host_->read(buf, room);
    for (size_t i = 0; i < n; i++) uart_->receive(buf[i]);
    if (serial_host_->quit_requested()) quit_ = true;
}

int Microvm::run() {
    constexpr uint64_t kSlice = 20000;  // instructions per vCPU turn
    uint64_t last_poll = host::monotonic_ns();
    while (!quit_) {
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
        if (all_idle) {
            uint64_t deadline = clock_.next_deadline();
            if (clock_.mode() == dev::ClockMode::Deterministic) {
                if (deadline == dev::kNever) {
                    // Nothing can ever wake the guest except input.
                    std::vector<int> fds;
                    if (serial_host_ && serial_host_->input_fd() >= 0) fds.push_back(serial_host_->input_fd());
                    if (fds.empty()) {
                        fmt::print(stderr, "\nmicro86: every vCPU is halted with no timer or input that could wake it\n");
                        quit_ = true;
                        exit_status_ = 1;
                        break;
                    }
                    host::wait_for_input(fds, -1);
                } else {
                    clock_.idle_until(deadline);
                }
            } else {
                std::vector<int> fds;
                if (serial_host_ && serial_host_->input_fd() >= 0) fds.push_back(serial_host_->input_fd());
                int64_t wait = deadline == dev::kNever ? 100'000'000 : int64_t(clock_.ns_until(deadline));
                if (wait > 0) host::wait_for_input(fds, std::min<int64_t>(wait, 100'000'000));
            }
            if (clock_.due()) clock_.run_due();
        }
    }
    flush_output();
    return exit_status_;
}

}  // namespace m86::machine
