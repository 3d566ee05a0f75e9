# bench/guests/first-byte.S: the guest bench/boot-bench boots.
# Entered through the PVH ABI (32-bit protected mode, paging off). It writes one
# byte to COM1 (port 0x3f8) and then halts forever with interrupts off, so the
# VMM process stays alive to be sampled (VmRSS, Pss) until the bench kills it.
# It touches only a few guest pages: the VMM's RSS then is almost all its own.
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
    mov $'K', %al
    mov $0x3f8, %dx
    out %al, %dx
    cli
1:  hlt
    jmp 1b
