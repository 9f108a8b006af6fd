/*
 * multiboot_hello: a tiny multiboot (v1) test kernel. It says hello on the serial port, prints the
 * multiboot information it was given (flags, memory sizes, command line, modules with their
 * strings and first bytes, boot loader name, memory map), and reports through isa-debug-exit at
 * port 0xf4: 0x21 when the boot magic in EAX was right (exit status 0x43), 0x01 when not (status 3).
 * Built with --defsym REBOOT=1 it also counts its boots in RAM and resets the machine (triple
 * fault) until the third boot, to check that a machine reset boots the kernel again.
 *
 * Built at test time by tests/e2e/multiboot.py, as an ELF kernel:
 *   as --32 -I tests/e2e -o k.o multiboot_hello.S && ld -m elf_i386 -Ttext=0x100000 -o k.elf k.o
 * and as a flat image that uses the header's address fields (the "a.out kludge"):
 *   as --32 -I tests/e2e --defsym AOUT=1 -o k.o multiboot_hello.S && ld -m elf_i386 -Ttext=0x100000 \
 *       --oformat binary -o k.bin k.o
 */
        .set    MAGIC, 0x1BADB002
.ifdef AOUT
        .set    FLAGS, 0x00010003   /* page-align modules, memory info, address fields */
.else
        .set    FLAGS, 0x00000003
.endif
        .set    EXIT_PORT, 0xf4

        .code32
        .text
image_start:
mb_header:
        .long   MAGIC
        .long   FLAGS
        .long   -(MAGIC + FLAGS)
.ifdef AOUT
        .long   mb_header           /* header_addr */
        .long   image_start         /* load_addr */
        .long   0                   /* load_end_addr: the whole file */
        .long   bss_end             /* bss_end_addr */
        .long   entry               /* entry_addr */
.endif

        .globl  _start
_start:                             /* the ELF entry point */
entry:
        cld
        mov     $stack_top, %esp
        cmp     $0x2BADB002, %eax
        jne     bad_magic
        mov     %ebx, %ebp                  /* the multiboot info */
        mov     $s_hello, %esi
        call    puts

        mov     $s_flags, %esi
        mov     0(%ebp), %eax
        call    field
        mov     $s_lower, %esi
        mov     4(%ebp), %eax
        call    field
        mov     $s_upper, %esi
        mov     8(%ebp), %eax
        call    field
        mov     $s_bootdev, %esi
        mov     12(%ebp), %eax
        call    field
        mov     $s_cmdline, %esi
        call    puts
        mov     16(%ebp), %esi
        call    puts
        call    newline

        /* modules */
        mov     $s_mods, %esi
        mov     20(%ebp), %eax
        call    field
        mov     20(%ebp), %ecx
        mov     24(%ebp), %ebx
1:      jecxz   2f
        push    %ecx
        mov     $s_mod, %esi
        call    puts
        mov     8(%ebx), %esi               /* its string */
        call    puts
        mov     $s_size, %esi
        call    puts
        mov     4(%ebx), %eax
        sub     0(%ebx), %eax
        call    hex32
        mov     $s_align, %esi
        call    puts
        mov     0(%ebx), %eax
        and     $0xfff, %eax
        call    hex32
        mov     $s_data, %esi
        call    puts
        mov     0(%ebx), %esi               /* the first bytes, printed as text up to a newline */
        mov     4(%ebx), %edx
3:      cmp     %edx, %esi
        jae     4f
        lodsb
        cmp     $'\n', %al
        je      4f
        call    putc
        jmp     3b
4:      call    newline
        add     $16, %ebx
        pop     %ecx
        dec     %ecx
        jmp     1b
2:
        mov     $s_loader, %esi
        call    puts
        mov     64(%ebp), %esi
        call    puts
        call    newline

        /* memory map: entries of (size, base, length, type); size does not count itself */
        mov     48(%ebp), %ebx
        mov     44(%ebp), %edi
        add     %ebx, %edi
5:      cmp     %edi, %ebx
        jae     6f
        mov     $s_mmap, %esi
        call    puts
        mov     8(%ebx), %eax
        call    hex32
        mov     4(%ebx), %eax
        call    hex32
        mov     $' ', %al
        call    putc
        mov     16(%ebx), %eax
        call    hex32
        mov     12(%ebx), %eax
        call    hex32
        mov     $' ', %al
        call    putc
        mov     20(%ebx), %eax
        call    hex32
        call    newline
        add     0(%ebx), %ebx
        add     $4, %ebx
        jmp     5b
6:
.ifdef REBOOT
        /* Count boots in RAM that no loader touches (RAM survives a machine reset); reset the
         * machine with a triple fault (an empty IDT and an exception) until the third boot. */
        mov     $s_boot, %esi
        call    puts
        incl    BOOT_COUNTER
        mov     BOOT_COUNTER, %eax
        call    hex32
        call    newline
        cmpl    $3, BOOT_COUNTER
        jae     7f
        lidt    null_idt
        int3
7:
.endif
        mov     $s_bye, %esi
        call    puts
        mov     $0x21, %eax
        mov     $EXIT_PORT, %dx
        outl    %eax, %dx
        jmp     halt

bad_magic:
        mov     $s_bad, %esi
        call    puts
        mov     $0x01, %eax
        mov     $EXIT_PORT, %dx
        outl    %eax, %dx
halt:   cli
        hlt
        jmp     halt

/* "name" then EAX in hex, then a newline */
field:
        push    %eax
        call    puts
        pop     %eax
        call    hex32
        jmp     newline

        .include "serial.inc"         /* putc, puts, newline, hex32 */

s_hello:   .asciz "hello from multiboot\n"
s_flags:   .asciz "flags="
s_lower:   .asciz "mem_lower="
s_upper:   .asciz "mem_upper="
s_bootdev: .asciz "boot_device="
s_cmdline: .asciz "cmdline="
s_mods:    .asciz "mods_count="
s_mod:     .asciz "mod="
s_size:    .asciz " size="
s_align:   .asciz " page_offset="
s_data:    .asciz " data="
s_loader:  .asciz "loader="
s_mmap:    .asciz "mmap="
s_bye:     .asciz "bye\n"
s_bad:     .asciz "bad multiboot magic in EAX\n"
s_boot:    .asciz "boot="
        .balign 8
null_idt:  .word  0
           .long  0
        .set    BOOT_COUNTER, 0x500000

        .bss
        .balign 16
        .space  4096
stack_top:
bss_end:
