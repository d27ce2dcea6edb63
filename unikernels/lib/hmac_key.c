/* hmac_key.c: a keyed service's HMAC-SHA256 key, from the boot parameter key=<hex> or a SETKEY request.
 * Only the key's HMAC state is kept (its padded blocks hashed), never the key itself. */
#include "uk.h"

int uk_hmac_key_from_param(struct uk_hmac_sha256 *h)
{
    usize len;
    u8 key[UK_KEY_MAX];
    const char *hex = uk_param("key", &len);
    int n = hex ? uk_hex_decode(hex, len, key, UK_KEY_MAX) : 0;
    if (n > 0)
        uk_hmac_sha256_key(h, key, (usize)n);
    memset(key, 0, sizeof(key));
    return n > 0;
}

int uk_hmac_key_from_request(const struct uk_request *req, struct uk_hmac_sha256 *h)
{
    if (req->len == 0 || req->len > UK_KEY_MAX) {
        uk_reply(req, UK_BAD_REQUEST, UK_NULL, 0);
        return 0;
    }
    uk_hmac_sha256_key(h, req->data, req->len);
    uk_reply(req, UK_OK, UK_NULL, 0);
    return 1;
}
