# Entered through the PVH ABI: 32-bit protected mode, paging off, %ebx = hvm_start_info.
# Prints what it finds in start_info on COM1, then resets through the i8042.
    .section .note.Xen, "a", @note
    .balign 4
    .long 4, 4, 18              # namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .long pvh_entry

    .text
    .code32
    .globl _start
_start:
pvh_entry:
    mov $0x80000, %esp
    mov %ebx, %edi
    mov $hello, %esi
    call puts
    cmpl $0x336ec578, (%edi)    # hvm_start_info magic
    jne reset
    mov $magic_ok, %esi
    call puts
    mov $cmdline_label, %esi
    call puts
    mov 24(%edi), %esi          # cmdline_paddr
    call puts
    mov $e820_label, %esi
    call puts
    mov 48(%edi), %eax          # memmap_entries
    add $'0', %al
    mov $0x3f8, %dx
    out %al, %dx
    mov $newline, %esi
    call puts
reset:
    mov $0xfe, %al
    out %al, $0x64
1:  hlt
    jmp 1b

#include "serial-puts.inc"

    .section .rodata
hello:          .asciz "PVH32 OK\n"
magic_ok:       .asciz "start_info magic ok\n"
cmdline_label:  .asciz "cmdline="
e820_label:     .asciz "\ne820 entries="
newline:        .asciz "\n"
