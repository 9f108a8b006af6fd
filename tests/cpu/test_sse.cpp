// Unit tests: SSE/SSE2, MMX state, MXCSR exceptions and the FXSAVE/XSAVE state instructions.
//
// Expected values come from the SDM (layouts, special cases, bounds), never from micro86's output.
// Behaviour the host CPU can show is covered by the differential forms in tests/diff/gen_sse.cpp;
// these tests cover what user mode cannot observe (CR0/CR4 checks, XCR0, #UD vs #XM) and the
// approximations, whose exact values are vendor-specific.
#include <doctest/doctest.h>
#include <xbyak/xbyak.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "machine/snippet.h"

#include "asm.h"

using namespace m86;
using namespace m86::cpu;
using m86::test::assemble_hlt;

namespace {

constexpr uint64_t kBuf = 0x200000;  // a scratch area in the snippet's RAM (64-byte aligned)

// 0F AE /ext [rax], optionally with REX.W (FXSAVE=0, FXRSTOR=1, XSAVE=4, XRSTOR=5, XSAVEOPT=6).
void op_0fae(Xbyak::CodeGenerator& g, int ext, bool rexw) {
    if (rexw) g.db(0x48);
    g.db(0x0f);
    g.db(0xae);
    g.db(ext << 3);
}

// Load `code` at the code base and run it (clearing a previous run's HLT state).
StopReason run_code(machine::SnippetEnv& env, const std::vector<uint8_t>& code, uint64_t limit = 10) {
    env.cpu().halted = false;
    env.load_code(code);
    return env.run(limit);
}

template <class T> T get(machine::SnippetEnv& env, uint64_t addr) {
    T v;
    env.peek(addr, &v, sizeof v);
    return v;
}

Xmm xmm_of(uint64_t lo, uint64_t hi) {
    Xmm x;
    x.q[0] = lo;
    x.q[1] = hi;
    return x;
}

void fill_state(CpuState& s) {
    for (int i = 0; i < 16; i++) s.xmm[i] = xmm_of(0x1111111111111111ull * uint64_t(i + 1), ~uint64_t(i) << 8);
    s.mxcsr = 0x3f80 | 0x0015;  // RC = down, some flags
    X87State& x = s.x87;
    x.fcw = 0x027f;
    x.set_top(5);
    x.fsw |= 0x0020;
    // Physical registers: R5 = ST0 valid, R6 = ST1 zero, R7 = ST2 special (infinity), R0..R4 empty.
    x.st[5] = F80{0xc000000000000000ull, 0x3fff};
    x.st[6] = F80{0, 0x8000};
    x.st[7] = F80{0x8000000000000000ull, 0x7fff};
    for (int i = 0; i < 5; i++) x.st[i] = F80{0x0123456789abcdefull * uint64_t(i + 1), uint16_t(0x1234 + i)};
    x.ftw = uint16_t(0x03ff | (0u << 10) | (1u << 12) | (2u << 14));
    x.fop = 0x5d9;
    x.fip = 0x1122334455667788ull;
    x.fdp = 0x99aabbccddeeff00ull;
    x.fcs = 0x23;
    x.fds = 0x2b;
}

}  // namespace

TEST_CASE("sse: FXSAVE64 writes the SDM layout and FXRSTOR64 restores the state") {
    machine::SnippetEnv env;
    fill_state(env.cpu().s);
    const CpuState before = env.cpu().s;
    uint8_t fill[512];
    std::memset(fill, 0xcc, sizeof fill);
    env.poke(kBuf, fill, sizeof fill);
    auto code1 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.eax, kBuf);
        op_0fae(g, 0, true);
    }));
    REQUIRE(run_code(env, code1, 10) == StopReason::Halt);
    // SDM Vol. 1, Table 10-2 (64-bit format).
    CHECK(get<uint16_t>(env, kBuf + 0) == 0x027f);
    CHECK((get<uint16_t>(env, kBuf + 2) & 0x3800) == (5u << 11));
    CHECK(get<uint8_t>(env, kBuf + 4) == 0xe0);  // R5, R6, R7 not empty
    CHECK(get<uint16_t>(env, kBuf + 6) == 0x5d9);
    CHECK(get<uint64_t>(env, kBuf + 8) == 0x1122334455667788ull);
    CHECK(get<uint64_t>(env, kBuf + 16) == 0x99aabbccddeeff00ull);
    CHECK(get<uint32_t>(env, kBuf + 24) == 0x3f95);
    CHECK(get<uint32_t>(env, kBuf + 28) == 0xffff);  // MXCSR_MASK: DAZ supported, bits 16-31 reserved
    // ST0 (= R5) at 32, ST1 at 48: 10 bytes each, padded with zeros.
    CHECK(get<uint64_t>(env, kBuf + 32) == 0xc000000000000000ull);
    CHECK(get<uint16_t>(env, kBuf + 40) == 0x3fff);
    CHECK(get<uint32_t>(env, kBuf + 42) == 0);
    CHECK(get<uint16_t>(env, kBuf + 56) == 0x8000);
    CHECK(get<uint64_t>(env, kBuf + 32 + 16 * 3) == before.x87.st[0].mant);  // ST3 = R0
    for (int i = 0; i < 16; i++) {
        CHECK(get<uint64_t>(env, kBuf + 160 + 16 * i) == before.xmm[i].q[0]);
        CHECK(get<uint64_t>(env, kBuf + 168 + 16 * i) == before.xmm[i].q[1]);
    }
    CHECK(get<uint64_t>(env, kBuf + 416) == 0xccccccccccccccccull);  // bytes 416-511 untouched

    // Clobber everything, then restore.
    CpuState& s = env.cpu().s;
    for (auto& x : s.xmm) x = Xmm();
    s.mxcsr = 0x1f80;
    s.x87 = X87State{};
    auto code2 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.eax, kBuf);
        op_0fae(g, 1, true);
    }));
    REQUIRE(run_code(env, code2, 10) == StopReason::Halt);
    for (int i = 0; i < 16; i++) CHECK(s.xmm[i] == before.xmm[i]);
    CHECK(s.mxcsr == before.mxcsr);
    CHECK(s.x87.fcw == before.x87.fcw);
    CHECK(s.x87.fsw == before.x87.fsw);
    CHECK(s.x87.ftw == before.x87.ftw);  // full tags rebuilt from the contents: valid, zero, special
    CHECK(s.x87.fop == before.x87.fop);
    CHECK(s.x87.fip == before.x87.fip);
    CHECK(s.x87.fdp == before.x87.fdp);
    for (int i = 0; i < 8; i++) CHECK(s.x87.st[i] == before.x87.st[i]);
}

TEST_CASE("sse: FXSAVE without REX.W stores 32-bit FIP/FDP with FCS/FDS; misaligned -> #GP") {
    machine::SnippetEnv env;
    fill_state(env.cpu().s);
    auto code3 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.eax, kBuf);
        op_0fae(g, 0, false);
    }));
    REQUIRE(run_code(env, code3, 10) == StopReason::Halt);
    CHECK(get<uint32_t>(env, kBuf + 8) == 0x55667788u);
    CHECK(get<uint16_t>(env, kBuf + 12) == 0x23);
    CHECK(get<uint32_t>(env, kBuf + 16) == 0xddeeff00u);
    CHECK(get<uint16_t>(env, kBuf + 20) == 0x2b);

    auto code4 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.eax, kBuf + 8);
        op_0fae(g, 0, false);
    }));
    CHECK(run_code(env, code4, 10) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
}

TEST_CASE("sse: FXRSTOR with reserved MXCSR bits -> #GP and no state change") {
    machine::SnippetEnv env;
    uint8_t img[512] = {};
    uint32_t bad = 0x11f80;
    std::memcpy(img + 24, &bad, 4);
    img[160] = 0x5a;
    env.poke(kBuf, img, sizeof img);
    auto code5 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.eax, kBuf);
        g.fxrstor64(g.ptr[g.rax]);
    }));
    CHECK(run_code(env, code5, 10) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().s.xmm[0].b[0] == 0);
    CHECK(env.cpu().s.mxcsr == 0x1f80);
}

TEST_CASE("sse: XSAVE writes XSTATE_BV bits of RFBM only; XRSTOR initialises cleared components") {
    machine::SnippetEnv env;
    CpuState& s = env.cpu().s;
    fill_state(s);
    uint8_t fill[1024];
    std::memset(fill, 0xcc, sizeof fill);
    env.poke(kBuf, fill, sizeof fill);
    // RFBM = SSE only (EAX = 2): XSTATE_BV bit 1 := 1, bit 0 and bits 2-63 keep their 0xcc bits.
    auto code6 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.ecx, kBuf);
        g.mov(g.eax, 2);
        g.xor_(g.edx, g.edx);
        g.db(0x0f), g.db(0xae), g.db(0x21);  // xsave [rcx]
    }));
    REQUIRE(run_code(env, code6, 10) == StopReason::Halt);
    CHECK(get<uint64_t>(env, kBuf + 512) == 0xcccccccccccccccEull);
    CHECK(get<uint64_t>(env, kBuf + 520) == 0xccccccccccccccccull);  // XCOMP_BV not written
    CHECK(get<uint16_t>(env, kBuf + 0) == 0xcccc);                     // x87 not requested
    CHECK(get<uint32_t>(env, kBuf + 24) == s.mxcsr);                   // MXCSR goes with SSE
    CHECK(get<uint64_t>(env, kBuf + 160) == s.xmm[0].q[0]);

    // XRSTOR with RFBM = 3 and XSTATE_BV = 1: x87 loaded from memory... here from the 0xcc image
    // (valid fields), SSE initialised (XMM zero) but MXCSR loaded from the image.
    uint8_t hdr[64] = {};
    hdr[0] = 1;
    env.poke(kBuf + 512, hdr, sizeof hdr);
    uint32_t mx = 0x1f80 | 0x6000;
    env.poke(kBuf + 24, &mx, 4);
    auto code7 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.ecx, kBuf);
        g.mov(g.eax, 3);
        g.xor_(g.edx, g.edx);
        g.db(0x0f), g.db(0xae), g.db(0x29);  // xrstor [rcx]
    }));
    REQUIRE(run_code(env, code7, 10) == StopReason::Halt);
    for (int i = 0; i < 16; i++) CHECK(s.xmm[i] == Xmm());
    CHECK(s.mxcsr == mx);
    CHECK(s.x87.fcw == 0xcccc);

    // XSTATE_BV bit 2 (AVX) is not in XCR0 (= 3): #GP. XCOMP_BV != 0: #GP. Misaligned: #GP.
    for (int variant = 0; variant < 3; variant++) {
        uint8_t h[64] = {};
        if (variant == 0) h[0] = 4;
        if (variant == 1) h[8] = 1;
        env.poke(kBuf + 512, h, sizeof h);
        uint64_t at = variant == 2 ? kBuf + 16 : kBuf;
        auto code8 = (assemble_hlt([at](Xbyak::CodeGenerator& g) {
            g.mov(g.ecx, at);
            g.mov(g.eax, 3);
            g.xor_(g.edx, g.edx);
            g.db(0x0f), g.db(0xae), g.db(0x29);
        }));
        CHECK(run_code(env, code8, 10) == StopReason::Exception);
        CHECK(env.cpu().last_fault.vector == kGP);
    }
}

TEST_CASE("sse: XGETBV/XSETBV check XCR0 values, privilege and CR4.OSXSAVE") {
    machine::SnippetEnv env;
    CpuState& s = env.cpu().s;
    auto run_xgetbv = [&](uint32_t ecx) {
        auto code9 = (assemble_hlt([ecx](Xbyak::CodeGenerator& g) {
            g.mov(g.ecx, ecx);
            g.xgetbv();
        }));
        return run_code(env, code9, 10);
    };
    REQUIRE(run_xgetbv(0) == StopReason::Halt);
    CHECK(s.gpr[RAX] == 3);
    CHECK(s.gpr[RDX] == 0);
    CHECK(run_xgetbv(2) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);

    auto run_xsetbv = [&](uint32_t eax, uint32_t edx) {
        auto code10 = (assemble_hlt([eax, edx](Xbyak::CodeGenerator& g) {
            g.xor_(g.ecx, g.ecx);
            g.mov(g.eax, eax);
            g.mov(g.edx, edx);
            g.db(0x0f), g.db(0x01), g.db(0xd1);  // xsetbv
        }));
        return run_code(env, code10, 10);
    };
    CHECK(run_xsetbv(1, 0) == StopReason::Halt);
    CHECK(s.xcr0 == 1);
    for (auto [eax, edx] : {std::pair<uint32_t, uint32_t>{2, 0}, {0, 0}, {7, 0}, {3, 1}}) {
        CHECK(run_xsetbv(eax, edx) == StopReason::Exception);  // x87 bit clear, AVX, high bits
        CHECK(env.cpu().last_fault.vector == kGP);
    }
    CHECK(s.xcr0 == 1);
    CHECK(run_xsetbv(3, 0) == StopReason::Halt);
    CHECK(s.xcr0 == 3);

    s.cr4 &= ~cr4::OSXSAVE;
    CHECK(run_xgetbv(0) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kUD);
}

TEST_CASE("sse: LDMXCSR rejects reserved bits; an unmasked exception leaves the destination alone") {
    machine::SnippetEnv env;
    CpuState& s = env.cpu().s;
    uint32_t bad = 0x1f80 | (1u << 16);
    env.poke(kBuf, &bad, 4);
    auto code11 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
        g.mov(g.eax, kBuf);
        g.ldmxcsr(g.ptr[g.rax]);
    }));
    CHECK(run_code(env, code11, 10) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(s.mxcsr == 0x1f80);

    // DIVPS with a zero divisor lane and ZE unmasked (SDM Vol. 1, 11.5.1): ZE set, xmm0 unchanged, #XM.
    auto divps = [&](uint32_t mxcsr) {
        env.reset_cpu();
        CpuState& t = env.cpu().s;
        t.mxcsr = mxcsr;
        t.xmm[0] = xmm_of(0x400000003f800000ull, 0x4080000040400000ull);  // 1, 2, 3, 4
        t.xmm[1] = xmm_of(0x3f80000000000000ull, 0x3f8000003f800000ull);  // 0, 1, 1, 1
        auto code12 = (assemble_hlt([](Xbyak::CodeGenerator& g) { g.divps(g.xmm0, g.xmm1); }));
        return run_code(env, code12, 10);
    };
    CHECK(divps(0x1f80 & ~0x200u) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kXM);
    CHECK(env.cpu().s.xmm[0] == xmm_of(0x400000003f800000ull, 0x4080000040400000ull));
    CHECK((env.cpu().s.mxcsr & 0x3f) == 0x04);
    CHECK(env.cpu().s.rip == machine::SnippetEnv::kCodeBase);

    // Masked: infinity in lane 0, ZE flag set, no fault.
    CHECK(divps(0x1f80) == StopReason::Halt);
    CHECK(env.cpu().s.xmm[0].d[0] == 0x7f800000u);
    CHECK(env.cpu().s.xmm[0].d[1] == 0x40000000u);
    CHECK((env.cpu().s.mxcsr & 0x3f) == 0x04);

    // Without CR4.OSXMMEXCPT the unmasked exception is #UD.
    env.reset_cpu();
    env.cpu().s.cr4 &= ~cr4::OSXMMEXCPT;
    env.cpu().s.mxcsr = 0x1f80 & ~0x200u;
    env.cpu().s.xmm[1] = Xmm();
    env.cpu().s.xmm[0].d[0] = 0x3f800000u;
    auto code13 = (assemble_hlt([](Xbyak::CodeGenerator& g) { g.divss(g.xmm0, g.xmm1); }));
    CHECK(run_code(env, code13, 10) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kUD);
}

TEST_CASE("sse: availability checks CR0.EM, CR0.TS, CR4.OSFXSR (SSE) and CR0.EM, CR0.TS (MMX)") {
    machine::SnippetEnv env;
    auto run = [&](uint64_t set_cr0, uint64_t clear_cr4, bool mmx) {
        env.reset_cpu();
        env.cpu().s.cr0 |= set_cr0;
        env.cpu().s.cr4 &= ~clear_cr4;
        auto code14 = (assemble_hlt([mmx](Xbyak::CodeGenerator& g) {
            if (mmx) g.paddb(g.mm0, g.mm1);
            else g.paddb(g.xmm0, g.xmm1);
        }));
        StopReason r = run_code(env, code14, 10);
        return r == StopReason::Exception ? int(env.cpu().last_fault.vector) : -1;
    };
    CHECK(run(0, 0, false) == -1);
    CHECK(run(cr0::EM, 0, false) == kUD);
    CHECK(run(0, cr4::OSFXSR, false) == kUD);
    CHECK(run(cr0::TS, 0, false) == kNM);
    CHECK(run(cr0::TS | cr0::EM, 0, false) == kUD);
    CHECK(run(0, 0, true) == -1);
    CHECK(run(0, cr4::OSFXSR, true) == -1);  // MMX does not need OSFXSR
    CHECK(run(cr0::EM, 0, true) == kUD);
    CHECK(run(cr0::TS, 0, true) == kNM);
}

TEST_CASE("sse: availability of LDMXCSR, FXSAVE and XSAVE (SDM exception lists)") {
    machine::SnippetEnv env;
    // which: 0 LDMXCSR, 1 FXSAVE, 2 XSAVE
    auto run = [&](int which, uint64_t set_cr0, uint64_t clear_cr4) {
        env.reset_cpu();
        env.cpu().s.cr0 |= set_cr0;
        env.cpu().s.cr4 &= ~clear_cr4;
        uint32_t mx = 0x1f80;
        env.poke(kBuf, &mx, 4);
        auto code = assemble_hlt([which](Xbyak::CodeGenerator& g) {
            g.mov(g.ecx, kBuf);
            g.xor_(g.eax, g.eax);
            g.xor_(g.edx, g.edx);
            if (which == 0) g.ldmxcsr(g.ptr[g.rcx]);
            else g.db(0x0f), g.db(0xae), g.db(which == 1 ? 0x01 : 0x21);  // fxsave/xsave [rcx]
        });
        StopReason r = run_code(env, code, 10);
        return r == StopReason::Exception ? int(env.cpu().last_fault.vector) : -1;
    };
    CHECK(run(0, 0, 0) == -1);
    CHECK(run(0, cr0::EM, 0) == kUD);
    CHECK(run(0, 0, cr4::OSFXSR) == kUD);
    CHECK(run(0, cr0::TS, 0) == kNM);
    CHECK(run(1, 0, 0) == -1);
    CHECK(run(1, cr0::EM, 0) == kNM);  // FXSAVE: #NM for EM or TS
    CHECK(run(1, cr0::TS, 0) == kNM);
    CHECK(run(2, 0, 0) == -1);
    CHECK(run(2, 0, cr4::OSXSAVE) == kUD);
    CHECK(run(2, cr0::TS, 0) == kNM);
}

TEST_CASE("sse: MMX aliases the x87 significands, sets TOP=0, tags valid, exponent ones; EMMS empties") {
    machine::SnippetEnv env;
    X87State& x = env.cpu().s.x87;
    x.set_top(3);
    x.ftw = 0xffff;
    x.st[1].mant = 0x0102030405060708ull;
    x.st[2].mant = 0x1010101010101010ull;
    x.st[2].se = 0x1234;
    auto code15 = (assemble_hlt([](Xbyak::CodeGenerator& g) { g.paddb(g.mm2, g.mm1); }));
    REQUIRE(run_code(env, code15, 10) == StopReason::Halt);
    CHECK(x.st[2].mant == 0x1112131415161718ull);
    CHECK(x.st[2].se == 0xffff);
    CHECK(x.st[1].se == 0);  // a source register keeps its exponent
    CHECK(x.top() == 0);
    CHECK(x.ftw == 0);
    auto code16 = (assemble_hlt([](Xbyak::CodeGenerator& g) { g.emms(); }));
    REQUIRE(run_code(env, code16, 10) == StopReason::Halt);
    CHECK(x.ftw == 0xffff);
}

// RCPPS/RSQRTPS: SDM "|Relative Error| <= 1.5 * 2^-12" for normal inputs whose results are normal.
TEST_CASE("sse: RCPPS/RSQRTPS are within the SDM relative error bound") {
    machine::SnippetEnv env;
    std::mt19937_64 rng(12345);
    constexpr int kN = 1024;  // floats per batch
    std::vector<uint32_t> in(kN);
    for (int batch = 0; batch < 4; batch++) {
        for (auto& v : in) {
            uint32_t e = uint32_t(1 + rng() % 252);  // normal, results stay normal
            v = (e << 23) | uint32_t(rng() & 0x7fffff) | uint32_t(rng() & 1) << 31;
        }
        in[0] = 0x3f800000u;  // 1.0
        in[1] = 0x40000000u;  // 2.0
        env.reset_cpu();
        env.poke(kBuf, in.data(), kN * 4);
        const uint32_t abs_mask[4] = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
        env.poke(kBuf + kN * 12, abs_mask, 16);
        auto code17 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
            g.mov(g.esi, kBuf);
            g.mov(g.edi, kBuf + kN * 12);  // |x| mask
            g.mov(g.ecx, kN / 4);
            g.L("l");
            g.movaps(g.xmm0, g.ptr[g.rsi]);
            g.rcpps(g.xmm1, g.xmm0);
            g.movaps(g.ptr[g.rsi + kN * 4], g.xmm1);
            g.andps(g.xmm0, g.ptr[g.rdi]);
            g.rsqrtps(g.xmm2, g.xmm0);
            g.movaps(g.ptr[g.rsi + kN * 8], g.xmm2);
            g.add(g.rsi, 16);
            g.sub(g.ecx, 1);
            g.jnz("l");
        }));
        REQUIRE(run_code(env, code17, 100000) == StopReason::Halt);
        for (int k = 0; k < kN; k++) {
            float xf, rf, sf;
            uint32_t r = get<uint32_t>(env, kBuf + kN * 4 + 4 * k), s = get<uint32_t>(env, kBuf + kN * 8 + 4 * k);
            std::memcpy(&xf, &in[k], 4);
            std::memcpy(&rf, &r, 4);
            std::memcpy(&sf, &s, 4);
            double x = xf;
            double rel_rcp = std::fabs(double(rf) * x - 1.0);
            double rel_rsqrt = std::fabs(double(sf) * std::sqrt(std::fabs(x)) - 1.0);
            CHECK(rel_rcp <= 1.5 * std::ldexp(1.0, -12));
            CHECK(rel_rsqrt <= 1.5 * std::ldexp(1.0, -12));
        }
    }
}

// SDM RCPSS/RSQRTSS special cases: 0 and denormals -> infinity of the same sign, infinity -> 0,
// negative -> QNaN indefinite (RSQRT), NaN -> the quieted NaN; no exceptions, MXCSR untouched.
TEST_CASE("sse: RCPSS/RSQRTSS special operands") {
    machine::SnippetEnv env;
    constexpr uint32_t kAny = 1;  // an approximation: not a special case
    struct Case {
        uint32_t in, rcp, rsqrt;
    };
    const Case cases[] = {
        {0x00000000u, 0x7f800000u, 0x7f800000u}, {0x80000000u, 0xff800000u, 0xff800000u},
        {0x00000001u, 0x7f800000u, 0x7f800000u}, {0x807fffffu, 0xff800000u, 0xff800000u},
        {0x7f800000u, 0x00000000u, 0x00000000u}, {0xff800000u, 0x80000000u, 0xffc00000u},
        {0xbf800000u, kAny, 0xffc00000u}, {0x7f800001u, 0x7fc00001u, 0x7fc00001u},
    };
    for (const Case& c : cases) {
        env.reset_cpu();
        CpuState& s = env.cpu().s;
        s.mxcsr = 0x0000;  // everything unmasked: there must still be no exception
        s.xmm[1].d[0] = c.in;
        auto code18 = (assemble_hlt([](Xbyak::CodeGenerator& g) {
            g.rcpss(g.xmm0, g.xmm1);
            g.rsqrtss(g.xmm2, g.xmm1);
        }));
        REQUIRE(run_code(env, code18, 10) == StopReason::Halt);
        if (c.rcp != kAny) CHECK(s.xmm[0].d[0] == c.rcp);
        CHECK(s.xmm[2].d[0] == c.rsqrt);
        CHECK(s.mxcsr == 0);
    }
}
