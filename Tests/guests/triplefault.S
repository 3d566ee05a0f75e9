# Executes an undefined instruction with an empty IDT: #UD cannot be delivered, nor the
# resulting #DF, so the CPU triple-faults and KVM reports a shutdown.
    .text
    .code64
    .globl _start
_start:
    mov $'T', %al
    mov $0x3f8, %dx
    out %al, %dx
    lidt empty_idt(%rip)
    ud2

    .section .rodata
    .balign 8
empty_idt:
    .word 0
    .quad 0
