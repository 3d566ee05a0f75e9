# A minimal bzImage: the setup header the 64-bit boot protocol reads (one setup sector),
# then the protected-mode part, whose 64-bit entry is 0x200 into it. Assembled as a flat
# binary (objcopy -O binary). The code only uses RIP-relative addresses.
    .code64
    .section .text
    .org 0x1f1
    .byte 1                     # setup_sects
    .word 0                     # root_flags
    .long 0                     # syssize
    .word 0                     # ram_size
    .word 0                     # vid_mode
    .word 0                     # root_dev
    .word 0xAA55                # boot_flag
    .byte 0xEB, 0x66            # jump; header runs to 0x268
    .ascii "HdrS"
    .word 0x020F                # protocol 2.15
    .org 0x211
    .byte 0x01                  # loadflags: LOADED_HIGH
    .org 0x22c
    .long 0x7fffffff            # initrd_addr_max
    .org 0x236
    .word 0x0001                # xloadflags: XLF_KERNEL_64
    .long 2048                  # cmdline_size
    .org 0x260
    .long 0x100000              # init_size
    .org 0x400                  # protected-mode kernel, loaded at 1 MiB
    .org 0x400 + 0x200          # 64-bit entry
entry64:
    mov %rsi, %rbx
    lea hello(%rip), %rsi
    call puts
    cmpb $0xff, 0x210(%rbx)     # type_of_loader set by the VMM
    jne reset
    cmpw $0x020F, 0x206(%rbx)   # our own header copied into boot_params
    jne reset
    lea header_ok(%rip), %rsi
    call puts
reset:
    mov $0xfe, %al
    out %al, $0x64
1:  hlt
    jmp 1b
#include "serial-puts.inc"
hello:      .asciz "BZIMAGE OK\n"
header_ok:  .asciz "setup header ok\n"
