/* le.h - little-endian loads and stores on byte buffers (config space, BAR registers, MSI-X tables). */
#ifndef FTVMM_LE_H
#define FTVMM_LE_H

#include <stdint.h>

/* Byte by byte on purpose: these buffers (PCI config space, a guest's access of 1-8 bytes at any
 * offset) have no alignment to rely on, and the guest's byte order is little-endian whatever ours is. */
static inline uint64_t ld_le(const uint8_t *p, unsigned len)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void st_le(uint8_t *p, uint64_t v, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t ld_le16(const uint8_t *p)
{
	return (uint16_t)ld_le(p, 2);
}

static inline uint32_t ld_le32(const uint8_t *p)
{
	return (uint32_t)ld_le(p, 4);
}

static inline void st_le16(uint8_t *p, uint16_t v)
{
	st_le(p, v, 2);
}

static inline void st_le32(uint8_t *p, uint32_t v)
{
	st_le(p, v, 4);
}

#endif
