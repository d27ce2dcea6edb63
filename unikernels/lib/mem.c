/* mem.c: size classes carved from a bump heap; a freed block goes back to its class's free list.
   Powers of two up to 64 KiB, then 64 KiB steps, so a 1 MiB reassembly buffer does not take 2 MiB. */
#include "uk.h"

#define SMALL_CLASSES 13            /* 16 B .. 64 KiB */
#define BIG_STEP 65536u
#define NCLASSES (SMALL_CLASSES + 64)   /* then 128 KiB .. 4 MiB + 64 KiB */
#define HDR 8                       /* the class number; keeps the body 8-byte aligned */

static usize heap_next, heap_end;
static void *free_list[NCLASSES];
static usize free_bytes;

void uk_mem_init(usize start, usize end)
{
    heap_next = (start + 15) & ~15u;
    heap_end = end;
}

static usize class_size(u32 c)
{
    return c < SMALL_CLASSES ? (usize)16 << c : (usize)(c - SMALL_CLASSES + 2) * BIG_STEP;
}

static u32 class_of(usize n)
{
    if (n > (4u << 20))
        return NCLASSES;
    n += HDR;
    if (n <= BIG_STEP) {
        u32 c = 0;
        while (((usize)16 << c) < n)
            c++;
        return c;
    }
    return SMALL_CLASSES + (n + BIG_STEP - 1) / BIG_STEP - 2;
}

usize uk_alloc_block(usize n)
{
    u32 c = class_of(n);
    return c < NCLASSES ? class_size(c) : 0;
}

void *uk_alloc(usize n)
{
    u32 c = class_of(n);
    if (c >= NCLASSES)
        return UK_NULL;
    u8 *b = free_list[c];
    usize size = class_size(c);
    if (b) {
        free_list[c] = *(void **)(b + HDR);
        free_bytes -= size;
    } else {
        if (heap_end - heap_next < size)
            return UK_NULL;
        b = (u8 *)heap_next;
        heap_next += size;
    }
    *(u32 *)b = c;
    return b + HDR;
}

void uk_free(void *p)
{
    if (!p)
        return;
    u8 *b = (u8 *)p - HDR;
    u32 c = *(u32 *)b;
    *(void **)p = free_list[c];
    free_list[c] = b;
    free_bytes += class_size(c);
}

usize uk_alloc_size(const void *p)
{
    return class_size(*(const u32 *)((const u8 *)p - HDR));
}

usize uk_mem_free_bytes(void)
{
    return heap_end - heap_next + free_bytes;
}
