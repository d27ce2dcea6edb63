"""One HTTP request on a new connection (so the kernel spreads requests over the workers)."""

import http.client


def get(port, path, host=None, method="GET"):
    """(status, Content-Type, body) of `method path` sent to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=b"x" if method == "POST" else None,
                 headers={"Host": host} if host else {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type"), body
