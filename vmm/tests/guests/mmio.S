/* Writes to and reads from an MMIO address no device claims (inside the 32-bit MMIO gap,
 * identity-mapped by the boot page tables). The VMM logs both and the guest continues; an
 * unclaimed read returns all ones. */
.include "common.inc"
.code64
.global _start
_start:
    mov rax, 0xd0000000
    mov dword ptr [rax], 0x12345678
    PUTS after, after_len
    mov rax, 0xd0000000
    mov eax, [rax]
    cmp eax, 0xffffffff
    jne 1f
    PUTS ones, ones_len
1:  POWEROFF
    ud2
.include "puts.inc"
after: .ascii "after mmio write\n"
.set after_len, . - after
ones: .ascii "mmio read all ones\n"
.set ones_len, . - ones
