/* A PVH kernel: an ELF whose XEN_ELFNOTE_PHYS32_ENTRY note names `pvh_start`, entered in 32-bit
 * protected mode with paging off and ebx = hvm_start_info. Checks the start info's magic, prints
 * the command line, the memory-map and module counts, the first four bytes of module 0 (the
 * initrd) and the RSDP's signature, reports exit code 7 and powers off. Its ELF entry `_start` is
 * a `ud2`: entering there instead of at the note's address crashes the guest. */
.include "common.inc"
.set EXIT_CODE, 0x3c1
.set XEN_HVM_START_MAGIC, 0x336ec578

.section .note.Xen, "a", @note
    .long 4                         /* namesz */
    .long 4                         /* descsz */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

.text
.code32
.global _start
_start:
    ud2
pvh_start:
    mov esp, OFFSET stack_top       /* PVH provides no stack */
    mov esi, ebx                    /* hvm_start_info */
    cmp dword ptr [esi], XEN_HVM_START_MAGIC
    jne bad_magic
    mov ebx, OFFSET hello
    call putz32
    mov ebx, [esi + 24]             /* cmdline_paddr */
    call putz32
    mov ebx, OFFSET memmap
    call putz32
    mov eax, [esi + 48]             /* memmap_entries */
    call putdigit32
    mov ebx, OFFSET modules
    call putz32
    mov eax, [esi + 12]             /* nr_modules */
    call putdigit32
    cmp dword ptr [esi + 12], 0
    je 1f
    mov ebx, OFFSET initrd
    call putz32
    mov eax, [esi + 16]             /* modlist_paddr */
    mov ebx, [eax]                  /* modlist[0].paddr */
    mov ecx, 4
    call puts32
1:  mov ebx, OFFSET rsdp
    call putz32
    mov ebx, [esi + 32]             /* rsdp_paddr */
    mov ecx, 8
    call puts32
    mov ebx, OFFSET nl
    call putz32
    mov dx, EXIT_CODE
    mov al, 7
    out dx, al
    POWEROFF
    ud2
bad_magic:
    mov ebx, OFFSET no_magic
    call putz32
    POWEROFF
    ud2

/* puts32: ecx bytes at ebx to COM1. putz32: the NUL-terminated string at ebx. putdigit32: al as
 * a decimal digit. */
puts32:
    mov dx, COM1
2:  mov al, [ebx]
    out dx, al
    inc ebx
    loop 2b
    ret
putz32:
    mov dx, COM1
3:  mov al, [ebx]
    test al, al
    jz 4f
    out dx, al
    inc ebx
    jmp 3b
4:  ret
putdigit32:
    add al, '0'
    mov dx, COM1
    out dx, al
    ret

hello: .asciz "hello from a PVH guest\ncmdline="
memmap: .asciz "\nmemmap="
modules: .asciz "\nmodules="
initrd: .asciz "\ninitrd="
rsdp: .asciz "\nrsdp="
no_magic: .asciz "no hvm_start_info magic in ebx\n"
nl: .asciz "\n"
.balign 16
stack: .space 256
stack_top:
