/* Pulses the reset line through the i8042 (command 0xfe to port 0x64), as Linux's reboot=k. */
.include "common.inc"
.code64
.global _start
_start:
    PUTS msg, msg_len
    mov al, 0xfe
    out 0x64, al
    ud2
.include "puts.inc"
msg: .ascii "rebooting\n"
.set msg_len, . - msg
