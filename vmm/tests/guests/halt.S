/* Halts with interrupts disabled: nothing can ever wake the vCPU, the VMM must call it a crash. */
.include "common.inc"
.code64
.global _start
_start:
    PUTS msg, msg_len
    cli
    hlt
    ud2
.include "puts.inc"
msg: .ascii "halting\n"
.set msg_len, . - msg
