/* cmdline.c: boot parameters "key=value" from the multiboot command line. */
#include "uk.h"

#define LINE_MAX 1024

static char line[LINE_MAX];

/* Copied before the heap is set up: the loader leaves the string just past the image, where the heap goes. */
void uk_cmdline_init(const char *cmdline)
{
    usize n = 0;
    if (cmdline)
        while (cmdline[n] && n < LINE_MAX - 1) {
            line[n] = cmdline[n];
            n++;
        }
    line[n] = 0;
}

/* The value of key (not NUL-terminated: *len says how long), or NULL. */
const char *uk_param(const char *key, usize *len)
{
    usize klen = uk_strlen(key);
    const char *p = line;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*p && *p != ' ')
            p++;
        if ((usize)(p - w) > klen && memcmp(w, key, klen) == 0 && w[klen] == '=') {
            *len = (usize)(p - w) - klen - 1;
            return w + klen + 1;
        }
    }
    return UK_NULL;
}

u32 uk_param_u32(const char *key, u32 dflt)
{
    usize len;
    const char *v = uk_param(key, &len);
    if (!v || len == 0 || len > 10)
        return dflt;
    u64 n = 0;
    for (usize i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return dflt;
        n = n * 10 + (u32)(v[i] - '0');
    }
    return n > 0xffffffffu ? dflt : (u32)n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Bytes written, or -1 when the text is not an even number of hex digits fitting cap. */
int uk_hex_decode(const char *hex, usize hexlen, u8 *out, usize cap)
{
    if (hexlen % 2 || hexlen / 2 > cap)
        return -1;
    for (usize i = 0; i < hexlen; i += 2) {
        int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (u8)(hi << 4 | lo);
    }
    return (int)(hexlen / 2);
}
