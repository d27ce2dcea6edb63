/* wire.c: frame checks, fragment reassembly, replies, and the kernel's own ping and stats. */
#include "uk.h"

#define REASM_SLOTS 4
#define MAX_FRAGS ((UK_MAX_PAYLOAD + UK_FRAG_MAX - 1) / UK_FRAG_MAX)

/* Header fields, little-endian, right after the 14-byte Ethernet header. */
struct hdr {
    u8 version, op;
    u16 flags;
    u32 req_id, total_len, frag_off;
    u16 frag_len, status;
    u32 now;
} __attribute__((packed));

struct slot {
    u8 used, op, peer[6];
    u32 id, total, received, now, age;
    u8 *buf;
    u8 seen[(MAX_FRAGS + 7) / 8];
};

u32 uk_counters[UK_C_COUNT];
static struct slot slots[REASM_SLOTS];
static u32 clock;

static const u8 broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static void drop(enum uk_counter why)
{
    uk_counters[UK_C_DROPPED]++;
    uk_counters[why]++;
}

static void slot_free(struct slot *s)
{
    uk_free(s->buf);
    s->buf = UK_NULL;
    s->used = 0;
}

static void kernel_op(const struct uk_request *req)
{
    if (req->op == UK_OP_PING) {
        char text[48];
        u32 n = 0, id = uk_instance_id;
        for (const char *p = uk_service_name; *p && n < 32; p++)
            text[n++] = *p;
        text[n++] = ' ';
        char digits[10];
        u32 d = 0;
        do {
            digits[d++] = (char)('0' + id % 10);
            id /= 10;
        } while (id);
        while (d)
            text[n++] = digits[--d];
        uk_reply(req, UK_OK, (const u8 *)text, n);
    } else {
        uk_reply(req, UK_OK, (const u8 *)uk_counters, sizeof(uk_counters));
    }
}

static void dispatch(const struct uk_request *req)
{
    uk_counters[UK_C_REQUESTS]++;
    if (req->op == UK_OP_PING || req->op == UK_OP_STATS)
        kernel_op(req);
    else
        svc_handle(req);
}

static struct slot *slot_find(const u8 *peer, u32 id)
{
    for (u32 i = 0; i < REASM_SLOTS; i++)
        if (slots[i].used && slots[i].id == id && memcmp(slots[i].peer, peer, 6) == 0)
            return &slots[i];
    return UK_NULL;
}

/* A free slot, else the least recently touched one: a sender that vanished must not block the others. */
static struct slot *slot_take(void)
{
    struct slot *victim = &slots[0];
    for (u32 i = 0; i < REASM_SLOTS; i++) {
        if (!slots[i].used)
            return &slots[i];
        if (slots[i].age < victim->age)
            victim = &slots[i];
    }
    uk_counters[UK_C_REASSEMBLY_EVICTED]++;
    slot_free(victim);
    return victim;
}

void uk_wire_input(const u8 *frame, u32 len)
{
    if (len < 14) {
        drop(UK_C_DROP_SHORT);
        return;
    }
    const u8 *dst = frame, *src = frame + 6;
    u16 ethertype = (u16)(frame[12] << 8 | frame[13]);
    if (ethertype != UK_ETHERTYPE || (memcmp(dst, uk_mac, 6) != 0 && memcmp(dst, broadcast, 6) != 0)) {
        uk_counters[UK_C_IGNORED]++;    /* not ours (e.g. IPv6 chatter on a tap): not malformed */
        return;
    }
    if (len < 14 + UK_HDR_LEN) {
        drop(UK_C_DROP_SHORT);
        return;
    }
    struct hdr h;
    memcpy(&h, frame + 14, sizeof(h));
    u32 room = len - 14 - UK_HDR_LEN;
    if (h.version != UK_WIRE_VERSION) {
        drop(UK_C_DROP_VERSION);
        return;
    }
    if (h.flags != 0 || h.status != 0) {
        drop(UK_C_DROP_FLAGS);          /* replies and unknown flags are never requests */
        return;
    }
    if (h.total_len > UK_MAX_PAYLOAD) {
        drop(UK_C_DROP_TOO_BIG);
        return;
    }
    if (h.frag_off > h.total_len || h.frag_off % UK_FRAG_MAX != 0) {
        drop(UK_C_DROP_OFFSET);
        return;
    }
    u32 expect = h.total_len - h.frag_off < UK_FRAG_MAX ? h.total_len - h.frag_off : UK_FRAG_MAX;
    if (h.frag_len != expect || h.frag_len > room || (h.frag_off == h.total_len && h.total_len != 0)) {
        drop(UK_C_DROP_LENGTH);
        return;
    }
    const u8 *data = frame + 14 + UK_HDR_LEN;
    struct uk_request req;
    memcpy(req.peer, src, 6);
    req.op = h.op;
    req.id = h.req_id;

    if (h.frag_len == h.total_len) {    /* the whole payload in one frame: no copy */
        req.now = h.now;
        req.data = data;
        req.len = h.total_len;
        dispatch(&req);
        return;
    }
    struct slot *s = slot_find(src, h.req_id);
    if (s && (s->total != h.total_len || s->op != h.op)) {
        drop(UK_C_DROP_INCONSISTENT);
        return;
    }
    if (!s) {
        /* Take the slot first: evicting a stale partial message may free the memory this one needs. */
        s = slot_take();
        u8 *buf = uk_alloc(h.total_len);
        if (!buf) {
            drop(UK_C_DROP_NO_MEMORY);
            return;
        }
        s->used = 1;
        s->op = h.op;
        memcpy(s->peer, src, 6);
        s->id = h.req_id;
        s->total = h.total_len;
        s->received = 0;
        s->now = 0;
        s->buf = buf;
        memset(s->seen, 0, sizeof(s->seen));
    }
    u32 frag = h.frag_off / UK_FRAG_MAX;
    if (s->seen[frag / 8] & (1u << (frag % 8))) {
        drop(UK_C_DROP_DUPLICATE);
        return;
    }
    s->seen[frag / 8] |= (u8)(1u << (frag % 8));
    s->age = ++clock;
    if (h.frag_off == 0)
        s->now = h.now;
    memcpy(s->buf + h.frag_off, data, h.frag_len);
    s->received += h.frag_len;
    if (s->received < s->total)
        return;
    req.now = s->now;
    req.data = s->buf;
    req.len = s->total;
    dispatch(&req);
    slot_free(s);
}

void uk_reply2(const struct uk_request *req, u16 status, const u8 *a, u32 alen, const u8 *b, u32 blen)
{
    u32 total = alen + blen, off = 0;
    do {
        u8 *f = uk_net_tx_begin();
        u32 n = total - off < UK_FRAG_MAX ? total - off : UK_FRAG_MAX;
        memcpy(f, req->peer, 6);
        memcpy(f + 6, uk_mac, 6);
        f[12] = UK_ETHERTYPE >> 8;
        f[13] = UK_ETHERTYPE & 0xff;
        struct hdr h = { UK_WIRE_VERSION, req->op, UK_FLAG_REPLY, req->id, total, off, (u16)n, status, 0 };
        memcpy(f + 14, &h, sizeof(h));
        u8 *p = f + 14 + UK_HDR_LEN;
        for (u32 i = 0; i < n;) {
            u32 pos = off + i, k;
            if (pos < alen) {
                k = alen - pos < n - i ? alen - pos : n - i;
                memcpy(p + i, a + pos, k);
            } else {
                k = n - i;
                memcpy(p + i, b + (pos - alen), k);
            }
            i += k;
        }
        uk_net_tx_commit(14 + UK_HDR_LEN + n);
        off += n;
    } while (off < total);
}

void uk_reply(const struct uk_request *req, u16 status, const u8 *data, u32 len)
{
    uk_reply2(req, status, data, len, UK_NULL, 0);
}
