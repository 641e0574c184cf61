/* util.h - fatal errors, logging and small helpers shared by every part of ftvmm. */
#ifndef FTVMM_UTIL_H
#define FTVMM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Print "ftvmm: <msg>" on stderr and exit(1). The one way to give up. */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
/* Like die() but appends ": strerror(errno)". */
__attribute__((noreturn, format(printf, 1, 2))) void die_errno(const char *fmt, ...);
/* One line on stderr, prefixed "ftvmm: ". */
__attribute__((format(printf, 1, 2))) void warnx(const char *fmt, ...);
/* Debug line, printed only when FTVMM_DEBUG is set in the environment. */
__attribute__((format(printf, 1, 2))) void debugx(const char *fmt, ...);

/* write(2), pwrite(2), pread(2) of all len bytes, retrying EINTR and short transfers: 0, or -errno
 * (-EIO when the file ends or takes nothing, -EINVAL for an offset off_t cannot hold). */
int write_all(int fd, const void *p, size_t len);
int pwrite_all(int fd, const void *p, size_t len, uint64_t off);
int pread_all(int fd, void *p, size_t len, uint64_t off);
/* Read a whole file into a malloc'd buffer. Returns 0 or -errno. */
int read_file_all(const char *path, uint8_t **buf, size_t *len);
/* Parse "512", "64K", "256M", "2G", "1T" (binary multiples). Returns 0 or -EINVAL/-ERANGE. */
int parse_size(const char *s, uint64_t *out);
/* Monotonic time in nanoseconds. */
uint64_t now_ns(void);

#endif
