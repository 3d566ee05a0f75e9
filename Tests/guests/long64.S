# Entered through the Linux 64-bit boot protocol: long mode, identity paging, %rsi = zero page.
# Prints what it finds in boot_params on COM1, then resets through the i8042.
    .text
    .code64
    .globl _start
_start:
    mov %rsi, %rbx
    lea hello(%rip), %rsi
    call puts
    cmpw $0xaa55, 0x1fe(%rbx)   # boot_flag
    jne reset
    lea zeropage_ok(%rip), %rsi
    call puts
    lea cmdline_label(%rip), %rsi
    call puts
    mov 0x228(%rbx), %esi       # cmd_line_ptr
    call puts
    lea e820_label(%rip), %rsi
    call puts
    movzbl 0x1e8(%rbx), %eax    # e820_entries
    add $'0', %al
    mov $0x3f8, %dx
    out %al, %dx
    lea newline(%rip), %rsi
    call puts
reset:
    mov $0xfe, %al
    out %al, $0x64
1:  hlt
    jmp 1b

#include "serial-puts.inc"

    .section .rodata
hello:          .asciz "LONG64 OK\n"
zeropage_ok:    .asciz "zero page ok\n"
cmdline_label:  .asciz "cmdline="
e820_label:     .asciz "\ne820 entries="
newline:        .asciz "\n"
