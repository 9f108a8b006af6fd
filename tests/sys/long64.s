# From RESET through 32-bit protected mode into IA-32e mode (SDM Vol. 3, 10.8.5): 4-level paging,
# a 64-bit IDT and TSS, and then: 64-bit exception frames (always SS:RSP, RSP aligned to 16), #PF
# error codes and CR2, #GP for non-canonical addresses, IRETQ to ring 3, SYSCALL/SYSRET with
# STAR/LSTAR/SFMASK, IRETQ to a compatibility-mode ring 3 with SYSENTER/SYSRETL, #AC alignment checking at CPL 3, INT n from ring 3 with the TSS.RSP0 stack switch, a #DF delivered on an IST
# stack (#PF whose gate is not present), SWAPGS and the FS/GS base MSRs and instructions, a round
# trip through compatibility mode by far jump and far return, SMEP and SMAP with STAC/CLAC, and
# finally leaving IA-32e mode to switch on 5-level paging (CR4.LA57) and coming back.
.include "common.inc"

.set SEL_K64, 0x08
.set SEL_KDATA, 0x10
.set SEL_U32, 0x1b
.set SEL_UDATA, 0x23
.set SEL_U64, 0x2b
.set SEL_TSS, 0x30
.set SEL_K32, 0x40
.set PML4, PT_BASE
.set PDPT, PT_BASE + 0x1000
.set PDT, PT_BASE + 0x2000
.set PTE0, PT_BASE + 0x3000
.set PML5, PT_BASE + 0x4000
.set P, 1
.set W, 2
.set U, 4
.set PS, 0x80
.set RSP0, STACK0 - 0x100
.set R0_CONT, VARS + 0x40
.set F_CR2HI, VARS + 0x44
.set SC_RCX, VARS + 0x48
.set SC_R11, VARS + 0x50
.set SC_CS, VARS + 0x58
.set SC_SS, VARS + 0x5c
.set SC_FL, VARS + 0x60

.set MSR_EFER, 0xc0000080
.set MSR_STAR, 0xc0000081
.set MSR_LSTAR, 0xc0000082
.set MSR_FMASK, 0xc0000084
.set MSR_FSBASE, 0xc0000100
.set MSR_GSBASE, 0xc0000101
.set MSR_KGSBASE, 0xc0000102

# The SYSCALL and SYSENTER entries record the selectors the instruction loaded.
.macro SAVE_CS_SS
    mov %cs, %ax
    movzwl %ax, %eax
    mov %eax, SC_CS
    mov %ss, %ax
    movzwl %ax, %eax
    mov %eax, SC_SS
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
    # Page tables: identity map of 1 GiB, 4 KiB pages below 2 MiB, user accessible.
    mov $PT_BASE, %edi
    xor %eax, %eax
    mov $(5 * 1024), %ecx
    rep stosl
    movl $(PDPT|P|W|U), PML4
    movl $(PDT|P|W|U), PDPT
    movl $(PTE0|P|W|U), PDT
    MAP_IDENTITY PDT, 512, 8, 21, P|W|U|PS, first=1
    MAP_IDENTITY PTE0, 512, 8, 12, P|W|U
    movl $0, PTE0 + 0x1f0*8                    # 0x1f0000 not present
    movl $(0x1f1000|P|W), PTE0 + 0x1f1*8       # 0x1f1000 supervisor only
    # TSS: RSP0, IST1, I/O bitmap allowing every port.
    TSS_INIT
    movl $RSP0, TSS_BASE + 4
    movl $STACK_IST, TSS_BASE + 0x24
    # IA-32e mode: PAE, CR3, EFER.LME, then paging.
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $PML4, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0                             # LMA = 1, compatibility mode (CS is 32-bit)
    mov $MSR_EFER, %ecx
    rdmsr
    CHECK %eax, 0x500, 1                       # LME | LMA
    ljmp $SEL_K64, $lm64

    .code64
lm64:
    lidt idt_ptr
    mov $SEL_TSS, %ax
    ltr %ax
    mov $STACK0, %rsp
    movl $0, F_COUNT
    movl $0, F_RESUME

    # ---- #PF: 64-bit frame, error code, CR2 ----
    mov %rsp, %rbx
    EXPECT 1f
    movq $1, 0x1f0008
1:  CHECK F_VEC, 14, 10
    CHECK F_ERR, 2, 11
    CHECK F_CR2, 0x1f0008, 12
    CHECK F_CR2HI, 0, 13
    CHECK F_CS, SEL_K64, 14
    CHECK F_SS, SEL_KDATA, 15
    CHECKR F_SP, %ebx, 16                      # SS:RSP pushed even without a privilege change
    mov %rbx, %rax
    and $~15, %rax
    sub $40, %rax                              # SS, RSP, RFLAGS, CS, then RIP at the new RSP+0
    CHECKR F_HSP, %eax, 17
    # Non-canonical address: #GP(0).
    EXPECT 1f
    mov $0x0000800000000000, %rax
    mov (%rax), %rax
1:  CHECK F_VEC, 13, 18
    CHECK F_ERR, 0, 19

    # ---- #DF on IST1: the #PF gate is not present ----
    andb $0x7f, IDT_BASE + 14*16 + 5
    EXPECT 1f
    movq 0x1f0000, %rax
1:  CHECK F_VEC, 8, 20
    CHECK F_ERR, 0, 21
    CHECK F_HSP, STACK_IST-40, 22
    orb $0x80, IDT_BASE + 14*16 + 5

    # ---- #SS: an event whose frame would reach below the canonical upper half ----
    # RSP itself is canonical, the pushes are not: #SS(EXT) before anything is written (SDM Vol. 2A,
    # INT n, IA-32e mode). #SS is delivered on IST1, the #UD that caused it is discarded.
    orb $1, IDT_BASE + 12*16 + 4
    mov %rsp, %rbx
    EXPECT 1f
    mov $0xffff800000000010, %rsp
    ud2
1:  mov %rbx, %rsp
    CHECK F_VEC, 12, 23
    CHECK F_ERR, 1, 24                         # EXT: the event was not software's
    CHECK F_SP, 0x10, 25
    CHECK F_HSP, STACK_IST-40, 28
    andb $0xf8, IDT_BASE + 12*16 + 4

    # ---- SWAPGS, FS/GS base ----
    movl $0x11111111, 0x5000
    movl $0x22222222, 0x6000
    mov $MSR_GSBASE, %ecx
    mov $0x5000, %eax
    xor %edx, %edx
    wrmsr
    mov $MSR_KGSBASE, %ecx
    mov $0x6000, %eax
    wrmsr
    movl %gs:0, %eax
    CHECK %eax, 0x11111111, 30
    swapgs
    movl %gs:0, %eax
    CHECK %eax, 0x22222222, 31
    mov $MSR_KGSBASE, %ecx
    rdmsr
    CHECK %eax, 0x5000, 32
    swapgs
    EXPECT 1f
    rdfsbase %rax                              # CR4.FSGSBASE = 0: #UD
1:  CHECK F_VEC, 6, 33
    mov %cr4, %rax
    or $0x10000, %rax
    mov %rax, %cr4
    mov $0x6000, %rax
    wrfsbase %rax
    movl %fs:0, %eax
    CHECK %eax, 0x22222222, 34
    mov $MSR_FSBASE, %ecx
    rdmsr
    CHECK %eax, 0x6000, 35
    EXPECT 1f
    mov $0x0000800000000000, %rax
    wrfsbase %rax                              # non-canonical: #GP(0)
1:  CHECK F_VEC, 13, 36

    # ---- PCID (SDM Vol. 3, 4.10.1) and INVPCID ----
    mov %cr3, %rax
    or $5, %rax                                # CR3[11:0] != 0 (ignored bits while PCIDE = 0)
    mov %rax, %cr3
    mov %cr4, %rbx
    or $(1 << 17), %rbx
    EXPECT 1f
    mov %rbx, %cr4                             # setting PCIDE needs CR3[11:0] = 0: #GP(0)
1:  CHECK F_VEC, 13, 37
    and $~0xfff, %rax
    mov %rax, %cr3
    movl $0, F_VEC
    mov %rbx, %cr4                             # now it works
    bts $63, %rax
    mov %rax, %cr3                             # bit 63: "do not flush", not part of CR3
    mov %cr3, %rax
    CHECK %eax, PML4, 38
    shr $32, %rax
    CHECK %eax, 0, 39
    movq $0, SCRATCH                           # INVPCID descriptor: PCID 0, address 0x1000
    movq $0x1000, SCRATCH+8
    mov $2, %eax
    invpcid SCRATCH, %rax                      # all contexts incl. global
    CHECK F_VEC, 0, 26
    EXPECT 1f
    mov $4, %eax
    invpcid SCRATCH, %rax                      # type > 3: #GP(0)
1:  CHECK F_VEC, 13, 27
    mov %cr4, %rax
    and $~(1 << 17), %rax
    mov %rax, %cr4

    # ---- compatibility mode and back ----
    ljmpl *compat_ptr
compat32:
    .code32
    mov %esp, %ecx
    push %eax
    sub %esp, %ecx                             # 4: 32-bit stack operations
    pop %eax
    mov %cs, %ax
    movzwl %ax, %eax
    pushl $SEL_K64
    pushl $back64
    lret
    .code64
back64:
    CHECK %ecx, 4, 40
    CHECK %eax, SEL_K32, 41
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_K64, 42

    # ---- ring 3: IRETQ, SYSCALL/SYSRET, INT n ----
    mov $MSR_STAR, %ecx
    xor %eax, %eax
    mov $((0x18 << 16) | SEL_K64), %edx
    wrmsr
    mov $MSR_LSTAR, %ecx
    lea syscall_entry, %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    mov $MSR_FMASK, %ecx
    mov $0x200, %eax
    xor %edx, %edx
    wrmsr
    mov $MSR_EFER, %ecx
    rdmsr
    or $1, %eax                                # SCE
    wrmsr
    movl $after_r3, R0_CONT
    mov %cr0, %rax
    or $(1 << 18), %rax                        # CR0.AM
    mov %rax, %cr0
    pushq $SEL_UDATA
    pushq $STACK3
    pushq $0x40202                             # AC | IF
    pushq $SEL_U64
    pushq $ring3
    iretq

ring3:
    # Alignment check (CR0.AM, RFLAGS.AC, CPL 3): a misaligned load is #AC(0); aligned ones work.
    EXPECT 1f
    movl 0x5001, %eax
1:  CHECK F_VEC, 17, 48
    CHECK F_ERR, 0, 49
    movl $0, F_VEC
    movl 0x5004, %eax
    CHECK F_VEC, 0, 47
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_U64, 50
    mov $0x1234, %r12
    pushq $0x202                               # known status flags for R11
    popfq
    syscall
after_syscall:
    CHECK %r12d, 0x5678, 51
    CHECK SC_RCX, after_syscall, 52
    CHECK SC_R11, 0x202, 53
    CHECK SC_CS, SEL_K64, 54
    CHECK SC_SS, SEL_KDATA, 55
    CHECK SC_FL, 0, 56                         # SFMASK cleared IF
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_U64, 57
    mov %ss, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_UDATA, 58
    pushfq
    popq %rax
    and $0x200, %eax
    CHECK %eax, 0x200, 59                      # RFLAGS from R11
    # INT from ring 3: stack switch to TSS.RSP0.
    movl $0, F_RESUME
    mov %rsp, %rbx
    int $0x80
int80_after:
    CHECK F_VEC, 0x80, 60
    CHECK F_CS, SEL_U64, 61
    CHECK F_SS, SEL_UDATA, 62
    CHECKR F_SP, %ebx, 63
    CHECK F_HSP, RSP0-40, 64
    CHECK F_IP, int80_after, 65
    # A supervisor page from ring 3.
    EXPECT 1f
    movq 0x1f1000, %rax
1:  CHECK F_VEC, 14, 66
    CHECK F_ERR, 5, 67
    int $0x82

syscall_entry:
    mov %rcx, SC_RCX
    mov %r11, SC_R11
    SAVE_CS_SS
    pushfq
    popq %rax
    and $0x200, %eax
    mov %eax, SC_FL
    mov $0x5678, %r12
    sysretq

after_r3:
    # ---- compatibility-mode ring 3: IRETQ there, SYSENTER into the 64-bit kernel, SYSRETL back ----
    mov $0x174, %ecx                           # IA32_SYSENTER_CS/ESP/EIP
    mov $SEL_K64, %eax
    xor %edx, %edx
    wrmsr
    mov $0x175, %ecx
    mov $RSP0, %eax
    wrmsr
    mov $0x176, %ecx
    lea sysenter_entry, %rax
    wrmsr
    movl $after_r3c, R0_CONT
    pushq $SEL_UDATA
    pushq $STACK3
    pushq $0x2
    pushq $SEL_U32
    pushq $ring3c
    iretq
ring3c:
    .code32
    mov $SEL_UDATA, %ax                        # compatibility mode uses DS: load a usable one
    mov %ax, %ds
    mov %ax, %es
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_U32, 90
    mov %esp, %ebp
    sysenter
    .code64
sysenter_entry:
    SAVE_CS_SS
    mov %rsp, SC_RCX
    lea sysret_target, %ecx                    # SYSRETL: EIP = ECX, flags from R11
    mov $0x2, %r11d
    mov %rbp, %rsp                             # SYSENTER kept no user RSP: the caller's is in EBP
    sysretl
sysret_target:
    .code32
    CHECK SC_CS, SEL_K64, 91                   # SYSENTER: CS = IA32_SYSENTER_CS, 64-bit
    CHECK SC_SS, SEL_KDATA, 92                 # SS = CS + 8
    CHECK SC_RCX, RSP0, 93                     # RSP = IA32_SYSENTER_ESP
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_U32, 94                    # SYSRETL: STAR[63:48] | 3, compatibility mode
    mov %ss, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_UDATA, 95
    CHECKR %esp, %ebp, 96                      # SYSRETL leaves RSP alone
    int $0x82
    .code64
after_r3c:

    # ---- SMEP / SMAP: only the page at 0x1f2000 stays user-accessible ----
    xor %ecx, %ecx
1:  andq $~U, PTE0(,%rcx,8)
    inc %ecx
    cmp $512, %ecx
    jne 1b
    orq $U, PTE0 + 0x1f2*8
    andq $~U, PDT + 8                          # 2..4 MiB supervisor too
    mov %cr3, %rax
    mov %rax, %cr3
    movb $0xc3, 0x1f2000                       # RET
    mov %cr4, %rax
    or $(1 << 20), %rax                        # SMEP
    mov %rax, %cr4
    EXPECT 1f
    mov $0x1f2000, %eax
    call *%rax
1:  CHECK F_VEC, 14, 70
    CHECK F_ERR, 0x11, 71                      # P | I/D, supervisor
    CHECK F_CR2, 0x1f2000, 72
    mov $STACK0, %rsp
    mov %cr4, %rax
    or $(1 << 21), %rax                        # SMAP
    mov %rax, %cr4
    EXPECT 1f
    movl 0x1f2000, %eax
1:  CHECK F_VEC, 14, 73
    CHECK F_ERR, 1, 74                         # P, read, supervisor
    stac
    movl $0, F_VEC
    movl 0x1f2000, %eax                        # AC = 1: allowed
    CHECK F_VEC, 0, 75
    CHECK %eax, 0xc3, 76
    clac
    pushfq                                     # AC set by POPF works like STAC
    orq $0x40000, (%rsp)
    popfq
    movl $0, F_VEC
    movl 0x1f2004, %eax
    CHECK F_VEC, 0, 79
    clac
    EXPECT 1f
    movl $5, 0x1f2000
1:  CHECK F_VEC, 14, 77
    CHECK F_ERR, 3, 78                         # P | W, supervisor
    mov %cr4, %rax
    and $~(3 << 20), %rax
    mov %rax, %cr4

    # ---- leave IA-32e mode, enable 5-level paging, come back ----
    ljmpl *compat_ptr2
compat_off:
    .code32
    mov $SEL_KDATA, %ax                        # the trip to ring 3 nulled DS/ES and SS is null:
    mov %ax, %ds                               # reload them for the legacy modes
    mov %ax, %es
    mov %ax, %ss
    mov %cr0, %eax
    and $0x7fffffff, %eax
    mov %eax, %cr0                             # LMA = 0: legacy protected mode
    mov $MSR_EFER, %ecx
    rdmsr
    CHECK %eax, 0x101, 80                      # LME | SCE, LMA clear
    movl $(PML4|P|W), PML5
    movl $(PML4|P|W), PML5 + 128*8
    mov %cr4, %eax
    or $(1 << 12), %eax                        # LA57
    mov %eax, %cr4
    mov $PML5, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $SEL_K64, $lm57
    .code64
lm57:
    movl $0x7777, 0x4800
    mov $0x0080000000004800, %rax              # canonical only with 57-bit addresses
    movl (%rax), %eax
    CHECK %eax, 0x7777, 81
    EXPECT 1f
    mov $0x0100000000004800, %rax              # bit 56 set, bits 63:57 clear: non-canonical
    movl (%rax), %eax
1:  CHECK F_VEC, 13, 82
    PASS

# ---- handlers ----
.macro STUB64 n
stub_\n:
    .if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17)
    .else
    pushq $-1
    .endif
    pushq $\n
    jmp lm_common
.endm
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,0x80
    STUB64 \n
.endr

lm_common:
    push %rax
    # [rsp] rax, +8 vector, +16 error, +24 RIP, +32 CS, +40 RFLAGS, +48 RSP, +56 SS
    mov 8(%rsp), %rax
    mov %eax, F_VEC
    mov 16(%rsp), %rax
    mov %eax, F_ERR
    mov 24(%rsp), %rax
    mov %eax, F_IP
    shr $32, %rax
    mov %eax, F_IPHI
    mov 32(%rsp), %rax
    mov %eax, F_CS
    mov 40(%rsp), %rax
    mov %eax, F_FL
    mov 48(%rsp), %rax
    mov %eax, F_SP
    mov 56(%rsp), %rax
    mov %eax, F_SS
    lea 24(%rsp), %rax
    mov %eax, F_HSP
    mov %cr2, %rax
    mov %eax, F_CR2
    shr $32, %rax
    mov %eax, F_CR2HI
    incl F_COUNT
    movl F_RESUME, %eax
    test %eax, %eax
    jz 2f
    mov %rax, 24(%rsp)
2:  pop %rax
    add $16, %rsp
    iretq

stub_0x82:
    mov $STACK0, %rsp
    jmp *R0_CONT

# ---- tables ----
    .balign 8
compat_ptr:
    .long compat32
    .word SEL_K32
compat_ptr2:
    .long compat_off
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
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long GDT_BASE

idt:
.irp n, 0,1,2,3,4,5,6,7
    GATE64 stub_\n, SEL_K64, 0x8e, 0
.endr
    GATE64 stub_8, SEL_K64, 0x8e, 1    # #DF on IST1
.irp n, 9,10,11,12,13,14,15,16,17,18,19
    GATE64 stub_\n, SEL_K64, 0x8e, 0
.endr
    .fill (0x80 - 20) * 16, 1, 0
    GATE64 stub_0x80, SEL_K64, 0xee, 0
    .fill 16, 1, 0
    GATE64 stub_0x82, SEL_K64, 0xee, 0
idt_end:
idt_ptr:
    .word idt_end - idt - 1
    .quad IDT_BASE

    RESET_VECTOR entry
