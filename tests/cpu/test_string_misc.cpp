// Unit tests: string instructions (what the host cannot check: the bulk path against an element-wise
// model, faults part-way through REP, 16-bit address size, FS overrides), the CPUID model's
// self-consistency, and RDTSC/RDTSCP/RDPID/PAUSE/UD2.
//
// Expected values come from the SDM's definitions (the string instructions' "Operation" sections,
// modelled byte by byte below; CPUID's leaf layouts), never from micro86's own output.
#include <doctest/doctest.h>
#include <xbyak/xbyak.h>

#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/cpuid.h"
#include "cpu/decode.h"
#include "machine/snippet.h"

#include "asm.h"

using namespace m86;
using namespace m86::cpu;
using machine::SnippetEnv;
using m86::test::assemble;
using m86::test::emit;

namespace {

using Gen = std::function<void(Xbyak::CodeGenerator&)>;

// The string-instruction opcode for an element width (A4/A5 style pairs) with REX.W / 66h.
std::vector<uint8_t> string_insn(uint8_t byte_opcode, int w, std::vector<uint8_t> prefixes = {}) {
    std::vector<uint8_t> b = prefixes;
    if (w == 2) b.insert(b.begin(), 0x66);
    if (w == 8) b.push_back(0x48);
    b.push_back(w == 1 ? byte_opcode : uint8_t(byte_opcode + 1));
    return b;
}

std::vector<uint8_t> with_hlt(std::vector<uint8_t> b) {
    b.push_back(0xf4);
    return b;
}

constexpr uint64_t kArea = 0x200000;  // 4 KiB-paged RAM in SnippetEnv (below 4 MiB)
constexpr uint64_t kAreaSize = 0x20000;

void fill_pattern(SnippetEnv& env, uint64_t addr, size_t n, uint32_t seed) {
    std::vector<uint8_t> v(n);
    uint32_t x = seed * 2654435761u + 1;
    for (auto& b : v) {
        x = x * 1103515245u + 12345u;
        b = uint8_t(x >> 16);
    }
    env.poke(addr, v.data(), n);
}

std::vector<uint8_t> peek(SnippetEnv& env, uint64_t addr, size_t n) {
    std::vector<uint8_t> v(n);
    env.peek(addr, v.data(), n);
    return v;
}

// The SDM's MOVS operation, element by element (Vol. 2, "MOVS": DEST <- SRC; then both indexes
// step by W), on a byte image of [base, base + mem.size()).
void model_movs(std::vector<uint8_t>& mem, uint64_t base, uint64_t si, uint64_t di, uint64_t n, int w,
                bool df) {
    for (uint64_t k = 0; k < n; k++) {
        uint8_t tmp[8];
        std::memcpy(tmp, &mem[si - base], w);
        std::memcpy(&mem[di - base], tmp, w);
        si += df ? -w : w;
        di += df ? -w : w;
    }
}

}  // namespace

// ---- string instructions -------------------------------------------------------------------------

TEST_CASE("string: REP MOVS bulk path matches the element-wise definition on overlapping copies") {
    SnippetEnv env;
    int cases = 0;
    for (int w : {1, 2, 4, 8}) {
        for (bool df : {false, true}) {
            // distance = dst - src in bytes: overlapping both ways, closer than an element, equal.
            for (int64_t dist :
                 {-4099, -4096, -17, -8, -5, -1, 0, 1, 3, 5, 7, 8, 9, 16, 63, 100, 4095, 4096, 9000}) {
                for (uint64_t count :
                     {uint64_t(1), uint64_t(2), uint64_t(37), uint64_t(1000), uint64_t(2500)}) {
                    uint64_t bytes = count * w;
                    // Source start: unaligned, in the middle of the area so both directions fit.
                    uint64_t src = kArea + 0x8000 + 3 + (dist & 5);
                    uint64_t dst = src + dist;
                    if (df) {  // backward: the first element is the highest one
                        src += bytes;
                        dst += bytes;
                    }
                    uint64_t lo = std::min(src, dst) - (df ? bytes - w : 0);
                    uint64_t hi = std::max(src, dst) + (df ? w : bytes);
                    REQUIRE(lo >= kArea);
                    REQUIRE(hi <= kArea + kAreaSize);
                    fill_pattern(env, kArea, kAreaSize, uint32_t(cases));
                    std::vector<uint8_t> expect = peek(env, kArea, kAreaSize);
                    model_movs(expect, kArea, src, dst, count, w, df);

                    env.reset_cpu();
                    env.load_code(with_hlt(string_insn(0xa4, w, {0xf3})));
                    auto& s = env.cpu().s;
                    s.gpr[RSI] = src;
                    s.gpr[RDI] = dst;
                    s.gpr[RCX] = count;
                    if (df) s.rflags |= fl::DF;
                    CAPTURE(w);
                    CAPTURE(df);
                    CAPTURE(dist);
                    CAPTURE(count);
                    REQUIRE(env.run(10) == StopReason::Halt);
                    uint64_t step = df ? -bytes : bytes;
                    CHECK(s.gpr[RCX] == 0);
                    CHECK(s.gpr[RSI] == src + step);
                    CHECK(s.gpr[RDI] == dst + step);
                    CHECK(peek(env, kArea, kAreaSize) == expect);
                    cases++;
                }
            }
        }
    }
    CHECK(cases == 4 * 2 * 19 * 5);
}

TEST_CASE("string: REP MOVS/STOS equal a loop of single MOVS/STOS (bulk vs element-wise path)") {
    // The same copy done by "rep movs" (bulk path) and by a loop of non-repeated MOVS (always the
    // element-wise path) must leave the same memory and registers.
    for (uint8_t op : {uint8_t(0xa4), uint8_t(0xaa)}) {
        for (int w : {1, 2, 4, 8}) {
            for (int64_t dist : {-3, 1, 6, 24, 2048}) {
                auto run = [&](bool rep, std::vector<uint8_t>& mem, uint64_t* regs) {
                    SnippetEnv env;
                    fill_pattern(env, kArea, kAreaSize, 7);
                    std::vector<uint8_t> code;
                    if (rep) {
                        code = string_insn(op, w, {0xf3});
                    } else {
                        // top: movs/stos; dec rcx (48 FF C9); jnz top
                        code = string_insn(op, w);
                        code.insert(code.end(), {0x48, 0xff, 0xc9});
                        code.push_back(0x75);
                        code.push_back(uint8_t(-(int(code.size()) + 1)));
                    }
                    env.load_code(with_hlt(code));
                    auto& s = env.cpu().s;
                    s.gpr[RSI] = kArea + 0x1001;
                    s.gpr[RDI] = kArea + 0x1001 + dist;
                    s.gpr[RAX] = 0x1122334455667788ull;
                    s.gpr[RCX] = 3000;
                    REQUIRE(env.run(100000) == StopReason::Halt);
                    mem = peek(env, kArea, kAreaSize);
                    regs[0] = s.gpr[RSI];
                    regs[1] = s.gpr[RDI];
                    regs[2] = s.gpr[RCX];
                };
                std::vector<uint8_t> m1, m2;
                uint64_t r1[3], r2[3];
                run(true, m1, r1);
                run(false, m2, r2);
                CAPTURE(int(op));
                CAPTURE(w);
                CAPTURE(dist);
                CHECK(m1 == m2);
                CHECK(r1[0] == r2[0]);
                CHECK(r1[1] == r2[1]);
                CHECK(r1[2] == r2[2]);
            }
        }
    }
}

TEST_CASE("string: a #PF in the middle of REP STOS leaves exact RCX/RDI and a restartable state") {
    for (int w : {1, 2, 4, 8}) {
        SnippetEnv env;
        const uint64_t hole = kArea + 0x3000;  // not-present page
        env.set_page_present(hole, false);
        std::vector<uint8_t> zero(0x4000, 0);
        env.poke(kArea, zero.data(), zero.size());
        auto code = with_hlt(string_insn(0xaa, w, {0xf3}));
        env.load_code(code);
        auto& s = env.cpu().s;
        // Start 1 byte past an element boundary so that (for w > 1) one element straddles the hole.
        uint64_t start = kArea + 0x1001;
        uint64_t count = 0x4000 / w;
        s.gpr[RDI] = start;
        s.gpr[RCX] = count;
        s.gpr[RAX] = 0xa5a5a5a5a5a5a5a5ull;
        CAPTURE(w);
        REQUIRE(env.run(10) == StopReason::Exception);
        CHECK(env.cpu().last_fault.vector == kPF);
        CHECK(env.cpu().last_fault.error_code == 2);  // not present, write, supervisor
        // Completed elements: those entirely below the hole (a straddling store writes nothing).
        uint64_t done = (hole - start) / w;
        CHECK(s.gpr[RDI] == start + done * w);
        CHECK(s.gpr[RCX] == count - done);
        CHECK(s.rip == SnippetEnv::kCodeBase);  // still at the REP STOS
        // CR2: the first byte of the faulting element that is in the hole.
        CHECK(s.cr2 == std::max(start + done * w, hole));
        auto mem = peek(env, kArea, 0x3000);
        for (uint64_t a = kArea; a < hole; a++) {
            bool written = a >= start && a < start + done * w;
            if (mem[a - kArea] != (written ? 0xa5 : 0)) {
                FAIL("byte at " << std::hex << a << " is " << int(mem[a - kArea]));
                break;
            }
        }
        // Restart after "handling" the fault: the instruction completes the remaining elements.
        env.set_page_present(hole, true);
        REQUIRE(env.run(10) == StopReason::Halt);
        CHECK(s.gpr[RCX] == 0);
        CHECK(s.gpr[RDI] == start + count * w);
    }
}

TEST_CASE("string: a #PF on the source part-way through REP MOVS, forward and backward") {
    for (int w : {1, 8}) {
        for (bool df : {false, true}) {
            SnippetEnv env;
            const uint64_t hole = kArea + 0x4000;
            env.set_page_present(hole, false);
            fill_pattern(env, kArea, 0x4000, 3);
            env.load_code(with_hlt(string_insn(0xa4, w, {0xf3})));
            auto& s = env.cpu().s;
            // Forward: the source runs up into the hole. Backward: it starts in the page above the
            // hole and runs down into it.
            uint64_t src = df ? hole + 0x1000 + 0x100 : kArea + 0x3800;
            uint64_t dst = kArea + 0x1000;
            uint64_t count = 0x1000 / w;
            s.gpr[RSI] = src;
            s.gpr[RDI] = dst + (df ? 0x1000 : 0);
            s.gpr[RCX] = count;
            if (df) s.rflags |= fl::DF;
            CAPTURE(w);
            CAPTURE(df);
            REQUIRE(env.run(10) == StopReason::Exception);
            CHECK(env.cpu().last_fault.vector == kPF);
            CHECK(env.cpu().last_fault.error_code == 0);  // not present, read
            uint64_t done = df ? (src - (hole + 0x1000)) / w + 1 : (hole - src) / w;
            CHECK(s.gpr[RCX] == count - done);
            CHECK(s.gpr[RSI] == (df ? src - done * w : src + done * w));
            CHECK(s.cr2 == s.gpr[RSI]);  // the faulting element lies wholly in the hole
            CHECK(s.rip == SnippetEnv::kCodeBase);
        }
    }
}

TEST_CASE("string: REPE CMPS and REPNE SCAS stop where the SDM says, with CMP flags") {
    SnippetEnv env;
    const char a[] = "hello, world; hello, there";
    const char b[] = "hello, world; hellO, there";
    env.poke(kArea, a, sizeof a);
    env.poke(kArea + 0x100, b, sizeof b);
    // repe cmpsb: stops after the first differing byte ('o' 0x6f vs 'O' 0x4f at index 18).
    env.load_code(with_hlt({0xf3, 0xa6}));
    auto& s = env.cpu().s;
    s.gpr[RSI] = kArea;
    s.gpr[RDI] = kArea + 0x100;
    s.gpr[RCX] = 100;
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(s.gpr[RSI] == kArea + 19);
    CHECK(s.gpr[RDI] == kArea + 0x100 + 19);
    CHECK(s.gpr[RCX] == 100 - 19);
    // flags of CMP 0x6f, 0x4f: not zero, no borrow, positive.
    uint64_t f = env.cpu().rflags();
    CHECK((f & fl::ZF) == 0);
    CHECK((f & fl::CF) == 0);
    CHECK((f & fl::SF) == 0);

    // repne scasb for ';' (index 12): stops after the match with ZF=1.
    env.reset_cpu();
    env.load_code(with_hlt({0xf2, 0xae}));
    auto& s2 = env.cpu().s;
    s2.gpr[RAX] = ';';
    s2.gpr[RDI] = kArea;
    s2.gpr[RCX] = 100;
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(s2.gpr[RDI] == kArea + 13);
    CHECK(s2.gpr[RCX] == 100 - 13);
    CHECK((env.cpu().rflags() & fl::ZF) != 0);

    // The count running out first: REPE CMPS over equal data ends with RCX = 0 and ZF = 1.
    env.reset_cpu();
    env.load_code(with_hlt({0xf3, 0xa6}));
    auto& s3 = env.cpu().s;
    s3.gpr[RSI] = kArea;
    s3.gpr[RDI] = kArea + 0x100;
    s3.gpr[RCX] = 10;
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(s3.gpr[RCX] == 0);
    CHECK((env.cpu().rflags() & fl::ZF) != 0);

    // RCX = 0: nothing happens, flags unchanged (CF set beforehand stays set).
    env.reset_cpu();
    env.load_code(with_hlt({0xf3, 0xa6}));
    auto& s4 = env.cpu().s;
    s4.rflags |= fl::CF;
    s4.gpr[RSI] = 0x10;  // would fault (page 0) if accessed
    s4.gpr[RDI] = 0x10;
    s4.gpr[RCX] = 0;
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(s4.gpr[RSI] == 0x10);
    CHECK((env.cpu().rflags() & fl::CF) != 0);
}

TEST_CASE("string: with TF set a repeat runs one iteration per instruction, RIP staying on it") {
    // What the host does (a SIGTRAP per iteration of a single-stepped REP STOSB, RIP at the REP
    // until the last one): one iteration, then the single-step trap with the instruction restarting.
    SnippetEnv env;
    auto code = with_hlt({0xf3, 0xaa});  // rep stosb
    env.load_code(code);
    auto& s = env.cpu().s;
    s.rflags |= fl::TF;
    s.gpr[RDI] = kArea;
    s.gpr[RCX] = 5;
    for (uint64_t left = 4;; left--) {
        REQUIRE(env.run(1) == StopReason::Limit);
        CHECK(s.gpr[RCX] == left);
        CHECK(s.gpr[RDI] == kArea + 5 - left);
        if (left == 0) {
            CHECK(s.rip == SnippetEnv::kCodeBase + 2);
            break;
        }
        CHECK(s.rip == SnippetEnv::kCodeBase);
    }
    // REPE CMPSB stopping on a difference at the second element: done after two steps.
    env.reset_cpu();
    const char a[] = "xyz", b[] = "xYz";
    env.poke(kArea, a, 3);
    env.poke(kArea + 0x100, b, 3);
    env.load_code(with_hlt({0xf3, 0xa6}));
    auto& s2 = env.cpu().s;
    s2.rflags |= fl::TF;
    s2.gpr[RSI] = kArea;
    s2.gpr[RDI] = kArea + 0x100;
    s2.gpr[RCX] = 3;
    REQUIRE(env.run(1) == StopReason::Limit);
    CHECK(s2.rip == SnippetEnv::kCodeBase);
    CHECK(s2.gpr[RCX] == 2);
    REQUIRE(env.run(1) == StopReason::Limit);
    CHECK(s2.rip == SnippetEnv::kCodeBase + 2);
    CHECK(s2.gpr[RCX] == 1);
    // RCX = 0: the instruction completes at once.
    env.reset_cpu();
    env.load_code(with_hlt({0xf3, 0xaa}));
    env.cpu().s.rflags |= fl::TF;
    env.cpu().s.gpr[RCX] = 0;
    REQUIRE(env.run(1) == StopReason::Limit);
    CHECK(env.cpu().s.rip == SnippetEnv::kCodeBase + 2);
}

TEST_CASE("string: 0x67 uses ESI/EDI/ECX and zero-extends them") {
    SnippetEnv env;
    fill_pattern(env, kArea, 0x100, 9);
    env.load_code(with_hlt({0x67, 0xf3, 0x48, 0xa5}));  // rep movsq with 32-bit addresses
    auto& s = env.cpu().s;
    s.gpr[RSI] = 0xdead000000000000ull | kArea;
    s.gpr[RDI] = 0xbeef000000000000ull | (kArea + 0x80);
    s.gpr[RCX] = 0x1234000000000004ull;
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(s.gpr[RSI] == kArea + 32);
    CHECK(s.gpr[RDI] == kArea + 0x80 + 32);
    CHECK(s.gpr[RCX] == 0);
    CHECK(peek(env, kArea + 0x80, 32) == peek(env, kArea, 32));
}

TEST_CASE("string: 16-bit address size wraps SI/DI/CX inside 64 KiB (compatibility mode)") {
    SnippetEnv env;
    fill_pattern(env, kArea, 0x20000, 11);
    // 32-bit compatibility-mode code: rep movsb with a 67h prefix = 16-bit addressing.
    env.load_code(with_hlt({0x67, 0xf3, 0xa4}));
    Cpu& c = env.cpu();
    c.s.seg[CS].attr = 0xc09b;  // D=1, L=0: 32-bit code segment in IA-32e mode
    c.s.seg[DS].base = kArea;
    c.s.seg[ES].base = kArea + 0x10000;
    c.update_mode();
    REQUIRE(c.mode() == Mode::Compat32);
    c.s.gpr[RSI] = 0x5555fffe;  // SI = FFFE: wraps to 0000 after two bytes
    c.s.gpr[RDI] = 0x6666fffd;
    c.s.gpr[RCX] = 0x77770004;
    auto before = peek(env, kArea, 0x20000);
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(c.s.gpr[RSI] == 0x55550002);  // upper bits of ESI untouched by 16-bit index updates
    CHECK(c.s.gpr[RDI] == 0x66660001);
    CHECK(c.s.gpr[RCX] == 0x77770000);
    // Bytes DS:FFFE, DS:FFFF, DS:0000, DS:0001 -> ES:FFFD, ES:FFFE, ES:FFFF, ES:0000.
    auto after = peek(env, kArea, 0x20000);
    const uint64_t es = 0x10000;
    CHECK(after[es + 0xfffd] == before[0xfffe]);
    CHECK(after[es + 0xfffe] == before[0xffff]);
    CHECK(after[es + 0xffff] == before[0x0000]);
    CHECK(after[es + 0x0000] == before[0x0001]);
}

TEST_CASE("string: REP STOS/MOVS stop with #GP at the segment limit, elements below it done") {
    // Compatibility mode: ES limit 0x1fff (byte-granular, expand-up). The elements wholly below the
    // limit are stored, the first one reaching past it faults (SDM Vol. 3, 5.3), with RCX/RDI
    // showing exactly the completed ones.
    for (bool movs : {false, true}) {
        SnippetEnv env;
        std::vector<uint8_t> zero(0x3000, 0);
        env.poke(kArea, zero.data(), zero.size());
        std::vector<uint8_t> src(0x3000, 0x5a);
        env.poke(kArea + 0x8000, src.data(), src.size());
        env.load_code(with_hlt(movs ? std::vector<uint8_t>{0xf3, 0xa5} : std::vector<uint8_t>{0xf3, 0xab}));
        Cpu& c = env.cpu();
        c.s.seg[CS].attr = 0xc09b;  // 32-bit code segment in IA-32e mode
        c.s.seg[ES].base = kArea;
        c.s.seg[ES].limit = 0x1fff;
        c.s.seg[DS].base = kArea + 0x8000;
        c.update_mode();
        REQUIRE(c.mode() == Mode::Compat32);
        c.s.gpr[RDI] = 0x1002;  // dword elements at 0x1002 + 4k: the one at 0x1ffe straddles the limit
        c.s.gpr[RSI] = 0;
        c.s.gpr[RCX] = 0x1000;
        c.s.gpr[RAX] = 0x11223344;
        CAPTURE(movs);
        REQUIRE(env.run(10) == StopReason::Exception);
        CHECK(c.last_fault.vector == kGP);
        uint64_t done = (0x1ffe - 0x1002) / 4;  // elements wholly inside [0, 0x1fff]
        CHECK(c.s.gpr[RDI] == 0x1002 + done * 4);
        CHECK(c.s.gpr[RCX] == 0x1000 - done);
        CHECK(c.s.rip == SnippetEnv::kCodeBase);
        auto mem = peek(env, kArea, 0x3000);
        CHECK(mem[0x1ffd] != 0);  // last byte of the last completed element
        CHECK(mem[0x1ffe] == 0);  // nothing of the faulting element
        CHECK(mem[0x1fff] == 0);
    }
}

TEST_CASE("string: FS override on the source, ES fixed for the destination (64-bit mode)") {
    SnippetEnv env;
    fill_pattern(env, kArea, 0x2000, 5);
    env.load_code(with_hlt({0x64, 0x48, 0xad, 0x64, 0x48, 0xab}));  // lodsq fs:[rsi]; stosq (fs ignored)
    Cpu& c = env.cpu();
    c.s.seg[FS].base = kArea + 0x1000;
    c.s.gpr[RSI] = 0x10;
    c.s.gpr[RDI] = kArea + 0x100;
    REQUIRE(env.run(10) == StopReason::Halt);
    uint64_t v;
    env.peek(kArea + 0x1010, &v, 8);
    CHECK(c.s.gpr[RAX] == v);
    uint64_t stored;
    env.peek(kArea + 0x100, &stored, 8);  // STOS wrote to RDI itself (flat), not FS:RDI
    CHECK(stored == v);
    CHECK(c.s.gpr[RSI] == 0x18);
}

TEST_CASE("string: LODS/STOS/SCAS widths and REP LODS") {
    SnippetEnv env;
    fill_pattern(env, kArea, 0x100, 13);
    auto mem = peek(env, kArea, 0x100);
    // lodsd zero-extends into RAX
    env.load_code(with_hlt({0xad}));
    env.cpu().s.gpr[RAX] = ~0ull;
    env.cpu().s.gpr[RSI] = kArea + 4;
    REQUIRE(env.run(10) == StopReason::Halt);
    uint32_t d;
    std::memcpy(&d, &mem[4], 4);
    CHECK(env.cpu().s.gpr[RAX] == d);
    // lodsw merges into AX
    env.reset_cpu();
    env.load_code(with_hlt({0x66, 0xad}));
    env.cpu().s.gpr[RAX] = 0x1111222233334444ull;
    env.cpu().s.gpr[RSI] = kArea + 6;
    REQUIRE(env.run(10) == StopReason::Halt);
    uint16_t h;
    std::memcpy(&h, &mem[6], 2);
    CHECK(env.cpu().s.gpr[RAX] == (0x1111222233330000ull | h));
    // rep lodsb: AL = the last byte, RSI advanced by the count
    env.reset_cpu();
    env.load_code(with_hlt({0xf3, 0xac}));
    env.cpu().s.gpr[RSI] = kArea;
    env.cpu().s.gpr[RCX] = 10;
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(uint8_t(env.cpu().s.gpr[RAX]) == mem[9]);
    CHECK(env.cpu().s.gpr[RSI] == kArea + 10);
    // F2 on STOS repeats like F3
    env.reset_cpu();
    env.load_code(with_hlt({0xf2, 0xaa}));
    env.cpu().s.gpr[RAX] = 0x5a;
    env.cpu().s.gpr[RDI] = kArea;
    env.cpu().s.gpr[RCX] = 5;
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RCX] == 0);
    CHECK(peek(env, kArea, 5) == std::vector<uint8_t>(5, 0x5a));
}

// ---- CPUID ---------------------------------------------------------------------------------------

namespace {

cpuid::Regs run_cpuid(Cpu& c, uint32_t leaf, uint32_t sub = 0) { return cpuid::query(c, leaf, sub); }

}  // namespace

TEST_CASE("cpuid: the CPUID instruction returns the model's registers, zero-extended") {
    SnippetEnv env;
    env.load_code(with_hlt({0x0f, 0xa2}));
    auto& s = env.cpu().s;
    s.gpr[RAX] = 0xffffffff00000000ull;  // leaf 0 (upper half ignored)
    s.gpr[RBX] = s.gpr[RCX] = s.gpr[RDX] = ~0ull;
    REQUIRE(env.run(10) == StopReason::Halt);
    char vendor[13] = {};
    std::memcpy(vendor, &s.gpr[RBX], 4);
    std::memcpy(vendor + 4, &s.gpr[RDX], 4);
    std::memcpy(vendor + 8, &s.gpr[RCX], 4);
    CHECK(std::string(vendor) == "GenuineIntel");
    CHECK(s.gpr[RAX] == cpuid::kMaxBasicLeaf);
    CHECK((s.gpr[RBX] >> 32) == 0);
    CHECK((s.gpr[RCX] >> 32) == 0);
    CHECK((s.gpr[RDX] >> 32) == 0);
}

TEST_CASE("cpuid: leaf ranges, out-of-range leaves, signature, brand") {
    SnippetEnv env;
    Cpu& c = env.cpu();
    CHECK(run_cpuid(c, 0).eax == cpuid::kMaxBasicLeaf);
    CHECK(run_cpuid(c, 0x80000000).eax == cpuid::kMaxExtLeaf);
    CHECK(cpuid::kMaxExtLeaf >= 0x80000008);  // we model 0x80000008 (address sizes)
    // Above the maxima: the highest basic leaf's data (Intel's documented behaviour).
    auto top = run_cpuid(c, cpuid::kMaxBasicLeaf);
    for (uint32_t leaf :
         {cpuid::kMaxBasicLeaf + 1, 0x20u, cpuid::kMaxExtLeaf + 1, 0x8fffffffu, 0xc0000000u}) {
        auto r = run_cpuid(c, leaf);
        CAPTURE(leaf);
        CHECK(r.eax == top.eax);
        CHECK(r.ebx == top.ebx);
        CHECK(r.ecx == top.ecx);
        CHECK(r.edx == top.edx);
    }
    // RESET puts the processor signature in EDX (SDM Vol. 3, 10.1.2): it must match leaf 1 EAX.
    machine::FlatBus bus(1 << 20);
    Cpu fresh(bus);
    CHECK(uint32_t(fresh.s.gpr[RDX]) == run_cpuid(fresh, 1).eax);
    // Brand string: 48 bytes, NUL-terminated.
    char brand[49] = {};
    for (uint32_t i = 0; i < 3; i++) {
        auto r = run_cpuid(c, 0x80000002 + i);
        std::memcpy(brand + 16 * i, &r, 16);
    }
    CHECK(std::string(brand) == cpuid::kBrand);
}

TEST_CASE("cpuid: feature bits are exactly the table, OSXSAVE mirrors CR4") {
    SnippetEnv env;
    Cpu& c = env.cpu();
    std::set<std::tuple<uint32_t, int, int, int>> seen;
    for (const auto& f : cpuid::kFeatures) {
        std::string name = f.name;
        CAPTURE(name);
        CHECK(seen.insert({f.leaf, f.subleaf, f.reg, f.bit}).second);  // no bit listed twice
        auto r = run_cpuid(c, f.leaf, f.subleaf);
        uint32_t v = f.reg == cpuid::kEax   ? r.eax
                     : f.reg == cpuid::kEbx ? r.ebx
                     : f.reg == cpuid::kEcx ? r.ecx
                                            : r.edx;
        CHECK(bool(v & (1u << f.bit)) == f.on);
    }
    // Dynamic bits. SYSCALL (0x80000001 EDX[11]) only in 64-bit mode, as on Intel.
    CHECK((run_cpuid(c, 0x80000001).edx & (1u << 11)) != 0);
    c.s.seg[CS].attr = 0xc09b;  // compatibility mode
    c.update_mode();
    CHECK((run_cpuid(c, 0x80000001).edx & (1u << 11)) == 0);
    CHECK((run_cpuid(c, 0x80000001).edx & (1u << 29)) != 0);  // LM stays
    c.s.seg[CS].attr = 0xa09b;
    c.update_mode();
    c.s.cr4 |= cr4::OSXSAVE;
    CHECK((run_cpuid(c, 1).ecx & (1u << 27)) != 0);
    c.s.cr4 &= ~cr4::OSXSAVE;
    CHECK((run_cpuid(c, 1).ecx & (1u << 27)) == 0);
    // Never advertised (not implemented): SSE3 and later, AVX, RDRAND, MONITOR.
    auto l1 = run_cpuid(c, 1);
    for (int bit : {0, 1, 3, 9, 12, 19, 20, 25, 28, 29, 30}) CHECK((l1.ecx & (1u << bit)) == 0);
    auto l7 = run_cpuid(c, 7);
    for (int bit : {5 /* AVX2 */, 16 /* AVX-512F */, 18 /* RDSEED */}) CHECK((l7.ebx & (1u << bit)) == 0);
}

TEST_CASE("cpuid: XSAVE leaf 0xD matches the implemented state components and XSAVE's footprint") {
    SnippetEnv env;
    Cpu& c = env.cpu();
    auto d0 = run_cpuid(c, 0xd, 0);
    CHECK(d0.eax == 3);  // x87 and SSE
    CHECK(d0.edx == 0);
    CHECK(d0.ebx == 576);
    CHECK(d0.ecx == 576);
    CHECK(run_cpuid(c, 0xd, 1).eax == 0);  // no XSAVEOPT/XSAVEC/XGETBV1/XSAVES
    CHECK(run_cpuid(c, 0xd, 2).eax == 0);  // no AVX state
    // XCR0 as XGETBV reports it is within what leaf 0xD says is supported.
    CHECK((c.s.xcr0 & ~uint64_t(d0.eax)) == 0);
}

TEST_CASE("cpuid: XSAVE writes nothing beyond the area size leaf 0xD reports") {
    SnippetEnv env;
    auto d0 = run_cpuid(env.cpu(), 0xd, 0);
    // XSAVE with every request bit set.
    std::vector<uint8_t> fill(2048, 0xcc);
    env.poke(kArea, fill.data(), fill.size());
    // mov eax, -1; mov edx, -1; mov rcx, kArea; xsave [rcx]
    env.load_code(with_hlt({0xb8, 0xff, 0xff, 0xff, 0xff, 0xba, 0xff, 0xff, 0xff, 0xff,
                            0x48, 0xc7, 0xc1, 0x00, 0x00, 0x20, 0x00, 0x0f, 0xae, 0x21}));
    REQUIRE(env.run(10) == StopReason::Halt);
    auto mem = peek(env, kArea, 2048);
    size_t last = 0;
    for (size_t i = 0; i < mem.size(); i++)
        if (mem[i] != 0xcc) last = i;
    CHECK(last < d0.ebx);
    CHECK(mem[0] == 0x7f);  // FCW (0x037f after reset) at offset 0 of the legacy region
    CHECK(mem[1] == 0x03);
}

TEST_CASE("cpuid: topology leaves 1, 4, 0xB are self-consistent for 1..N CPUs") {
    SnippetEnv env;
    Cpu& c = env.cpu();
    for (uint32_t n : {1u, 2u, 3u, 4u, 5u, 8u, 16u, 64u}) {
        unsigned shift = 0;
        for (uint32_t id = 0; id < n; id++) {
            c.num_cpus = n;
            c.apic_id = id;
            CAPTURE(n);
            CAPTURE(id);
            auto l1 = run_cpuid(c, 1);
            CHECK((l1.ebx >> 24) == (id & 0xff));
            CHECK(bool(l1.edx & (1u << 28)) == (n > 1));  // HTT
            // 0xB: level 0 = SMT (1 thread), level 1 = core; the x2APIC ID in EDX everywhere.
            auto b0 = run_cpuid(c, 0xb, 0), b1 = run_cpuid(c, 0xb, 1), b2 = run_cpuid(c, 0xb, 2);
            CHECK((b0.ecx >> 8 & 0xff) == 1);
            CHECK((b1.ecx >> 8 & 0xff) == 2);
            CHECK((b2.ecx >> 8 & 0xff) == 0);
            CHECK((b0.ecx & 0xff) == 0);
            CHECK((b1.ecx & 0xff) == 1);
            CHECK(b0.edx == id);
            CHECK(b1.edx == id);
            CHECK((b0.ebx & 0xffff) == 1);
            CHECK((b1.ebx & 0xffff) == n);
            shift = b1.eax & 0x1f;
            // All CPUs in one package: the package ID (APIC ID >> core shift) is 0 for everyone,
            // and the shift is no wider than needed.
            CHECK((id >> shift) == 0);
            CHECK((1u << shift) >= n);
            CHECK((shift == 0 || (1u << (shift - 1)) < n));
            CHECK((b0.eax & 0x1f) == 0);
            CHECK((l1.ebx >> 16 & 0xff) == (1u << shift));
            // Leaf 4: the caches, then type 0. Cores per package field agrees with 0xB.
            unsigned k = 0;
            for (;; k++) {
                auto r = run_cpuid(c, 4, k);
                if ((r.eax & 0x1f) == 0) break;
                CHECK((r.eax >> 26) + 1 == (1u << shift));
                unsigned sharing = (r.eax >> 14 & 0xfff) + 1;
                unsigned level = r.eax >> 5 & 7;
                CHECK((sharing == 1 || sharing == (1u << shift)));
                if (level == 3) CHECK(sharing == (1u << shift));
                CHECK((r.ebx & 0xfff) + 1 == 64);  // line size = leaf 1's CLFLUSH size
                REQUIRE(k < 8);
            }
            CHECK(k == 4);
            CHECK((l1.ebx >> 8 & 0xff) * 8 == 64);
        }
    }
    // L2 in 0x80000006 matches leaf 4's L2.
    c.num_cpus = 1;
    c.apic_id = 0;
    for (unsigned k = 0; k < 4; k++) {
        auto r = run_cpuid(c, 4, k);
        if ((r.eax >> 5 & 7) != 2) continue;
        uint32_t size =
            ((r.ebx >> 22) + 1) * ((r.ebx >> 12 & 0x3ff) + 1) * ((r.ebx & 0xfff) + 1) * (r.ecx + 1);
        auto e6 = run_cpuid(c, 0x80000006);
        CHECK((e6.ecx >> 16) * 1024 == size);
        CHECK((e6.ecx & 0xff) == 64);
    }
}

TEST_CASE("cpuid: the TSC frequency is stated consistently (0x15, 0x16, 0x40000010, invariant TSC)") {
    SnippetEnv env;
    Cpu& c = env.cpu();
    auto l15 = run_cpuid(c, 0x15);
    REQUIRE(l15.eax != 0);
    REQUIRE(l15.ebx != 0);
    REQUIRE(l15.ecx != 0);  // crystal given: Linux then trusts the frequency without calibration
    CHECK(uint64_t(l15.ecx) * l15.ebx / l15.eax == cpuid::kTscHz);
    CHECK(l15.ecx == cpuid::kCrystalHz);
    CHECK(uint64_t(run_cpuid(c, 0x16).eax) * 1'000'000 == cpuid::kTscHz);
    CHECK((run_cpuid(c, 1).ecx >> 31) == 1);  // hypervisor present
    auto h0 = run_cpuid(c, 0x40000000);
    CHECK(h0.eax >= 0x40000010);
    auto h10 = run_cpuid(c, 0x40000010);
    CHECK(uint64_t(h10.eax) * 1000 == cpuid::kTscHz);
    CHECK(uint64_t(h10.ebx) * 1000 == cpuid::kCrystalHz);
    CHECK((run_cpuid(c, 0x80000007).edx & (1u << 8)) != 0);
    auto e8 = run_cpuid(c, 0x80000008);
    CHECK((e8.eax & 0xff) == 52);
    CHECK((e8.eax >> 8 & 0xff) == 48);
}

// Each advertised instruction-set feature: one instruction of it must execute without #UD.
TEST_CASE("cpuid: every advertised instruction feature has handlers (no #UD)") {
    using namespace Xbyak::util;
    using G = Xbyak::CodeGenerator;
    const uint64_t m = kArea;  // 64-byte aligned scratch memory (rax points here in the probes)
    std::map<std::string, Gen> probes = {
        {"fpu",
         [](G& g) {
             g.fninit();
             g.fld1();
             g.fstp(g.st0);
         }},
        {"tsc", [](G& g) { g.rdtsc(); }},
        {"msr",
         [](G& g) {
             g.mov(g.ecx, 0x277);
             g.rdmsr();
         }},
        {"cx8", [](G& g) { g.cmpxchg8b(g.ptr[g.rax]); }},
        {"sep", [](G& g) { g.sysenter(); }},
        {"cmov", [](G& g) { g.cmovz(g.eax, g.ecx); }},
        {"clflush", [](G& g) { g.clflush(g.ptr[g.rax]); }},
        {"mmx",
         [](G& g) {
             g.paddb(g.mm0, g.mm1);
             g.emms();
         }},
        {"fxsr",
         [](G& g) {
             emit(g, {0x0f, 0xae, 0x00});
         }},  // fxsave [rax]
        {"sse", [](G& g) { g.addps(g.xmm0, g.xmm1); }},
        {"sse2",
         [](G& g) {
             g.paddq(g.xmm0, g.xmm1);
             g.addpd(g.xmm0, g.xmm1);
         }},
        {"cx16", [](G& g) { g.cmpxchg16b(g.ptr[g.rax]); }},
        {"movbe", [](G& g) { g.movbe(g.ecx, g.ptr[g.rax]); }},
        {"popcnt", [](G& g) { g.popcnt(g.eax, g.ecx); }},
        {"xsave",
         [](G& g) {
             g.mov(g.rsi, g.rax);
             g.xor_(g.ecx, g.ecx);
             g.xgetbv();
             emit(g, {0x0f, 0xae, 0x26});
         }},
        {"fsgsbase",
         [](G& g) {
             emit(g, {0x0f, 0x20, 0xe1, 0x48, 0x0f, 0xba, 0xe9, 0x10, 0x0f, 0x22, 0xe1});  // CR4.FSGSBASE = 1
             emit(g, {0xf3, 0x48, 0x0f, 0xae, 0xc0});
         }},  // mov rcx, cr4; bts rcx, 16; mov cr4, rcx; rdfsbase rax
        {"bmi1", [](G& g) { g.andn(g.eax, g.ecx, g.edx); }},
        {"bmi2",
         [](G& g) {
             g.shlx(g.eax, g.ecx, g.edx);
             g.pdep(g.eax, g.ecx, g.edx);
         }},
        {"erms",
         [](G& g) {
             g.mov(g.rdi, g.rax);
             g.mov(g.ecx, 8);
             g.rep();
             g.stosb();
         }},
        {"fsrm",
         [](G& g) {
             g.mov(g.rsi, g.rax);
             g.lea(g.rdi, g.ptr[g.rax + 64]);
             g.mov(g.ecx, 8);
             g.rep();
             g.movsb();
         }},
        {"adx",
         [](G& g) {
             g.adcx(g.eax, g.ecx);
             g.adox(g.eax, g.ecx);
         }},
        {"clflushopt", [](G& g) { g.clflushopt(g.ptr[g.rax]); }},
        {"clwb", [](G& g) { g.clwb(g.ptr[g.rax]); }},
        {"rdpid",
         [](G& g) {
             emit(g, {0xf3, 0x0f, 0xc7, 0xf8});
         }},  // rdpid rax
        {"invpcid",
         [](G& g) {
             g.mov(g.ecx, 2);
             emit(g, {0x66, 0x0f, 0x38, 0x82, 0x08});
         }},  // invpcid rcx, [rax]
        {"lahf_lm",
         [](G& g) {
             g.lahf();
             g.sahf();
         }},
        {"abm", [](G& g) { g.lzcnt(g.eax, g.ecx); }},
        {"3dnowprefetch", [](G& g) { g.prefetchw(g.ptr[g.rax]); }},
        {"syscall", [](G& g) { g.syscall(); }},
        {"rdtscp", [](G& g) { g.rdtscp(); }},
    };
    for (const auto& f : cpuid::kFeatures) {
        if (!f.on || f.kind != cpuid::Kind::Insn) continue;
        std::string name = f.name;
        auto it = probes.find(name);
        if (it == probes.end()) {
            FAIL_CHECK("no probe instruction for advertised feature " << name);
            continue;
        }
        SnippetEnv env;
        auto code = assemble([&](G& g) {
            g.mov(g.rax, m);
            it->second(g);
            g.hlt();
        });
        env.load_code(code);
        StopReason r = env.run(100);
        bool ud = r == StopReason::Exception && env.cpu().last_fault.vector == kUD;
        if (ud) {
            // Disassemble what raised #UD for the failure message.
            uint8_t bytes[16] = {};
            env.peek(env.cpu().s.rip, bytes, sizeof bytes);
            FAIL_CHECK(name << ": #UD at "
                            << disassemble(bytes, sizeof bytes, Mode::Long64, env.cpu().s.rip));
        }
    }
}

// ---- RDTSC, RDTSCP, RDPID, PAUSE, UD ---------------------------------------------------------------

TEST_CASE("cpuid & misc: RDTSC is monotonic and split into EDX:EAX; RDTSCP adds TSC_AUX") {
    SnippetEnv env;
    // rdtsc; mov r8, rax; mov r9, rdx; (pause x3); rdtscp; hlt
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.rdtsc();
        g.mov(g.r8, g.rax);
        g.mov(g.r9, g.rdx);
        g.pause();
        g.pause();
        g.pause();
        g.rdtscp();
        g.hlt();
    }));
    auto& s = env.cpu().s;
    s.gpr[RAX] = s.gpr[RDX] = s.gpr[RCX] = ~0ull;
    s.tsc_aux = 0xabcd1234;
    REQUIRE(env.run(100) == StopReason::Halt);
    uint64_t t1 = s.gpr[R9] << 32 | s.gpr[R8], t2 = s.gpr[RDX] << 32 | s.gpr[RAX];
    CHECK((s.gpr[R8] >> 32) == 0);  // 32-bit writes zero-extend
    CHECK((s.gpr[RDX] >> 32) == 0);
    CHECK(t2 > t1);
    CHECK(s.gpr[RCX] == 0xabcd1234);
}

TEST_CASE("cpuid & misc: RDTSC at CPL 3 with CR4.TSD raises #GP(0); RDPID reads TSC_AUX") {
    SnippetEnv env;
    env.load_code(with_hlt({0x0f, 0x31}));
    Cpu& c = env.cpu();
    c.s.cr4 |= cr4::TSD;
    REQUIRE(env.run(10) == StopReason::Halt);  // CPL 0: allowed
    // CPL 3 is not reachable from the flat snippet without user pages; the rule is checked on the
    // CS.RPL the handler reads: forge CS.RPL = 3 in the descriptor cache.
    env.reset_cpu();
    env.load_code(with_hlt({0x0f, 0x31}));
    Cpu& c2 = env.cpu();
    c2.s.cr4 |= cr4::TSD;
    c2.s.seg[CS].sel |= 3;
    REQUIRE(env.run(10) == StopReason::Exception);
    CHECK(c2.last_fault.vector == kGP);
    CHECK(c2.last_fault.error_code == 0);

    env.reset_cpu();
    env.load_code(with_hlt({0xf3, 0x0f, 0xc7, 0xf8}));  // rdpid rax
    env.cpu().s.tsc_aux = 0x12345678;
    env.cpu().s.gpr[RAX] = ~0ull;
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RAX] == 0x12345678);
}

TEST_CASE("cpuid & misc: UD2, UD0, UD1 raise #UD at the instruction") {
    for (auto bytes : {std::vector<uint8_t>{0x0f, 0x0b}, std::vector<uint8_t>{0x0f, 0xff, 0xc0},
                       std::vector<uint8_t>{0x0f, 0xb9, 0x00}}) {
        SnippetEnv env;
        env.load_code(with_hlt(bytes));
        REQUIRE(env.run(10) == StopReason::Exception);
        CHECK(env.cpu().last_fault.vector == kUD);
        CHECK(env.cpu().s.rip == SnippetEnv::kCodeBase);
    }
}

// SDM Vol. 1, 7.3.9.2: a REP string instruction is interruptible between iterations. micro86 stops
// a long one after a bounded amount of work with its registers showing the iterations done and
// RIP at the instruction, so the board serves interrupts, timers and input, then runs it again.
TEST_CASE("REP STOSB to MMIO with ECX = 2^32 - 1 gives up control part-way, and resumes exactly") {
    SnippetEnv env;
    env.set_bits(32);  // paging off: 0xf0000000 is no RAM (MMIO: writes are dropped)
    env.load_code(with_hlt({0xbf, 0x00, 0x00, 0x00, 0xf0,   // mov edi, 0xf0000000
                            0xb9, 0xff, 0xff, 0xff, 0xff,   // mov ecx, 0xffffffff
                            0xf3, 0xaa}));                  // rep stosb
    Cpu& c = env.cpu();
    c.return_on_yield = true;
    const uint64_t start = c.s.rip;
    REQUIRE(c.run(1'000'000'000) == StopReason::Limit);  // returns long before 2^32 stores
    const uint64_t done = 0xffffffffull - c.s.gpr[RCX];
    CHECK(c.s.rip == start + 10);  // at the REP STOSB
    CHECK(done > 0);
    CHECK(done <= 4096);
    CHECK(c.s.gpr[RDI] == 0xf0000000ull + done);
    // Run on: each turn makes progress, RIP stays at the instruction until the count is done.
    for (int turn = 0; turn < 3; turn++) {
        const uint64_t before = c.s.gpr[RCX];
        REQUIRE(c.run(1'000'000'000) == StopReason::Limit);
        CHECK(c.s.gpr[RCX] < before);
        CHECK(c.s.rip == start + 10);
        CHECK(c.s.gpr[RDI] == 0xf0000000ull + (0xffffffffull - c.s.gpr[RCX]));
    }
}

TEST_CASE("REP MOVSB over many pages: the same bytes whether or not it gives up control part-way") {
    for (bool yield : {false, true}) {
        CAPTURE(yield);
        SnippetEnv env;
        const size_t n = 3 << 20;  // 3 MiB: several budgets' worth of page runs
        fill_pattern(env, 0x400000, n, 7);
        env.load_code(assemble([=](Xbyak::CodeGenerator& g) {
            using namespace Xbyak::util;
            g.mov(esi, 0x400000);
            g.mov(edi, 0x800000);
            g.mov(ecx, uint32_t(n));
            g.rep();
            g.movsb();
            g.hlt();
        }));
        env.cpu().return_on_yield = yield;
        int runs = 0;
        StopReason r;
        while ((r = env.run(1'000'000)) == StopReason::Limit && runs < 1000) runs++;
        REQUIRE(r == StopReason::Halt);
        CHECK((yield ? runs > 0 : runs == 0));
        std::vector<uint8_t> a(n), b(n);
        env.peek(0x400000, a.data(), n);
        env.peek(0x800000, b.data(), n);
        CHECK(a == b);
        CHECK(env.cpu().s.gpr[RCX] == 0);
        CHECK(env.cpu().s.gpr[RSI] == 0x400000 + n);
    }
}
