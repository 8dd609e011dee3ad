/* Prints "spinning" and loops for ever (with interrupts off but never halting), so a test can
 * look at the running VMM's threads. */
.include "common.inc"
.code64
.global _start
_start:
    PUTS msg, msg_len
1:  pause
    jmp 1b
.include "puts.inc"
msg: .ascii "spinning\n"
.set msg_len, . - msg
