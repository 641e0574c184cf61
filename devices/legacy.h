/* legacy.h - PC odds and ends (POST port 0x80, port 0x92, reset control 0xCF9) and checkpoint helpers. */
#ifndef FTVMM_LEGACY_H
#define FTVMM_LEGACY_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct legacy;

#define LEGACY_POST_PORT 0x80
#define LEGACY_PORT92 0x92 /* system control port A: bit 0 fast reset, bit 1 A20 */
#define LEGACY_RCR_PORT 0xcf9 /* reset control register; lives inside PCI conf1 0xcf8..0xcff */

/* Device core, no VM: `reset` is called (possibly on several vCPUs at once) when the guest asks for a
 * platform reset. */
int legacy_new(void (*reset)(void *ctx), void *ctx, struct legacy **out);
void legacy_free(struct legacy *lg);
/* One access at an absolute port (0x80, 0x92 or 0xcf9); other ports read as all ones. */
void legacy_io(struct legacy *lg, uint16_t port, uint8_t *data, uint32_t len, bool is_write);
/* Byte accesses at 0xcf9. The PCI host bridge owns 0xcf8..0xcff on the port bus, so it forwards these
 * (len 1, offset 1 of its region) here; 0xcf9 cannot be registered on its own. */
void legacy_rcr_io(struct legacy *lg, uint8_t *data, uint32_t len, bool is_write);
int legacy_save(struct legacy *lg, void *fdt);
int legacy_restore(struct legacy *lg, const void *fdt, int node);

/* Glue: claim ports 0x80 and 0x92 on vm->pio, reset => vm_request_exit(VM_EXIT_REBOOT), register
 * the "legacy" vm_device (destroyed by vm_destroy). 0 or -errno. */
int legacy_create(struct vm *vm, struct legacy **out);

/* Checkpoint helpers shared by the ISA devices. Properties go into the current node of a libfdt tree
 * in sequential-write mode; libfdt errors come back as -ENOSPC (tree full) or -EINVAL. Loads fail
 * with -EINVAL when the property is missing, has the wrong length, or exceeds `max`. */
int legacy_save_u32(void *fdt, const char *name, uint32_t v);
int legacy_save_u64(void *fdt, const char *name, uint64_t v);
int legacy_save_blob(void *fdt, const char *name, const void *p, uint32_t len);
int legacy_load_u32(const void *fdt, int node, const char *name, uint32_t max, uint32_t *v);
int legacy_load_u64(const void *fdt, int node, const char *name, uint64_t *v);
/* *len gets the blob length, which must be <= maxlen; *p points into the tree. */
int legacy_load_blob(const void *fdt, int node, const char *name, uint32_t maxlen, const uint8_t **p,
		     uint32_t *len);

#endif
