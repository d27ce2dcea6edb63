/* sha256.c: SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104). */
#include "uk.h"

static const u32 K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block(struct uk_sha256 *c, const u8 *p)
{
    u32 w[64], a, b, cc, d, e, f, g, h;
    for (u32 i = 0; i < 16; i++)
        w[i] = (u32)p[4 * i] << 24 | (u32)p[4 * i + 1] << 16 | (u32)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (u32 i = 16; i < 64; i++) {
        u32 s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        u32 s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (u32 i = 0; i < 64; i++) {
        u32 t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        u32 t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g, g = f, f = e, e = d + t1, d = cc, cc = b, b = a, a = t1 + t2;
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d;
    c->h[4] += e, c->h[5] += f, c->h[6] += g, c->h[7] += h;
}

void uk_sha256_init(struct uk_sha256 *c)
{
    static const u32 iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(c->h, iv, sizeof(iv));
    c->total = 0;
    c->used = 0;
}

void uk_sha256_update(struct uk_sha256 *c, const u8 *p, usize n)
{
    c->total += n;
    if (c->used) {
        u32 k = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->buf + c->used, p, k);
        c->used += k, p += k, n -= k;
        if (c->used < 64)
            return;
        block(c, c->buf);
        c->used = 0;
    }
    /* Whole blocks straight from the input: no copy. */
    for (; n >= 64; p += 64, n -= 64)
        block(c, p);
    memcpy(c->buf, p, n);
    c->used = n;
}

void uk_sha256_final(struct uk_sha256 *c, u8 out[32])
{
    u64 bits = c->total * 8;
    /* 0x80, zeros up to 56 bytes into a block, then the length: padded in place. */
    c->buf[c->used++] = 0x80;
    if (c->used > 56) {
        memset(c->buf + c->used, 0, 64 - c->used);
        block(c, c->buf);
        c->used = 0;
    }
    memset(c->buf + c->used, 0, 56 - c->used);
    for (u32 i = 0; i < 8; i++)
        c->buf[56 + i] = (u8)(bits >> (56 - 8 * i));
    block(c, c->buf);
    for (u32 i = 0; i < 8; i++) {
        out[4 * i] = (u8)(c->h[i] >> 24);
        out[4 * i + 1] = (u8)(c->h[i] >> 16);
        out[4 * i + 2] = (u8)(c->h[i] >> 8);
        out[4 * i + 3] = (u8)c->h[i];
    }
}

void uk_hmac_sha256_key(struct uk_hmac_sha256 *h, const u8 *key, usize klen)
{
    u8 k[64], pad[64];
    memset(k, 0, sizeof(k));
    if (klen > 64) {
        uk_sha256_init(&h->inner);
        uk_sha256_update(&h->inner, key, klen);
        uk_sha256_final(&h->inner, k);
    } else {
        memcpy(k, key, klen);
    }
    /* The two padded-key blocks are hashed once per key, not once per message. */
    for (u32 i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    uk_sha256_init(&h->inner);
    uk_sha256_update(&h->inner, pad, 64);
    for (u32 i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    uk_sha256_init(&h->outer);
    uk_sha256_update(&h->outer, pad, 64);
}

void uk_hmac_sha256_mac(const struct uk_hmac_sha256 *h, const u8 *msg, usize mlen, u8 out[32])
{
    struct uk_sha256 c = h->inner;
    u8 inner[32];
    uk_sha256_update(&c, msg, mlen);
    uk_sha256_final(&c, inner);
    c = h->outer;
    uk_sha256_update(&c, inner, 32);
    uk_sha256_final(&c, out);
}

void uk_hmac_sha256(const u8 *key, usize klen, const u8 *msg, usize mlen, u8 out[32])
{
    struct uk_hmac_sha256 h;
    uk_hmac_sha256_key(&h, key, klen);
    uk_hmac_sha256_mac(&h, msg, mlen, out);
}
