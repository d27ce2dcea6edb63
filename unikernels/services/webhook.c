/* webhook.c: checks a request body's HMAC-SHA256 signature, as GitHub's X-Hub-Signature-256 carries it. */
#include "uk.h"

#define PREFIX "sha256="
#define PREFIX_LEN 7
#define SIG_HEX 64

const char uk_service_name[] = "webhook";

static struct uk_hmac_sha256 hkey;     /* lib/hmac_key.c */
static int key_set;
static u32 body_max;

#define N_VALID uk_counters[UK_C_SVC0]
#define N_REJECTED uk_counters[UK_C_SVC1]

void svc_init(void)
{
    key_set = uk_hmac_key_from_param(&hkey);
    body_max = uk_param_u32("max", UK_MAX_PAYLOAD);
    if (body_max > UK_MAX_PAYLOAD)
        body_max = UK_MAX_PAYLOAD;
    /* Say whether a key is set, never the key. */
    uk_printf("uk: webhook key %s max=%u\n", key_set ? "set" : "not set", body_max);
}

static int webhook_hexval(u8 c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "sha256=<64 hex>" or the 64 hex digits alone, either case, into 32 bytes; -1 if it is neither. */
static int webhook_parse_sig(const u8 *s, u32 n, u8 out[32])
{
    if (n == PREFIX_LEN + SIG_HEX && memcmp(s, PREFIX, PREFIX_LEN) == 0) {
        s += PREFIX_LEN;
        n -= PREFIX_LEN;
    }
    if (n != SIG_HEX)
        return -1;
    for (u32 i = 0; i < 32; i++) {
        int hi = webhook_hexval(s[2 * i]), lo = webhook_hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (u8)(hi << 4 | lo);
    }
    return 0;
}

/* Payload: u16 signature length, the signature, then the body (the rest, possibly empty). */
static u16 webhook_verify(const struct uk_request *req)
{
    if (!key_set)
        return UK_NO_KEY;
    if (req->len < 2)
        return UK_BAD_REQUEST;
    u32 sig_len = (u32)req->data[0] | (u32)req->data[1] << 8;
    if (sig_len > req->len - 2)
        return UK_BAD_REQUEST;
    u8 want[32], mac[32];
    if (webhook_parse_sig(req->data + 2, sig_len, want) < 0)
        return UK_BAD_REQUEST;
    const u8 *body = req->data + 2 + sig_len;
    u32 body_len = req->len - 2 - sig_len;
    if (body_len > body_max)
        return UK_TOO_LARGE;
    uk_hmac_sha256_mac(&hkey, body, body_len, mac);
    u8 diff = 0;
    for (u32 i = 0; i < 32; i++)    /* constant time: no early exit on the first wrong byte */
        diff |= mac[i] ^ want[i];
    return diff ? UK_UNAUTHORIZED : UK_OK;
}

void svc_handle(const struct uk_request *req)
{
    if (req->op == UK_OP_WEBHOOK_SETKEY) {
        key_set |= uk_hmac_key_from_request(req, &hkey);
        return;
    }
    if (req->op != UK_OP_WEBHOOK_VERIFY) {
        uk_reply(req, UK_UNKNOWN_OP, UK_NULL, 0);
        return;
    }
    u16 status = webhook_verify(req);
    if (status == UK_OK)
        N_VALID++;
    else
        N_REJECTED++;
    uk_reply(req, status, UK_NULL, 0);
}
