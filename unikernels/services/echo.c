/* echo.c: returns the payload; the reference for transport benchmarks. */
#include "uk.h"

const char uk_service_name[] = "echo";

void svc_init(void)
{
}

void svc_handle(const struct uk_request *req)
{
    if (req->op == UK_OP_ECHO)
        uk_reply(req, UK_OK, req->data, req->len);
    else
        uk_reply(req, UK_UNKNOWN_OP, UK_NULL, 0);
}
