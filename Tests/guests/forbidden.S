# kasa-vmm's seccomp test: announces itself, writes to the test hook port (0xf4, present
# only with KASA_VMM_TEST_HOOK=forbidden-syscall), where kasa-vmm's vCPU thread makes a
# system call its filter forbids, then says it is still running and waits for good.
    .text
    .code64
    .globl _start
_start:
    lea before(%rip), %rsi
    call puts
    mov $1, %al
    out %al, $0xf4
    lea after(%rip), %rsi
    call puts
1:  hlt
    jmp 1b

#include "serial-puts.inc"

    .section .rodata
before: .asciz "calling the hook\n"
after:  .asciz "still running\n"
