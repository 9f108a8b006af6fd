// x87/SSE state instructions: LDMXCSR, STMXCSR, FXSAVE/FXRSTOR (both layouts), XSAVE/XSAVEOPT/XRSTOR
// (standard form, components x87 and SSE), XGETBV, XSETBV.
//
// FXSAVE image (SDM Vol. 1, 10.5.1, Tables 10-2/10-3): bytes 0-31 the x87 control/status/pointers,
// MXCSR and MXCSR_MASK; 32-159 ST0..ST7 in stack order (10 bytes each, padded to 16 with zeros);
// 160-415 XMM0-15 (XMM0-7 outside 64-bit mode); 416-511 are not written. With REX.W (FXSAVE64) FIP
// and FDP are 64-bit; without, FIP/FDP are 32-bit followed by FCS/FDS. The tag word is abridged
// (one "not empty" bit per physical register) and rebuilt from the register contents on restore.
// FIP/FDP/FOP are always saved (Intel behaviour; AMD saves them only when FSW.ES = 1).
//
// XSAVE area (SDM Vol. 1, 13.4): the legacy region as FXSAVE (the x87 part is component 0, XMM is
// component 1, MXCSR goes with either SSE or AVX), then the 64-byte header at 512: XSTATE_BV, XCOMP_BV.
// XINUSE (which components are not in their initial configuration) is computed from the state's
// values: exact where hardware keeps a conservative "modified" bit (allowed: SDM 13.6).
// MXCSR_MASK is 0xFFFF: flags, DAZ, masks, RC, FTZ (no misaligned-SSE mode bit 17).
#include "cpu/cpuid.h"
#include "cpu/ops/sse.h"

namespace m86::cpu {
namespace {

using namespace sse;

constexpr uint32_t kMxcsrMask = 0xffff;
// What CPUID advertises (leaf 0DH): XCR0 bits x87 | SSE, and the area they need.
constexpr uint64_t kXcr0Supported = cpuid::kXcr0Supported;
constexpr unsigned kXsaveSize = cpuid::kXsaveAreaSize;
static_assert(kXcr0Supported == 3 && kXsaveSize == 576, "fpstate.cpp implements components 0 and 1 only");

// ---- availability checks -------------------------------------------------------------------------
// FXSAVE/FXRSTOR: #NM when CR0.TS or CR0.EM (SDM FXSAVE "Protected Mode Exceptions").
inline void check_fx(Cpu& c) {
    if (c.s.cr0 & (cr0::TS | cr0::EM)) [[unlikely]] c.raise_fault(kNM);
}
// XSAVE family: #UD when CR4.OSXSAVE = 0, #NM when CR0.TS.
inline void check_xsave(Cpu& c) {
    if (!(c.s.cr4 & cr4::OSXSAVE)) c.raise_ud();
    if (c.s.cr0 & cr0::TS) c.raise_fault(kNM);
}
inline uint64_t aligned_addr(Cpu& c, const Insn& i, uint64_t align) {
    uint64_t a = lin(c, i);
    if (a & (align - 1)) c.raise_gp(0);
    return a;
}
inline unsigned num_xmm(const Cpu& c) { return c.mode() == Mode::Long64 ? 16 : 8; }

// ---- x87 tags ------------------------------------------------------------------------------------
// The 2-bit tag a non-empty register gets from its contents (SDM Vol. 1, 8.1.7): 0 valid, 1 zero,
// 2 special (NaN, infinity, denormal, unsupported).
unsigned tag_of(const F80& v) {
    unsigned e = v.se & 0x7fff;
    if (e == 0x7fff) return 2;
    if (e == 0) return v.mant == 0 ? 1 : 2;
    return (v.mant >> 63) ? 0 : 2;
}
uint8_t abridged_tags(uint16_t ftw) {
    uint8_t a = 0;
    for (int i = 0; i < 8; i++)
        if (((ftw >> (2 * i)) & 3) != 3) a |= uint8_t(1u << i);
    return a;
}

// XINUSE bits (see the file comment).
uint64_t xinuse(const Cpu& c) {
    const X87State& x = c.s.x87;
    bool x87_init = x.fcw == 0x037f && x.fsw == 0 && x.ftw == 0xffff && x.fop == 0 && x.fip == 0 && x.fdp == 0 &&
                    x.fcs == 0 && x.fds == 0;
    for (const F80& r : x.st) x87_init &= r.mant == 0 && r.se == 0;
    bool sse_init = true;
    for (const Xmm& r : c.s.xmm) sse_init &= r.q[0] == 0 && r.q[1] == 0;
    return (x87_init ? 0 : 1) | (sse_init ? 0 : 2);
}

// ---- image helpers -------------------------------------------------------------------------------
template <class T> void put(uint8_t* img, unsigned off, T v) { std::memcpy(img + off, &v, sizeof v); }
template <class T> T take(const uint8_t* img, unsigned off) {
    T v;
    std::memcpy(&v, img + off, sizeof v);
    return v;
}

// Bytes 0-23 and 32-159 (component 0).
void save_x87(const Cpu& c, uint8_t* img, bool w64) {
    const X87State& x = c.s.x87;
    std::memset(img, 0, 24);
    std::memset(img + 32, 0, 128);
    put<uint16_t>(img, 0, x.fcw);
    // FSW.B (bit 15) mirrors ES on every processor since the 387.
    put<uint16_t>(img, 2, uint16_t((x.fsw & 0x7fff) | ((x.fsw & kFswES) ? 0x8000 : 0)));
    img[4] = abridged_tags(x.ftw);
    put<uint16_t>(img, 6, x.fop);
    if (w64) {
        put<uint64_t>(img, 8, x.fip);
        put<uint64_t>(img, 16, x.fdp);
    } else {
        put<uint32_t>(img, 8, uint32_t(x.fip));
        put<uint16_t>(img, 12, x.fcs);
        put<uint32_t>(img, 16, uint32_t(x.fdp));
        put<uint16_t>(img, 20, x.fds);
    }
    for (unsigned i = 0; i < 8; i++) {
        const F80& r = x.st[(x.top() + i) & 7];
        put<uint64_t>(img, 32 + 16 * i, r.mant);
        put<uint16_t>(img, 40 + 16 * i, r.se);
    }
}
void save_mxcsr(const Cpu& c, uint8_t* img) {
    put<uint32_t>(img, 24, c.s.mxcsr);
    put<uint32_t>(img, 28, kMxcsrMask);
}
void save_xmm(const Cpu& c, uint8_t* img) {
    for (unsigned i = 0; i < num_xmm(c); i++) std::memcpy(img + 160 + 16 * i, c.s.xmm[i].b, 16);
}

void load_x87(Cpu& c, const uint8_t* img, bool w64) {
    X87State& x = c.s.x87;
    x.fcw = take<uint16_t>(img, 0);
    // FSW.ES is the summary of the unmasked exception flags and FSW.B mirrors it (SDM Vol. 1, 8.1.3.1;
    // the host recomputes both on restore).
    uint16_t fsw = take<uint16_t>(img, 2) & 0x3f7f;
    if (fsw & ~x.fcw & 0x3f) fsw |= 0x8080;
    x.fsw = fsw;
    x.fop = uint16_t(take<uint16_t>(img, 6) & 0x7ff);
    if (w64) {
        x.fip = take<uint64_t>(img, 8);
        x.fdp = take<uint64_t>(img, 16);
        x.fcs = x.fds = 0;
    } else {
        x.fip = take<uint32_t>(img, 8);
        x.fcs = take<uint16_t>(img, 12);
        x.fdp = take<uint32_t>(img, 16);
        x.fds = take<uint16_t>(img, 20);
    }
    for (unsigned i = 0; i < 8; i++) {
        F80& r = x.st[(x.top() + i) & 7];
        r.mant = take<uint64_t>(img, 32 + 16 * i);
        r.se = take<uint16_t>(img, 40 + 16 * i);
    }
    uint8_t abr = img[4];
    uint16_t ftw = 0;
    for (unsigned i = 0; i < 8; i++) ftw |= uint16_t(((abr >> i) & 1 ? tag_of(x.st[i]) : 3u) << (2 * i));
    x.ftw = ftw;
}
void load_xmm(Cpu& c, const uint8_t* img) {
    for (unsigned i = 0; i < num_xmm(c); i++) std::memcpy(c.s.xmm[i].b, img + 160 + 16 * i, 16);
}
void init_x87(Cpu& c) {
    X87State& x = c.s.x87;
    x = X87State{};
    for (F80& r : x.st) r = F80{};
}
void init_xmm(Cpu& c) {
    for (unsigned i = 0; i < num_xmm(c); i++) c.s.xmm[i] = Xmm();
}

// Guest memory <-> image, 8 bytes at a time (size is a multiple of 8). Reads finish before any state
// changes; writes are probed first so a fault leaves memory untouched.
void read_image(Cpu& c, uint64_t a, uint8_t* img, unsigned size) {
    for (unsigned off = 0; off < size; off += 8) put<uint64_t>(img, off, read<uint64_t>(c, a + off));
}
void write_image(Cpu& c, uint64_t a, const uint8_t* img, unsigned from, unsigned to) {
    for (unsigned off = from; off < to; off += 8) write<uint64_t>(c, a + off, take<uint64_t>(img, off));
}

// The whole area is checked before any byte moves, the last byte first: a fault on the page after
// the area reports the area's last byte in CR2 (what the AMD host does; the SDM leaves it open).
void probe_area(Cpu& c, uint64_t a, unsigned size, Access acc) {
    bool user = c.tlb_ctx == 1;
    c.translate(a + size - 1, acc, user);
    c.translate(a, acc, user);
}

// ---- handlers ------------------------------------------------------------------------------------

void ldmxcsr(Cpu& c, const Insn& i) {
    check_sse(c);
    uint32_t v = read<uint32_t>(c, lin(c, i));
    if (v & ~kMxcsrMask) c.raise_gp(0);
    c.s.mxcsr = v;
}
void stmxcsr(Cpu& c, const Insn& i) {
    check_sse(c);
    write<uint32_t>(c, lin(c, i), c.s.mxcsr);
}

template <bool W64> void fxsave(Cpu& c, const Insn& i) {
    check_fx(c);
    uint64_t a = aligned_addr(c, i, 16);
    uint8_t img[416];
    save_x87(c, img, W64);
    save_mxcsr(c, img);
    save_xmm(c, img);
    unsigned end = 160 + 16 * num_xmm(c);
    probe_area(c, a, 512, Access::Write);
    write_image(c, a, img, 0, end);
}

template <bool W64> void fxrstor(Cpu& c, const Insn& i) {
    check_fx(c);
    uint64_t a = aligned_addr(c, i, 16);
    uint8_t img[416];
    probe_area(c, a, 512, Access::Read);
    read_image(c, a, img, 160 + 16 * num_xmm(c));
    uint32_t mx = take<uint32_t>(img, 24);
    if (mx & ~kMxcsrMask) c.raise_gp(0);
    load_x87(c, img, W64);
    c.s.mxcsr = mx;
    load_xmm(c, img);
}

// XSAVE / XSAVEOPT (Opt: components in their initial configuration are not written, SDM 13.9).
template <bool W64, bool Opt> void xsave(Cpu& c, const Insn& i) {
    check_xsave(c);
    uint64_t a = aligned_addr(c, i, 64);
    uint64_t rfbm = c.s.xcr0 & ((c.s.gpr[RDX] << 32) | uint32_t(c.s.gpr[RAX]));
    uint64_t inuse = xinuse(c);
    probe_area(c, a, kXsaveSize, Access::Write);
    uint8_t img[416];
    if ((rfbm & 1) && (!Opt || (inuse & 1))) {
        save_x87(c, img, W64);
        write_image(c, a, img, 0, 24);
        write_image(c, a, img, 32, 160);
    }
    if (rfbm & 2) {  // MXCSR goes with SSE (or AVX) even when SSE is in its initial state
        save_mxcsr(c, img);
        write_image(c, a, img, 24, 32);
        if (!Opt || (inuse & 2)) {
            save_xmm(c, img);
            write_image(c, a, img, 160, 160 + 16 * num_xmm(c));
        }
    }
    // XSTATE_BV: only the bits of RFBM are written (SDM XSAVE "Operation").
    uint64_t bv = read<uint64_t>(c, a + 512);
    write<uint64_t>(c, a + 512, (bv & ~rfbm) | (inuse & rfbm));
}

// XRSTOR, standard form: components of RFBM are loaded (XSTATE_BV bit set) or initialised.
template <bool W64> void xrstor(Cpu& c, const Insn& i) {
    check_xsave(c);
    uint64_t a = aligned_addr(c, i, 64);
    uint64_t rfbm = c.s.xcr0 & ((c.s.gpr[RDX] << 32) | uint32_t(c.s.gpr[RAX]));
    uint64_t bv = read<uint64_t>(c, a + 512), comp = read<uint64_t>(c, a + 520), rsv = read<uint64_t>(c, a + 528);
    // #GP: compacted form (not supported), XSTATE_BV bits outside XCR0, header bytes 8-23 not zero.
    if (comp || rsv || (bv & ~c.s.xcr0)) c.raise_gp(0);
    uint8_t img[416];
    read_image(c, a, img, 160 + 16 * num_xmm(c));
    uint32_t mx = take<uint32_t>(img, 24);
    if ((rfbm & 2) && (mx & ~kMxcsrMask)) c.raise_gp(0);
    if (rfbm & 1) {
        if (bv & 1) load_x87(c, img, W64);
        else init_x87(c);
    }
    if (rfbm & 2) {
        c.s.mxcsr = mx;
        if (bv & 2) load_xmm(c, img);
        else init_xmm(c);
    }
}

// XGETBV: ECX = 0 -> XCR0; ECX = 1 -> XCR0 & XINUSE. Others #GP(0).
void xgetbv(Cpu& c, const Insn&) {
    if (!(c.s.cr4 & cr4::OSXSAVE)) c.raise_ud();
    uint32_t n = uint32_t(c.s.gpr[RCX]);
    uint64_t v;
    if (n == 0) v = c.s.xcr0;
    else if (n == 1) v = c.s.xcr0 & xinuse(c);
    else c.raise_gp(0);
    c.s.gpr[RAX] = uint32_t(v);
    c.s.gpr[RDX] = uint32_t(v >> 32);
}

// XSETBV (CPL 0): only XCR0 exists; bit 0 (x87) must be set and only x87/SSE are supported.
void xsetbv(Cpu& c, const Insn&) {
    if (!(c.s.cr4 & cr4::OSXSAVE)) c.raise_ud();
    bool cpl0 = c.mode() == Mode::Real || (!(c.s.rflags & fl::VM) && c.s.cpl() == 0);
    if (!cpl0) c.raise_gp(0);
    uint64_t v = (c.s.gpr[RDX] << 32) | uint32_t(c.s.gpr[RAX]);
    if (uint32_t(c.s.gpr[RCX]) != 0 || !(v & 1) || (v & ~kXcr0Supported)) c.raise_gp(0);
    c.s.xcr0 = v;
}

template <Handler H> Handler fixed(const DecodeCtx&) { return H; }

}  // namespace

void register_fpstate(Registry& r) {
    r.add(ZYDIS_MNEMONIC_LDMXCSR, fixed<ldmxcsr>);
    r.add(ZYDIS_MNEMONIC_STMXCSR, fixed<stmxcsr>);
    r.add(ZYDIS_MNEMONIC_FXSAVE, fixed<fxsave<false>>);
    r.add(ZYDIS_MNEMONIC_FXSAVE64, fixed<fxsave<true>>);
    r.add(ZYDIS_MNEMONIC_FXRSTOR, fixed<fxrstor<false>>);
    r.add(ZYDIS_MNEMONIC_FXRSTOR64, fixed<fxrstor<true>>);
    r.add(ZYDIS_MNEMONIC_XSAVE, fixed<xsave<false, false>>);
    r.add(ZYDIS_MNEMONIC_XSAVE64, fixed<xsave<true, false>>);
    r.add(ZYDIS_MNEMONIC_XSAVEOPT, fixed<xsave<false, true>>);
    r.add(ZYDIS_MNEMONIC_XSAVEOPT64, fixed<xsave<true, true>>);
    r.add(ZYDIS_MNEMONIC_XRSTOR, fixed<xrstor<false>>);
    r.add(ZYDIS_MNEMONIC_XRSTOR64, fixed<xrstor<true>>);
    r.add(ZYDIS_MNEMONIC_XGETBV, fixed<xgetbv>);
    r.add(ZYDIS_MNEMONIC_XSETBV, fixed<xsetbv>);
}

}  // namespace m86::cpu
