/* virtio_net.c: probe the microvm virtio-mmio slots, drive a legacy (version 1) virtio-net device. */
#include "uk.h"

#define MMIO_BASE 0xfeb00000u
#define MMIO_STRIDE 0x200u
#define MMIO_SLOTS 8
#define MMIO_FIRST_GSI 5            /* microvm,acpi=off: slot i raises GSI 5+i */
#define VIRT_MAGIC 0x74726976       /* "virt" */

enum {
    R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE = 0x008, R_HOST_FEATURES = 0x010,
    R_HOST_FEATURES_SEL = 0x014, R_GUEST_FEATURES = 0x020, R_GUEST_FEATURES_SEL = 0x024,
    R_GUEST_PAGE_SIZE = 0x028, R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038,
    R_QUEUE_ALIGN = 0x03c, R_QUEUE_PFN = 0x040, R_QUEUE_NOTIFY = 0x050, R_INT_STATUS = 0x060,
    R_INT_ACK = 0x064, R_STATUS = 0x070, R_CONFIG = 0x100,
};

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define F_MAC (1u << 5)
#define F_MRG_RXBUF (1u << 15)
#define DESC_F_WRITE 2
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1
#define QSIZE 256
#define PAGE 4096
#define BUF_SIZE 1536               /* header (10 or 12) + a 1514-byte frame */

struct desc { u64 addr; u32 len; u16 flags, next; };
struct avail { u16 flags, idx, ring[QSIZE], used_event; };
struct used_elem { u32 id, len; };
struct used { u16 flags, idx; struct used_elem ring[QSIZE]; u16 avail_event; };

struct queue {
    struct desc *desc;
    struct avail *avail;
    volatile struct used *used;
    u16 num, last_used;
    u8 *bufs;
};

/* Legacy layout: descriptors and avail ring, then the used ring on the next page boundary. */
#define QBYTES (((16 * QSIZE + 6 + 2 * QSIZE + PAGE - 1) & ~(PAGE - 1)) + ((6 + 8 * QSIZE + PAGE - 1) & ~(PAGE - 1)))
static u8 ring_mem[2][QBYTES] __attribute__((aligned(PAGE)));

static u32 base;
static u32 hdr_len;
static struct queue rxq, txq;
static u16 tx_free[QSIZE];
static u32 tx_nfree, tx_unkicked;
static u16 tx_cur;
u8 uk_mac[6];

static inline u32 rd(u32 off) { return *(volatile u32 *)(base + off); }
static inline void wr(u32 off, u32 v) { *(volatile u32 *)(base + off) = v; }
static inline u8 rd8(u32 off) { return *(volatile u8 *)(base + off); }

static int queue_setup(u32 index, struct queue *q)
{
    wr(R_QUEUE_SEL, index);
    u32 max = rd(R_QUEUE_NUM_MAX);
    if (max < QSIZE)
        return -1;              /* our ring arrays are sized for QSIZE */
    q->num = QSIZE;
    u8 *mem = ring_mem[index];
    q->desc = (struct desc *)mem;
    q->avail = (struct avail *)(mem + 16 * QSIZE);
    q->used = (volatile struct used *)(mem + ((16 * QSIZE + 6 + 2 * QSIZE + PAGE - 1) & ~(PAGE - 1)));
    q->bufs = uk_alloc(QSIZE * BUF_SIZE);
    if (!q->bufs)
        return -1;
    for (u32 i = 0; i < QSIZE; i++) {
        q->desc[i].addr = (u32)(q->bufs + i * BUF_SIZE);
        q->desc[i].len = BUF_SIZE;
        q->desc[i].flags = 0;
        q->desc[i].next = 0;
    }
    wr(R_QUEUE_NUM, QSIZE);
    wr(R_QUEUE_ALIGN, PAGE);
    wr(R_QUEUE_PFN, (u32)mem / PAGE);
    return 0;
}

static void mac_from_cmdline(void)
{
    usize len;
    const char *v = uk_param("mac", &len);
    u8 m[6];
    if (!v || len != 17)
        return;
    char hex[12];
    for (u32 i = 0; i < 6; i++) {
        if (i < 5 && v[i * 3 + 2] != ':')
            return;
        hex[2 * i] = v[i * 3];
        hex[2 * i + 1] = v[i * 3 + 1];
    }
    if (uk_hex_decode(hex, 12, m, 6) == 6)
        memcpy(uk_mac, m, 6);
}

int uk_net_init(void)
{
    u32 slot;
    for (slot = 0; slot < MMIO_SLOTS; slot++) {
        base = MMIO_BASE + slot * MMIO_STRIDE;
        if (rd(R_MAGIC) == VIRT_MAGIC && rd(R_DEVICE) == 1)
            break;
    }
    if (slot == MMIO_SLOTS)
        return -1;
    if (rd(R_VERSION) != 1) {
        uk_printf("uk: virtio-mmio version %u not supported (legacy only)\n", rd(R_VERSION));
        return -1;
    }
    wr(R_STATUS, 0);
    wr(R_STATUS, S_ACK);
    wr(R_STATUS, S_ACK | S_DRIVER);
    wr(R_HOST_FEATURES_SEL, 0);
    u32 features = rd(R_HOST_FEATURES) & F_MAC;
    wr(R_GUEST_FEATURES_SEL, 0);
    wr(R_GUEST_FEATURES, features);
    /* The header grows by num_buffers only when mergeable RX buffers are negotiated (legacy devices). */
    hdr_len = (features & F_MRG_RXBUF) ? 12 : 10;
    wr(R_GUEST_PAGE_SIZE, PAGE);
    if (queue_setup(0, &rxq) < 0 || queue_setup(1, &txq) < 0)
        return -1;
    if (features & F_MAC)
        for (u32 i = 0; i < 6; i++)
            uk_mac[i] = rd8(R_CONFIG + i);
    mac_from_cmdline();

    for (u32 i = 0; i < QSIZE; i++) {
        rxq.desc[i].flags = DESC_F_WRITE;
        rxq.avail->ring[i] = (u16)i;
    }
    uk_barrier();
    rxq.avail->idx = QSIZE;
    /* TX completions are reclaimed lazily, so they need no interrupt. */
    txq.avail->flags = AVAIL_F_NO_INTERRUPT;
    for (u32 i = 0; i < QSIZE; i++)
        tx_free[i] = (u16)(QSIZE - 1 - i);
    tx_nfree = QSIZE;

    uk_ioapic_route(MMIO_FIRST_GSI + slot, UK_NIC_VECTOR);
    wr(R_STATUS, S_ACK | S_DRIVER | S_DRIVER_OK);
    wr(R_QUEUE_NOTIFY, 0);
    return 0;
}

void uk_net_irq(void)
{
    u32 isr = rd(R_INT_STATUS);
    wr(R_INT_ACK, isr);
    uk_lapic_eoi();
}

int uk_net_pending(void)
{
    return rxq.used->idx != rxq.last_used;
}

/* Called with interrupts off just before halting: ask for an RX interrupt again. */
void uk_net_arm(void)
{
    rxq.avail->flags = 0;
    __sync_synchronize();   /* the device must see the flag before we look at used->idx */
}

void uk_net_poll(void)
{
    u32 n = 0;
    /* While frames keep coming we poll the ring: no interrupt per frame (as NAPI does). */
    rxq.avail->flags = AVAIL_F_NO_INTERRUPT;
    while (rxq.used->idx != rxq.last_used) {
        uk_barrier();
        volatile struct used_elem *e = &rxq.used->ring[rxq.last_used % QSIZE];
        u32 id = e->id, len = e->len;
        if (id < QSIZE && len >= hdr_len && len <= BUF_SIZE) {
            uk_counters[UK_C_RX_FRAMES]++;
            uk_wire_input(rxq.bufs + id * BUF_SIZE + hdr_len, len - hdr_len);
        }
        rxq.avail->ring[rxq.avail->idx % QSIZE] = (u16)(id % QSIZE);
        uk_barrier();
        rxq.avail->idx++;
        rxq.last_used++;
        n++;
    }
    /* One notification per batch of replies, not per frame: each is a trap into QEMU. */
    uk_net_tx_kick();
    if (n) {
        __sync_synchronize();
        if (!(rxq.used->flags & USED_F_NO_NOTIFY))
            wr(R_QUEUE_NOTIFY, 0);
    }
}

static void tx_reclaim(void)
{
    while (txq.used->idx != txq.last_used) {
        uk_barrier();
        tx_free[tx_nfree++] = (u16)(txq.used->ring[txq.last_used % QSIZE].id % QSIZE);
        txq.last_used++;
    }
}

u8 *uk_net_tx_begin(void)
{
    tx_reclaim();
    if (!tx_nfree) {
        uk_net_tx_kick();
        while (!tx_nfree) {
            __asm__ volatile("pause");
            tx_reclaim();
        }
    }
    tx_cur = tx_free[--tx_nfree];
    u8 *b = txq.bufs + tx_cur * BUF_SIZE;
    memset(b, 0, hdr_len);
    return b + hdr_len;
}

void uk_net_tx_commit(u32 len)
{
    txq.desc[tx_cur].len = hdr_len + len;
    txq.avail->ring[txq.avail->idx % QSIZE] = tx_cur;
    uk_barrier();
    txq.avail->idx++;
    tx_unkicked++;
    uk_counters[UK_C_TX_FRAMES]++;
}

void uk_net_tx_kick(void)
{
    if (!tx_unkicked)
        return;
    tx_unkicked = 0;
    __sync_synchronize();
    if (!(txq.used->flags & USED_F_NO_NOTIFY))
        wr(R_QUEUE_NOTIFY, 1);
}
