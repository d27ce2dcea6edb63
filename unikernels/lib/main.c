/* main.c: boot order, then the idle loop that halts until the NIC interrupts. */
#include "uk.h"

#define MB_BOOT_MAGIC 0x2BADB002
#define MB_INFO_MEM 0x1
#define MB_INFO_CMDLINE 0x4

struct mb_info { u32 flags, mem_lower, mem_upper, boot_device, cmdline; };

extern u8 __end[];
u32 uk_instance_id;

void uk_halt(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

void uk_main(u32 magic, const struct mb_info *mbi)
{
    uk_console_init();
    if (magic != MB_BOOT_MAGIC) {
        uk_puts("uk: not booted by a multiboot loader\n");
        uk_halt();
    }
    uk_cmdline_init((mbi->flags & MB_INFO_CMDLINE) ? (const char *)mbi->cmdline : UK_NULL);
    u32 top = (mbi->flags & MB_INFO_MEM) ? 0x100000 + mbi->mem_upper * 1024 : 0x400000;
    uk_mem_init((usize)__end, top);
    uk_instance_id = uk_param_u32("id", 0);
    uk_intr_init();
    if (uk_net_init() < 0) {
        uk_puts("uk: no virtio-net device found; halting\n");
        uk_halt();
    }
    svc_init();
    uk_printf("uk: %s id=%u mac=%02x:%02x:%02x:%02x:%02x:%02x mem=%uK ready\n", uk_service_name,
              uk_instance_id, uk_mac[0], uk_mac[1], uk_mac[2], uk_mac[3], uk_mac[4], uk_mac[5],
              (u32)(uk_mem_free_bytes() / 1024));
    for (;;) {
        uk_net_poll();
        /* sti takes effect after the next instruction, so no interrupt slips between the check and hlt. */
        __asm__ volatile("cli");
        uk_net_arm();
        if (uk_net_pending())
            __asm__ volatile("sti");
        else
            __asm__ volatile("sti; hlt");
    }
}
