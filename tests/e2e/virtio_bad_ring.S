/*
 * virtio_bad_ring: a multiboot (v1) test kernel that plays a broken virtio driver against the
 * virtio-blk transport in microvm's highest slot (0xfeb00e00: the only device on the command line).
 * It works with both register layouts (it reads Version): 2 = modern (virtio 1.x 4.2.2/4.2.3),
 * 1 = legacy (4.2.4). Polling only, no interrupts; 32-bit flat mode, paging off.
 *
 * For each bad case it initialises the device (3.1.1), sets up queue 0 with 8 entries, publishes a
 * malformed request, notifies, and prints the Status register:
 *   loop      a two-descriptor chain whose `next` fields point at each other (2.7.5.3.1: a chain
 *             must not loop; the device sees more descriptors than the table holds)
 *   outside   a header buffer at a guest-physical address far outside RAM
 *   head      an available-ring entry naming descriptor 200 in an 8-entry table
 *   avail     an available index 100 entries ahead of the device (2.7.6: at most Queue Size)
 * then it resets the device (Status = 0), checks that Status reads 0, and finally reads sector 0
 * with a well-formed request and prints the request status byte and the first 16 bytes read. The
 * read lands in a page holding code the CPU already ran; the code is run again afterwards and must
 * be the disk's (a device's DMA write invalidates decoded code).
 * Every line is checked by tests/e2e/virtio.py (and compared with QEMU's output when installed).
 * Exit: isa-debug-exit at port 0xf4 with 0x21 (status 0x43) when it got to the end.
 *
 * Build: as --32 -I tests/e2e -o k.o virtio_bad_ring.S && ld -m elf_i386 -Ttext=0x100000 -o k.elf k.o
 */
        .set    MAGIC, 0x1BADB002
        .set    FLAGS, 0x00000003
        .set    EXIT_PORT, 0xf4
        .set    VBASE, 0xfeb00e00
        /* 4.2.2 register offsets */
        .set    R_MAGIC, 0x000
        .set    R_VERSION, 0x004
        .set    R_DEVID, 0x008
        .set    R_DRVFEAT, 0x020
        .set    R_DRVFEATSEL, 0x024
        .set    R_PAGESIZE, 0x028   /* legacy */
        .set    R_QSEL, 0x030
        .set    R_QNUMMAX, 0x034
        .set    R_QNUM, 0x038
        .set    R_QALIGN, 0x03c     /* legacy */
        .set    R_QPFN, 0x040       /* legacy */
        .set    R_QREADY, 0x044
        .set    R_QNOTIFY, 0x050
        .set    R_STATUS, 0x070
        .set    R_QDESCLO, 0x080
        .set    R_QDESCHI, 0x084
        .set    R_QDRVLO, 0x090
        .set    R_QDRVHI, 0x094
        .set    R_QDEVLO, 0x0a0
        .set    R_QDEVHI, 0x0a4
        /* 2.1 status bits */
        .set    S_ACK, 1
        .set    S_DRIVER, 2
        .set    S_DRIVER_OK, 4
        .set    S_FEATURES_OK, 8
        /* 2.7.5 descriptor flags */
        .set    F_NEXT, 1
        .set    F_WRITE, 2
        /* guest memory used by the rings and buffers */
        .set    DESC, 0x200000
        .set    HDR, 0x210000
        .set    DATA, 0x211000
        .set    STAT, 0x212000
        .set    QN, 8

        .code32
        .text
mb_header:
        .long   MAGIC
        .long   FLAGS
        .long   -(MAGIC + FLAGS)

        .globl  _start
_start:
        cld
        mov     $stack_top, %esp
        mov     $VBASE, %ebx
        mov     $s_hello, %esi
        call    puts
        mov     $s_magic, %esi
        call    puts
        mov     R_MAGIC(%ebx), %eax
        call    hex32
        mov     $s_devid, %esi
        call    puts
        mov     R_DEVID(%ebx), %eax
        call    hex32
        call    newline
        cmpl    $0x74726976, R_MAGIC(%ebx)
        jne     fail
        cmpl    $2, R_DEVID(%ebx)
        jne     fail
        mov     R_VERSION(%ebx), %eax
        mov     %eax, version
        mov     $s_version, %esi
        call    puts
        mov     version, %eax
        call    hex32
        call    newline
        /* ring addresses: modern = three separate pages; legacy = desc, avail right after the
           8-entry table, used at the next 4096-byte boundary (2.7.2 legacy layout) */
        movl    $DESC + 0x1000, avail
        movl    $DESC + 0x2000, used
        cmpl    $1, version
        jne     1f
        movl    $DESC + QN * 16, avail
        movl    $DESC + 0x1000, used
1:
        /* case 1: a loop */
        call    setup
        call    clear_desc
        movl    $HDR, DESC + 0
        movl    $16, DESC + 8
        movw    $F_NEXT, DESC + 12
        movw    $1, DESC + 14
        movl    $DATA, DESC + 16 + 0
        movl    $512, DESC + 16 + 8
        movw    $F_NEXT, DESC + 16 + 12     /* both device-readable: only the loop is wrong */
        movw    $0, DESC + 16 + 14
        xor     %eax, %eax
        call    publish1
        mov     $s_loop, %esi
        call    report

        /* case 2: a buffer outside guest RAM */
        call    setup
        call    good_chain
        movl    $0xfff00000, DESC + 4       /* high half of the header's address */
        xor     %eax, %eax
        call    publish1
        mov     $s_outside, %esi
        call    report

        /* case 3: a head index past the table */
        call    setup
        call    good_chain
        mov     $200, %eax
        call    publish1
        mov     $s_head, %esi
        call    report

        /* case 4: the available index runs too far ahead */
        call    setup
        call    good_chain
        xor     %eax, %eax
        mov     $100, %edx
        call    publish
        mov     $s_avail, %esi
        call    report

        /* finally: a good request after the reset (read sector 0) into a page that holds code
           the CPU has run: the device's DMA write must replace it (the host put
           `mov $0x22222222, %eax; ret` at byte 16 of sector 0) */
        movl    $0x111111b8, DATA + 16      /* mov $0x11111111, %eax; ret */
        movw    $0xc311, DATA + 20
        call    DATA + 16
        mov     %eax, code_before
        call    setup
        call    good_chain
        xor     %eax, %eax
        call    publish1
        mov     used, %edi
        mov     $200000000, %ecx            /* QEMU completes asynchronously: poll used->idx */
2:      cmpw    $1, 2(%edi)
        je      3f
        pause
        loop    2b
3:      mov     $s_read, %esi
        call    puts
        movzwl  2(%edi), %eax
        call    hex32
        mov     $s_rstatus, %esi
        call    puts
        movzbl  STAT, %eax
        call    hex32
        mov     $s_data, %esi
        call    puts
        mov     $DATA, %esi
        mov     $16, %ecx
4:      lodsb
        call    putc
        loop    4b
        call    newline
        mov     $s_code, %esi
        call    puts
        mov     code_before, %eax
        call    hex32
        mov     $s_code2, %esi
        call    puts
        call    DATA + 16
        call    hex32
        call    newline
        mov     $s_bye, %esi
        call    puts
        mov     $0x21, %al
        out     %al, $EXIT_PORT
        hlt

fail:
        mov     $s_fail, %esi
        call    puts
        mov     $0x01, %al
        out     %al, $EXIT_PORT
        hlt

/* Reset and initialise the device, queue 0 with QN entries, DRIVER_OK (3.1.1, 4.2.3.2). */
setup:
        movl    $0, R_STATUS(%ebx)
        mov     R_STATUS(%ebx), %eax
        test    %eax, %eax
        jnz     fail
        movl    $S_ACK, R_STATUS(%ebx)
        movl    $(S_ACK | S_DRIVER), R_STATUS(%ebx)
        cmpl    $1, version
        je      1f
        movl    $1, R_DRVFEATSEL(%ebx)      /* VIRTIO_F_VERSION_1 = feature bit 32 */
        movl    $1, R_DRVFEAT(%ebx)
        movl    $0, R_DRVFEATSEL(%ebx)
        movl    $0, R_DRVFEAT(%ebx)
        movl    $(S_ACK | S_DRIVER | S_FEATURES_OK), R_STATUS(%ebx)
        testl   $S_FEATURES_OK, R_STATUS(%ebx)
        jz      fail
        jmp     2f
1:      movl    $4096, R_PAGESIZE(%ebx)
        movl    $0, R_DRVFEATSEL(%ebx)
        movl    $0, R_DRVFEAT(%ebx)
2:      /* zero the ring pages */
        mov     $DESC, %edi
        mov     $(3 * 4096 / 4), %ecx
        xor     %eax, %eax
        rep stosl
        movl    $0, R_QSEL(%ebx)
        cmpl    $QN, R_QNUMMAX(%ebx)
        jb      fail
        movl    $QN, R_QNUM(%ebx)
        cmpl    $1, version
        je      3f
        movl    $DESC, R_QDESCLO(%ebx)
        movl    $0, R_QDESCHI(%ebx)
        mov     avail, %eax
        mov     %eax, R_QDRVLO(%ebx)
        movl    $0, R_QDRVHI(%ebx)
        mov     used, %eax
        mov     %eax, R_QDEVLO(%ebx)
        movl    $0, R_QDEVHI(%ebx)
        movl    $1, R_QREADY(%ebx)
        movl    $(S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK), R_STATUS(%ebx)
        ret
3:      movl    $4096, R_QALIGN(%ebx)
        movl    $(DESC >> 12), R_QPFN(%ebx)
        movl    $(S_ACK | S_DRIVER | S_DRIVER_OK), R_STATUS(%ebx)
        ret

clear_desc:
        mov     $DESC, %edi
        mov     $(QN * 16 / 4), %ecx
        xor     %eax, %eax
        rep stosl
        ret

/* A well-formed read of sector 0: header (device-readable), 512 data bytes and a status byte
   (device-writable), 5.2.6. */
good_chain:
        call    clear_desc
        movl    $0, HDR                     /* type = VIRTIO_BLK_T_IN */
        movl    $0, HDR + 4
        movl    $0, HDR + 8                 /* sector 0 */
        movl    $0, HDR + 12
        movb    $0xff, STAT
        movl    $HDR, DESC + 0
        movl    $16, DESC + 8
        movw    $F_NEXT, DESC + 12
        movw    $1, DESC + 14
        movl    $DATA, DESC + 16 + 0
        movl    $512, DESC + 16 + 8
        movw    $(F_NEXT | F_WRITE), DESC + 16 + 12
        movw    $2, DESC + 16 + 14
        movl    $STAT, DESC + 32 + 0
        movl    $1, DESC + 32 + 8
        movw    $F_WRITE, DESC + 32 + 12
        ret

/* Put head %ax in avail->ring[0], set avail->idx = %dx (publish1: 1), notify queue 0. */
publish1:
        mov     $1, %edx
publish:
        mov     avail, %edi
        mov     %ax, 4(%edi)
        mov     %dx, 2(%edi)
        movl    $0, R_QNOTIFY(%ebx)
        ret

/* Print "<name>: status=XXXXXXXX" after giving the device time to act (QEMU may be asynchronous). */
report:
        call    puts
        mov     $2000000, %ecx
1:      testl   $0x40, R_STATUS(%ebx)
        jnz     2f
        pause
        loop    1b
2:      mov     $s_status, %esi
        call    puts
        mov     R_STATUS(%ebx), %eax
        call    hex32
        call    newline
        movl    $0, R_STATUS(%ebx)          /* reset */
        mov     $s_after, %esi
        call    puts
        mov     R_STATUS(%ebx), %eax
        call    hex32
        call    newline
        ret

        .include "serial.inc"         /* putc, puts, newline, hex32 */

        .data
s_hello:   .asciz "virtio bad-ring test\n"
s_magic:   .asciz "magic="
s_devid:   .asciz " device_id="
s_version: .asciz "version="
s_loop:    .asciz "loop:"
s_outside: .asciz "outside:"
s_head:    .asciz "head:"
s_avail:   .asciz "avail:"
s_status:  .asciz " status="
s_after:   .asciz "after reset: status="
s_read:    .asciz "read: used_idx="
s_rstatus: .asciz " status="
s_data:    .asciz " data="
s_code:    .asciz "code: before="
s_code2:   .asciz " after="
s_bye:     .asciz "bye\n"
s_fail:    .asciz "FAILED: unexpected device state\n"
        .align 4
version:   .long 0
avail:     .long 0
used:      .long 0
code_before: .long 0
        .bss
        .align 16
        .space 4096
stack_top:
