/* boot.S: multiboot header, entry, GDT, interrupt stubs. */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000002     /* bit 1: give us the memory map fields */

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .section .text
    .global _start
_start:
    cli
    mov $uk_stack_top, %esp
    mov %eax, %esi
    mov %ebx, %ebp
    /* The multiboot spec leaves the GDT undefined: load a flat one of our own. */
    lgdt gdt_desc
    ljmp $0x08, $1f
1:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    /* Zero .bss: the loader is not required to. */
    cld
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    push %ebp
    push %esi
    call uk_main
2:  cli
    hlt
    jmp 2b

    .section .rodata
    .align 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08: code, flat 4 GiB */
    .quad 0x00cf92000000ffff    /* 0x10: data, flat 4 GiB */
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt

/* Exceptions: push the vector (and a dummy error code where the CPU pushes none), then report and stop. */
    .section .text
#define EXC_NOERR(n) exc_##n: push $0; push $n; jmp exc_common
#define EXC_ERR(n)   exc_##n: push $n; jmp exc_common
EXC_NOERR(0)
EXC_NOERR(1)
EXC_NOERR(2)
EXC_NOERR(3)
EXC_NOERR(4)
EXC_NOERR(5)
EXC_NOERR(6)
EXC_NOERR(7)
EXC_ERR(8)
EXC_NOERR(9)
EXC_ERR(10)
EXC_ERR(11)
EXC_ERR(12)
EXC_ERR(13)
EXC_ERR(14)
EXC_NOERR(15)
EXC_NOERR(16)
EXC_ERR(17)
EXC_NOERR(18)
EXC_NOERR(19)
EXC_NOERR(20)
EXC_NOERR(21)
EXC_NOERR(22)
EXC_NOERR(23)
EXC_NOERR(24)
EXC_NOERR(25)
EXC_NOERR(26)
EXC_NOERR(27)
EXC_NOERR(28)
EXC_NOERR(29)
EXC_ERR(30)
EXC_NOERR(31)

exc_common:
    call uk_exception       /* (vector, error, eip) on the stack; never returns */

    .global uk_isr_nic
uk_isr_nic:
    pushal
    cld
    call uk_net_irq
    popal
    iret

    .global uk_isr_other
uk_isr_other:
    pushal
    call uk_lapic_eoi
    popal
    iret

    .global uk_isr_spurious
uk_isr_spurious:
    iret                    /* the LAPIC wants no EOI for its spurious vector */

    .section .rodata
    .align 4
    .global uk_exc_stubs
uk_exc_stubs:
    .long exc_0, exc_1, exc_2, exc_3, exc_4, exc_5, exc_6, exc_7
    .long exc_8, exc_9, exc_10, exc_11, exc_12, exc_13, exc_14, exc_15
    .long exc_16, exc_17, exc_18, exc_19, exc_20, exc_21, exc_22, exc_23
    .long exc_24, exc_25, exc_26, exc_27, exc_28, exc_29, exc_30, exc_31

    .section .bss
    .align 16
    .space 32768
uk_stack_top:
    .section .note.GNU-stack, "", @progbits
