# Installs a #BP handler and executes int3 and fwait. On hardware KVM both run natively;
# kvm_pvm cannot emulate them, and kasa-vmm completes them (inject #BP, skip fwait).
    .text
    .code64
    .globl _start
_start:
    lea idt(%rip), %rdi
    lea breakpoint_handler(%rip), %rax
    mov %ax, 3*16(%rdi)         # offset 15:0
    movw $0x08, 3*16+2(%rdi)    # code selector
    movb $0x8e, 3*16+5(%rdi)    # present, DPL 0, 64-bit interrupt gate
    shr $16, %rax
    mov %ax, 3*16+6(%rdi)       # offset 31:16
    shr $16, %rax
    mov %eax, 3*16+8(%rdi)      # offset 63:32
    lidt idt_pointer(%rip)
    int3
    lea after_int3(%rip), %rsi
    call puts
    fwait
    lea after_fwait(%rip), %rsi
    call puts
    mov $0xfe, %al
    out %al, $0x64
1:  hlt
    jmp 1b

breakpoint_handler:
    push %rsi
    push %rdx
    push %rax
    lea in_handler(%rip), %rsi
    call puts
    pop %rax
    pop %rdx
    pop %rsi
    iretq

#include "serial-puts.inc"

    .section .rodata
in_handler:     .asciz "breakpoint handled\n"
after_int3:     .asciz "after int3\n"
after_fwait:    .asciz "after fwait\n"
    .balign 8
idt_pointer:
    .word 16*4 - 1
    .quad idt

    .data
    .balign 16
idt:
    .fill 16*4, 1, 0
