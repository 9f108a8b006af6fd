# 32-bit paging and PAE paging (SDM Vol. 3, 4.3, 4.4, 4.6-4.8, 4.10): #PF error codes and CR2 for
# not-present, write-protect (CR0.WP) and user/supervisor violations, a page-crossing write that
# faults on its second page without touching the first, accessed/dirty updates on PDEs and PTEs,
# 4 MiB pages (CR4.PSE) with a reserved bit, INVLPG and CR3 reloads; then PAE paging with 2 MiB
# pages, execute-disable (EFER.NXE, the I/D error-code bit), reserved bits (XD without NXE, low
# bits of a large page) and a PDPTE with reserved bits refused by MOV CR3 (#GP).
.include "common.inc"
.include "pm32.inc"

.set PD, PT_BASE
.set PT0, PT_BASE + 0x1000
.set PDPT, PT_BASE + 0x2000
.set PAE_PD, PT_BASE + 0x3000
.set PAE_PT, PT_BASE + 0x4000
.set P, 1
.set W, 2
.set U, 4
.set PS, 0x80

main32:
    # Identity-map 0..4 MiB with user read/write 4 KiB pages, then the special pages.
    MAP_IDENTITY PT0, 1024, 4, 12, P|W|U
    movl $(0x200000|P), PT0 + 0x200*4          # supervisor read-only
    movl $0, PT0 + 0x201*4                     # not present
    movl $(0x203000|P|W), PT0 + 0x203*4        # supervisor read/write
    movl $(0x205000|P|U), PT0 + 0x205*4        # user read-only
    mov $PD, %edi
    xor %eax, %eax
    mov $1024, %ecx
    rep stosl
    movl $(PT0|P|W|U), PD
    movl $(0x400000|P|W|PS), PD + 4            # 4 MiB supervisor page
    movl $(0x800000|P|W|PS|(1<<21)), PD + 8    # 4 MiB page with reserved bit 21
    mov $PD, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x10, %eax                             # PSE
    mov %eax, %cr4
    mov %cr0, %eax
    or $0x80000000, %eax                       # PG (WP still 0)
    mov %eax, %cr0

    # Accessed and dirty flags.
    CHECK PT0+0x204*4, 0x204007, 1
    movl 0x204000, %eax
    CHECK PT0+0x204*4, 0x204027, 2            # read: A
    movl $5, 0x204000
    CHECK PT0+0x204*4, 0x204067, 3            # write: A and D
    movl PD, %eax
    and $0x20, %eax
    CHECK %eax, 0x20, 4                       # the PDE used is accessed

    # Not present: read, then write.
    EXPECT 1f
    movl 0x201010, %eax
1:  CHECK F_VEC, 14, 10
    CHECK F_ERR, 0, 11
    CHECK F_CR2, 0x201010, 12
    EXPECT 1f
    movl $1, 0x201ffc
1:  CHECK F_ERR, 2, 13
    CHECK F_CR2, 0x201ffc, 14
    # A write across 0x200000 (writable for CPL 0 while WP = 0) and 0x201000 (not present): #PF on
    # the second page, CR2 = its first byte, and the first page is unchanged.
    movl $0x11223344, %eax
    movl %eax, 0x200ffc
    EXPECT 1f
    movl $0xaabbccdd, 0x200ffe
1:  CHECK F_ERR, 2, 15
    CHECK F_CR2, 0x201000, 16
    CHECK 0x200ffc, 0x11223344, 17

    # CR0.WP: supervisor writes to a read-only page fault only with WP = 1.
    movl $7, 0x200000
    CHECK 0x200000, 7, 20
    mov %cr0, %eax
    or $0x10000, %eax
    mov %eax, %cr0
    EXPECT 1f
    movl $8, 0x200000
1:  CHECK F_VEC, 14, 21
    CHECK F_ERR, 3, 22
    CHECK F_CR2, 0x200000, 23
    CHECK 0x200000, 7, 24

    # 4 MiB page: dirty and accessed on the PDE; reserved bit 21 with PSE.
    movl $0x5555, 0x401234
    CHECK 0x401234, 0x5555, 30
    CHECK PD+4, (0x400000|P|W|PS|0x60), 31
    EXPECT 1f
    movl 0x800000, %eax
1:  CHECK F_VEC, 14, 32
    CHECK F_ERR, 9, 33                        # P | RSVD
    CHECK F_CR2, 0x800000, 34

    # INVLPG and MOV CR3 make a changed PTE visible.
    movl $0x11111111, 0x206000
    movl $0x22222222, 0x207000
    CHECK 0x206000, 0x11111111, 40
    movl $(0x207000|P|W|U), PT0 + 0x206*4
    invlpg 0x206000
    CHECK 0x206000, 0x22222222, 41
    movl $(0x206000|P|W|U), PT0 + 0x206*4
    mov %cr3, %eax
    mov %eax, %cr3
    CHECK 0x206000, 0x11111111, 42

    # User accesses.
    movl $after_r3, R0_CONT
    TO_RING3 r3
r3:
    mov $SEL_DATA3, %ax                       # IRET to ring 3 nulled DS/ES (DPL 0 data)
    mov %ax, %ds
    mov %ax, %es
    EXPECT 1f
    movl 0x203000, %eax                       # supervisor page
1:  CHECK F_VEC, 14, 50
    CHECK F_ERR, 5, 51                        # P | U
    CHECK F_CR2, 0x203000, 52
    EXPECT 1f
    movl $1, 0x205000                         # user read-only page
1:  CHECK F_ERR, 7, 53                        # P | W | U
    EXPECT 1f
    movl 0x400100, %eax                       # supervisor 4 MiB page
1:  CHECK F_ERR, 5, 54
    CHECK F_CR2, 0x400100, 55
    movl 0x202000, %eax
    movl 0x205000, %eax
    int $0x82

after_r3:
    # ---- PAE paging ----
    mov %cr0, %eax
    and $0x7fffffff, %eax
    mov %eax, %cr0
    mov $PDPT, %edi
    xor %eax, %eax
    mov $(3 * 1024), %ecx
    rep stosl                                 # PDPT, PAE_PD, PAE_PT
    movl $(PAE_PD|P), PDPT
    movl $(PAE_PT|P|W|U), PAE_PD
    movl $(0x200000|P|W|PS), PAE_PD + 8       # 2 MiB page, XD set below
    movl $0x80000000, PAE_PD + 12
    movl $(0x400000|P|W|PS|(1<<13)), PAE_PD + 16   # reserved bit 13 in a 2 MiB PDE
    MAP_IDENTITY PAE_PT, 512, 8, 12, P|W|U
    mov $0xc0000080, %ecx                     # EFER.NXE
    rdmsr
    or $0x800, %eax
    wrmsr
    mov %cr4, %eax
    or $0x20, %eax                            # PAE
    mov %eax, %cr4
    mov $PDPT, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0

    movb $0xc3, 0x300000                      # RET in the execute-disable page
    CHECK 0x300000, 0xc3, 60                  # data accesses are fine
    EXPECT 1f
    mov $0x300000, %eax
    call *%eax
1:  CHECK F_VEC, 14, 61
    CHECK F_ERR, 0x11, 62                     # P | I/D
    CHECK F_CR2, 0x300000, 63
    CHECK F_IP, 0x300000, 64
    mov $STACK0, %esp
    EXPECT 1f
    movl 0x400000, %eax
1:  CHECK F_ERR, 9, 65                        # P | RSVD
    CHECK F_CR2, 0x400000, 66
    # With EFER.NXE = 0 the XD bit is reserved.
    mov $0xc0000080, %ecx
    rdmsr
    and $~0x800, %eax
    wrmsr
    mov %cr3, %eax
    mov %eax, %cr3
    EXPECT 1f
    movl 0x300000, %eax
1:  CHECK F_ERR, 9, 67
    # A PDPTE with reserved bits: MOV CR3 raises #GP(0) and keeps the old CR3.
    movl $(PAE_PD|P|2), PDPT
    EXPECT 1f
    mov $PDPT, %eax
    mov %eax, %cr3
1:  CHECK F_VEC, 13, 70
    CHECK F_ERR, 0, 71
    PASS

    RESET_VECTOR entry
