/* Reads the pvpanic port's capabilities (prints them as a digit), then reports a panic there the
 * way Linux's pvpanic driver does on panic(). The VMM must stop the VM with the panic exit
 * status, before the guest reaches the poweroff after it. */
.include "common.inc"
.set PVPANIC, 0x505
.code64
.global _start
_start:
    mov dx, PVPANIC
    in al, dx
    add al, '0'
    mov dx, COM1
    out dx, al
    PUTS nl, 1
    mov dx, PVPANIC
    mov al, 1                       /* PVPANIC_PANICKED */
    out dx, al
    POWEROFF                        /* not reached */
    ud2
.include "puts.inc"
nl: .ascii "\n"
