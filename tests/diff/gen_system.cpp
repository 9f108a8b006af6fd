// Differential-test forms for the system level that can run at user level (CPL 3 in both the host
// process and the emulator, see harness.h):
//   - privileged instructions raise #GP(0) at CPL 3 (SDM Vol. 2, each page's "Protected Mode
//     Exceptions": MOV CRn/DRn, RDMSR/WRMSR, LGDT/LIDT/LLDT/LTR, LMSW, CLTS, INVLPG, WBINVD, INVD,
//     SWAPGS, SYSRET), CLI/STI with IOPL 0;
//   - non-canonical data addresses raise #GP(0) (Vol. 3, 3.3.7.1);
//   - ES/CS/SS/DS segment overrides are ignored in 64-bit mode (Vol. 1, 3.4.2.1);
//   - MOV r/m, Sreg: a 16-bit register gets the selector in its low 16 bits, a 32/64-bit register
//     the zero-extended selector, memory 16 bits.
// Not here (they differ between a Linux process and the snippet machine, not between CPUs): SGDT/
// SIDT/SMSW/SLDT/STR (host UMIP), LAR/LSL/VERR/VERW and segment loads (the GDTs differ), IN/OUT (the
// TSS), FS/GS-relative accesses (the bases), INT n (Linux handles INT 0x80).
#include "diff/harness.h"

namespace m86::difftest {

namespace {

void emit(Xbyak::CodeGenerator& g, std::initializer_list<uint8_t> bytes) {
    for (uint8_t b : bytes) g.db(b);
}

// A privileged instruction given as bytes; the register/memory operand (if any) uses RBX, which
// points into the data area.
Form privileged(const char* name, std::initializer_list<uint8_t> bytes) {
    std::vector<uint8_t> b(bytes);
    return Form{std::string("system.") + name + " at CPL 3",
                [b](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                    st.gpr[3] = kDataAddr + p.data_offset(16);
                    for (uint8_t x : b) g.db(x);
                },
                0, 50};
}

}  // namespace

void forms_system(std::vector<Form>& forms) {
    forms.push_back(privileged("mov rax, cr0", {0x0f, 0x20, 0xc0}));
    forms.push_back(privileged("mov rax, cr3", {0x0f, 0x20, 0xd8}));
    forms.push_back(privileged("mov cr3, rax", {0x0f, 0x22, 0xd8}));
    forms.push_back(privileged("mov cr8, rax", {0x44, 0x0f, 0x22, 0xc0}));
    forms.push_back(privileged("mov rax, dr7", {0x0f, 0x21, 0xf8}));
    forms.push_back(privileged("mov dr0, rax", {0x0f, 0x23, 0xc0}));
    forms.push_back(privileged("rdmsr", {0x0f, 0x32}));
    forms.push_back(privileged("wrmsr", {0x0f, 0x30}));
    forms.push_back(privileged("lgdt [rbx]", {0x0f, 0x01, 0x13}));
    forms.push_back(privileged("lidt [rbx]", {0x0f, 0x01, 0x1b}));
    forms.push_back(privileged("lldt bx", {0x0f, 0x00, 0xd3}));
    forms.push_back(privileged("ltr bx", {0x0f, 0x00, 0xdb}));
    forms.push_back(privileged("lmsw bx", {0x0f, 0x01, 0xf3}));
    forms.push_back(privileged("clts", {0x0f, 0x06}));
    forms.push_back(privileged("invlpg [rbx]", {0x0f, 0x01, 0x3b}));
    forms.push_back(privileged("wbinvd", {0x0f, 0x09}));
    forms.push_back(privileged("invd", {0x0f, 0x08}));
    forms.push_back(privileged("swapgs", {0x0f, 0x01, 0xf8}));
    forms.push_back(privileged("sysretq", {0x48, 0x0f, 0x07}));
    forms.push_back(privileged("cli", {0xfa}));
    forms.push_back(privileged("sti", {0xfb}));

    // Non-canonical addresses: bits 63:47 not all equal (48-bit linear addresses).
    forms.push_back(Form{"system.mov r64, [non-canonical]",
                         [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                             int r = p.gpr({3});
                             uint64_t a = (p.rng() & 0x00007fffffffffffull) | (1ull << (47 + p.rng() % 17));
                             if ((a >> 47) == 0x1ffff) a ^= 1ull << 50;  // keep it non-canonical
                             st.gpr[3] = a;
                             g.mov(p.r64(r), Xbyak::util::qword[Xbyak::util::rbx]);
                         },
                         0, 200});
    forms.push_back(Form{"system.mov [non-canonical], r32",
                         [](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                             int r = p.gpr({3});
                             st.gpr[3] = 0x8000000000000000ull | (p.rng() & 0x00007fffffffffffull);
                             g.mov(Xbyak::util::dword[Xbyak::util::rbx], p.r32(r));
                         },
                         0, 200});

    // Segment overrides other than FS/GS are ignored in 64-bit mode.
    for (uint8_t prefix : {0x26, 0x2e, 0x36, 0x3e}) {
        forms.push_back(Form{std::string("system.mov r64, [rbx] with segment prefix ") + std::to_string(prefix),
                             [prefix](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                                 st.gpr[3] = kDataAddr + p.data_offset(8);
                                 int r = p.gpr({3});
                                 g.db(prefix);
                                 g.mov(p.r64(r), Xbyak::util::qword[Xbyak::util::rbx]);
                             },
                             0, 200});
    }

    // PUSH FS/GS (64-bit: the zero-extended selector; 66h: a 16-bit push).
    for (uint8_t op : {0xa0, 0xa8}) {
        for (bool o16 : {false, true}) {
            forms.push_back(Form{std::string("system.push ") + (op == 0xa0 ? "fs" : "gs") + (o16 ? " (66h)" : ""),
                                 [op, o16](Xbyak::CodeGenerator& g, Picker&, State&) {
                                     if (o16) g.db(0x66);
                                     emit(g, {0x0f, op});
                                 },
                                 0, 20});
        }
    }

    // MOV r/m, Sreg for every segment register (the selectors are the same in both: CS 0x33,
    // SS 0x2b, the others 0).
    for (int sreg = 0; sreg < 6; sreg++) {
        for (int form = 0; form < 4; form++) {
            static const char* const kNames[] = {"r16", "r32", "r64", "m16"};
            forms.push_back(Form{std::string("system.mov ") + kNames[form] + ", sreg" + std::to_string(sreg),
                                 [sreg, form](Xbyak::CodeGenerator& g, Picker& p, State& st) {
                                     int r = p.gpr({3});
                                     uint8_t modrm_reg = uint8_t(sreg << 3);
                                     if (form == 3) {
                                         st.gpr[3] = kDataAddr + p.data_offset(2);
                                         emit(g, {0x8c, uint8_t(modrm_reg | 0x03)});  // mov [rbx], sreg
                                         return;
                                     }
                                     uint8_t rex = uint8_t((form == 2 ? 0x48 : 0x40) | (r >= 8 ? 1 : 0));
                                     if (form == 0) g.db(0x66);
                                     g.db(rex);
                                     emit(g, {0x8c, uint8_t(0xc0 | modrm_reg | (r & 7))});
                                 },
                                 0, 20});
        }
    }
}

}  // namespace m86::difftest
