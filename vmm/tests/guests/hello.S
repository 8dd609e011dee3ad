/* Prints "hello", the number of e820 entries and the command line found through the zero page
 * (proving rsi, boot_params.e820_entries and hdr.cmd_line_ptr), then powers off. */
.include "common.inc"
.code64
.global _start
_start:
    mov r12, rsi                    /* zero page */
    PUTS hello, hello_len
    movzx eax, byte ptr [r12 + 0x1e8]   /* boot_params.e820_entries */
    add al, '0'
    mov dx, COM1
    out dx, al
    PUTS cmd, cmd_len
    mov ebx, [r12 + 0x228]          /* boot_params.hdr.cmd_line_ptr */
    call putz
    PUTS nl, 1
    POWEROFF
    ud2                             /* not reached: the VMM has stopped the VM */
.include "puts.inc"
hello: .ascii "hello from a long-mode guest\ne820="
.set hello_len, . - hello
cmd: .ascii "\ncmdline="
.set cmd_len, . - cmd
nl: .ascii "\n"
