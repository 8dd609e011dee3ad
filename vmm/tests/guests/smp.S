/* Two vCPUs. The boot vCPU copies a real-mode trampoline to 0x10000, starts vCPU 1 with
 * INIT + STARTUP IPIs (vector 0x10) through its local APIC, and waits for the application
 * processor to set a flag; the AP prints from real mode, sets the flag and halts. Then the boot
 * vCPU powers off. */
.include "common.inc"
.set TRAMPOLINE, 0x10000
.set FLAG, 0x10ff0
.set LAPIC, 0xfee00000
.code64
.global _start
_start:
    PUTS bsp, bsp_len
    lea rsi, [rip + ap_start]
    mov edi, TRAMPOLINE
    mov ecx, OFFSET ap_end - ap_start
    rep movsb
    mov byte ptr [FLAG], 0
    mov rax, LAPIC
    mov dword ptr [rax + 0xf0], 0x1ff         /* SVR: APIC software-enabled */
    mov dword ptr [rax + 0x310], 1 << 24      /* ICR high: destination APIC id 1 */
    mov dword ptr [rax + 0x300], 0x4500       /* ICR low: INIT, assert */
    mov dword ptr [rax + 0x310], 1 << 24
    mov dword ptr [rax + 0x300], 0x4610       /* STARTUP, vector 0x10 -> 0x10000 */
1:  pause
    cmp byte ptr [FLAG], 1
    jne 1b
    PUTS seen, seen_len
    POWEROFF
    ud2
.include "puts.inc"

/* Position-independent 16-bit code: runs at CS=0x1000, IP=0. */
.code16
ap_start:
    cli
    mov dx, COM1
    mov al, 'a'
    out dx, al
    mov al, 'p'
    out dx, al
    mov al, '\n'
    out dx, al
    mov ax, TRAMPOLINE >> 4
    mov ds, ax
    mov byte ptr [FLAG - TRAMPOLINE], 1
2:  hlt
    jmp 2b
ap_end:

.code64
bsp: .ascii "bsp\n"
.set bsp_len, . - bsp
seen: .ascii "bsp saw ap\n"
.set seen_len, . - seen
