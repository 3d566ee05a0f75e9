# A computation that never ends, in ring 0, printing each step on COM1 (snapcount-step.inc):
# the snapshot tests stop it anywhere, restore it in a new kasa-vmm, and compare the steps.
#define ITERATIONS 2000
    .text
    .code64
    .globl _start
_start:
    cli
    cld
    lea stack_top(%rip), %rsp
    movabs $0x9e3779b97f4a7c15, %rbx
    xor %r12, %r12
next:
    call compute_step
    call puts
    jmp next

#include "serial-puts.inc"

#include "snapcount-step.inc"

    .bss
    .balign 16
stack:      .skip 4096
stack_top:
