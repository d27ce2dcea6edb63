/* mem.c: power-of-two size classes carved from a bump heap; freed blocks go back to their class. */
#include "uk.h"

#define MIN_SHIFT 4
#define MAX_SHIFT 22                /* 4 MiB: the largest block anyone asks for */
#define HDR 8                       /* keeps 8-byte alignment of the block body */

static usize heap_next, heap_end;
static void *free_list[MAX_SHIFT + 1];
static usize free_bytes;

void uk_mem_init(usize start, usize end)
{
    heap_next = (start + 15) & ~15u;
    heap_end = end;
}

static u32 class_of(usize n)
{
    u32 s = MIN_SHIFT;
    while (s <= MAX_SHIFT && ((usize)1 << s) < n + HDR)
        s++;
    return s;
}

void *uk_alloc(usize n)
{
    u32 s = class_of(n);
    if (s > MAX_SHIFT)
        return UK_NULL;
    u8 *b = free_list[s];
    usize size = (usize)1 << s;
    if (b) {
        free_list[s] = *(void **)(b + HDR);
        free_bytes -= size;
    } else {
        if (heap_end - heap_next < size)
            return UK_NULL;
        b = (u8 *)heap_next;
        heap_next += size;
    }
    *(u32 *)b = s;
    return b + HDR;
}

void uk_free(void *p)
{
    if (!p)
        return;
    u8 *b = (u8 *)p - HDR;
    u32 s = *(u32 *)b;
    *(void **)p = free_list[s];
    free_list[s] = b;
    free_bytes += (usize)1 << s;
}

usize uk_alloc_size(const void *p)
{
    return (usize)1 << *(const u32 *)((const u8 *)p - HDR);
}

usize uk_mem_free_bytes(void)
{
    return heap_end - heap_next + free_bytes;
}
