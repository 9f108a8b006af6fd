# A tiny guest program for `micro86 snippet`: the 50th Fibonacci number.
# Assembled at build time (GNU as, Intel syntax) into raw machine code: build/examples/fib.bin.
# Result: RAX = fib(50) = 12586269025, RBX = number of iterations, RCX = 0.
    .intel_syntax noprefix
    .code64
    xor     eax, eax            # fib(0)
    mov     edx, 1              # fib(1)
    mov     ecx, 50
    xor     ebx, ebx
1:  lea     rsi, [rax + rdx]    # next = a + b
    mov     rax, rdx
    mov     rdx, rsi
    inc     rbx
    dec     ecx
    jnz     1b
    # invariant: rax = fib(k), rdx = fib(k+1) after k iterations
    hlt
