/* With the boot IDT empty (limit 0), an invalid opcode escalates #UD -> #GP -> #DF -> triple
 * fault: KVM_EXIT_SHUTDOWN. */
.include "common.inc"
.code64
.global _start
_start:
    PUTS msg, msg_len
    ud2
.include "puts.inc"
msg: .ascii "faulting\n"
.set msg_len, . - msg
