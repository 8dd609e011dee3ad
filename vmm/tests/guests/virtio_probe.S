/* Reads the virtio-mmio identity registers of the first two device windows (0xd0000000 and
 * 0xd0001000) as Linux's virtio_mmio probe does: MagicValue (prints its four bytes, "virt"),
 * Version and DeviceID (printed as digits), then powers off. */
.include "common.inc"
.code64
.global _start
_start:
    mov r12, 0xd0000000
    call probe
    mov r12, 0xd0001000
    call probe
    POWEROFF
    ud2
probe:
    mov eax, [r12]          /* MagicValue */
    mov dx, COM1
    mov ecx, 4
1:  out dx, al
    shr eax, 8
    loop 1b
    mov eax, [r12 + 4]      /* Version */
    add al, '0'
    out dx, al
    mov eax, [r12 + 8]      /* DeviceID */
    add al, '0'
    out dx, al
    mov al, '\n'
    out dx, al
    ret
.include "puts.inc"
