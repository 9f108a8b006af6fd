# A triple fault (SDM Vol. 3, 6.15 "Interrupt 8"): in protected mode with an empty IDT, #UD cannot
# be delivered (#GP: the gate is beyond the IDT limit), nor can that #GP (a contributory fault
# while delivering a contributory fault: #DF), nor the #DF: the processor shuts down. The runner
# expects StopReason::Shutdown; reaching the EXIT below fails the test.
.include "common.inc"

    .text
    .code16
base:
entry:
    RM_START
    lgdtl %cs:(gdt_ptr - base)                 # the GDT stays in ROM; the IDT is empty
    lidtl %cs:(idt_ptr - base)
    ENTER_PM 0x08, pm32
    .code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %ss
    ud2
    EXIT 1

    .balign 8
gdt:
    .quad 0
    SEG 0, 0xfffff, 0x9b, 0xc
    SEG 0, 0xfffff, 0x93, 0xc
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt - base + ROM
idt_ptr:
    .word 0
    .long 0

    RESET_VECTOR entry
