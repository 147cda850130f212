/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel definitions dm-vmcache/vmcache-mrc.c uses, for building it
 * on the host (tests/mrc_model.c).  Single-threaded: locks do nothing and
 * there is one CPU.
 */
#ifndef VMC_KSHIM_TYPES_H
#define VMC_KSHIM_TYPES_H

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef uint8_t u8;

#define U16_MAX		0xffff
#define U32_MAX		0xffffffffu
#define GOLDEN_RATIO_64	0x61C8864680B583EBull
#define GFP_KERNEL	0
#define __percpu

#define min(a, b)	((a) < (b) ? (a) : (b))
#define max(a, b)	((a) > (b) ? (a) : (b))
#define min_t(t, a, b)	((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define READ_ONCE(x)	(x)
#define WRITE_ONCE(x, v) ((x) = (v))

typedef int spinlock_t;
#define spin_lock_init(l)		((void)(l))
#define spin_lock_irqsave(l, f)		((void)(l), (f) = 0)
#define spin_unlock_irqrestore(l, f)	((void)(l), (void)(f))

#define alloc_percpu(t)		((t *)calloc(1, sizeof(t)))
#define free_percpu(p)		free(p)
#define this_cpu_inc(x)		((x)++)
#define this_cpu_add(x, n)	((x) += (n))
#define for_each_possible_cpu(c) for ((c) = 0; (c) < 1; (c)++)
#define per_cpu_ptr(p, c)	((void)(c), (p))

#define kvzalloc(n, g)		((void)(g), calloc(1, (n)))
#define kvfree(p)		free(p)

static inline u64 div64_u64(u64 a, u64 b)
{
	return a / b;
}

static inline int scnprintf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!len)
		return 0;
	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return 0;
	return (size_t)n >= len ? (int)len - 1 : n;
}

#endif
