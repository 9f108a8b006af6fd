/*
 * fw_cfg_dump: a 64 KiB firmware image that prints what the board's fw_cfg device offers, on the
 * serial port, then triple-faults (with -no-reboot the emulator exits). tests/e2e/fw_cfg_vs_qemu.py
 * runs it on micro86 and on QEMU with the same command line and compares the two dumps.
 *
 * Runs in real mode from the reset vector (F000:FFF0), uses only the traditional port interface
 * (selector 0x510, data 0x511) and reads the DMA signature at 0x514. For each numbered key it
 * prints the first bytes and a 32-bit byte sum over the first 64 KiB; for the file directory it
 * prints every entry (name, size, selector) and the same for its contents.
 *
 * Build: as --32 -I tests/e2e -o d.o fw_cfg_dump.S && ld -m elf_i386 -Ttext=0 --oformat binary -o d.rom d.o
 */
        .code16
        .text
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ss
        mov     $0x7000, %sp
        mov     %cs, %ax
        mov     %ax, %ds

        mov     $msg_dma, %si
        call    puts
        mov     $0x514, %dx
        mov     $8, %cx
1:      in      %dx, %al
        call    putc
        inc     %dx
        loop    1b
        call    newline

        /* numbered keys: table of (key, skip, print) words, ended by 0xffff */
        mov     $keys, %si
next_key:
        lodsw
        cmp     $0xffff, %ax
        je      files
        mov     %ax, %bx
        lodsw
        mov     %ax, %di            /* bytes to skip before printing */
        lodsw
        mov     %ax, %bp            /* bytes to print */
        push    %si
        mov     $msg_key, %si
        call    puts
        mov     %bx, %ax
        call    hex16
        mov     $':', %al
        call    putc
        mov     %bx, %ax
        call    dump_item
        pop     %si
        jmp     next_key

files:
        /* read the directory to 0000:8000 */
        mov     $0x510, %dx
        mov     $0x19, %ax
        out     %ax, %dx
        xor     %ax, %ax
        mov     %ax, %es
        mov     $0x8000, %di
        mov     $0x511, %dx
        mov     $(4 + 32 * 64), %cx
1:      in      %dx, %al
        stosb
        loop    1b
        mov     $msg_count, %si
        call    puts
        mov     %es:0x8003, %al     /* big-endian count: low byte last */
        xor     %ah, %ah
        mov     %ax, %cx
        call    hex16
        call    newline
        mov     $0x8004, %bx        /* first entry */
next_file:
        jcxz    done
        push    %cx
        mov     $msg_file, %si
        call    puts
        lea     8(%bx), %si         /* name, from ES (= 0) */
1:      mov     %es:(%si), %al
        test    %al, %al
        jz      2f
        call    putc
        inc     %si
        jmp     1b
2:      mov     $' ', %al
        call    putc
        mov     %es:(%bx), %al      /* size, big-endian */
        call    hex8
        mov     %es:1(%bx), %al
        call    hex8
        mov     %es:2(%bx), %al
        call    hex8
        mov     %es:3(%bx), %al
        call    hex8
        mov     $' ', %al
        call    putc
        mov     %es:4(%bx), %ah     /* selector, big-endian */
        mov     %es:5(%bx), %al
        push    %ax
        call    hex16
        mov     $':', %al
        call    putc
        pop     %ax
        xor     %di, %di
        mov     $32, %bp
        push    %bx
        call    dump_item
        pop     %bx
        add     $64, %bx
        pop     %cx
        dec     %cx
        jmp     next_file

done:
        mov     $msg_end, %si
        call    puts
        /* triple fault: an empty IDT and an exception */
        lidt    %cs:null_idt
        int3
        hlt

/* Select key AX, skip DI bytes, print BP bytes in hex, then sum the first 64 KiB of the item
 * (counting from its start) and print the sum. */
dump_item:
        mov     $0x510, %dx
        out     %ax, %dx
        mov     $0x511, %dx
        xor     %ebx, %ebx          /* sum */
        xor     %ecx, %ecx          /* offset */
1:      in      %dx, %al
        movzbl  %al, %eax
        add     %eax, %ebx
        cmp     %di, %cx
        jb      2f
        mov     %cx, %si
        sub     %di, %si
        cmp     %bp, %si
        jae     2f
        push    %dx
        call    hex8
        pop     %dx
2:      inc     %ecx
        cmp     $0x10000, %ecx
        jb      1b
        mov     $msg_sum, %si
        call    puts
        mov     %ebx, %eax
        shr     $16, %eax
        call    hex16
        mov     %bx, %ax
        call    hex16
        call    newline
        ret

        .include "serial.inc"         /* putc, puts, newline (and hex32) */
hex16:
        push    %ax
        mov     %ah, %al
        call    hex8
        pop     %ax
hex8:
        push    %ax
        shr     $4, %al
        call    hex4
        pop     %ax
hex4:
        push    %ax
        and     $0xf, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     1f
        add     $('a' - '0' - 10), %al
1:      call    putc
        pop     %ax
        ret

msg_dma:   .asciz "DMA-SIG "
msg_key:   .asciz "KEY "
msg_count: .asciz "FILES "
msg_file:  .asciz "FILE "
msg_sum:   .asciz " SUM "
msg_end:   .asciz "FW-CFG-DUMP-END\n"
        .balign 4
null_idt:  .word 0
           .long 0

/* key, bytes to skip, bytes to print */
keys:
        .word 0x00, 0, 4       /* signature */
        .word 0x01, 0, 4       /* ID */
        .word 0x02, 0, 16      /* UUID */
        .word 0x03, 0, 8       /* RAM_SIZE */
        .word 0x04, 0, 2       /* NOGRAPHIC */
        .word 0x05, 0, 2       /* NB_CPUS */
        .word 0x06, 0, 4       /* MACHINE_ID */
        .word 0x07, 0, 4       /* KERNEL_ADDR */
        .word 0x08, 0, 4       /* KERNEL_SIZE */
        .word 0x09, 0, 4       /* KERNEL_CMDLINE */
        .word 0x0a, 0, 4       /* INITRD_ADDR */
        .word 0x0b, 0, 4       /* INITRD_SIZE */
        .word 0x0c, 0, 2       /* BOOT_DEVICE */
        .word 0x0d, 0, 8       /* NUMA */
        .word 0x0e, 0, 2       /* BOOT_MENU */
        .word 0x0f, 0, 2       /* MAX_CPUS */
        .word 0x10, 0, 4       /* KERNEL_ENTRY */
        .word 0x11, 0, 32      /* KERNEL_DATA */
        .word 0x12, 0, 16      /* INITRD_DATA */
        .word 0x13, 0, 4       /* CMDLINE_ADDR */
        .word 0x14, 0, 4       /* CMDLINE_SIZE */
        .word 0x15, 0, 64      /* CMDLINE_DATA */
        .word 0x16, 0, 4       /* SETUP_ADDR */
        .word 0x17, 0, 4       /* SETUP_SIZE */
        .word 0x18, 0x1f0, 0x80 /* SETUP_DATA: the setup header */
        .word 0x8000, 0, 8     /* ACPI_TABLES */
        .word 0x8001, 0, 8     /* SMBIOS_ENTRIES */
        .word 0x8002, 0, 4     /* IRQ0_OVERRIDE */
        .word 0x8003, 0, 24    /* E820_TABLE (reserved entries) */
        .word 0x8004, 0, 8     /* HPET */
        .word 0xffff

        .org    0xfff0
reset:
        ljmp    $0xf000, $_start
        .org    0x10000
