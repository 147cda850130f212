/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: a small streaming JSON writer.  Values are written as they
 * come; key is NULL for array elements and for the top-level value.
 */
#ifndef VMCACHECTL_JSON_H
#define VMCACHECTL_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json {
	FILE *f;
	int depth;
	bool has_items[JSON_MAX_DEPTH];
};

void json_init(struct json *j, FILE *f);
void json_begin_object(struct json *j, const char *key);
void json_end_object(struct json *j);
void json_begin_array(struct json *j, const char *key);
void json_end_array(struct json *j);
void json_str(struct json *j, const char *key, const char *v);
void json_u64(struct json *j, const char *key, uint64_t v);
void json_bool(struct json *j, const char *key, bool v);
/* NaN is written as null */
void json_double(struct json *j, const char *key, double v);
void json_null(struct json *j, const char *key);
/* ends the document with a newline and flushes */
void json_finish(struct json *j);

#endif
