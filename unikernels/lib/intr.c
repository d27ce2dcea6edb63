/* intr.c: IDT, both 8259 PICs masked, LAPIC enabled, IOAPIC routes device GSIs. */
#include "uk.h"

#define LAPIC 0xfee00000u
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define IOAPIC 0xfec00000u
#define SPURIOUS_VECTOR 0xff

struct idt_entry { u16 off_lo, sel; u8 zero, type; u16 off_hi; } __attribute__((packed));
static struct idt_entry idt[256];

extern const u32 uk_exc_stubs[32];
void uk_isr_nic(void);
void uk_isr_other(void);
void uk_isr_spurious(void);

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void mmio_w(u32 addr, u32 v) { *(volatile u32 *)addr = v; }

static void set_gate(u32 vec, u32 handler)
{
    idt[vec].off_lo = (u16)handler;
    idt[vec].sel = 0x08;
    idt[vec].zero = 0;
    idt[vec].type = 0x8e;   /* present, ring 0, 32-bit interrupt gate */
    idt[vec].off_hi = (u16)(handler >> 16);
}

void uk_exception(u32 vector, u32 error, u32 eip)
{
    uk_printf("uk: exception %u error %x at %x; halting\n", vector, error, eip);
    uk_halt();
}

void uk_intr_init(void)
{
    for (u32 v = 0; v < 256; v++)
        set_gate(v, (u32)uk_isr_other);
    for (u32 v = 0; v < 32; v++)
        set_gate(v, uk_exc_stubs[v]);
    set_gate(UK_NIC_VECTOR, (u32)uk_isr_nic);
    set_gate(SPURIOUS_VECTOR, (u32)uk_isr_spurious);
    struct { u16 limit; u32 base; } __attribute__((packed)) desc = { sizeof(idt) - 1, (u32)idt };
    __asm__ volatile("lidt %0" : : "m"(desc));

    /* LINT0 is masked on microvm, so the 8259 path never reaches the CPU: mask it for good. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    mmio_w(LAPIC + LAPIC_TPR, 0);
    mmio_w(LAPIC + LAPIC_SVR, 0x100 | SPURIOUS_VECTOR);
}

/* Level-triggered, active high, fixed delivery to APIC 0: the virtio-mmio line stays up until acknowledged. */
void uk_ioapic_route(u32 gsi, u8 vector)
{
    mmio_w(IOAPIC, 0x10 + 2 * gsi + 1);
    mmio_w(IOAPIC + 0x10, 0);
    mmio_w(IOAPIC, 0x10 + 2 * gsi);
    mmio_w(IOAPIC + 0x10, (u32)vector | (1u << 15));
}

void uk_lapic_eoi(void)
{
    mmio_w(LAPIC + LAPIC_EOI, 0);
}
