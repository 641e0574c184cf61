/* fdt_prop.c - checked readers and error-mapped writers of flattened-device-tree properties. */
#include "fdt_prop.h"

#include <errno.h>
#include <libfdt.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

/* libfdt 1.6.1 (Debian 12) fdt_check_full dereferences a NULL name when it cannot read the root
 * node's name (a crafted tree from the fuzzer, fixed in later libfdt): so the header is checked
 * against len first (fdt_check_header reads a full header whatever the buffer's size), then every
 * node's name is read with the checked fdt_get_name, and only then does fdt_check_full run. */
bool fdtp_whole(const void *fdt, size_t len)
{
	if (len < sizeof(struct fdt_header) || fdt_check_header(fdt) || fdt_totalsize(fdt) > len ||
	    fdt_version(fdt) < 17)
		return false;
	int off = 0, next = 0;
	for (;;) {
		uint32_t tag = fdt_next_tag(fdt, off, &next);
		if (next < 0)
			return false;
		if (tag == FDT_END)
			break;
		if (tag == FDT_BEGIN_NODE && !fdt_get_name(fdt, off, NULL))
			return false;
		off = next; /* fdt_next_tag only moves forward, inside the structure block */
	}
	return fdt_check_full(fdt, len) == 0;
}

/* The property's bytes if it is there with exactly len of them. */
static const void *get_exact(const void *fdt, int node, const char *name, size_t len)
{
	int l;
	const void *p = fdt_getprop(fdt, node, name, &l);
	if (!p || l < 0 || (size_t)l != len) {
		debugx("restore: property %s missing or malformed", name);
		return NULL;
	}
	return p;
}

int fdtp_u32(const void *fdt, int node, const char *name, uint32_t *v)
{
	return fdtp_u32_max(fdt, node, name, UINT32_MAX, v);
}

int fdtp_u32_max(const void *fdt, int node, const char *name, uint32_t max, uint32_t *v)
{
	fdt32_t x;
	if (fdtp_copy(fdt, node, name, &x, sizeof(x)))
		return -EINVAL;
	uint32_t c = fdt32_to_cpu(x);
	if (c > max) {
		debugx("restore: property %s = %u out of range", name, c);
		return -EINVAL;
	}
	*v = c;
	return 0;
}

int fdtp_u32_fields(const void *fdt, int node, const struct fdtp_field *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fdtp_u32_max(fdt, node, f[i].name, f[i].max, f[i].v))
			return -EINVAL;
	return 0;
}

int fdtp_u64(const void *fdt, int node, const char *name, uint64_t *v)
{
	fdt64_t x;
	if (fdtp_copy(fdt, node, name, &x, sizeof(x)))
		return -EINVAL;
	*v = fdt64_to_cpu(x);
	return 0;
}

int fdtp_copy(const void *fdt, int node, const char *name, void *out, size_t len)
{
	const void *p = get_exact(fdt, node, name, len);
	if (!p)
		return -EINVAL;
	memcpy(out, p, len); /* properties are only 4-byte aligned */
	return 0;
}

const void *fdtp_exact(const void *fdt, int node, const char *name, size_t len)
{
	return get_exact(fdt, node, name, len);
}

int fdtp_ref(const void *fdt, int node, const char *name, uint32_t maxlen, const uint8_t **p, uint32_t *len)
{
	int l;
	const uint8_t *b = fdt_getprop(fdt, node, name, &l);
	if (!b || l < 0 || (uint32_t)l > maxlen) {
		debugx("restore: property %s missing or too long", name);
		return -EINVAL;
	}
	*p = b;
	*len = (uint32_t)l;
	return 0;
}

static int put_errno(int err)
{
	return err == -FDT_ERR_NOSPACE ? -ENOSPC : -EINVAL;
}

int fdtp_put_u32(void *fdt, const char *name, uint32_t v)
{
	int r = fdt_property_u32(fdt, name, v);
	return r ? put_errno(r) : 0;
}

int fdtp_put_u64(void *fdt, const char *name, uint64_t v)
{
	int r = fdt_property_u64(fdt, name, v);
	return r ? put_errno(r) : 0;
}

int fdtp_put_blob(void *fdt, const char *name, const void *p, uint32_t len)
{
	if (len > INT32_MAX)
		return -EINVAL;
	int r = fdt_property(fdt, name, p, (int)len);
	return r ? put_errno(r) : 0;
}
