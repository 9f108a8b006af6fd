/*
 * firmware_checks: a 64 KiB firmware image that checks how the board maps firmware and how device
 * DMA and firmware writes keep decoded code coherent, then reports through isa-debug-exit at port
 * 0xf4: 0x10 when every check passed (exit status 0x21), else the number of the first failed check
 * (exit status (n << 1) | 1). Each check prints its number on the serial port first.
 *
 * The image runs from the reset vector in real mode. Until the first far jump, CS has base
 * 0xFFFF0000: code and CS-relative data come from the copy just below 4 GiB (the "high alias");
 * DS = 0xF000 reaches the same bytes at 0xF0000 (the "low alias", QEMU's isa-bios).
 *
 *   1  the image is visible below 1 MiB: a byte read through DS = F000 equals the same byte via CS
 *   2  a write through the low alias is seen through the high alias (one writable backing)
 *   3  code run through the high alias, then patched by a CPU write through the low alias, runs
 *      patched
 *   4  fw_cfg DMA into the firmware (low alias) over code that ran through the high alias
 *   5  fw_cfg DMA data lands in the firmware: the "QEMU" signature read through the high alias
 *   -  (far jump: from here on CS has base 0xF0000, the low alias)
 *   6  code run through the low alias, then patched by fw_cfg DMA through the high alias
 *   7  fw_cfg DMA into RAM over code that already ran there
 *
 * Build: as --32 -I tests/e2e -o c.o firmware_checks.S && ld -m elf_i386 -Ttext=0 --oformat binary -o c.rom c.o
 */
        .set    EXIT_PORT, 0xf4
        .set    FW_CFG_DMA_LOW, 0x518
        .set    DESC, 0x7000            /* DMA descriptor in RAM */
        .set    RAMCODE, 0x8000         /* a routine copied to RAM */

        .code16
        .text
start:
        cli
        xor     %ax, %ax
        mov     %ax, %ss
        mov     %ax, %es
        mov     $0x7c00, %sp
        mov     $0xf000, %ax
        mov     %ax, %ds

        /* 1: same bytes through both aliases */
        mov     $1, %bl
        call    report
        mov     marker, %al             /* DS = F000: low alias */
        cmp     %cs:marker, %al         /* CS base FFFF0000: high alias */
        jne     fail
        cmpb    $0x5a, %al
        jne     fail

        /* 2: a write through the low alias, read through the high one */
        mov     $2, %bl
        call    report
        movb    $0xa5, scratch
        cmpb    $0xa5, %cs:scratch
        jne     fail

        /* 3: run R (high alias), patch its immediate through the low alias, run it again */
        mov     $3, %bl
        call    report
        call    routine                 /* near call: still the high alias */
        cmp     $1, %al
        jne     fail
        movb    $2, routine + 1
        call    routine
        cmp     $2, %al
        jne     fail

        /* 4: DMA over firmware code (through the low alias) that ran through the high alias */
        mov     $4, %bl
        call    report
        call    routine2
        cmp     $7, %al
        jne     fail
        mov     $(0xf0000 + routine2 + 1), %eax
        mov     $1, %ecx
        mov     $0x000d000a, %edx           /* key 0x0d (unset: reads as zeros), SELECT | READ */
        call    dma
        call    routine2
        cmp     $0, %al
        jne     fail

        /* 5: DMA data in the firmware, read through the other alias */
        mov     $5, %bl
        call    report
        mov     $(0xf0000 + sigbuf), %eax
        mov     $4, %ecx
        mov     $0x0000000a, %edx           /* key 0 (signature), SELECT | READ */
        call    dma
        cmpl    $0x554d4551, %cs:sigbuf     /* "QEMU" */
        jne     fail

        ljmp    $0xf000, $low
low:
        /* 6: run R through the low alias, patch it by DMA through the high alias, run it again */
        mov     $6, %bl
        call    report
        call    routine
        cmp     $2, %al
        jne     fail
        mov     $(0xffff0000 + routine + 1), %eax
        mov     $1, %ecx
        mov     $0x000d000a, %edx
        call    dma
        call    routine
        cmp     $0, %al
        jne     fail

        /* 7: DMA over code in RAM */
        mov     $7, %bl
        call    report
        movl    $0x00cb05b0, %es:RAMCODE    /* mov $5, %al; lret */
        lcall   $0, $RAMCODE
        cmp     $5, %al
        jne     fail
        mov     $(RAMCODE + 1), %eax
        mov     $1, %ecx
        mov     $0x000d000a, %edx
        call    dma
        lcall   $0, $RAMCODE
        cmp     $0, %al
        jne     fail

        mov     $0x10, %al
        jmp     exit
fail:
        mov     %bl, %al
exit:
        push    %ax
        mov     $'\n', %al
        call    putc
        pop     %ax
        mov     $EXIT_PORT, %dx
        out     %al, %dx
1:      hlt
        jmp     1b

/* fw_cfg DMA: EDX = control, ECX = length, EAX = guest address; waits for completion.
 * The descriptor is big-endian: be32 control, be32 length, be64 address. */
dma:
        bswap   %edx
        mov     %edx, %es:DESC
        bswap   %ecx
        mov     %ecx, %es:DESC + 4
        movl    $0, %es:DESC + 8
        bswap   %eax
        mov     %eax, %es:DESC + 12
        mov     $DESC, %eax
        bswap   %eax
        mov     $FW_CFG_DMA_LOW, %dx
        out     %eax, %dx
1:      mov     %es:DESC, %eax
        bswap   %eax
        and     $~1, %eax                   /* done when only the error bit may remain */
        jnz     1b
        mov     %es:DESC, %eax
        bswap   %eax
        test    $1, %eax
        jnz     fail
        ret

/* print the check number in BL as a digit */
report:
        mov     %bl, %al
        add     $'0', %al
        jmp     putc
        .include "serial.inc"         /* putc (and puts, newline, hex32) */

        .balign 16
routine:
        mov     $1, %al
        ret
        .balign 16
routine2:
        mov     $7, %al
        ret
        .balign 16
marker:  .byte  0x5a
scratch: .byte  0
        .balign 4
sigbuf:  .long  0

        .org    0xfff0
reset:
        jmp     start                       /* near: CS keeps its reset base 0xFFFF0000 */
        .org    0x10000
