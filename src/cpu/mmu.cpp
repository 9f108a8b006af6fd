// Address translation and the memory slow paths.
//
// translate() walks the page tables (SDM Vol. 3, chapter 4), setting Accessed/Dirty bits and
// raising #PF with the architectural error code. The slow paths fill the software TLB (cpu.h) for
// RAM/ROM pages and route everything else to the Bus as MMIO. A write to a page that holds decoded
// code invalidates that code first (self-modifying code, DMA'd code).
#include <cstring>

#include "cpu/cpu.h"
#include "cpu/decode.h"

namespace m86::cpu {

namespace {

// Page-table entry bits (SDM Vol. 3, 4.5).
constexpr uint64_t kPteP = 1, kPteW = 2, kPteU = 4, kPteA = 1u << 5, kPteD = 1u << 6, kPtePS = 1u << 7,
                   kPteNX = 1ull << 63;
constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;  // bits 51:12
// #PF error code bits (SDM Vol. 3, 4.7).
constexpr uint32_t kPfP = 1, kPfW = 2, kPfU = 4, kPfRsvd = 8, kPfI = 16;

bool canonical(uint64_t lin, bool la57) {
    unsigned bits = la57 ? 57 : 48;
    int64_t s = int64_t(lin << (64 - bits)) >> (64 - bits);
    return uint64_t(s) == lin;
}

}  // namespace

void Cpu::tlb_flush() {
    for (auto* arr : {tlb_r, tlb_w})
        for (unsigned ctx = 0; ctx < kTlbContexts; ctx++)
            for (auto& e : arr[ctx]) e = TlbEntry{};
    code_->flush_jump_cache();
}

void Cpu::tlb_flush_page(uint64_t lin) {
    for (auto* arr : {tlb_r, tlb_w})
        for (unsigned ctx = 0; ctx < kTlbContexts; ctx++) {
            TlbEntry& e = arr[ctx][(lin >> 12) & (kTlbSize - 1)];
            if (((e.tag ^ lin) & kPageMask) == 0) e = TlbEntry{};
        }
    code_->flush_jump_cache();
}

void Cpu::tlb_protect_code(uint64_t page) {
    for (unsigned ctx = 0; ctx < kTlbContexts; ctx++)
        for (auto& e : tlb_w[ctx])
            if (e.phys == page) e = TlbEntry{};
}

uint64_t Cpu::translate(uint64_t lin, Access acc, bool user) {
    if (!(s.cr0 & cr0::PG)) return (s.efer & efer::LMA) ? lin : uint32_t(lin);
    if (!(s.efer & efer::LMA)) {
        // 32-bit and PAE paging arrive with the system-level work (issue #3).
        log_unimplemented(0, "legacy (non-long-mode) paging");
        raise_fault(kGP, 0);
    }
    bool la57 = s.cr4 & cr4::LA57;
    if (!canonical(lin, la57)) raise_fault(kGP, 0);

    uint32_t err = (acc == Access::Write ? kPfW : 0) | (user ? kPfU : 0) |
                   (acc == Access::Exec && (s.efer & efer::NXE) ? kPfI : 0);
    bool nxe = s.efer & efer::NXE;
    uint64_t rsvd = nxe ? 0 : kPteNX;  // NX is reserved when EFER.NXE = 0

    uint64_t table = s.cr3 & kAddrMask;
    bool writable = true, usr = true, nx = false;
    int levels = la57 ? 5 : 4;
    for (int level = levels; level >= 1; level--) {
        unsigned shift = 12 + 9 * (level - 1);
        uint64_t pte_addr = table + ((lin >> shift) & 511) * 8;
        uint8_t* page = bus.page_ptr(pte_addr & kPageMask, true);
        uint64_t pte;
        if (page)
            std::memcpy(&pte, page + (pte_addr & ~kPageMask), 8);
        else
            pte = bus.mmio_read(pte_addr, 8);
        if (!(pte & kPteP)) raise_fault(kPF, err, lin);
        if (pte & rsvd) raise_fault(kPF, err | kPfP | kPfRsvd, lin);
        writable &= bool(pte & kPteW);
        usr &= bool(pte & kPteU);
        nx |= bool(pte & kPteNX) && nxe;
        bool leaf = level == 1 || ((pte & kPtePS) && level <= 3);
        if ((pte & kPtePS) && level > 3) raise_fault(kPF, err | kPfP | kPfRsvd, lin);
        if (leaf) {
            // Permission checks (SDM Vol. 3, 4.6).
            bool ok = true;
            if (user && !usr) ok = false;
            if (acc == Access::Write && !writable && (user || (s.cr0 & cr0::WP))) ok = false;
            if (acc == Access::Exec && nx) ok = false;
            if (!ok) raise_fault(kPF, err | kPfP, lin);
            uint64_t set = kPteA | (acc == Access::Write ? kPteD : 0);
            if ((pte & set) != set) {
                pte |= set;
                if (page) std::memcpy(page + (pte_addr & ~kPageMask), &pte, 8);
            }
            uint64_t size_mask = (1ull << shift) - 1;
            uint64_t frame = pte & kAddrMask & ~size_mask;
            return frame | (lin & size_mask);
        }
        if (!(pte & kPteA)) {
            pte |= kPteA;
            if (page) std::memcpy(page + (pte_addr & ~kPageMask), &pte, 8);
        }
        table = pte & kAddrMask;
    }
    return 0;  // unreachable
}

// Read within one page.
static void read_page(Cpu& c, uint64_t lin, uint8_t* dst, unsigned size, Access acc) {
    bool user = c.tlb_ctx == 1;
    uint64_t phys = c.translate(lin, acc, user);
    uint64_t page = phys & kPageMask;
    if (uint8_t* host = c.bus.page_ptr(page, false)) {
        if (acc != Access::Exec) {
            uint64_t tag = lin & kPageMask;
            c.tlb_r[c.tlb_ctx][(lin >> 12) & (kTlbSize - 1)] = TlbEntry{tag, intptr_t(host) - intptr_t(tag), page};
        }
        std::memcpy(dst, host + (phys & ~kPageMask), size);
        return;
    }
    for (unsigned off = 0; off < size;) {
        unsigned n = size - off >= 8 && !((phys + off) & 7) ? 8 : size - off >= 4 && !((phys + off) & 3) ? 4
                     : size - off >= 2 && !((phys + off) & 1)                               ? 2
                                                                                            : 1;
        uint64_t v = c.bus.mmio_read(phys + off, n);
        std::memcpy(dst + off, &v, n);
        off += n;
    }
}

void Cpu::read_slow(uint64_t lin, void* dst, unsigned size, Access acc) {
    auto* d = static_cast<uint8_t*>(dst);
    unsigned first = unsigned(std::min<uint64_t>(size, kPageSize - (lin & ~kPageMask)));
    read_page(*this, lin, d, first, acc);
    if (first < size) read_page(*this, lin + first, d + first, size - first, acc);
}

void Cpu::probe_write(uint64_t lin, unsigned size) {
    bool user = tlb_ctx == 1;
    translate(lin, Access::Write, user);
    uint64_t last = lin + size - 1;
    // A fault on the second page reports that page's first byte in CR2 (as the hardware does).
    if ((last & kPageMask) != (lin & kPageMask)) translate(last & kPageMask, Access::Write, user);
}

static void write_page(Cpu& c, uint64_t lin, const uint8_t* src, unsigned size) {
    bool user = c.tlb_ctx == 1;
    uint64_t phys = c.translate(lin, Access::Write, user);
    uint64_t page = phys & kPageMask;
    if (uint8_t* host = c.bus.page_ptr(page, true)) {
        if (c.code().page_has_code(page)) c.code_page_written(page);
        uint64_t tag = lin & kPageMask;
        c.tlb_w[c.tlb_ctx][(lin >> 12) & (kTlbSize - 1)] = TlbEntry{tag, intptr_t(host) - intptr_t(tag), page};
        std::memcpy(host + (phys & ~kPageMask), src, size);
        return;
    }
    for (unsigned off = 0; off < size;) {
        unsigned n = size - off >= 8 && !((phys + off) & 7) ? 8 : size - off >= 4 && !((phys + off) & 3) ? 4
                     : size - off >= 2 && !((phys + off) & 1)                               ? 2
                                                                                            : 1;
        uint64_t v = 0;
        std::memcpy(&v, src + off, n);
        c.bus.mmio_write(phys + off, n, v);
        off += n;
    }
}

void Cpu::write_slow(uint64_t lin, const void* src, unsigned size) {
    auto* s8 = static_cast<const uint8_t*>(src);
    unsigned first = unsigned(std::min<uint64_t>(size, kPageSize - (lin & ~kPageMask)));
    if (first < size) probe_write(lin, size);  // both pages writable before any byte changes
    write_page(*this, lin, s8, first);
    if (first < size) write_page(*this, lin + first, s8 + first, size - first);
}

uint8_t* Cpu::host_ptr(uint64_t lin, Access acc) {
    bool write = acc == Access::Write;
    auto& arr = write ? tlb_w : tlb_r;
    TlbEntry& e = arr[tlb_ctx][(lin >> 12) & (kTlbSize - 1)];
    uint64_t tag = lin & kPageMask;
    if (e.tag == tag) return reinterpret_cast<uint8_t*>(lin + e.addend);
    uint64_t page = translate(lin, acc, tlb_ctx == 1) & kPageMask;
    uint8_t* host = bus.page_ptr(page, write);
    if (!host) return nullptr;  // MMIO: the caller takes its element-wise path
    if (write && code_->page_has_code(page)) code_page_written(page);
    if (acc != Access::Exec) e = TlbEntry{tag, intptr_t(host) - intptr_t(tag), page};
    return host + (lin & ~kPageMask);
}

const uint8_t* Cpu::fetch_ptr(uint64_t lin, uint64_t* phys_page) {
    bool user = tlb_ctx == 1;
    uint64_t phys = translate(lin, Access::Exec, user);
    uint64_t page = phys & kPageMask;
    const uint8_t* host = bus.page_ptr(page, false);
    if (!host) {
        log_unimplemented(0, "instruction fetch from MMIO");
        raise_fault(kGP, 0);
    }
    *phys_page = page;
    return host;
}

}  // namespace m86::cpu
