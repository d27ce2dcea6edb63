/* console.c: logging on COM1 (port 0x3f8), polled. */
#include "uk.h"
#include <stdarg.h>

#define COM1 0x3f8

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

void uk_console_init(void)
{
    outb(COM1 + 1, 0x00);   /* no UART interrupts */
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0xc7);
}

static void putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (u8)c);
}

void uk_puts(const char *s)
{
    while (*s)
        putc(*s++);
}

static void put_u(u32 v, u32 base, int width)
{
    char tmp[12];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n < width)
        tmp[n++] = '0';
    while (n)
        putc(tmp[--n]);
}

/* %s %u %d %x %02x %c: all the kernel needs. */
void uk_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            putc(*fmt);
            continue;
        }
        int width = 0;
        fmt++;
        if (*fmt == '0')
            fmt++;
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        switch (*fmt) {
        case 's': uk_puts(va_arg(ap, const char *)); break;
        case 'u': put_u(va_arg(ap, u32), 10, width); break;
        case 'x': put_u(va_arg(ap, u32), 16, width); break;
        case 'c': putc((char)va_arg(ap, int)); break;
        case 'd': {
            i32 v = va_arg(ap, i32);
            if (v < 0) {
                putc('-');
                v = -v;
            }
            put_u((u32)v, 10, width);
            break;
        }
        default: putc(*fmt ? *fmt : '%'); if (!*fmt) fmt--; break;
        }
    }
    va_end(ap);
}
