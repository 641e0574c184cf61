/* rtc.h - MC146818 CMOS real-time clock (ports 0x70/0x71): wall clock and CMOS bytes, no interrupts. */
#ifndef FTVMM_RTC_H
#define FTVMM_RTC_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct rtc;

#define RTC_INDEX_PORT 0x70
#define RTC_DATA_PORT 0x71
#define RTC_CMOS_SIZE 128

/* Device core, no VM. `clock` returns host UTC seconds (NULL: the real clock); tests pass their own.
 * 0 or -errno. */
int rtc_new(int64_t (*clock)(void *ctx), void *ctx, struct rtc **out);
void rtc_free(struct rtc *rtc);
/* One access at an absolute port (0x70 or 0x71); other ports read as all ones. */
void rtc_io(struct rtc *rtc, uint16_t port, uint8_t *data, uint32_t len, bool is_write);
/* Checkpoint halves: the CMOS bytes, the index and the guest's offset from host UTC, so a restored
 * guest keeps its own notion of wall time on whichever host it runs. Restore is all or nothing. */
int rtc_save(struct rtc *rtc, void *fdt);
int rtc_restore(struct rtc *rtc, const void *fdt, int node);

/* Glue: ports 0x70-0x71 on vm->pio, vm_device "rtc" (destroyed by vm_destroy). 0 or -errno. */
int rtc_create(struct vm *vm, struct rtc **out);

#endif
