# External events at instruction boundaries (SDM Vol. 3, 6.7-6.9): INTR masked by IF and taken
# after the instruction that follows STI (the interrupt shadow), vectors from the controller's
# acknowledge cycle and no error code, HLT woken by INTR (return address after the HLT) and by NMI
# with IF = 0, NMI blocking until IRET, NMI before INTR when both are pending, single-step traps
# (TF set by IRET, DR6.BS, return addresses), and INT1.
.include "common.inc"
.include "pm32.inc"

.set NMI_COUNT, SCRATCH
.set NMI_SEEN, SCRATCH + 4
.set DB_COUNT, SCRATCH + 8
.set DB_IPS, SCRATCH + 12      # three EIPs
.set DB_DR6, SCRATCH + 24
.set ORDER, SCRATCH + 28       # events in order, one byte each
.set ORDER_N, SCRATCH + 40
.set NMI_INNER, SCRATCH + 44   # NMI_COUNT seen inside the first handler after its OUT

main32:
    # Our own handlers for NMI (2), #DB (1), and INTR vector 0x22 (records the order).
    mov $IDT_BASE + 2*8, %edi
    mov $nmi_handler, %eax
    call set_gate
    mov $IDT_BASE + 1*8, %edi
    mov $db_handler, %eax
    call set_gate
    mov $IDT_BASE + 0x22*8, %edi
    mov $intr22_handler, %eax
    call set_gate

    # ---- INTR is held while IF = 0 ----
    movl $0, F_RESUME
    movl $0, F_COUNT
    mov $0x20, %al
    outb %al, $PORT_INTR
    nop
    nop
    CHECK F_COUNT, 0, 1
    # STI: the interrupt comes after the next instruction, with no error code.
    sti
    nop
after_sti_nop:
    nop
    cli
    CHECK F_COUNT, 1, 2
    CHECK F_VEC, 0x20, 3
    CHECK F_IP, after_sti_nop, 4
    CHECK F_ERR, 0xffffffff, 5
    movl F_FL, %eax
    and $0x200, %eax
    CHECK %eax, 0x200, 6                       # IF was set in the interrupted context

    # ---- HLT waits for INTR; the handler returns after the HLT ----
    mov $0x21, %al
    outb %al, $0xfb
    sti
    hlt
after_hlt:
    cli
    CHECK F_VEC, 0x21, 10
    CHECK F_IP, after_hlt, 11

    # ---- NMI wakes HLT even with IF = 0 ----
    movl $0, NMI_COUNT
    outb %al, $0xfc
    hlt
after_hlt_nmi:
    CHECK NMI_COUNT, 1, 12
    CHECK F_VEC, 2, 13
    CHECK F_IP, after_hlt_nmi, 14

    # ---- NMI blocking: the handler's own NMI waits for its IRET ----
    movl $0, NMI_COUNT
    movl $1, NMI_SEEN                          # tells the handler to raise another NMI
    outb %al, $PORT_NMI
    nop
    CHECK NMI_COUNT, 2, 15
    CHECK NMI_INNER, 1, 16                     # no nested NMI inside the first handler

    # ---- NMI first when NMI and INTR are both pending ----
    movl $0, ORDER_N
    mov $0x22, %al
    outb %al, $PORT_INTR
    outb %al, $PORT_NMI                        # NMI taken right here (IF = 0)
    sti
    nop                                        # INTR after this
    cli
    CHECK ORDER_N, 2, 20
    movzbl ORDER, %eax
    CHECK %eax, 2, 21
    movzbl ORDER+1, %eax
    CHECK %eax, 0x22, 22

    # ---- single step: TF set by IRET traps after each instruction ----
    movl $0, DB_COUNT
    mov %dr6, %eax
    and $~0x4000, %eax
    mov %eax, %dr6
    pushfl
    orl $0x100, (%esp)
    pushl $SEL_CODE0
    pushl $step0
    iret
step0:
    nop
step1:
    nop
step2:
    nop
step3:
    CHECK DB_COUNT, 3, 30
    CHECK DB_IPS, step1, 31
    CHECK DB_IPS+4, step2, 32
    CHECK DB_IPS+8, step3, 33
    movl DB_DR6, %eax
    and $0x4000, %eax
    CHECK %eax, 0x4000, 34                     # DR6.BS
    pushfl
    popl %eax
    and $0x100, %eax
    CHECK %eax, 0, 35                          # the handler cleared TF after three steps

    # ---- INT1 (F1): a trap through vector 1 ----
    movl $0, DB_COUNT
    .byte 0xf1
after_icebp:
    CHECK DB_COUNT, 1, 40
    CHECK DB_IPS, after_icebp, 41
    PASS

# set_gate: EDI = gate address, EAX = handler (32-bit interrupt gate, DPL 0)
set_gate:
    mov %ax, (%edi)
    movw $SEL_CODE0, 2(%edi)
    movw $0x8e00, 4(%edi)
    shr $16, %eax
    mov %ax, 6(%edi)
    ret

nmi_handler:
    push %eax
    incl NMI_COUNT
    mov 4(%esp), %eax
    mov %eax, F_IP
    movl $2, F_VEC
    mov ORDER_N, %eax
    movb $2, ORDER(%eax)
    incl ORDER_N
    cmpl $1, NMI_SEEN
    jne 1f
    movl $0, NMI_SEEN
    outb %al, $PORT_NMI                        # blocked until our IRET
    nop
    nop
    mov NMI_COUNT, %eax
    mov %eax, NMI_INNER
1:  pop %eax
    iret

intr22_handler:
    push %eax
    mov ORDER_N, %eax
    movb $0x22, ORDER(%eax)
    incl ORDER_N
    pop %eax
    iret

db_handler:
    push %eax
    push %ebx
    mov DB_COUNT, %ebx
    mov 8(%esp), %eax
    mov %eax, DB_IPS(,%ebx,4)
    incl DB_COUNT
    mov %dr6, %eax
    mov %eax, DB_DR6
    cmpl $3, DB_COUNT
    jne 1f
    andl $~0x100, 16(%esp)                     # clear TF in the interrupted EFLAGS
1:  pop %ebx
    pop %eax
    iret

    RESET_VECTOR entry
