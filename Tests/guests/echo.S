# Reads console input from COM1 (polling the line status register) and echoes each line
# back prefixed with "echo: ". A line "bye" resets the machine.
    .text
    .code64
    .globl _start
_start:
    lea ready(%rip), %rsi
    call puts
next_line:
    lea prefix(%rip), %rsi
    call puts
    lea line(%rip), %rdi
    xor %ecx, %ecx
read_byte:
    mov $0x3fd, %dx             # line status: bit 0 = data ready
1:  in %dx, %al
    test $1, %al
    jz 1b
    mov $0x3f8, %dx
    in %dx, %al
    out %al, %dx                # echo it
    mov %al, (%rdi,%rcx)
    inc %ecx
    cmp $'\n', %al
    jne read_byte
    cmpl $0x0a657962, line(%rip)  # "bye\n"
    jne next_line
    mov $0xfe, %al
    out %al, $0x64
2:  hlt
    jmp 2b

#include "serial-puts.inc"

    .section .rodata
ready:  .asciz "ready\n"
prefix: .asciz "echo: "
    .bss
line:   .skip 256
