/* Prints the initrd found through boot_params.hdr.ramdisk_image/ramdisk_size, then powers off. */
.include "common.inc"
.code64
.global _start
_start:
    mov ebx, [rsi + 0x218]          /* hdr.ramdisk_image */
    mov ecx, [rsi + 0x21c]          /* hdr.ramdisk_size */
    test ecx, ecx
    jz 1f
    call puts
1:  POWEROFF
    ud2
.include "puts.inc"
