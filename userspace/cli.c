// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl: messages, parsing and units shared by every command.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "json.h"

static char last_error[512];

static void vmsg(const char *fmt, va_list ap, bool keep)
{
	char buf[sizeof(last_error)];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	fprintf(stderr, "vmcachectl: %s\n", buf);
	if (keep && !last_error[0])
		memcpy(last_error, buf, sizeof(buf));
}

void vmc_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap, true);
	va_end(ap);
}

void vmc_note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap, false);
	va_end(ap);
}

const char *vmc_last_error(void)
{
	return last_error[0] ? last_error : "unknown error";
}

void vmc_clear_error(void)
{
	last_error[0] = '\0';
}

void vmc_json_error(void)
{
	struct json j;

	json_init(&j, stdout);
	json_begin_object(&j, NULL);
	json_str(&j, "error", vmc_last_error());
	json_end_object(&j);
	json_finish(&j);
}

int parse_u64(const char *s, uint64_t *v)
{
	char *end;
	unsigned long long x;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*v = x;
	return 0;
}

int parse_size(const char *s, uint64_t *bytes)
{
	static const struct { const char *sfx; unsigned int shift; } units[] = {
		{ "", 0 }, { "b", 0 }, { "s", 9 },
		{ "k", 10 }, { "kib", 10 }, { "m", 20 }, { "mib", 20 },
		{ "g", 30 }, { "gib", 30 }, { "t", 40 }, { "tib", 40 },
	};
	char num[32];
	size_t n = 0;
	uint64_t v;

	if (!s)
		return -1;
	while (s[n] >= '0' && s[n] <= '9')
		n++;
	if (!n || n >= sizeof(num))
		return -1;
	memcpy(num, s, n);
	num[n] = '\0';
	if (parse_u64(num, &v))
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(s + n, units[i].sfx))
			continue;
		if (units[i].shift && v > (UINT64_MAX >> units[i].shift))
			return -1;
		*bytes = v << units[i].shift;
		return 0;
	}
	return -1;
}

int parse_seconds(const char *s, double *secs)
{
	char *end;
	double x;

	if (!s || !*s)
		return -1;
	errno = 0;
	x = strtod(s, &end);
	if (errno || *end || !isfinite(x) || x < 0 || x > 1e9)
		return -1;
	*secs = x;
	return 0;
}

const char *fmt_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(unit)) {
		v /= 1024;
		u++;
	}
	if (!u)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v,
			 unit[u]);
	return buf;
}

const char *fmt_duration(double secs, char *buf, size_t len)
{
	unsigned long s;

	if (secs < 0 || !isfinite(secs) || secs > 1e8) {
		snprintf(buf, len, "?");
		return buf;
	}
	s = (unsigned long)(secs + 0.5);
	if (s >= 3600)
		snprintf(buf, len, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60,
			 s % 60);
	else
		snprintf(buf, len, "%lu:%02lu", s / 60, s % 60);
	return buf;
}

double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

void catch_stop_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

bool stop_requested(void)
{
	return stop_flag;
}

bool sleep_or_stop(double secs)
{
	struct timespec ts;

	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	while (!stop_flag && nanosleep(&ts, &ts) && errno == EINTR)
		;
	return stop_flag;
}

void getopt_reset(void)
{
	optind = 0;	/* glibc: 0 also re-initialises its internal state */
}
