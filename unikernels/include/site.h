/* site.h: the table tools/mksite.py generates for the static service. */
#ifndef SITE_H
#define SITE_H
struct site_file { const char *path, *type, *etag; const u8 *data; u32 len; };
extern const struct site_file site_files[];
extern const u32 site_nfiles;
#endif
