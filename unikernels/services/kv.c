/* kv.c: an in-memory key-value cache with per-entry TTL and a memory cap enforced by LRU eviction. */
#include "uk.h"

#define BUCKETS 4096
#define KEY_MAX 1024
#define DEFAULT_CAP (4u << 20)

const char uk_service_name[] = "kv";

struct entry {
    struct entry *chain, *newer, *older;
    u32 hash, expires;          /* expires: unix seconds, 0 = never */
    u32 vlen;
    u16 klen;
    u8 data[];                  /* key, then value */
};

static struct entry *table[BUCKETS];
static struct entry *newest, *oldest;
static u32 cap;

#define N_ENTRIES uk_counters[UK_C_SVC0]
#define N_BYTES uk_counters[UK_C_SVC1]
#define N_EVICTED uk_counters[UK_C_SVC2]
#define N_EXPIRED uk_counters[UK_C_SVC3]

static u32 fnv1a(const u8 *p, u32 n)
{
    u32 h = 2166136261u;
    while (n--)
        h = (h ^ *p++) * 16777619u;
    return h;
}

static void lru_unlink(struct entry *e)
{
    if (e->newer) e->newer->older = e->older; else newest = e->older;
    if (e->older) e->older->newer = e->newer; else oldest = e->newer;
}

static void lru_push(struct entry *e)
{
    e->newer = UK_NULL;
    e->older = newest;
    if (newest) newest->newer = e; else oldest = e;
    newest = e;
}

static struct entry **find(const u8 *key, u32 klen, u32 hash)
{
    struct entry **pp = &table[hash % BUCKETS];
    for (; *pp; pp = &(*pp)->chain)
        if ((*pp)->hash == hash && (*pp)->klen == klen && memcmp((*pp)->data, key, klen) == 0)
            return pp;
    return pp;
}

static void remove(struct entry **pp)
{
    struct entry *e = *pp;
    *pp = e->chain;
    lru_unlink(e);
    N_ENTRIES--;
    N_BYTES -= uk_alloc_size(e);
    uk_free(e);
}

static void evict_oldest(void)
{
    struct entry *e = oldest;
    remove(find(e->data, e->klen, e->hash));
    N_EVICTED++;
}

void svc_init(void)
{
    cap = uk_param_u32("cap", DEFAULT_CAP);
    uk_printf("uk: kv cap=%u bytes\n", cap);
}

static void put(const struct uk_request *req)
{
    if (req->len < 6) {
        uk_reply(req, UK_BAD_REQUEST, UK_NULL, 0);
        return;
    }
    u32 ttl = (u32)req->data[0] | (u32)req->data[1] << 8 | (u32)req->data[2] << 16 | (u32)req->data[3] << 24;
    u32 klen = (u32)req->data[4] | (u32)req->data[5] << 8;
    if (klen == 0 || klen > KEY_MAX || klen > req->len - 6) {
        uk_reply(req, UK_BAD_REQUEST, UK_NULL, 0);
        return;
    }
    const u8 *key = req->data + 6;
    u32 vlen = req->len - 6 - klen;
    u32 size = sizeof(struct entry) + klen + vlen;
    u32 hash = fnv1a(key, klen);
    struct entry **pp = find(key, klen, hash);
    if (*pp)
        remove(pp);
    /* The cap counts whole allocator blocks, the memory an entry really holds. */
    u32 block = uk_alloc_block(size);
    if (!block || block > cap) {
        uk_reply(req, UK_TOO_LARGE, UK_NULL, 0);
        return;
    }
    while (oldest && N_BYTES + block > cap)
        evict_oldest();
    struct entry *e;
    while (!(e = uk_alloc(size)) && oldest)
        evict_oldest();
    if (!e) {
        uk_reply(req, UK_NO_MEMORY, UK_NULL, 0);
        return;
    }
    e->hash = hash;
    e->expires = ttl ? req->now + ttl : 0;
    e->klen = (u16)klen;
    e->vlen = vlen;
    memcpy(e->data, key, klen + vlen);
    pp = find(key, klen, hash);
    e->chain = UK_NULL;
    *pp = e;
    lru_push(e);
    N_ENTRIES++;
    N_BYTES += uk_alloc_size(e);
    uk_reply(req, UK_OK, UK_NULL, 0);
}

void svc_handle(const struct uk_request *req)
{
    if (req->op == UK_OP_KV_PUT) {
        put(req);
        return;
    }
    if (req->op != UK_OP_KV_GET && req->op != UK_OP_KV_DELETE) {
        uk_reply(req, UK_UNKNOWN_OP, UK_NULL, 0);
        return;
    }
    if (req->len == 0 || req->len > KEY_MAX) {
        uk_reply(req, UK_BAD_REQUEST, UK_NULL, 0);
        return;
    }
    struct entry **pp = find(req->data, req->len, fnv1a(req->data, req->len));
    struct entry *e = *pp;
    if (e && e->expires && req->now >= e->expires) {
        remove(pp);
        N_EXPIRED++;
        e = UK_NULL;
    }
    if (!e) {
        uk_reply(req, UK_NOT_FOUND, UK_NULL, 0);
    } else if (req->op == UK_OP_KV_DELETE) {
        remove(pp);
        uk_reply(req, UK_OK, UK_NULL, 0);
    } else {
        lru_unlink(e);
        lru_push(e);
        uk_reply(req, UK_OK, e->data + e->klen, e->vlen);
    }
}
