# snapcount.S's computation in ring 3 (where kvm_pvm runs guest code natively, not
# emulated): ring 0 sets up a GDT, page tables with user access, and SYSCALL, then IRETQs
# to the loop; each step's line is printed by a SYSCALL to the entry below, which writes
# it to COM1 and IRETQs back. Most of the time is spent in ring 3, so a snapshot lands there.
#define ITERATIONS 1000000
    .text
    .code64
    .globl _start
_start:
    cli
    cld
    lea kernel_stack_top(%rip), %rsp
    lgdt gdt_pointer(%rip)
    # Reload CS (0x08) with a far return, then the data segments (0x10).
    pushq $0x08
    lea 1f(%rip), %rax
    pushq %rax
    lretq
1:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    # Identity-map the first GiB with 2 MiB pages that ring 3 may use.
    lea pd(%rip), %rdi
    xor %eax, %eax
    mov $0x87, %rax             # present, writable, user, 2 MiB page
    mov $512, %ecx
2:  mov %rax, (%rdi)
    add $0x200000, %rax
    add $8, %rdi
    dec %ecx
    jnz 2b
    lea pd(%rip), %rax
    or $0x7, %rax
    mov %rax, pdpt(%rip)
    lea pdpt(%rip), %rax
    or $0x7, %rax
    mov %rax, pml4(%rip)
    lea pml4(%rip), %rax
    mov %rax, %cr3
    # SYSCALL: EFER.SCE; STAR: kernel CS 0x08 (SS 0x10), user base 0x10 (SS 0x1b, CS 0x23).
    mov $0xc0000080, %ecx
    rdmsr
    or $1, %eax
    wrmsr
    mov $0xc0000081, %ecx
    xor %eax, %eax
    mov $0x00100008, %edx
    wrmsr
    mov $0xc0000082, %ecx       # LSTAR
    lea syscall_entry(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    mov $0xc0000084, %ecx       # FMASK: keep IF clear
    mov $0x200, %eax
    xor %edx, %edx
    wrmsr
    # To ring 3.
    pushq $0x1b                 # SS
    lea user_stack_top(%rip), %rax
    pushq %rax                  # RSP
    pushq $0x2                  # RFLAGS
    pushq $0x23                 # CS
    lea user_main(%rip), %rax
    pushq %rax                  # RIP
    iretq

# The SYSCALL entry: print the string at %rsi, return to the loop (RCX and R11 hold its
# RIP and RFLAGS) with IRETQ. On hardware KVM this runs in ring 0. On kvm_pvm SYSCALL from
# ring 3 jumps to LSTAR but leaves CS and SS at the user selectors (kvm-here.md in the
# shared notes; Linux guests carry a kernel patch for it): the entry runs in ring 3 (CS
# read there has RPL 3), which works only because every page is user-accessible. SYSRETQ
# is privileged, so there it raised #GP and, with no IDT, triple-faulted; IRETQ returns
# correctly from either ring.
syscall_entry:
    mov %rsp, %r8
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  pushq $0x1b                 # SS
    pushq %r8                   # RSP
    pushq %r11                  # RFLAGS
    pushq $0x23                 # CS
    pushq %rcx                  # RIP
    iretq

user_main:
    movabs $0x9e3779b97f4a7c15, %rbx
    xor %r12, %r12
3:  call compute_step
    syscall
    jmp 3b

#include "snapcount-step.inc"

    .data
    .balign 16
gdt:
    .quad 0                     # null
    .quad 0x00af9a000000ffff    # 0x08 kernel code, 64-bit
    .quad 0x00cf92000000ffff    # 0x10 kernel data
    .quad 0x00cff2000000ffff    # 0x18 user data
    .quad 0x00affa000000ffff    # 0x20 user code, 64-bit
gdt_end:
gdt_pointer:
    .word gdt_end - gdt - 1
    .quad gdt

    .bss
    .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
kernel_stack:   .skip 4096
kernel_stack_top:
user_stack:     .skip 4096
user_stack_top:
