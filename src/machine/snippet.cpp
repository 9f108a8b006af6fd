#include "machine/snippet.h"

#include "cpu/decode.h"
#include "jit/jit.h"

#include <cstring>

namespace m86::machine {

using namespace m86::cpu;

namespace {
constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000, kPt = 0x4000, kGdt = 0x6000;
constexpr uint64_t kP = 1, kW = 2, kPS = 0x80;
}  // namespace

SnippetEnv::SnippetEnv(size_t ram_size) : bus_(ram_size) {
    uint8_t* ram = bus_.ram();
    auto put64 = [&](uint64_t addr, uint64_t v) { std::memcpy(ram + addr, &v, 8); };
    // Identity map: one PML4 entry, PDPT entries for each GiB of RAM (one PD page per GiB would be
    // needed beyond 1 GiB; the snippet environment keeps to RAM sizes up to 1 GiB).
    put64(kPml4, kPdpt | kP | kW);
    put64(kPdpt, kPd | kP | kW);
    for (uint64_t a = 0; a < ram_size && a < (1ull << 30); a += 2ull << 20) {
        if (a < kSmallPagesEnd)
            put64(kPd + (a >> 21) * 8, (kPt + (a >> 21) * 0x1000) | kP | kW);
        else
            put64(kPd + (a >> 21) * 8, a | kP | kW | kPS);
    }
    for (uint64_t a = 0x1000; a < kSmallPagesEnd && a < ram_size; a += 0x1000) put64(kPt + (a >> 12) * 8, a | kP | kW);
    // GDT: null, 64-bit code, data.
    put64(kGdt + 8, 0x00af9b000000ffffull);
    put64(kGdt + 16, 0x00cf93000000ffffull);
    put64(kGdt + 24, 0x00cf9b000000ffffull);
    reset_cpu();
}

void SnippetEnv::reset_cpu() {
    std::shared_ptr<CodeCache> code = make_code_cache();
    if (jit_threshold_) code->set_translator(jit::make_translator(), jit_threshold_);
    cpu_ = std::make_unique<Cpu>(bus_, code);
    CpuState& s = cpu_->s;
    s = CpuState{};
    s.cr0 = cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG;
    s.cr4 = cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT | cr4::OSXSAVE;
    s.cr3 = kPml4;
    s.efer = efer::SCE | efer::LME | efer::LMA | efer::NXE;
    s.xcr0 = 3;
    s.gdtr = {kGdt, 23};
    for (auto& sr : s.seg) sr = SegReg{0x10, 0, 0xffffffff, 0xc093};
    s.seg[CS] = SegReg{0x08, 0, 0xffffffff, 0xa09b};
    s.rip = kCodeBase;
    s.gpr[RSP] = kStackTop;
    if (bits_ == 32) {
        s.cr0 = cr0::PE | cr0::MP | cr0::ET | cr0::NE;
        s.efer = 0;
        s.seg[CS] = SegReg{0x18, 0, 0xffffffff, 0xc09b};
    } else if (bits_ == 16) {
        s.cr0 = cr0::MP | cr0::ET | cr0::NE;
        s.cr4 &= ~cr4::PAE;
        s.efer = 0;
        for (auto& sr : s.seg) sr = SegReg{0, 0, 0xffff, SegReg::kP | SegReg::kS | 0x3};
        s.seg[CS] = SegReg{uint16_t(kCodeBase16 >> 4), kCodeBase16, 0xffff, SegReg::kP | SegReg::kS | 0xb};
        s.rip = 0;
        s.gpr[RSP] = 0xfff0;
    }
    cpu_->update_mode();
}

bool SnippetEnv::set_jit(uint32_t threshold) {
    if (threshold && !jit::available()) return false;
    jit_threshold_ = threshold;
    reset_cpu();
    return true;
}

void SnippetEnv::set_bits(unsigned bits) {
    bits_ = bits == 16 || bits == 32 ? bits : 64;
    reset_cpu();
}

bool SnippetEnv::poke(uint64_t addr, const void* data, size_t size) {
    if (addr > bus_.ram_size() || size > bus_.ram_size() - addr) return false;
    std::memcpy(bus_.ram() + addr, data, size);
    // Keep decoded code coherent with what was written.
    for (uint64_t p = addr & kPageMask; p < addr + size; p += kPageSize)
        if (cpu_->code().page_has_code(p)) cpu_->code().invalidate_page(p);
    return true;
}

bool SnippetEnv::peek(uint64_t addr, void* data, size_t size) const {
    if (addr > bus_.ram_size() || size > bus_.ram_size() - addr) return false;
    std::memcpy(data, const_cast<FlatBus&>(bus_).ram() + addr, size);
    return true;
}

void SnippetEnv::set_page_present(uint64_t addr, bool present) {
    if (addr >= kSmallPagesEnd || addr >= bus_.ram_size()) return;
    uint64_t pte = (addr & kPageMask) | (present ? kP : 0) | kW;
    std::memcpy(bus_.ram() + kPt + (addr >> 12) * 8, &pte, 8);
    cpu_->tlb_flush_page(addr);
}

bool SnippetEnv::load_code(const std::vector<uint8_t>& code) {
    if (!poke(code_base(), code.data(), code.size())) return false;
    cpu_->s.rip = bits_ == 16 ? 0 : code_base();
    return true;
}

}  // namespace m86::machine
