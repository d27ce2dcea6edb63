/* static.c: serves the files baked into the image (services/static/site/) with content type and ETag. */
#include "uk.h"
#include "site.h"

#define PATH_MAX_LEN 1024

const char uk_service_name[] = "static";

void svc_init(void)
{
    uk_printf("uk: static %u files\n", site_nfiles);
}

static const struct site_file *lookup(const u8 *path, u32 len)
{
    static const char index[] = "index.html";
    char full[PATH_MAX_LEN + sizeof(index)];
    memcpy(full, path, len);
    /* A directory path names its index file, as nginx's index directive does by default. */
    if (full[len - 1] == '/') {
        memcpy(full + len, index, sizeof(index) - 1);
        len += sizeof(index) - 1;
    }
    full[len] = 0;
    for (u32 i = 0; i < site_nfiles; i++)
        if (uk_streq(site_files[i].path, full))
            return &site_files[i];
    return UK_NULL;
}

/* Request: path, optionally "\0" and an If-None-Match value. Reply: u8 type length, type,
   u8 ETag length, ETag, then the body (no body with NOT_MODIFIED). */
void svc_handle(const struct uk_request *req)
{
    if (req->op != UK_OP_STATIC_GET) {
        uk_reply(req, UK_UNKNOWN_OP, UK_NULL, 0);
        return;
    }
    u32 plen = 0;
    while (plen < req->len && req->data[plen])
        plen++;
    if (plen == 0 || plen > PATH_MAX_LEN || req->data[0] != '/') {
        uk_reply(req, UK_BAD_REQUEST, UK_NULL, 0);
        return;
    }
    for (u32 i = 0; i + 1 < plen; i++)
        if (req->data[i] == '/' && req->data[i + 1] == '.') {
            uk_reply(req, UK_NOT_FOUND, UK_NULL, 0);    /* no dot segments or hidden files */
            return;
        }
    const struct site_file *f = lookup(req->data, plen);
    if (!f) {
        uk_reply(req, UK_NOT_FOUND, UK_NULL, 0);
        return;
    }
    u8 head[2 + 255 + 255];
    u32 tlen = uk_strlen(f->type), elen = uk_strlen(f->etag), n = 0;
    head[n++] = (u8)tlen;
    memcpy(head + n, f->type, tlen);
    n += tlen;
    head[n++] = (u8)elen;
    memcpy(head + n, f->etag, elen);
    n += elen;
    const u8 *inm = req->data + plen + 1;
    u32 inm_len = plen < req->len ? req->len - plen - 1 : 0;
    if (plen < req->len && inm_len == elen && memcmp(inm, f->etag, elen) == 0)
        uk_reply(req, UK_NOT_MODIFIED, head, n);
    else
        uk_reply2(req, UK_OK, head, n, f->data, f->len);
}
