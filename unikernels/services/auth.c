/* auth.c: verifies JWT HS256 tokens (RFC 7519/7515): signature, then exp and nbf against the request's clock. */
#include "uk.h"

#define TOKEN_MAX 8192
#define DEPTH_MAX 16

const char uk_service_name[] = "auth";

static struct uk_hmac_sha256 hkey;     /* lib/hmac_key.c */
static int key_set;
static u8 decoded[TOKEN_MAX];

#define N_VALID uk_counters[UK_C_SVC0]
#define N_REJECTED uk_counters[UK_C_SVC1]

void svc_init(void)
{
    key_set = uk_hmac_key_from_param(&hkey);
    /* Say whether a key is set, never the key. */
    uk_printf("uk: auth key %s\n", key_set ? "set" : "not set");
}

static int b64val(u8 c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* base64url without padding (RFC 7515 section 2); -1 on a bad character or length. */
static int b64url_decode(const u8 *in, u32 n, u8 *out)
{
    u32 acc = 0, bits = 0, o = 0;
    if (n % 4 == 1)
        return -1;
    for (u32 i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (u32)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (u8)(acc >> bits);
        }
    }
    return (int)o;
}

/* A tiny JSON reader: just enough to walk one object's members and skip any value. */
struct json { const u8 *p, *end; };

static void ws(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int skip_string(struct json *j)
{
    if (j->p >= j->end || *j->p != '"')
        return -1;
    for (j->p++; j->p < j->end; j->p++) {
        if (*j->p == '\\')
            j->p++;
        else if (*j->p == '"') {
            j->p++;
            return 0;
        }
    }
    return -1;
}

static int skip_value(struct json *j, u32 depth)
{
    ws(j);
    if (j->p >= j->end || depth > DEPTH_MAX)
        return -1;
    u8 c = *j->p;
    if (c == '"')
        return skip_string(j);
    if (c == '{' || c == '[') {
        u8 close = c == '{' ? '}' : ']';
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                ws(j);
                if (skip_string(j) < 0)
                    return -1;
                ws(j);
                if (j->p >= j->end || *j->p++ != ':')
                    return -1;
            }
            if (skip_value(j, depth + 1) < 0)
                return -1;
            ws(j);
            if (j->p >= j->end)
                return -1;
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p++ != close)
                return -1;
            return 0;
        }
    }
    const u8 *start = j->p;
    while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '-' || *j->p == '+' || *j->p == '.' ||
                             *j->p == 'e' || *j->p == 'E' || (*j->p >= 'a' && *j->p <= 'z')))
        j->p++;
    return j->p > start ? 0 : -1;
}

/* A NumericDate: integer seconds; a fraction is dropped, a negative date counts as 0. */
static int number(const u8 *p, const u8 *end, u64 *out)
{
    u64 v = 0;
    int neg = p < end && *p == '-';
    if (neg)
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        v = v > 0xffffffffffull ? v : v * 10 + (u64)(*p - '0');
    if (p < end && *p == '.')
        for (p++; p < end && *p >= '0' && *p <= '9'; p++)
            ;
    if (p < end && (*p == 'e' || *p == 'E'))
        return -1;              /* exponent notation: refuse rather than misread */
    *out = neg ? 0 : v;
    return 0;
}

static int key_is(const u8 *k, u32 n, const char *name)
{
    return n == uk_strlen(name) && memcmp(k, name, n) == 0;
}

struct claims { int has_exp, has_nbf, alg_ok; u64 exp, nbf; };

/* Walk the top-level members of an object, noting alg, exp and nbf. */
static int scan(const u8 *p, u32 n, struct claims *c)
{
    struct json j = { p, p + n };
    ws(&j);
    if (j.p >= j.end || *j.p++ != '{')
        return -1;
    ws(&j);
    if (j.p < j.end && *j.p == '}')
        return 0;
    for (;;) {
        ws(&j);
        const u8 *k = j.p + 1;
        if (skip_string(&j) < 0)
            return -1;
        u32 klen = (u32)(j.p - k - 1);
        ws(&j);
        if (j.p >= j.end || *j.p++ != ':')
            return -1;
        ws(&j);
        const u8 *v = j.p;
        if (skip_value(&j, 1) < 0)
            return -1;
        u32 vlen = (u32)(j.p - v);
        if (key_is(k, klen, "alg"))
            c->alg_ok = vlen == 7 && memcmp(v, "\"HS256\"", 7) == 0;
        else if (key_is(k, klen, "exp")) {
            if (number(v, j.p, &c->exp) < 0)
                return -1;
            c->has_exp = 1;
        } else if (key_is(k, klen, "nbf")) {
            if (number(v, j.p, &c->nbf) < 0)
                return -1;
            c->has_nbf = 1;
        }
        ws(&j);
        if (j.p >= j.end)
            return -1;
        if (*j.p == ',') {
            j.p++;
            continue;
        }
        if (*j.p++ != '}')
            return -1;
        ws(&j);
        return j.p == j.end ? 0 : -1;
    }
}

static u16 verify(const struct uk_request *req, u32 *claims_len)
{
    const u8 *t = req->data;
    u32 n = req->len, d1 = 0, d2 = 0;
    if (!key_set)
        return UK_NO_KEY;
    if (n == 0 || n > TOKEN_MAX)
        return UK_UNAUTHORIZED;
    for (u32 i = 0; i < n; i++)
        if (t[i] == '.') {
            if (!d1) d1 = i;
            else if (!d2) d2 = i;
            else return UK_UNAUTHORIZED;
        }
    if (!d1 || !d2 || d2 == d1 + 1 || d2 + 1 >= n)
        return UK_UNAUTHORIZED;
    u8 mac[32], sig[48];
    if (n - d2 - 1 > 64 || b64url_decode(t + d2 + 1, n - d2 - 1, sig) != 32)
        return UK_UNAUTHORIZED;
    uk_hmac_sha256_mac(&hkey, t, d2, mac);
    u8 diff = 0;
    for (u32 i = 0; i < 32; i++)    /* constant time: no early exit on the first wrong byte */
        diff |= mac[i] ^ sig[i];
    if (diff)
        return UK_UNAUTHORIZED;
    struct claims c = { 0, 0, 0, 0, 0 };
    int hl = b64url_decode(t, d1, decoded);
    if (hl < 0 || scan(decoded, (u32)hl, &c) < 0 || !c.alg_ok)
        return UK_UNAUTHORIZED;
    int pl = b64url_decode(t + d1 + 1, d2 - d1 - 1, decoded);
    c.has_exp = c.has_nbf = 0;
    if (pl < 0 || scan(decoded, (u32)pl, &c) < 0)
        return UK_UNAUTHORIZED;
    /* RFC 7519 4.1.4: the token is valid only strictly before exp; 4.1.5: not before nbf. */
    if (c.has_exp && (u64)req->now >= c.exp)
        return UK_EXPIRED;
    if (c.has_nbf && (u64)req->now < c.nbf)
        return UK_NOT_YET_VALID;
    *claims_len = (u32)pl;
    return UK_OK;
}

void svc_handle(const struct uk_request *req)
{
    if (req->op == UK_OP_AUTH_SETKEY) {
        key_set |= uk_hmac_key_from_request(req, &hkey);
        return;
    }
    if (req->op != UK_OP_AUTH_VERIFY) {
        uk_reply(req, UK_UNKNOWN_OP, UK_NULL, 0);
        return;
    }
    u32 claims_len = 0;
    u16 status = verify(req, &claims_len);
    if (status == UK_OK) {
        N_VALID++;
        uk_reply(req, UK_OK, decoded, claims_len);     /* the verified claims, as JSON */
    } else {
        N_REJECTED++;
        uk_reply(req, status, UK_NULL, 0);
    }
}
