"""Turn a directory into a C table of files for the static service: path, content type, ETag, bytes."""
import hashlib
import mimetypes
import os
import sys

TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css", ".js": "application/javascript",
         ".txt": "text/plain; charset=utf-8", ".json": "application/json", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon"}


def main(root, out):
    files = []
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            full = os.path.join(dirpath, name)
            path = "/" + os.path.relpath(full, root).replace(os.sep, "/")
            files.append((path, full))
    files.sort()
    lines = ['#include "uk.h"', '#include "site.h"', ""]
    for i, (_, full) in enumerate(files):
        data = open(full, "rb").read()
        body = ",".join(str(b) for b in data) or "0"
        lines.append(f"static const u8 f{i}[] = {{{body}}};")
    lines.append("const struct site_file site_files[] = {")
    for i, (path, full) in enumerate(files):
        data = open(full, "rb").read()
        ext = os.path.splitext(path)[1]
        ctype = TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if len(ctype) > 255 or len(path.encode()) > 1024 or '"' in path or "\\" in path:
            sys.exit(f"mksite: cannot serve {path!r} (path or type too long, or quote in name)")
        lines.append(f'    {{ "{path}", "{ctype}", {c_str(etag)}, f{i}, {len(data)} }},')
    lines.append("};")
    lines.append(f"const u32 site_nfiles = {len(files)};")
    with open(out, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def c_str(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
