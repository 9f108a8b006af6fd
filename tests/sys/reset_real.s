# Starts at the RESET vector and checks the reset state (SDM Vol. 3, Table 10-1), then real-mode
# interrupt and exception delivery through the IVT (SDM Vol. 3, 21.1.4; INT n "Operation",
# REAL-ADDRESS-MODE), the real-mode segment limit check, and "unreal" mode (a 4 GiB limit cached
# from protected mode stays in force after returning to real mode).
.include "common.inc"

    .text
    .code16
base:
entry:
    # ---- reset state (checked before anything changes it) ----
    mov %eax, %esi              # EAX = 0 (no BIST requested)
    mov %edx, %edi              # EDX = signature
    mov %esp, %ecx              # ESP = 0
    pushfl                      # (SS:SP = 0:0, so this lands at 0:FFFC)
    popl %ebp                   # EFLAGS = 2
    xor %ax, %ax
    mov %ax, %ds                # DS is 0 at reset anyway; make sure for the checks
    mov $STACK0, %sp
    CHECK %esi, 0, 1
    CHECK %ecx, 0, 13
    mov $1, %eax
    cpuid
    cmp %eax, %edi              # EDX at reset = CPUID.1:EAX (family/model/stepping)
    je 1f
    mov %edi, %eax
    mov $PORT_REPORT, %dx
    out %eax, %dx
    EXIT 2
1:  mov %cr0, %eax
    CHECK %eax, 0x60000010, 3  # CR0 after RESET
    CHECK %ebp, 0x00000002, 4  # EFLAGS after RESET
    mov %dr7, %eax
    CHECK %eax, 0x00000400, 5
    mov %dr6, %eax
    CHECK %eax, 0xffff0ff0, 6
    sidtl SCRATCH
    movzwl SCRATCH, %eax
    CHECK %eax, 0xffff, 7  # IDTR limit FFFFh, base 0
    CHECK SCRATCH+2, 0, 8
    sgdtl SCRATCH
    movzwl SCRATCH, %eax
    CHECK %eax, 0xffff, 9
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, 0xf000, 10
    fnstcw SCRATCH
    movzwl SCRATCH, %eax
    CHECK %eax, 0x0040, 11  # x87 control word after power-up
    mov %cr4, %eax
    CHECK %eax, 0, 12

    # ---- IVT: vectors 0, 3, 6, 13 and 0x40 ----
    movw $(rm_vec0 - base), 0*4
    movw $0xf000, 0*4+2
    movw $(rm_vec3 - base), 3*4
    movw $0xf000, 3*4+2
    movw $(rm_vec6 - base), 6*4
    movw $0xf000, 6*4+2
    movw $(rm_vec13 - base), 13*4
    movw $0xf000, 13*4+2
    movw $(rm_vec40 - base), 0x40*4
    movw $0xf000, 0x40*4+2
    movl $0, F_COUNT

    # INT n: pushes FLAGS, CS, IP (of the next instruction); clears IF and TF in the handler.
    movl $0, F_RESUME
    pushl $0x0202               # known flags: IF set, status flags clear
    popfl
    int $0x40
after_int40:
    CHECK F_VEC, 0x40, 20
    CHECK F_IP, (after_int40-base), 21
    CHECK F_CS, 0xf000, 22
    CHECK F_FL, 0x0202, 23  # IF was set when the INT executed
    movl F_HFL, %eax
    and $0x300, %eax
    CHECK %eax, 0, 24  # the handler runs with IF = TF = 0
    CHECK F_HSP, STACK0-6, 25  # FLAGS, CS, IP: three words on the stack
    pushfl
    popl %eax
    and $0x200, %eax
    CHECK %eax, 0x0200, 26  # IRET restored IF
    cli

    # #DE is a fault: the pushed IP is the DIV's.
    movl $(after_de - base), F_RESUME
    xor %cl, %cl
    mov $1, %ax
de_insn:
    div %cl
after_de:
    CHECK F_VEC, 0, 30
    CHECK F_IP, (de_insn-base), 31

    # INT3 is a trap: the pushed IP is the next instruction's.
    movl $0, F_RESUME
    int3
after_bp:
    CHECK F_VEC, 3, 32
    CHECK F_IP, (after_bp-base), 33

    # #UD (UD2) is a fault.
    movl $(after_ud - base), F_RESUME
ud_insn:
    ud2
after_ud:
    CHECK F_VEC, 6, 34
    CHECK F_IP, (ud_insn-base), 35

    # Real-mode limit check: ES has the reset limit FFFFh, so offset 10000h raises #GP (vector 13).
    movl $(after_gp - base), F_RESUME
    xor %ax, %ax
    mov %ax, %es
gp_insn:
    addr32 movl %es:0x10000, %eax
after_gp:
    CHECK F_VEC, 13, 36
    CHECK F_IP, (gp_insn-base), 37
    CHECK F_COUNT, 5, 38

    # ---- far CALL/RET in real mode: CS:IP pushed as two words, RETF imm pops the argument ----
    movzwl %sp, %ebx
    pushw $0x1234
    lcall $0xf000, $(far_func - base)
far_ret_site:
    CHECKR %esi, %ebx, 50  # far_func saw SP = start - 2 (argument) - 4 (CS:IP)
    mov %sp, %ax
    cmp %ax, %bx
    je 1f
    EXIT 51
1:  CHECK %ecx, 0xf000, 52                 # pushed CS
    CHECK %edx, (far_ret_site-base), 53     # pushed IP

    # ---- string port I/O: REP INSB from a port without a device reads 0xFF bytes ----
    movl $0, SCRATCH
    movl $0x11111111, SCRATCH+4
    xor %ax, %ax
    mov %ax, %es
    mov $SCRATCH, %di
    mov $4, %cx
    mov $0x80, %dx
    cld
    rep insb
    CHECK SCRATCH, 0xffffffff, 54
    CHECK SCRATCH+4, 0x11111111, 55        # exactly four bytes
    movzwl %cx, %eax
    CHECK %eax, 0, 56
    movzwl %di, %eax
    CHECK %eax, SCRATCH+4, 57
    mov $(msg - base), %si
    mov $(msg_end - msg), %cx
    mov $PORT_LOG, %dx
    cs rep outsb                           # "real mode\n" to the log

    # ---- unreal mode: FS keeps a 4 GiB limit loaded in protected mode ----
    lgdtl %cs:(gdt_ptr - base)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    mov $0x10, %bx
    mov %bx, %fs
    and $~1, %eax
    mov %eax, %cr0
    xor %bx, %bx
    mov %bx, %fs                # real mode: base 0, the cached limit stays
    movl $0x12345678, %eax
    addr32 movl %eax, %fs:0x200000
    addr32 movl %fs:0x200000, %ebx
    CHECK %ebx, 0x12345678, 40
    CHECK F_COUNT, 5, 41  # no #GP this time
    movl $(after_ds - base), F_RESUME
    addr32 movl %ds:0x200000, %ebx  # but DS still has the 64 KiB limit
after_ds:
    CHECK F_COUNT, 6, 42
    CHECK F_VEC, 13, 43
    PASS

far_func:
    # [sp] = IP, [sp+2] = CS, [sp+4] = the argument
    mov %sp, %si
    movzwl %si, %esi
    add $6, %esi
    mov %sp, %bp
    movzwl 2(%bp), %ecx
    movzwl (%bp), %edx
    lret $2

# ---- handlers ----
rm_vec0:  pushw $0
    jmp rm_common
rm_vec3:  pushw $3
    jmp rm_common
rm_vec6:  pushw $6
    jmp rm_common
rm_vec13: pushw $13
    jmp rm_common
rm_vec40: pushw $0x40
    jmp rm_common
rm_common:
    push %bp
    mov %sp, %bp
    movl %esp, F_HSP
    addl $4, F_HSP              # SP before the stub's two pushes
    push %eax
    movzwl 2(%bp), %eax
    mov %eax, F_VEC
    movzwl 4(%bp), %eax
    mov %eax, F_IP
    movzwl 6(%bp), %eax
    mov %eax, F_CS
    movzwl 8(%bp), %eax
    mov %eax, F_FL
    pushfl
    popl %eax
    mov %eax, F_HFL
    incl F_COUNT
    mov F_RESUME, %eax
    test %eax, %eax
    jz 1f
    mov %ax, 4(%bp)
1:  pop %eax
    pop %bp
    add $2, %sp
    iret

msg:
    .ascii "real mode\n"
msg_end:
    .balign 8
gdt:
    .quad 0
    SEG 0, 0xfffff, 0x9b, 0x8   # 0x08: 16-bit code (unused)
    SEG 0, 0xfffff, 0x93, 0xc   # 0x10: 32-bit data, 4 GiB
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt - base + ROM

.set F_HFL, VARS + 0x30

    RESET_VECTOR entry
