// Unit tests: system level (ops/system.cpp, ops/crmsr.cpp, ops/io.cpp, exceptions.cpp, segment.cpp).
//
// Instruction-level cases in the snippet environment, and the board-facing interface (Platform,
// INTR/NMI/INIT/SIPI, reset, HLT, triple fault) driven directly. Expected values come from the SDM
// (pages and tables cited at each case). Whole-system behaviour (mode switches, paging, delivery
// frames) is tested by the bare-metal programs in tests/sys.
#include <doctest/doctest.h>
#include <xbyak/xbyak.h>

#include <cstring>
#include <deque>
#include <functional>

#include "machine/snippet.h"

#include "asm.h"

using namespace m86;
using namespace m86::cpu;
using namespace m86::test;
using namespace Xbyak::util;

namespace {

// A 64-bit interrupt gate for `handler` (SDM Vol. 3, Figure 6-8), selector 0x08, IST `ist`.
void put_gate64(machine::SnippetEnv& env, uint64_t idt, unsigned vector, uint64_t handler, unsigned ist = 0) {
    uint64_t lo = (handler & 0xffff) | (0x08ull << 16) | (uint64_t(ist) << 32) | (0x8eull << 40) |
                  ((handler >> 16) & 0xffff) << 48;
    poke64(env, idt + vector * 16, lo);
    poke64(env, idt + vector * 16 + 8, handler >> 32);
}

// An interrupt controller with a queue of vectors.
struct FakePic : Platform {
    Cpu* cpu = nullptr;
    std::deque<int> q;
    int acks = 0;
    void raise(int v) {
        q.push_back(v);
        cpu->set_intr(true);
    }
    int intr_acknowledge() override {
        acks++;
        if (q.empty()) return -1;
        int v = q.front();
        q.pop_front();
        if (q.empty()) cpu->set_intr(false);
        return v;
    }
};

}  // namespace

TEST_CASE("system: RDMSR/WRMSR round trip, canonical checks and #GP for unknown MSRs") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(ecx, 0xc0000082);  // IA32_LSTAR
        g.mov(eax, 0x89abcdef);
        g.mov(edx, 0xffff8000);
        g.wrmsr();
        g.xor_(eax, eax);
        g.xor_(edx, edx);
        g.rdmsr();
        g.mov(r8d, eax);
        g.mov(r9d, edx);
        g.mov(ecx, 0xc0000080);  // EFER
        g.rdmsr();
        g.mov(r10d, eax);
        g.mov(ecx, 0x12345);     // not an MSR
        g.rdmsr();
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().last_fault.error_code == 0);
    CHECK(env.cpu().s.gpr[R8] == 0x89abcdef);
    CHECK(env.cpu().s.gpr[R9] == 0xffff8000);
    CHECK(env.cpu().s.gpr[R10] == (efer::SCE | efer::LME | efer::LMA | efer::NXE));

    // A non-canonical LSTAR is refused with #GP(0) (SDM Vol. 4, IA32_LSTAR).
    machine::SnippetEnv env2;
    env2.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(ecx, 0xc0000082);
        g.xor_(eax, eax);
        g.mov(edx, 0x00008000);
        g.wrmsr();
        g.hlt();
    }));
    REQUIRE(env2.run(100) == StopReason::Exception);
    CHECK(env2.cpu().last_fault.vector == kGP);
    CHECK(env2.cpu().s.lstar == 0);
}

TEST_CASE("system: MOV CR4 rejects reserved bits and clearing PAE in IA-32e mode") {
    for (uint64_t bad : {1ull << 30, 0ull /* clears PAE */}) {
        machine::SnippetEnv env;
        env.load_code(assemble([&](Xbyak::CodeGenerator& g) {
            emit(g, {0x0f, 0x20, 0xe0});  // mov rax, cr4
            g.mov(rbx, rax);
            if (bad) g.or_(rax, int(bad));
            else g.and_(rax, ~int(cr4::PAE));
            emit(g, {0x0f, 0x22, 0xe0});  // mov cr4, rax
            g.hlt();
        }));
        REQUIRE(env.run(100) == StopReason::Exception);
        CHECK(env.cpu().last_fault.vector == kGP);
        CHECK(env.cpu().s.cr4 == env.cpu().s.gpr[RBX]);
    }
}

TEST_CASE("system: SWAPGS exchanges GS.base and IA32_KERNEL_GS_BASE") {
    machine::SnippetEnv env;
    poke64(env, kData, 0x1111);
    poke64(env, kData + 0x100, 0x2222);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(ecx, 0xc0000101);  // GS base
        g.mov(eax, kData);
        g.xor_(edx, edx);
        g.wrmsr();
        g.mov(ecx, 0xc0000102);  // kernel GS base
        g.mov(eax, kData + 0x100);
        g.wrmsr();
        g.db(0x0f), g.db(0x01), g.db(0xf8);  // swapgs
        emit(g, {0x65, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0});  // mov rax, gs:[0]
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RAX] == 0x2222);
    CHECK(env.cpu().s.kernel_gs_base == kData);
}

TEST_CASE("system: a non-canonical data access raises #GP(0)") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(rax, 0x0000800000000000ull);
        g.mov(rbx, qword[rax]);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().last_fault.error_code == 0);
    CHECK(env.cpu().s.rip == kCode + 10);
}

TEST_CASE("system: LSL, LAR and SGDT on the snippet GDT") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(eax, 0x10);
        emit(g, {0x0f, 0x03, 0xd8});  // lsl ebx, ax: 4 GiB data segment, limit 0xffffffff
        g.mov(eax, 0x08);
        emit(g, {0x0f, 0x02, 0xc8});  // lar ecx, ax: 64-bit code, access rights dword & 0x00ffff00
        emit(g, {0x0f, 0x01, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00});  // sgdt [0x200000]
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RBX] == 0xffffffff);
    CHECK(env.cpu().s.gpr[RCX] == 0x00af9b00);
    uint16_t limit = 0;
    env.peek(kData, &limit, 2);
    CHECK(limit == 23);
    CHECK(peek64(env, kData + 2) == 0x6000);
}

TEST_CASE("system: IN from a port without a device reads all ones") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.xor_(eax, eax);
        g.in_(al, 0x80);
        g.mov(dx, 0x1234);
        g.in_(eax, dx);
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RAX] == 0xffffffff);
}

TEST_CASE("system: INT3 in the snippet environment stops at the instruction") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.nop();
        g.int3();
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kBP);
    CHECK(env.cpu().s.rip == kCode + 1);
}

TEST_CASE("system: with delivery on, #PF goes through the IDT with error code, CR2 and a 64-bit frame") {
    // SDM Vol. 3, 6.14.2: the frame is SS, RSP, RFLAGS, CS, RIP, error code, RSP aligned to 16.
    machine::SnippetEnv env;
    env.cpu().stop_on_exception = false;
    constexpr uint64_t kIdt = 0x7000;
    env.set_page_present(kData + 0x5000, false);
    size_t fault_at = 0, handler_at = 0;
    auto code = assemble([&](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x1008);           // not 16-byte aligned
        g.mov(rax, kData + 0x5010);
        fault_at = g.getSize();
        g.mov(qword[rax], 1);                 // #PF: not present, write
        g.hlt();
        handler_at = g.getSize();
        g.mov(rbx, rsp);
        g.hlt();
    });
    env.load_code(code);
    uint64_t handler = kCode + handler_at;
    put_gate64(env, kIdt, kPF, handler);
    env.cpu().s.idtr = {kIdt, 256 * 16 - 1};
    REQUIRE(env.run(100) == StopReason::Halt);
    uint64_t rsp = env.cpu().s.gpr[RBX];
    CHECK(rsp == ((kData + 0x1008) & ~15ull) - 48);
    CHECK(peek64(env, rsp) == 2);                         // error code: write, not present
    CHECK(peek64(env, rsp + 8) == kCode + fault_at);      // RIP of the faulting MOV
    CHECK(peek64(env, rsp + 16) == 0x08);                 // CS
    CHECK(peek64(env, rsp + 32) == kData + 0x1008);       // RSP
    CHECK(peek64(env, rsp + 40) == 0x10);                 // SS
    CHECK(env.cpu().s.cr2 == kData + 0x5010);
    CHECK((peek64(env, rsp + 24) & fl::RF) != 0);         // fault: RF = 1 in the image (18.3.1.1)
}

TEST_CASE("system: an empty IDT turns #UD into a triple fault (StopReason::Shutdown)") {
    machine::SnippetEnv env;
    env.cpu().stop_on_exception = false;
    env.cpu().s.idtr = {0, 0};
    env.load_code(assemble([](Xbyak::CodeGenerator& g) { g.ud2(); }));
    CHECK(env.run(100) == StopReason::Shutdown);
    CHECK(env.cpu().shutdown);
    CHECK(env.run(100) == StopReason::Shutdown);  // stays shut down
}

TEST_CASE("system: INTR is taken when IF = 1, acknowledged once, and wakes HLT") {
    machine::SnippetEnv env;
    Cpu& c = env.cpu();
    FakePic pic;
    pic.cpu = &c;
    c.platform = &pic;
    c.stop_on_exception = false;
    constexpr uint64_t kIdt = 0x7000;
    size_t hlt1 = 0, after_nop = 0, handler = 0;
    env.load_code(assemble([&](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x1000);
        hlt1 = g.getSize();
        g.hlt();                // waits (IF = 0 while nothing is pending)
        g.sti();
        g.nop();                // the interrupt comes after this (STI shadow)
        after_nop = g.getSize();
        g.nop();
        g.hlt();
        handler = g.getSize();
        g.hlt();
    }));
    put_gate64(env, kIdt, 0x30, kCode + handler);
    c.s.idtr = {kIdt, 256 * 16 - 1};
    CHECK(env.run(100) == StopReason::Halt);
    CHECK(c.s.rip == kCode + hlt1 + 1);
    CHECK(!c.wake_pending());
    pic.raise(0x30);
    // IF = 0: the halted CPU stays halted.
    CHECK(!c.wake_pending());
    CHECK(env.run(100) == StopReason::Halt);
    CHECK(pic.acks == 0);
    c.halted = false;  // (a board would only wake it for an interrupt it can take; resume here)
    CHECK(env.run(100) == StopReason::Halt);
    CHECK(pic.acks == 1);
    CHECK(c.s.rip == kCode + handler + 1);                      // in the handler, after its HLT
    CHECK(peek64(env, kData + 0x1000 - 40) == kCode + after_nop);  // return RIP: after the shadowed NOP
    CHECK((c.s.rflags & fl::IF) == 0);                  // interrupt gate
}

TEST_CASE("system: NMI is taken with IF = 0; INIT parks an AP until SIPI") {
    machine::SnippetEnv env;
    Cpu& c = env.cpu();
    c.stop_on_exception = false;
    constexpr uint64_t kIdt = 0x7000;
    size_t hlt1 = 0;
    env.load_code(assemble([&](Xbyak::CodeGenerator& g) {
        g.mov(rsp, kData + 0x1000);
        hlt1 = g.getSize();
        g.hlt();
        g.hlt();   // NMI handler
    }));
    put_gate64(env, kIdt, kNMI, kCode + hlt1 + 1);
    c.s.idtr = {kIdt, 256 * 16 - 1};
    CHECK(env.run(100) == StopReason::Halt);
    CHECK(!c.wake_pending());
    c.raise_nmi();
    CHECK(c.wake_pending());
    CHECK(env.run(100) == StopReason::Halt);
    CHECK(c.s.rip == kCode + hlt1 + 2);
    CHECK(peek64(env, kData + 0x1000 - 40) == kCode + hlt1 + 1);

    // INIT on an application processor: the INIT state, then nothing runs until SIPI
    // (SDM Vol. 3, 10.4.4 and Table 10-1).
    c.is_bsp = false;
    c.raise_init();
    CHECK(env.run(100) == StopReason::Halt);
    CHECK(c.wait_for_sipi);
    CHECK(c.mode() == Mode::Real);
    CHECK(c.s.cr0 == cr0::ET);  // INIT keeps CD/NW (clear in the snippet environment), sets ET
    c.raise_sipi(0x9a);
    env.poke(0x9a000, "\xf4", 1);  // HLT at the start-up address
    CHECK(env.run(100) == StopReason::Halt);
    CHECK(c.s.seg[CS].sel == 0x9a00);
    CHECK(c.s.seg[CS].base == 0x9a000);
    CHECK(c.s.rip == 1);
}

TEST_CASE("system: reset state (SDM Vol. 3, Table 10-1)") {
    machine::FlatBus bus(1 << 20);
    Cpu c(bus);
    CHECK(c.s.seg[CS].sel == 0xf000);
    CHECK(c.s.seg[CS].base == 0xffff0000);
    CHECK(c.s.rip == 0xfff0);
    CHECK(c.s.cr0 == 0x60000010);
    CHECK(c.s.rflags == 2);
    CHECK(c.s.dr[6] == 0xffff0ff0);
    CHECK(c.s.dr[7] == 0x400);
    CHECK(c.s.x87.fcw == 0x0040);
    CHECK(c.s.x87.ftw == 0x5555);
    CHECK(c.s.mxcsr == 0x1f80);
    CHECK(c.s.idtr.limit == 0xffff);
    CHECK(c.s.pat == 0x0007040600070406ull);
    CHECK(c.mode() == Mode::Real);
}

TEST_CASE("system: --bits 16 and --bits 32 entry states") {
    machine::SnippetEnv env;
    env.set_bits(16);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.db(0x50);  // push ax: 2 bytes in 16-bit code
        g.hlt();
    }));
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(env.cpu().mode() == Mode::Real);
    CHECK(env.cpu().s.gpr[RSP] == 0xfff0 - 2);
    CHECK(env.cpu().s.seg[CS].sel == 0x1000);
    CHECK(env.cpu().s.rip == 2);

    env.set_bits(32);
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.db(0x50);  // push eax: 4 bytes in 32-bit code
        g.hlt();
    }));
    REQUIRE(env.run(10) == StopReason::Halt);
    CHECK(env.cpu().mode() == Mode::Prot32);
    CHECK(env.cpu().s.gpr[RSP] == machine::SnippetEnv::kStackTop - 4);
}

// ---- segment type checks on data accesses (SDM Vol. 3, 5.5 and 5.6; MOV/STOS/MOVS/PUSH pages) ----

namespace {
// Flat 32-bit protected mode (SnippetEnv::set_bits(32)) running `code`, with `setup` applied to
// the CPU state after loading (segment attributes...); update_mode() recomputes the checks.
StopReason run32(machine::SnippetEnv& env, std::initializer_list<uint8_t> code,
                 const std::function<void(Cpu&)>& setup) {
    env.set_bits(32);
    env.load_code(std::vector<uint8_t>(code));
    setup(env.cpu());
    env.cpu().update_mode();
    return env.run(100);
}
void set_type(Cpu& c, unsigned seg, unsigned type) { c.s.seg[seg].attr = (c.s.seg[seg].attr & ~0xfu) | type; }
}  // namespace

TEST_CASE("system: segment types: writes through read-only data and code segments raise #GP(0)") {
    machine::SnippetEnv env;
    // mov eax, 0x200000; mov ecx, [eax] (a read is fine); mov [eax], ecx; hlt
    REQUIRE(run32(env, {0xb8, 0, 0, 0x20, 0, 0x8b, 0x08, 0x89, 0x08, 0xf4},
                  [](Cpu& c) { set_type(c, DS, 0x1); }) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().last_fault.error_code == 0);
    CHECK(env.cpu().s.rip == kCode + 7);
    // The same code with a writable DS (type 3) runs to HLT.
    REQUIRE(run32(env, {0xb8, 0, 0, 0x20, 0, 0x8b, 0x08, 0x89, 0x08, 0xf4},
                  [](Cpu& c) { set_type(c, DS, 0x3); }) == StopReason::Halt);
    // Read-modify-write: add [eax], ecx through a read-only DS.
    REQUIRE(run32(env, {0xb8, 0, 0, 0x20, 0, 0x01, 0x08, 0xf4},
                  [](Cpu& c) { set_type(c, DS, 0x1); }) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().s.rip == kCode + 5);
    // A write with a CS override (CS is a code segment, never writable in protected mode).
    REQUIRE(run32(env, {0xb8, 0, 0, 0x20, 0, 0x2e, 0x8b, 0x08, 0x2e, 0x89, 0x08, 0xf4}, [](Cpu&) {}) ==
            StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().s.rip == kCode + 8);
    // STOSD and MOVSD write through ES: read-only ES faults (and EDI is unchanged); DS may be read-only.
    REQUIRE(run32(env, {0xbf, 0, 0, 0x20, 0, 0xbe, 0, 0x10, 0x20, 0, 0xa5, 0xab, 0xf4},
                  [](Cpu& c) { set_type(c, DS, 0x1); }) == StopReason::Halt);
    REQUIRE(run32(env, {0xbf, 0, 0, 0x20, 0, 0xbe, 0, 0x10, 0x20, 0, 0xa5, 0xf4},
                  [](Cpu& c) { set_type(c, ES, 0x1); }) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().s.rip == kCode + 10);
    CHECK(env.cpu().s.gpr[RDI] == 0x200000);
    // rep stosd (the bulk path) with ECX = 64.
    REQUIRE(run32(env, {0xbf, 0, 0, 0x20, 0, 0xb9, 64, 0, 0, 0, 0xf3, 0xab, 0xf4},
                  [](Cpu& c) { set_type(c, ES, 0x1); }) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().s.gpr[RCX] == 64);
    CHECK(env.cpu().s.gpr[RDI] == 0x200000);
}

TEST_CASE("system: segment types: reads through an execute-only code segment raise #GP(0)") {
    machine::SnippetEnv env;
    // mov eax, 0x200000; mov ecx, cs:[eax]; hlt. Execute/read CS (type 0xB) reads fine.
    REQUIRE(run32(env, {0xb8, 0, 0, 0x20, 0, 0x2e, 0x8b, 0x08, 0xf4}, [](Cpu& c) { set_type(c, CS, 0xb); }) ==
            StopReason::Halt);
    REQUIRE(run32(env, {0xb8, 0, 0, 0x20, 0, 0x2e, 0x8b, 0x08, 0xf4}, [](Cpu& c) { set_type(c, CS, 0x9); }) ==
            StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kGP);
    CHECK(env.cpu().last_fault.error_code == 0);
    CHECK(env.cpu().s.rip == kCode + 5);
    // Real mode has no type checks: a CS-override write is fine (SDM Vol. 3, 20.1).
    env.set_bits(16);
    env.load_code({0x2e, 0x89, 0x07, 0xf4});  // mov cs:[bx], ax; hlt
    REQUIRE(env.run(10) == StopReason::Halt);
}

TEST_CASE("system: stack accesses beyond the SS limit raise #SS(0) outside 64-bit mode") {
    machine::SnippetEnv env;
    // Expand-up SS with limit 0x3FFFF and ESP = 0x400000: push eax faults, ESP unchanged.
    REQUIRE(run32(env, {0x50, 0xf4}, [](Cpu& c) { c.s.seg[SS].limit = 0x3ffff; }) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kSS);
    CHECK(env.cpu().last_fault.error_code == 0);
    CHECK(env.cpu().s.gpr[RSP] == machine::SnippetEnv::kStackTop);
    // Expand-down SS (type 7) with limit 0x3FFFF7: valid offsets 0x3FFFF8 and up. Two pushes fit, the
    // third faults (SDM Vol. 3, 3.4.5.1).
    REQUIRE(run32(env, {0x50, 0x50, 0x50, 0xf4}, [](Cpu& c) {
                set_type(c, SS, 0x7);
                c.s.seg[SS].limit = 0x3ffff7;
            }) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kSS);
    CHECK(env.cpu().s.rip == kCode + 2);
    CHECK(env.cpu().s.gpr[RSP] == machine::SnippetEnv::kStackTop - 8);
    // pop eax with ESP at the limit: the 4-byte read crosses it.
    REQUIRE(run32(env, {0x58, 0xf4}, [](Cpu& c) {
                c.s.seg[SS].limit = 0x3ffffe;
                c.s.gpr[RSP] = 0x3ffffc;
            }) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kSS);
    // An SS-relative memory operand (base EBP) beyond the limit: #SS(0) too.
    REQUIRE(run32(env, {0xbd, 0, 0, 0x50, 0, 0x8b, 0x45, 0x00, 0xf4},
                  [](Cpu& c) { c.s.seg[SS].limit = 0x3fffff; }) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kSS);
}

TEST_CASE("system: a non-canonical stack address raises #SS(0) in 64-bit mode") {
    const uint64_t bad = 0x0000800000000010ull;
    auto run = [&](const std::function<void(Xbyak::CodeGenerator&)>& body, uint8_t vector) {
        machine::SnippetEnv env;
        env.load_code(assemble([&](Xbyak::CodeGenerator& g) {
            g.mov(rbx, bad);
            body(g);
            g.hlt();
        }));
        REQUIRE(env.run(100) == StopReason::Exception);
        CHECK(env.cpu().last_fault.vector == vector);
        CHECK(env.cpu().last_fault.error_code == 0);
        CHECK(env.cpu().s.rip == kCode + 10 + (vector == kSS ? 3 : 0));  // mov rbx, imm64; mov rsp/rbp, rbx
    };
    SUBCASE("push") { run([](Xbyak::CodeGenerator& g) { g.mov(rsp, rbx); g.push(rax); }, kSS); }
    SUBCASE("pop") { run([](Xbyak::CodeGenerator& g) { g.mov(rsp, rbx); g.pop(rax); }, kSS); }
    SUBCASE("call") { run([](Xbyak::CodeGenerator& g) { g.mov(rsp, rbx); g.call(rax); }, kSS); }
    SUBCASE("ret") { run([](Xbyak::CodeGenerator& g) { g.mov(rsp, rbx); g.ret(); }, kSS); }
    SUBCASE("leave") { run([](Xbyak::CodeGenerator& g) { g.mov(rbp, rbx); g.leave(); }, kSS); }
    SUBCASE("mov [rsp]") { run([](Xbyak::CodeGenerator& g) { g.mov(rsp, rbx); g.mov(rax, qword[rsp + 8]); }, kSS); }
    SUBCASE("mov [rbp]") { run([](Xbyak::CodeGenerator& g) { g.mov(rbp, rbx); g.mov(qword[rbp], rax); }, kSS); }
    SUBCASE("add [rbp]") { run([](Xbyak::CodeGenerator& g) { g.mov(rbp, rbx); g.add(qword[rbp], rax); }, kSS); }
    SUBCASE("DS-relative stays #GP") { run([](Xbyak::CodeGenerator& g) { g.mov(rax, qword[rbx]); }, kGP); }
}

// ---- hardware breakpoints (SDM Vol. 3, 18.2-18.3) ------------------------------------------------

namespace {
// Code that enables breakpoint 0 at `target` (an offset in the code, patched after assembling) with
// DR7 = `dr7`, then runs a NOP, `inc rbx` (the target) and HLT.
struct BpProgram {
    std::vector<uint8_t> code;
    size_t target = 0, after = 0;
};
BpProgram bp_program(uint64_t dr7) {
    BpProgram p;
    p.code = assemble([&](Xbyak::CodeGenerator& g) {
        g.mov(rax, kCode + 0x40);  // DR0 = the target (placed at offset 0x40)
        emit(g, {0x0f, 0x23, 0xc0});  // mov dr0, rax
        g.mov(rax, dr7);
        emit(g, {0x0f, 0x23, 0xf8});  // mov dr7, rax
        while (g.getSize() < 0x40) g.nop();
        g.inc(rbx);
        g.hlt();
    });
    p.target = 0x40;
    return p;
}
}  // namespace

TEST_CASE("system: instruction breakpoint: #DB fault before the instruction, DR6.B0, RF suppresses") {
    machine::SnippetEnv env;
    env.load_code(bp_program(0x1).code);  // L0, R/W0 = 00 (execution), LEN0 = 00
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kDB);
    CHECK(env.cpu().s.rip == kCode + 0x40);
    CHECK(env.cpu().s.gpr[RBX] == 0);  // a fault: the instruction has not run
    CHECK((env.cpu().s.dr[6] & 0xf) == 1);
    // Again from the same place: the breakpoint fires again; with RF = 1 the instruction runs.
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().s.rip == kCode + 0x40);
    env.cpu().s.rflags |= fl::RF;
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RBX] == 1);
    CHECK((env.cpu().s.rflags & fl::RF) == 0);  // cleared after the instruction
}

TEST_CASE("system: instruction breakpoint: disabled or data breakpoints do not fire on execution") {
    machine::SnippetEnv env;
    env.load_code(bp_program(0x0).code);  // DR0 set, not enabled
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RBX] == 1);
    env.load_code(bp_program(0x1 | (1u << 16)).code);  // R/W0 = 01: data write breakpoint
    REQUIRE(env.run(100) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RBX] == 1);
}

TEST_CASE("system: instruction breakpoint delivered through the IDT: IRETQ with RF = 1 re-runs it once") {
    machine::SnippetEnv env;
    env.cpu().stop_on_exception = false;
    constexpr uint64_t kIdt = 0x7000;
    BpProgram p = bp_program(0x2);  // G0
    size_t handler_at = p.code.size();
    auto h = assemble([](Xbyak::CodeGenerator& g) {
        g.inc(rcx);
        g.mov(rdx, qword[rsp + 16]);  // pushed RFLAGS
        emit(g, {0x48, 0xcf});  // iretq
    });
    p.code.insert(p.code.end(), h.begin(), h.end());
    env.load_code(p.code);
    put_gate64(env, kIdt, kDB, kCode + handler_at);
    env.cpu().s.idtr = {kIdt, 256 * 16 - 1};
    REQUIRE(env.run(1000) == StopReason::Halt);
    CHECK(env.cpu().s.gpr[RCX] == 1);  // one #DB
    CHECK(env.cpu().s.gpr[RBX] == 1);  // then the instruction ran once
    CHECK((env.cpu().s.gpr[RDX] & fl::RF) != 0);
    CHECK((env.cpu().s.dr[6] & 0xf) == 1);
}

TEST_CASE("system: DR7.GD: MOV DR raises #DB with DR6.BD and clears GD") {
    machine::SnippetEnv env;
    env.load_code(assemble([](Xbyak::CodeGenerator& g) {
        g.mov(eax, 0x2000);
        emit(g, {0x0f, 0x23, 0xf8});  // mov dr7, rax (GD)
        emit(g, {0x0f, 0x21, 0xc1});  // mov rcx, dr0: #DB
        g.hlt();
    }));
    REQUIRE(env.run(100) == StopReason::Exception);
    CHECK(env.cpu().last_fault.vector == kDB);
    CHECK(env.cpu().s.rip == kCode + 8);
    CHECK((env.cpu().s.dr[6] & (1u << 13)) != 0);
    CHECK((env.cpu().s.dr[7] & (1u << 13)) == 0);
}
