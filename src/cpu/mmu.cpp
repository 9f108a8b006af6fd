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
                   kPteG = 1u << 8, kPteNX = 1ull << 63;
constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;  // bits 51:12
// #PF error code bits (SDM Vol. 3, 4.7).
constexpr uint32_t kPfP = 1, kPfW = 2, kPfU = 4, kPfRsvd = 8, kPfI = 16;

bool canonical(uint64_t lin, bool la57) {
    unsigned bits = la57 ? 57 : 48;
    int64_t s = int64_t(lin << (64 - bits)) >> (64 - bits);
    return uint64_t(s) == lin;
}

}  // namespace

void Cpu::tlb_flush(bool keep_global) {
    FillLog<256>& local = tlb_log_[0];
    if (keep_global && !local.full) {
        for (unsigned k = 0; k < local.n; k++) tlb_entry(local.id[k]) = TlbEntry{};
        local.clear();
    } else {
        if (local.full || tlb_log_[1].full) {
            for (auto* arr : {tlb_r, tlb_w})
                for (unsigned ctx = 0; ctx < kTlbContexts; ctx++)
                    for (auto& e : arr[ctx]) e = TlbEntry{};
        } else {
            for (auto& log : tlb_log_)
                for (unsigned k = 0; k < log.n; k++) tlb_entry(log.id[k]) = TlbEntry{};
        }
        tlb_log_[0].clear();
        tlb_log_[1].clear();
    }
    flush_jump_cache(keep_global);
}

void Cpu::tlb_fill(bool write, uint64_t lin, uint8_t* host, uint64_t page) {
    unsigned idx = unsigned(lin >> 12) & (kTlbSize - 1);
    TlbEntry& e = (write ? tlb_w : tlb_r)[tlb_ctx][idx];
    const bool g = xlat_global;  // of the translate() that precedes every fill
    // Log the entry unless it is already valid in the log of its class.
    if ((e.tag & 1) || bool(e.phys & kTlbGlobal) != g) tlb_log_[g].add(unsigned(write) << 10 | tlb_ctx << 8 | idx);
    if (write) {  // (for tlb_flush_writes)
        if (check_wfills_ < std::size(check_wfill_)) check_wfill_[check_wfills_++] = uint16_t(1u << 10 | tlb_ctx << 8 | idx);
        else check_wfill_overflow_ = true;
    }
    uint64_t tag = lin & kPageMask;
    e = TlbEntry{tag, intptr_t(host) - intptr_t(tag), page | (g ? kTlbGlobal : 0)};
}

void Cpu::tlb_flush_writes() {
    if (check_wfill_overflow_) {
        for (auto& ctx : tlb_w)
            for (auto& e : ctx) e = TlbEntry{};
    } else {
        for (unsigned k = 0; k < check_wfills_; k++) tlb_entry(check_wfill_[k]) = TlbEntry{};
    }
    check_wfills_ = 0;
    check_wfill_overflow_ = false;
}

// INVLPG semantics: drop every translation of the page containing `lin` whatever its size. The
// software TLB keeps 4 KiB pieces of large pages, and their size is not recorded, so every entry in
// the surrounding 1 GiB (the largest page size) goes (invalidating more than asked is allowed).
void Cpu::tlb_flush_page(uint64_t lin) {
    auto drop = [lin](TlbEntry& e) {
        if (((e.tag ^ lin) >> 30) == 0) e = TlbEntry{};
    };
    if (tlb_log_[0].full || tlb_log_[1].full) {
        for (auto* arr : {tlb_r, tlb_w})
            for (unsigned ctx = 0; ctx < kTlbContexts; ctx++)
                for (auto& e : arr[ctx]) drop(e);
    } else {
        for (auto& log : tlb_log_)
            for (unsigned k = 0; k < log.n; k++) drop(tlb_entry(log.id[k]));
    }
    // Jump-cache entries of blocks reached through a translation in the same 1 GiB: a block's
    // code may end on the page after its first (page2), so both are compared. The rest of the jump
    // cache stays (the kernel's text, when a user page is invalidated). Tags hold lin << 3: the
    // arithmetic shift restores a canonical address's upper bits.
    auto drop_jump = [lin](JumpEntry& e) {
        const uint64_t first = uint64_t(int64_t(e.tag) >> 3) & ~(kPageSize - 1);
        if (e.block && (((first ^ lin) >> 30) == 0 || (((first + kPageSize) ^ lin) >> 30) == 0)) e = JumpEntry{};
    };
    if (jump_log_[0].full || jump_log_[1].full) {
        for (auto& ctx : jump_)
            for (auto& e : ctx) drop_jump(e);
    } else {
        for (auto& log : jump_log_)
            for (unsigned k = 0; k < log.n; k++) drop_jump(jump_[log.id[k] >> kJumpBits][log.id[k] & (kJumpSize - 1)]);
    }
    link_epoch_ = code_->new_epoch();  // cross-page links were made through the old translations
}

void Cpu::tlb_protect_code(uint64_t page) {
    auto drop = [page](TlbEntry& e) {
        if (!(e.tag & 1) && (e.phys & kPageMask) == page) e = TlbEntry{};
    };
    if (tlb_log_[0].full || tlb_log_[1].full) {
        for (unsigned ctx = 0; ctx < kTlbContexts; ctx++)
            for (auto& e : tlb_w[ctx]) drop(e);
    } else {
        for (auto& log : tlb_log_)
            for (unsigned k = 0; k < log.n; k++)
                if (log.id[k] >> 10) drop(tlb_entry(log.id[k]));
    }
}

// The page walk (SDM Vol. 3, 4.3 32-bit paging, 4.4 PAE paging, 4.5 4-level and 5-level paging;
// 4.6 access rights; 4.7 #PF error codes; 4.8 accessed and dirty flags). Accessed flags are set on
// every entry used and the dirty flag on the leaf of a write, all only once the access is known to
// be allowed, so a faulting access changes no paging entry.
//
// SMAP (4.6.1): a supervisor data access to a user page faults, unless it is an explicit access
// with RFLAGS.AC = 1, which is the TLB context kCtxSupAC; implicit supervisor accesses (sys.h)
// always run in kCtxSup.
uint64_t Cpu::translate(uint64_t lin, Access acc, bool user) {
    xlat_global = false;
    if (!(s.cr0 & cr0::PG)) return (s.efer & efer::LMA) ? lin : uint32_t(lin);
    const bool lma = s.efer & efer::LMA;
    const bool pae = s.cr4 & cr4::PAE;
    const bool nxe = pae && (s.efer & efer::NXE);  // execute-disable exists with PAE paging only
    const bool write = acc == Access::Write, exec = acc == Access::Exec;
    uint32_t err = (write ? kPfW : 0) | (user ? kPfU : 0);
    if (exec && ((s.cr4 & cr4::SMEP) || nxe)) err |= kPfI;

    // Entries used by the walk, for the accessed/dirty updates once the access is allowed.
    struct Used {
        uint8_t* host;  // nullptr: the entry is not in RAM (no A/D update)
        uint64_t pa;
        uint64_t v;
        bool wide;
    } used[5];
    int n = 0;
    auto entry = [&](uint64_t pa, bool wide) -> uint64_t {
        uint8_t* page = bus.page_ptr(pa & kPageMask, true);
        uint64_t v = 0;
        if (page) std::memcpy(&v, page + (pa & ~kPageMask), wide ? 8 : 4);
        else v = (side_effect(), bus.mmio_read(pa, wide ? 8 : 4));
        used[n++] = Used{page, pa, v, wide};
        return v;
    };
    auto pf = [&](uint32_t bits) { raise_fault(kPF, err | bits, lin); };

    bool writable = true, usr = true, nx = false;
    uint64_t frame = 0, size_mask = 0, leaf = 0;
    if (!pae) {
        // 32-bit paging: 4-byte entries, 4 KiB pages or (CR4.PSE) 4 MiB pages.
        lin = uint32_t(lin);
        uint64_t pde = entry((s.cr3 & 0xfffff000) + ((lin >> 22) & 0x3ff) * 4, false);
        if (!(pde & kPteP)) pf(0);
        writable = pde & kPteW;
        usr = pde & kPteU;
        if ((s.cr4 & cr4::PSE) && (pde & kPtePS)) {
            // PSE-36: PDE bits 20:13 are physical address bits 39:32; bit 21 is reserved.
            if (pde & (1u << 21)) pf(kPfP | kPfRsvd);
            frame = (pde & 0xffc00000) | (((pde >> 13) & 0xff) << 32);
            size_mask = (1u << 22) - 1;
            leaf = pde;
        } else {
            uint64_t pte = entry((pde & 0xfffff000) + ((lin >> 12) & 0x3ff) * 4, false);
            if (!(pte & kPteP)) pf(0);
            writable &= bool(pte & kPteW);
            usr &= bool(pte & kPteU);
            frame = pte & 0xfffff000;
            size_mask = kPageSize - 1;
            leaf = pte;
        }
    } else {
        // PAE, 4-level and 5-level paging: 8-byte entries. Reserved: XD without NXE; with PAE
        // paging also bits 62:MAXPHYADDR (52 here); PS where no large page exists; a large page's
        // low address bits (SDM Vol. 3, Tables 4-8 to 4-20).
        const uint64_t rsvd = (nxe ? 0 : kPteNX) | (lma ? 0 : 0x7ff0000000000000ull);
        uint64_t table;
        int level;
        if (!lma) {
            lin = uint32_t(lin);
            // PDPTE (no R/W, U/S, A; checked at MOV CR3 time: bits 2:1 and 8:5 are reserved).
            uint64_t pdpte;
            if (pae_pdpte_loaded) {
                pdpte = pae_pdpte[(lin >> 30) & 3];
            } else {
                pdpte = entry((s.cr3 & 0xffffffe0) + ((lin >> 30) & 3) * 8, true);
                n--;  // the PDPTE has no accessed flag to set
            }
            if (!(pdpte & kPteP)) pf(0);
            if (pdpte & (0x1e6 | kPteNX | 0x7ff0000000000000ull)) pf(kPfP | kPfRsvd);
            table = pdpte & kAddrMask;
            level = 2;
        } else {
            bool la57 = s.cr4 & cr4::LA57;
            if (!canonical(lin, la57)) raise_noncanonical(lin);
            table = s.cr3 & kAddrMask;
            level = la57 ? 5 : 4;
        }
        for (;; level--) {
            unsigned shift = 12 + 9 * (level - 1);
            uint64_t e = entry(table + ((lin >> shift) & 511) * 8, true);
            if (!(e & kPteP)) pf(0);
            if (e & rsvd) pf(kPfP | kPfRsvd);
            writable &= bool(e & kPteW);
            usr &= bool(e & kPteU);
            nx |= nxe && (e & kPteNX);
            bool large = (e & kPtePS) && level <= 3 && level >= 2;
            if ((e & kPtePS) && level > 3) pf(kPfP | kPfRsvd);
            if (level == 1 || large) {
                size_mask = (1ull << shift) - 1;
                // Bits 12 .. shift-1 of a large page's entry: bit 12 is PAT, the rest reserved.
                if (large && (e & size_mask & ~0x1fffull)) pf(kPfP | kPfRsvd);
                frame = e & kAddrMask & ~size_mask;
                leaf = e;
                break;
            }
            table = e & kAddrMask;
        }
    }

    // Access rights (SDM Vol. 3, 4.6).
    bool ok;
    if (user) {
        ok = usr && (!write || writable) && !(exec && nx);
    } else if (exec) {
        ok = !nx && !(usr && (s.cr4 & cr4::SMEP));
    } else {
        if (usr && (s.cr4 & cr4::SMAP) && !implicit_access) {
            // An explicit supervisor access: the context follows RFLAGS.AC. Re-derive it here, so a
            // POPF that changed AC without update_mode() cannot leave a stale SMAP decision (the
            // caller fills the TLB of the corrected context).
            tlb_ctx = (s.rflags & fl::AC) ? kCtxSupAC : kCtxSup;
        }
        bool smap_blocks = usr && (s.cr4 & cr4::SMAP) && tlb_ctx != kCtxSupAC;
        ok = !smap_blocks && (!write || writable || !(s.cr0 & cr0::WP));
    }
    if (!ok) pf(kPfP);
    // A global translation (G in the leaf, CR4.PGE): MOV CR3 need not invalidate it (SDM Vol. 3,
    // 4.10.2.4).
    xlat_global = (leaf & kPteG) && (s.cr4 & cr4::PGE);

    // Accessed flags on every entry used, dirty on the leaf of a write.
    for (int k = 0; k < n; k++) {
        uint64_t set = kPteA | ((write && k == n - 1) ? kPteD : 0);
        Used& u = used[k];
        if ((u.v & set) == set || !u.host) continue;
        uint64_t v = u.v | set;
        std::memcpy(u.host + (u.pa & ~kPageMask), &v, u.wide ? 8 : 4);
    }
    return frame | (lin & size_mask);
}

// PAE paging's four PDPTEs as MOV CR3 (or enabling PAE paging) loads them: a present entry with
// reserved bits set (2:1, 8:5, 63:MAXPHYADDR) makes the load #GP(0) (SDM Vol. 3, 4.4.1). Loads them
// into the PDPTE registers and returns true if they are valid.
namespace sys {
bool pae_pdptes_valid(Cpu& c, uint64_t cr3) {
    uint64_t v[4];
    for (unsigned k = 0; k < 4; k++) {
        uint64_t pa = (cr3 & 0xffffffe0) + k * 8;
        uint8_t* page = c.bus.page_ptr(pa & kPageMask, false);
        if (page) std::memcpy(&v[k], page + (pa & ~kPageMask), 8);
        else v[k] = (c.side_effect(), c.bus.mmio_read(pa, 8));
        if ((v[k] & kPteP) && (v[k] & (0x1e6 | 0xfff0000000000000ull))) return false;
    }
    for (unsigned k = 0; k < 4; k++) c.pae_pdpte[k] = v[k];
    c.pae_pdpte_loaded = true;
    return true;
}
}  // namespace sys

// Read within one page.
static void read_page(Cpu& c, uint64_t lin, uint8_t* dst, unsigned size, Access acc) {
    bool user = c.tlb_ctx == 1;
    uint64_t phys = c.translate(lin, acc, user);
    uint64_t page = phys & kPageMask;
    if (uint8_t* host = c.bus.page_ptr(page, false)) {
        if (acc != Access::Exec && !c.ac_check) c.tlb_fill(false, lin, host, page);
        std::memcpy(dst, host + (phys & ~kPageMask), size);
        return;
    }
    for (unsigned off = 0; off < size;) {
        unsigned n = size - off >= 8 && !((phys + off) & 7) ? 8 : size - off >= 4 && !((phys + off) & 3) ? 4
                     : size - off >= 2 && !((phys + off) & 1)                               ? 2
                                                                                            : 1;
        c.side_effect();
        uint64_t v = c.bus.mmio_read(phys + off, n);
        std::memcpy(dst + off, &v, n);
        off += n;
    }
}

// Alignment checking (SDM Vol. 3, 6.15 "Interrupt 17"): with CR0.AM, RFLAGS.AC and CPL 3, a
// misaligned 2/4/8-byte data access raises #AC(0). While it is on, the user TLB context is never
// filled (update_mode flushed it), so every user access comes through here.
static void check_alignment(Cpu& c, uint64_t lin, unsigned size) {
    // (RFLAGS.AC is looked at again: a POPF may have cleared it without update_mode.)
    if (c.tlb_ctx == kCtxUser && (c.s.rflags & fl::AC) && (size == 2 || size == 4 || size == 8) &&
        (lin & (size - 1)))
        c.raise_fault(kAC, 0);
}

void Cpu::read_slow(uint64_t lin, void* dst, unsigned size, Access acc) {
    if (ac_check && acc != Access::Exec) check_alignment(*this, lin, size);
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
        if (c.check_log) [[unlikely]]
            c.log_write(host + (phys & ~kPageMask), size);  // (and no TLB fill: every write logged)
        else if (!c.ac_check)
            c.tlb_fill(true, lin, host, page);
        std::memcpy(host + (phys & ~kPageMask), src, size);
        return;
    }
    for (unsigned off = 0; off < size;) {
        unsigned n = size - off >= 8 && !((phys + off) & 7) ? 8 : size - off >= 4 && !((phys + off) & 3) ? 4
                     : size - off >= 2 && !((phys + off) & 1)                               ? 2
                                                                                            : 1;
        uint64_t v = 0;
        std::memcpy(&v, src + off, n);
        c.side_effect();
        c.bus.mmio_write(phys + off, n, v);
        off += n;
    }
}

void Cpu::write_slow(uint64_t lin, const void* src, unsigned size) {
    if (ac_check) check_alignment(*this, lin, size);
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
    if (write && check_log) [[unlikely]]
        log_write(host, kPageSize);  // the caller may write anywhere in the page
    else if (acc != Access::Exec && !ac_check)
        tlb_fill(write, lin, host, page);
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
