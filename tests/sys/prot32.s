# From RESET into 32-bit protected mode: GDT/IDT/TSS in RAM, then exception delivery through
# interrupt gates with the architectural vectors, error codes and frames (SDM Vol. 3, 6.12-6.13),
# descriptor checks of segment loads (#GP/#NP/#SS with selector error codes), segment limits and
# expand-down segments, ring 3 via IRET with the TSS stack switch, gate DPL checks for INT n, the
# I/O permission bitmap, a call gate to ring 0 and the far return to the outer level (which nulls
# data segments the outer level may not use), LAR/LSL/VERR/VERW, a #DF from a fault while
# delivering a contributory fault, a stretch of 16-bit protected-mode code, an LDT, and the way
# back to real mode.
.include "common.inc"

.set SEL_CODE0, 0x08
.set SEL_DATA0, 0x10
.set SEL_CODE3, 0x1b
.set SEL_DATA3, 0x23
.set SEL_TSS, 0x28
.set SEL_NP, 0x30        # data, not present
.set SEL_SMALL, 0x38     # data, base 1 MiB, limit 0xfff, byte granular
.set SEL_EXPDOWN, 0x40   # data, expand-down, limit 0xfff, 32-bit (B=1): offsets 0x1000..0xffffffff
.set SEL_CGATE, 0x48     # call gate, DPL 3, to SEL_CODE0:gate_target
.set SEL_CODE16, 0x50    # 16-bit code, base 0xF0000
.set SEL_RODATA, 0x58    # read-only data
.set SEL_LDT, 0x60       # LDT descriptor
.set SEL_DATA16, 0x68    # 16-bit data, limit 0xffff
.set ESP0, STACK0 - 0x100

    .text
    .code16
base:
entry:
    RM_START
    LOAD_TABLES                 # the GDT and IDT templates, copied from ROM to RAM
    ENTER_PM SEL_CODE0, pm32

    .code32
pm32:
    LOAD_SEGS32 SEL_DATA0
    # TSS: ring-0 stack, I/O bitmap (all allowed except port 0x80), then LTR.
    TSS_INIT
    movl $ESP0, TSS_BASE + 4
    movl $SEL_DATA0, TSS_BASE + 8
    movb $0x01, TSS_BASE + IOMAP + 0x80 / 8
    mov $SEL_TSS, %ax
    ltr %ax
    str %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_TSS, 1
    movl $0, F_COUNT

    # ---- #UD: fault, no error code, frame EFLAGS/CS/EIP on the same stack ----
    EXPECT 1f
    mov %esp, %ebx
ud_at:
    ud2
1:  CHECK F_VEC, 6, 10
    CHECK F_ERR, 0xffffffff, 11
    CHECK F_IP, ud_at, 12
    CHECK F_CS, SEL_CODE0, 13
    sub $12, %ebx
    CHECKR F_HSP, %ebx, 14

    # ---- segment-load checks ----
    EXPECT 1f
    mov $SEL_NP, %ax
    mov %ax, %ds              # not present: #NP(selector)
1:  CHECK F_VEC, 11, 20
    CHECK F_ERR, SEL_NP, 21
    EXPECT 1f
    mov $0x1000, %ax
    mov %ax, %ds              # beyond the GDT limit: #GP(selector)
1:  CHECK F_VEC, 13, 22
    CHECK F_ERR, 0x1000, 23
    EXPECT 1f
    mov $SEL_RODATA, %ax
    mov %ax, %ss              # SS must be writable: #GP(selector)
1:  CHECK F_VEC, 13, 24
    CHECK F_ERR, SEL_RODATA, 25
    EXPECT 1f
    mov $SEL_CGATE, %ax
    mov %ax, %es              # a system descriptor: #GP(selector)
1:  CHECK F_VEC, 13, 26
    CHECK F_ERR, SEL_CGATE&0xfffc, 27
    EXPECT 1f
    mov $0x0c, %ax
    mov %ax, %fs              # TI = 1 with no LDT: #GP(selector incl. TI)
1:  CHECK F_VEC, 13, 28
    CHECK F_ERR, 0x0c, 29
    mov $0, %ax
    mov %ax, %gs              # a null selector loads fine ...
    EXPECT 1f
    movl %gs:0, %eax          # ... but using it is #GP(0)
1:  CHECK F_VEC, 13, 30
    CHECK F_ERR, 0, 31
    mov $SEL_DATA0, %ax
    mov %ax, %gs

    # ---- limits: byte-granular limit 0xfff at base 1 MiB ----
    movb GDT_BASE + SEL_SMALL + 5, %al
    movzbl %al, %eax
    CHECK %eax, 0x92, 39  # accessed bit clear before the load
    mov $SEL_SMALL, %ax
    mov %ax, %es
    movb GDT_BASE + SEL_SMALL + 5, %al
    movzbl %al, %eax
    CHECK %eax, 0x93, 40  # the load set the accessed bit in the GDT
    movl $0xabcd1234, %es:0xffc
    CHECK 0x100ffc, 0xabcd1234, 41
    EXPECT 1f
    movl %es:0x1000, %eax     # beyond the limit: #GP(0)
1:  CHECK F_VEC, 13, 42
    CHECK F_ERR, 0, 43
    # Expand-down: offsets 0..0xfff are outside, 0x1000.. inside.
    mov $SEL_EXPDOWN, %ax
    mov %ax, %es
    EXPECT 1f
    movl %es:0x800, %eax
1:  CHECK F_VEC, 13, 44
    movl $0, F_VEC
    movl %es:0x5000, %eax     # inside: no fault
    CHECK F_VEC, 0, 45
    # A stack-segment limit violation is #SS(0).
    mov $SEL_SMALL, %ax
    mov %ax, %ss
    mov $0xff0, %esp
    EXPECT 1f
    mov $0x2000, %ebx
    movl %ss:(%ebx), %eax
1:  CHECK F_VEC, 12, 46
    CHECK F_ERR, 0, 47
    mov $SEL_DATA0, %ax
    mov %ax, %ss
    mov $STACK0, %esp
    mov %ax, %es

    # ---- traps and #DE ----
    EXPECT 1f
    xor %ecx, %ecx
de_at:
    div %ecx
1:  CHECK F_VEC, 0, 50
    CHECK F_IP, de_at, 51
    movl $0, F_RESUME
    int3
bp_after:
    CHECK F_VEC, 3, 52
    CHECK F_IP, bp_after, 53
    mov $0x7fffffff, %eax
    add $1, %eax              # OF = 1
    into
of_after:
    CHECK F_VEC, 4, 54
    CHECK F_IP, of_after, 55

    # ---- descriptor probes ----
    mov $SEL_CODE0, %ax
    lar %ax, %ebx
    CHECK %ebx, 0x00cf9b00, 60
    mov $SEL_SMALL, %ax
    lsl %ax, %ebx
    CHECK %ebx, 0xfff, 61
    mov $SEL_CODE0, %ax
    lsl %ax, %ebx
    CHECK %ebx, 0xffffffff, 62
    mov $1, %ebx
    mov $0x1000, %ax
    lar %ax, %ebx             # beyond the limit: ZF = 0, destination unchanged
    setz %cl
    movzbl %cl, %ecx
    CHECK %ecx, 0, 63
    CHECK %ebx, 1, 64
    mov $SEL_RODATA, %ax
    verw %ax
    setz %cl
    movzbl %cl, %ecx
    CHECK %ecx, 0, 65
    verr %ax
    setz %cl
    movzbl %cl, %ecx
    CHECK %ecx, 1, 66
    mov $SEL_CGATE, %ax
    verr %ax
    setz %cl
    movzbl %cl, %ecx
    CHECK %ecx, 0, 67

    # ---- LDT: LLDT, a TI = 1 selector, SLDT ----
    mov $SEL_LDT, %ax
    lldt %ax
    sldt %bx
    movzwl %bx, %ebx
    CHECK %ebx, SEL_LDT, 68
    movl $0x5a5a5a5a, 0x100010
    mov $0x0c, %ax                # LDT entry 1, TI = 1, RPL 0: data at base 1 MiB
    mov %ax, %es
    movl %es:0x10, %eax
    CHECK %eax, 0x5a5a5a5a, 69
    mov $SEL_DATA0, %ax
    mov %ax, %es

    # ---- 16-bit protected mode ----
    ljmp $SEL_CODE16, $(pm16 - base)
back32:
    CHECK %ebx, 2, 70  # a 16-bit PUSH moved (E)SP by 2

    # ---- #DF: the #NP gate is not present, so delivering #NP raises #NP again ----
    andb $0x7f, IDT_BASE + 11 * 8 + 5
    EXPECT 1f
    mov $SEL_NP, %ax
    mov %ax, %ds
1:  CHECK F_VEC, 8, 80
    CHECK F_ERR, 0, 81
    orb $0x80, IDT_BASE + 11 * 8 + 5
    mov $SEL_DATA0, %ax
    mov %ax, %ds

    # ---- ring 3 ----
    pushl $SEL_DATA3
    pushl $STACK3
    pushl $0x0002             # IOPL 0, IF 0
    pushl $SEL_CODE3
    pushl $ring3
    iret

ring3:
    mov $SEL_DATA3, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_CODE3, 100
    # INT through a DPL-3 gate: stack switch to SS0:ESP0 from the TSS.
    movl $0, F_RESUME
    mov %esp, %ebx
    int $0x80
int80_after:
    CHECK F_VEC, 0x80, 101
    CHECK F_IP, int80_after, 102
    CHECK F_CS, SEL_CODE3, 103
    CHECK F_SS, SEL_DATA3, 104
    CHECKR F_SP, %ebx, 105
    CHECK F_HSP, ESP0-20, 106
    # INT through a DPL-0 gate: #GP(vector * 8 + 2), a fault on the INT.
    EXPECT 1f
int81_at:
    int $0x81
1:  CHECK F_VEC, 13, 107
    CHECK F_ERR, 0x81*8+2, 108
    CHECK F_IP, int81_at, 109
    # Port I/O with CPL 3 > IOPL 0: the bitmap allows 0xe9, denies 0x80.
    mov $'3', %al
    outb %al, $PORT_LOG
    EXPECT 1f
    outb %al, $0x80
1:  CHECK F_VEC, 13, 110
    CHECK F_ERR, 0, 111
    # Privileged instructions and IF at CPL 3.
    EXPECT 1f
    cli
1:  CHECK F_VEC, 13, 112
    EXPECT 1f
    mov %cr0, %eax
1:  CHECK F_VEC, 13, 113
    EXPECT 1f
    hlt
1:  CHECK F_VEC, 13, 114
    EXPECT 1f
    mov $SEL_DATA0, %ax
    mov %ax, %fs              # DPL 0 data from CPL 3: #GP(selector)
1:  CHECK F_VEC, 13, 115
    CHECK F_ERR, SEL_DATA0, 116
    # JMP through a call gate cannot change the privilege level: to the DPL-0 code segment from
    # CPL 3, #GP(its selector) (SDM Vol. 2, JMP "Operation", CALL-GATE).
    EXPECT 1f
    ljmp $(SEL_CGATE | 3), $0
1:  CHECK F_VEC, 13, 117
    CHECK F_ERR, SEL_CODE0, 118
    # Call gate to ring 0 and the far return to ring 3.
    mov %esp, %ebx
    lcall $(SEL_CGATE | 3), $0
cg_after:
    CHECK F_CS, SEL_CODE3, 120  # (recorded by gate_target) pushed CS
    CHECK F_IP, cg_after, 121
    CHECKR F_SP, %ebx, 122
    CHECK F_SS, SEL_DATA3, 123
    CHECK F_HSP, ESP0-16, 124
    CHECK F_VEC, SEL_CODE0, 125  # gate_target ran with CS = SEL_CODE0
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_CODE3, 126
    mov %ss, %ax
    movzwl %ax, %eax
    CHECK %eax, SEL_DATA3, 127
    mov %es, %ax                     # ES = DPL-0 data loaded in ring 0: nulled by the return
    movzwl %ax, %eax
    CHECK %eax, 0, 128
    cmp %esp, %ebx
    je 1f
    EXIT 129
1:  # Back to ring 0 through a DPL-3 gate whose handler does not return.
    int $0x82

ring0_again:
    mov $SEL_DATA0, %ax
    mov %ax, %ds
    mov %ax, %es
    mov $STACK0, %esp

    # ---- back to real mode, as firmware does to run real-mode code (SDM Vol. 3, 10.9.2) ----
    movw $(rm_int40 - base), 0x40*4
    movw $0xf000, 0x40*4+2
    movl $0, SCRATCH
    lidt rm_idt_ptr
    ljmp $SEL_CODE16, $(to_real16 - base)
    .code16
to_real16:
    mov $SEL_DATA16, %ax          # 64 KiB limits for the real-mode segment caches
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr0, %eax
    and $~1, %eax
    mov %eax, %cr0
    ljmp $0xf000, $(real_again - base)
real_again:
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $STACK0, %sp
    int $0x40                     # through the real-mode IVT again
    CHECK SCRATCH, 0x40, 130
    mov %cs, %ax
    movzwl %ax, %eax
    CHECK %eax, 0xf000, 131
    PASS
rm_int40:
    movl $0x40, SCRATCH
    iret
    .code32

# ---- call gate target (ring 0) ----
gate_target:
    # [esp] EIP, [esp+4] CS, [esp+8] ESP, [esp+12] SS (no parameters)
    mov %esp, %eax
    mov %eax, %ss:F_HSP
    mov (%esp), %eax
    mov %eax, %ss:F_IP
    mov 4(%esp), %eax
    mov %eax, %ss:F_CS
    mov 8(%esp), %eax
    mov %eax, %ss:F_SP
    mov 12(%esp), %eax
    mov %eax, %ss:F_SS
    mov %cs, %ax
    movzwl %ax, %eax
    mov %eax, %ss:F_VEC
    mov $SEL_DATA0, %ax
    mov %ax, %es
    lret

# ---- 16-bit protected-mode code (CS base 0xF0000) ----
    .code16
pm16:
    mov %esp, %ecx
    push %ax
    mov %ecx, %ebx
    sub %esp, %ebx            # 2
    pop %ax
    ljmpl $SEL_CODE0, $back32
    .code32

# ---- exception stubs and the common handler ----
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,0x80,0x81
    STUB32 \n
.endr

pm_common:
    PM32_HANDLER

stub_0x82:
    jmp ring0_again

# ---- tables (templates copied to RAM) ----
    .balign 8
gdt:
    .quad 0
    SEG 0, 0xfffff, 0x9b, 0xc          # 0x08 code, DPL 0
    SEG 0, 0xfffff, 0x93, 0xc          # 0x10 data, DPL 0
    SEG 0, 0xfffff, 0xfb, 0xc          # 0x18 code, DPL 3
    SEG 0, 0xfffff, 0xf3, 0xc          # 0x20 data, DPL 3
    SEG TSS_BASE, TSS_LIMIT, 0x89, 0x0 # 0x28 32-bit TSS (available)
    SEG 0, 0xfffff, 0x13, 0xc          # 0x30 data, not present
    SEG 0x100000, 0xfff, 0x92, 0x4     # 0x38 small data (accessed bit clear)
    SEG 0, 0xfff, 0x97, 0x4            # 0x40 expand-down data
    .word (gate_target - base + ROM) & 0xffff   # 0x48 call gate, DPL 3, 0 parameters
    .word SEL_CODE0
    .byte 0, 0xec
    .word (gate_target - base + ROM) >> 16
    SEG ROM, 0xffff, 0x9b, 0x0         # 0x50 16-bit code, base 0xF0000
    SEG 0, 0xfffff, 0x91, 0xc          # 0x58 read-only data
    SEG (ldt-base+ROM), 0x0f, 0x82, 0x0     # 0x60 LDT (2 entries, in ROM)
    SEG 0, 0xffff, 0x93, 0x0           # 0x68 16-bit data, 64 KiB
gdt_end:
ldt:
    .quad 0
    SEG 0x100000, 0xfff, 0x93, 0x4     # LDT 0x0c: data, base 1 MiB
gdt_ptr:
    .word gdt_end - gdt - 1
    .long GDT_BASE

idt:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
    GATE32 stub_\n, SEL_CODE0, 0x8e
.endr
    .fill (0x80 - 20) * 8, 1, 0
    GATE32 stub_0x80, SEL_CODE0, 0xee  # DPL 3
    GATE32 stub_0x81, SEL_CODE0, 0x8e  # DPL 0
    GATE32 stub_0x82, SEL_CODE0, 0xee  # DPL 3
idt_end:
idt_ptr:
    .word idt_end - idt - 1
    .long IDT_BASE
rm_idt_ptr:
    .word 0x3ff
    .long 0

    RESET_VECTOR entry
