# Far transfers in IA-32e mode (SDM Vol. 2, CALL, JMP, RET and IRET "Operation"; Vol. 3, 5.8), run
# by sys_runner with and without the JIT (meson.build):
#
# 1. A loop of LOOPS rounds between 64-bit mode and compatibility mode, at CPL 0, through every far
#    transfer that can change the mode: RETF (REX.W CB, CB, and CA imm16 in both directions), far
#    CALL (FF /3 m16:32 from 64-bit mode; 9A ptr16:32 and FF /3 from compatibility mode), far JMP
#    (FF /5 m16:32, REX.W FF /5 m16:64, EA ptr16:32), IRETQ and IRETD. Each stop counts itself with
#    an instruction that only does so in its own mode: `inc %esi` (46h, a REX prefix in 64-bit
#    mode) in compatibility mode, `add $1, %r8` (REX.W+B; DEC ECX and ADD EAX in compatibility
#    mode) in 64-bit mode. After the loop both counts, RSP and CS must be exact. The loop runs long
#    enough for every block to get host code at the JIT's default threshold; a JIT that took a far
#    return for a near one (RIP from the stack, CS and the mode unchanged) fails the counts.
#
# 2. The data segment registers seen at CPL 3 after IRETQ and far RET to an outer privilege level:
#    each of ES, FS, GS and DS that holds a data or non-conforming code segment with DPL < CPL, or a
#    null selector of any RPL (Intel: its hidden DPL is 0), reads 0; a DPL 3 data segment and a
#    conforming code segment stay (segment.cpp, null_inaccessible_segs). Also: an IRETQ from ring 0
#    to ring 0 leaves a null selector with RPL 3 alone, and a null selector with RPL 3 that ring 3
#    loads itself reads 0 after the next interrupt returns to it.
.include "common.inc"

.set SEL_K64, 0x08
.set SEL_KDATA, 0x10
.set SEL_U32, 0x1b
.set SEL_UDATA, 0x23
.set SEL_U64, 0x2b
.set SEL_TSS, 0x30
.set SEL_K32, 0x40
.set SEL_KCONF, 0x48                           # conforming readable code, DPL 0
.set PML4, PT_BASE
.set PDPT, PT_BASE + 0x1000
.set PDT, PT_BASE + 0x2000
.set P, 1
.set W, 2
.set U, 4
.set PS, 0x80
.set RSP0, STACK0 - 0x100
.set R0_CONT, VARS + 0x40
.set MSR_EFER, 0xc0000080
.set LOOPS, 200
.set STOPS, 7                                  # stops per round in each mode

# The four data segment registers into EBX (DS), ECX (ES), EDX (FS), ESI (GS); both modes.
.macro READ_SEGS
    mov %ds, %ax
    movzwl %ax, %ebx
    mov %es, %ax
    movzwl %ax, %ecx
    mov %fs, %ax
    movzwl %ax, %edx
    mov %gs, %ax
    movzwl %ax, %esi
.endm

# Load DS, ES, FS, GS with the given selectors (64-bit code, CPL 0).
.macro LOAD_SEGS ds, es, fs, gs
    mov $\ds, %eax
    mov %eax, %ds
    mov $\es, %eax
    mov %eax, %es
    mov $\fs, %eax
    mov %eax, %fs
    mov $\gs, %eax
    mov %eax, %gs
.endm

# IRETQ from CPL 0 to `target` at CPL 3 (64-bit code `cs`), stack STACK3; continue at `cont` in
# ring 0 once ring 3 executes INT 0x82.
.macro IRET_TO_RING3 cs, target, cont
    movl $\cont, R0_CONT
    pushq $SEL_UDATA
    pushq $STACK3
    pushq $0x2
    pushq $\cs
    pushq $\target
    iretq
.endm

    .text
    .code16
base:
entry:
    RM_START
    LOAD_TABLES lidt=0                         # the 64-bit IDT is loaded in long mode
    ENTER_PM SEL_K32, pm32

    .code32
pm32:
    LOAD_SEGS32 SEL_KDATA
    # Identity map of the first GiB with 2 MiB pages, user accessible.
    mov $PT_BASE, %edi
    xor %eax, %eax
    mov $(3 * 1024), %ecx
    rep stosl
    movl $(PDPT|P|W|U), PML4
    movl $(PDT|P|W|U), PDPT
    MAP_IDENTITY PDT, 512, 8, 21, P|W|U|PS
    TSS_INIT
    movl $RSP0, TSS_BASE + 4
    mov %cr4, %eax
    or $0x20, %eax                             # PAE
    mov %eax, %cr4
    mov $PML4, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $0x100, %eax                            # LME
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $SEL_K64, $lm64

    .code64
lm64:
    lidt idt_ptr
    mov $SEL_TSS, %ax
    ltr %ax
    mov $STACK0, %rsp

    # ---- 1. far transfers between 64-bit and compatibility mode, LOOPS rounds ----
    mov $LOOPS, %ebp
    xor %esi, %esi                             # compatibility-mode stops
    xor %r8d, %r8d                             # 64-bit stops
    mov %rsp, %rbx
far_loop:
    # 64 -> 32: RETF with REX.W (pops RIP and CS, 8 bytes each).
    pushq $SEL_K32
    pushq $c1
    lretq
    .code32
c1: inc %esi
    # 32 -> 64: far JMP through memory, m16:32.
    ljmpl *p2
    .code64
l2: add $1, %r8
    # 64 -> 32 and back: far CALL through memory (m16:32); the callee returns with RETF (CB).
    lcalll *p3
    add $1, %r8
    # 64 -> 32: RETF imm16 with REX.W, dropping two parameters.
    pushq $0x1111
    pushq $0x2222
    pushq $SEL_K32
    pushq $c4
    lretq $16
    .code32
c4: inc %esi
    # 32 -> 64 and back: far CALL ptr16:32 (9A); the callee returns with a 32-bit RETF (CB).
    lcall $SEL_K64, $l5
    inc %esi
    # 32 -> 64 and back: far CALL through memory (FF /3 m16:32).
    lcall *p6
    inc %esi
    # 32 -> 64: 32-bit RETF imm16, dropping one parameter.
    pushl $0x3333
    pushl $SEL_K64
    pushl $l7
    lret $4
    .code64
l7: add $1, %r8
    # 64 -> 32: IRETQ at the same privilege level (64-bit mode pops SS:RSP too).
    mov %rsp, %rax
    pushq $SEL_KDATA
    pushq %rax
    pushfq
    pushq $SEL_K32
    pushq $c8
    iretq
    .code32
c8: inc %esi
    # 32 -> 64: IRETD from compatibility mode at the same privilege level (EIP, CS, EFLAGS only).
    pushfl
    pushl $SEL_K64
    pushl $l9
    iretl
    .code64
l9: add $1, %r8
    # 64 -> 32: far JMP through memory with REX.W, m16:64 (Intel).
    rex64 ljmp *p10
    .code32
c10: inc %esi
    # 32 -> 64: far JMP ptr16:32 (EA).
    ljmp $SEL_K64, $l11
    .code64
l11: add $1, %r8
    dec %ebp
    jnz far_loop
    CHECK %esi, (LOOPS*STOPS), 10
    CHECK %r8d, (LOOPS*STOPS), 11
    CHECKR %esp, %ebx, 12
    mov %rsp, %rax
    shr $32, %rax
    CHECK %eax, 0, 13
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_K64, 14
    jmp part2

    # Far CALL targets.
    .code32
c3: inc %esi
    lret                                       # 32-bit RETF: EIP, CS
    .code64
l5: add $1, %r8
    lretl                                      # CB without REX.W: 32-bit EIP, CS
l6: add $1, %r8
    lretl

part2:
    # ---- 2. data segment registers after a return to CPL 3 ----
    # IRETQ to 64-bit ring 3: null RPL 3 and RPL 0, a DPL 0 data segment, a DPL 3 one.
    LOAD_SEGS 3, 0, SEL_KDATA, SEL_UDATA
    IRET_TO_RING3 SEL_U64, r3_read, 1f
1:  CHECK %ebx, 0, 20                          # DS: null, RPL 3 -> 0
    CHECK %ecx, 0, 21                          # ES: null, RPL 0
    CHECK %edx, 0, 22                          # FS: DPL 0 data -> 0
    CHECK %esi, SEL_UDATA, 23                  # GS: DPL 3 data stays
    # The other way round, with null RPL 2 and RPL 3 in ES and FS and a conforming code segment.
    LOAD_SEGS SEL_UDATA, 2, 3, SEL_KCONF
    IRET_TO_RING3 SEL_U64, r3_read, 1f
1:  CHECK %ebx, SEL_UDATA, 24
    CHECK %ecx, 0, 25                          # ES: null, RPL 2 -> 0
    CHECK %edx, 0, 26                          # FS: null, RPL 3 -> 0
    CHECK %esi, SEL_KCONF, 27                  # GS: conforming code stays
    # Far RET (REX.W CB) to an outer privilege level: the same rule.
    LOAD_SEGS 3, SEL_KDATA, SEL_UDATA, 1
    movl $1f, R0_CONT
    pushq $SEL_UDATA
    pushq $STACK3
    pushq $SEL_U64
    pushq $r3_read
    lretq
1:  CHECK %ebx, 0, 30                          # DS: null, RPL 3 -> 0
    CHECK %ecx, 0, 31                          # ES: DPL 0 data -> 0
    CHECK %edx, SEL_UDATA, 32
    CHECK %esi, 0, 33                          # GS: null, RPL 1 -> 0
    # IRETQ to compatibility-mode ring 3 (where DS matters).
    LOAD_SEGS 3, SEL_UDATA, 3, 3
    IRET_TO_RING3 SEL_U32, r3_read32, 1f
1:  CHECK %ebx, 0, 40
    CHECK %ecx, SEL_UDATA, 41
    CHECK %edx, 0, 42
    CHECK %esi, 0, 43
    # Ring 3 loads a null selector with RPL 3 itself; the next interrupt's IRETQ makes it 0.
    LOAD_SEGS SEL_UDATA, SEL_UDATA, SEL_UDATA, SEL_UDATA
    IRET_TO_RING3 SEL_U64, r3_int, 1f
1:  CHECK %ebx, 0, 50
    CHECK %ecx, SEL_UDATA, 51
    CHECK %edx, SEL_UDATA, 52
    CHECK %esi, SEL_UDATA, 53
    # IRETQ from ring 0 to ring 0 is no return to an outer level: nothing is nulled.
    LOAD_SEGS 3, 0, SEL_KDATA, 3
    mov %rsp, %rax
    pushq $SEL_KDATA
    pushq %rax
    pushfq
    pushq $SEL_K64
    pushq $1f
    iretq
1:  READ_SEGS
    CHECK %ebx, 3, 60
    CHECK %ecx, 0, 61
    CHECK %edx, SEL_KDATA, 62
    CHECK %esi, 3, 63
    PASS

    # Ring 3 code: read the segment registers, back to ring 0 with INT 0x82.
r3_read:
    READ_SEGS
    int $0x82
r3_read32:
    .code32
    READ_SEGS
    int $0x82
    .code64
r3_int:
    mov $3, %eax
    mov %eax, %ds
    int $0x81                                  # returns here by IRETQ
    READ_SEGS
    int $0x82

# ---- handlers ----
# Any exception fails the test: report the vector and the RIP, exit with check id 2.
.macro STUB64 n
stub_\n:
    .if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17)
    add $8, %rsp
    .endif
    mov $\n, %eax
    jmp unexpected
.endm
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
    STUB64 \n
.endr
unexpected:
    mov $PORT_REPORT, %dx
    out %eax, %dx
    mov (%rsp), %rax
    out %eax, %dx
    EXIT 2

stub_0x81:
    iretq
stub_0x82:
    mov $STACK0, %rsp
    jmp *R0_CONT

# ---- tables ----
    .balign 8
p2:
    .long l2
    .word SEL_K64
p3:
    .long c3
    .word SEL_K32
p6:
    .long l6
    .word SEL_K64
p10:
    .quad c10
    .word SEL_K32
gdt:
    .quad 0
    SEG 0, 0xfffff, 0x9b, 0xa          # 0x08 64-bit code, DPL 0
    SEG 0, 0xfffff, 0x93, 0xc          # 0x10 data, DPL 0
    SEG 0, 0xfffff, 0xfb, 0xc          # 0x18 32-bit code, DPL 3
    SEG 0, 0xfffff, 0xf3, 0xc          # 0x20 data, DPL 3
    SEG 0, 0xfffff, 0xfb, 0xa          # 0x28 64-bit code, DPL 3
    SEG TSS_BASE, TSS_LIMIT, 0x89, 0x0 # 0x30 64-bit TSS (16 bytes)
    .quad 0
    SEG 0, 0xfffff, 0x9b, 0xc          # 0x40 32-bit code, DPL 0
    SEG 0, 0xfffff, 0x9f, 0xc          # 0x48 32-bit conforming readable code, DPL 0
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long GDT_BASE

idt:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
    GATE64 stub_\n, SEL_K64, 0x8e, 0
.endr
    .fill (0x81 - 20) * 16, 1, 0
    GATE64 stub_0x81, SEL_K64, 0xee, 0
    GATE64 stub_0x82, SEL_K64, 0xee, 0
idt_end:
idt_ptr:
    .word idt_end - idt - 1
    .quad IDT_BASE

    RESET_VECTOR entry
