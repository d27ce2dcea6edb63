/* uk.h: the one internal header of the unikernel library, sectioned by the file implementing each part. */
#ifndef UK_H
#define UK_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int i32;
typedef long long i64;
typedef unsigned int usize;

#define UK_NULL ((void *)0)
#define uk_barrier() __asm__ volatile("" ::: "memory")

/* lib/string.c */
void *memcpy(void *dst, const void *src, usize n);
void *memset(void *dst, int c, usize n);
void *memmove(void *dst, const void *src, usize n);
int memcmp(const void *a, const void *b, usize n);
usize uk_strlen(const char *s);
int uk_streq(const char *a, const char *b);

/* lib/console.c: COM1 */
void uk_console_init(void);
void uk_puts(const char *s);
void uk_printf(const char *fmt, ...);

/* lib/mem.c: size classes on top of a bump heap */
void uk_mem_init(usize start, usize end);
void *uk_alloc(usize n);
void uk_free(void *p);
usize uk_alloc_size(const void *p);
usize uk_alloc_block(usize n);     /* the block uk_alloc(n) would take; 0 if too big */
usize uk_mem_free_bytes(void);

/* lib/cmdline.c: "image key=value ..." from the multiboot command line */
void uk_cmdline_init(const char *cmdline);
const char *uk_param(const char *key, usize *len);
u32 uk_param_u32(const char *key, u32 dflt);
int uk_hex_decode(const char *hex, usize hexlen, u8 *out, usize cap);

/* lib/intr.c: IDT, PICs masked, LAPIC, IOAPIC */
void uk_intr_init(void);
void uk_ioapic_route(u32 gsi, u8 vector);
void uk_lapic_eoi(void);
#define UK_NIC_VECTOR 0x30

/* lib/virtio_net.c: legacy virtio-mmio network device */
int uk_net_init(void);
extern u8 uk_mac[6];
int uk_net_pending(void);
void uk_net_arm(void);
void uk_net_poll(void);
u8 *uk_net_tx_begin(void);          /* a frame buffer of UK_FRAME_MAX bytes */
void uk_net_tx_commit(u32 len);
void uk_net_tx_kick(void);
void uk_net_irq(void);
#define UK_FRAME_MAX 1514

/* lib/wire.c: the frame protocol of PROTOCOL.md */
#define UK_ETHERTYPE 0x88B5
#define UK_WIRE_VERSION 1
#define UK_HDR_LEN 24
#define UK_FRAG_MAX (UK_FRAME_MAX - 14 - UK_HDR_LEN)
#define UK_MAX_PAYLOAD (1u << 20)
#define UK_FLAG_REPLY 1

enum uk_op {
    UK_OP_PING = 0x01,      /* answered by the kernel: "<service> <id>" */
    UK_OP_STATS = 0x02,     /* answered by the kernel: u32 counters */
    UK_OP_ECHO = 0x10,
    UK_OP_KV_GET = 0x20,
    UK_OP_KV_PUT = 0x21,
    UK_OP_KV_DELETE = 0x22,
    UK_OP_STATIC_GET = 0x30,
    UK_OP_AUTH_VERIFY = 0x40,
    UK_OP_AUTH_SETKEY = 0x41,
    UK_OP_WEBHOOK_VERIFY = 0x50,
    UK_OP_WEBHOOK_SETKEY = 0x51,
};

enum uk_status {
    UK_OK = 0,
    UK_NOT_FOUND = 1,
    UK_BAD_REQUEST = 2,     /* payload does not parse for this operation */
    UK_TOO_LARGE = 3,       /* does not fit the worker's limits */
    UK_UNKNOWN_OP = 4,      /* this service has no such operation */
    UK_NO_MEMORY = 5,
    UK_UNAUTHORIZED = 6,    /* token malformed or signature wrong */
    UK_EXPIRED = 7,         /* now >= exp */
    UK_NOT_YET_VALID = 8,   /* now < nbf */
    UK_NO_KEY = 9,          /* auth or webhook has no key yet */
    UK_NOT_MODIFIED = 10,   /* static: If-None-Match matched */
};

/* Counters returned by UK_OP_STATS, in this order (PROTOCOL.md lists them). */
enum uk_counter {
    UK_C_RX_FRAMES, UK_C_TX_FRAMES, UK_C_REQUESTS, UK_C_IGNORED,
    UK_C_DROPPED, UK_C_DROP_SHORT, UK_C_DROP_VERSION, UK_C_DROP_FLAGS,
    UK_C_DROP_LENGTH, UK_C_DROP_TOO_BIG, UK_C_DROP_OFFSET, UK_C_DROP_DUPLICATE,
    UK_C_DROP_INCONSISTENT, UK_C_DROP_NO_MEMORY, UK_C_REASSEMBLY_EVICTED, UK_C_SVC0,
    UK_C_SVC1, UK_C_SVC2, UK_C_SVC3, UK_C_COUNT
};
extern u32 uk_counters[UK_C_COUNT];

struct uk_request {
    u8 peer[6];
    u8 op;
    u32 id;
    u32 now;                /* the host's unix time in seconds, from the frame at offset 0 */
    const u8 *data;
    u32 len;
};

void uk_wire_input(const u8 *frame, u32 len);
void uk_reply(const struct uk_request *req, u16 status, const u8 *data, u32 len);
/* A reply assembled from two pieces (e.g. a header and a body) without copying them together. */
void uk_reply2(const struct uk_request *req, u16 status, const u8 *a, u32 alen, const u8 *b, u32 blen);

/* lib/sha256.c */
struct uk_sha256 { u32 h[8]; u64 total; u8 buf[64]; u32 used; };
void uk_sha256_init(struct uk_sha256 *c);
void uk_sha256_update(struct uk_sha256 *c, const u8 *p, usize n);
void uk_sha256_final(struct uk_sha256 *c, u8 out[32]);
void uk_hmac_sha256(const u8 *key, usize klen, const u8 *msg, usize mlen, u8 out[32]);
/* HMAC with the key's padded blocks hashed once (uk_hmac_sha256_key), for many messages. */
struct uk_hmac_sha256 { struct uk_sha256 inner, outer; };
void uk_hmac_sha256_key(struct uk_hmac_sha256 *h, const u8 *key, usize klen);
void uk_hmac_sha256_mac(const struct uk_hmac_sha256 *h, const u8 *msg, usize mlen, u8 out[32]);

/* lib/hmac_key.c: a keyed service's key (at most UK_KEY_MAX bytes); each returns whether one was set.
 * The request form answers the SETKEY request itself. */
#define UK_KEY_MAX 256
int uk_hmac_key_from_param(struct uk_hmac_sha256 *h);
int uk_hmac_key_from_request(const struct uk_request *req, struct uk_hmac_sha256 *h);

/* services/<name>.c: each service provides these */
extern const char uk_service_name[];
void svc_init(void);
void svc_handle(const struct uk_request *req);

/* lib/main.c */
extern u32 uk_instance_id;
void uk_halt(void) __attribute__((noreturn));

#endif
