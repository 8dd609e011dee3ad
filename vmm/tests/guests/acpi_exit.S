/* Finds the ACPI RSDP the way Linux does (boot_params.acpi_rsdp_addr, then the "RSD PTR "
 * signature at that address), prints the signature and the OEM id, follows the XSDT's first
 * entry to the FADT and prints its signature, reports exit code 42 on the exit-code port and
 * powers off through the sleep control register. */
.include "common.inc"
.set EXIT_CODE, 0x3c1
.code64
.global _start
_start:
    mov r12, rsi                    /* zero page */
    mov rbx, [r12 + 0x70]           /* boot_params.acpi_rsdp_addr */
    mov r13, rbx
    mov ecx, 8
    call puts                       /* "RSD PTR " */
    lea rbx, [r13 + 9]              /* RSDP.oem_id */
    mov ecx, 6
    call puts
    PUTS nl, 1
    mov rax, [r13 + 24]             /* RSDP.xsdt_address */
    mov rbx, [rax + 36]             /* XSDT.entry[0] = FADT */
    mov ecx, 4
    call puts                       /* "FACP" */
    PUTS nl, 1
    mov dx, EXIT_CODE
    mov al, 42
    out dx, al
    POWEROFF
    ud2
.include "puts.inc"
nl: .ascii "\n"
