# The bootstrap vCPU starts the others the way an OS does (INIT, SIPI, SIPI through its
# local APIC); each application processor runs a real-mode trampoline that counts itself
# in and prints 'A'. The BSP reports how many arrived, then resets the machine.
    .set TRAMPOLINE, 0x10000        # SIPI vector 0x10
    .set COUNTER, 0x11000
    .set ICR_LOW, 0xfee00300
    .set ICR_HIGH, 0xfee00310

    .text
    .code64
    .globl _start
_start:
    movl $0, COUNTER
    # Copy the trampoline below 1 MiB, where real mode can reach it.
    lea trampoline_start(%rip), %rsi
    mov $TRAMPOLINE, %rdi
    mov $(trampoline_end - trampoline_start), %rcx
    rep movsb
    # How many vCPUs the VMM says there are: CPUID.1:EBX[23:16].
    mov $1, %eax
    cpuid
    shr $16, %ebx
    and $0xff, %ebx
    dec %ebx                    # expected application processors
    mov $ICR_LOW, %rdi          # above 2 GiB: not reachable as a 32-bit displacement
    movl $0, ICR_HIGH - ICR_LOW(%rdi)
    movl $0x000c4500, (%rdi)    # INIT to all but self
    call pause_briefly
    movl $0x000c4610, (%rdi)    # SIPI, vector 0x10
    call pause_briefly
    movl $0x000c4610, (%rdi)
    mov $200000000, %rcx        # bounded wait
1:  cmp COUNTER, %ebx
    je 2f
    pause
    dec %rcx
    jnz 1b
2:  lea report(%rip), %rsi
    call puts
    mov COUNTER, %eax
    add $'0', %al
    mov $0x3f8, %dx
    out %al, %dx
    mov $'\n', %al
    out %al, %dx
    mov $0xfe, %al
    out %al, $0x64
3:  hlt
    jmp 3b

pause_briefly:
    mov $10000, %ecx
4:  pause
    loop 4b
    ret

#include "serial-puts.inc"

    .code16
trampoline_start:
    cli
    mov $(COUNTER >> 4), %ax     # real mode: reach COUNTER through DS
    mov %ax, %ds
    lock incl 0
    mov $'A', %al
    mov $0x3f8, %dx
    out %al, %dx
7:  hlt
    jmp 7b
trampoline_end:

    .section .rodata
report:         .asciz "\napplication processors up: "
