/* legacy.h - PC odds and ends: POST port 0x80, port 0x92 (A20, fast reset), reset control 0xCF9. */
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

#endif
