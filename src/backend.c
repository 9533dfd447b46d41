/*
 * Backend choice, in one place and in this order: the user's explicit
 * override (evuring_set_backend(), else EVURING_BACKEND), the cached
 * run-time probe of io_uring, the event backend.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evu-internal.h"

#define EVU_BACKEND_UNSET (-1)

/* -1 until read from the environment or set by evuring_set_backend(). */
static atomic_int evu_forced = EVU_BACKEND_UNSET;
static atomic_int evu_debug_state = -1;

static int evu_backend_from_env(void)
{
	const char *v = secure_getenv("EVURING_BACKEND");

	if (!v || !*v || !strcmp(v, "auto"))
		return EVURING_BACKEND_AUTO;
	if (!strcmp(v, "uring") || !strcmp(v, "io_uring"))
		return EVURING_BACKEND_URING;
	if (!strcmp(v, "event") || !strcmp(v, "epoll") || !strcmp(v, "libevent"))
		return EVURING_BACKEND_EVENT;
	evu_warn("EVURING_BACKEND=%s is not one of auto, uring, event; using auto", v);
	return EVURING_BACKEND_AUTO;
}

int evu_backend_forced(void)
{
	int v = atomic_load(&evu_forced);

	if (v == EVU_BACKEND_UNSET) {
		int expected = EVU_BACKEND_UNSET;

		v = evu_backend_from_env();
		if (!atomic_compare_exchange_strong(&evu_forced, &expected, v))
			v = expected;
	}
	return v;
}

const struct evu_backend_ops *evu_backend_choose(int *err, const char **why)
{
	int forced = evu_backend_forced();
	int probe;

	if (forced == EVURING_BACKEND_EVENT) {
		*why = "event backend requested (EVURING_BACKEND or evuring_set_backend)";
		return &evu_event_ops;
	}
	probe = evu_uring_probe(why);
	if (probe == 0)
		return &evu_uring_ops;
	if (forced == EVURING_BACKEND_URING) {
		evu_warn("evuring: io_uring backend requested but unavailable: %s", *why);
		*err = probe;
		return NULL;
	}
	return &evu_event_ops;
}

EVURING_API int evuring_set_backend(int backend)
{
	if (backend != EVURING_BACKEND_AUTO && backend != EVURING_BACKEND_URING &&
	    backend != EVURING_BACKEND_EVENT) {
		errno = EINVAL;
		return -1;
	}
	atomic_store(&evu_forced, backend);
	return 0;
}

EVURING_API const char *evuring_backend_name(int backend)
{
	switch (backend) {
	case EVURING_BACKEND_AUTO:
		return "auto";
	case EVURING_BACKEND_URING:
		return "uring";
	case EVURING_BACKEND_EVENT:
		return "event";
	}
	return "unknown";
}

EVURING_API int evuring_uring_available(const char **why)
{
	const char *reason = NULL;
	int ok = evu_uring_probe(&reason) == 0;

	if (why)
		*why = reason;
	return ok;
}

bool evu_debug_enabled(void)
{
	int v = atomic_load(&evu_debug_state);

	if (v < 0) {
		const char *e = secure_getenv("EVURING_DEBUG");

		v = e && *e && strcmp(e, "0") != 0;
		atomic_store(&evu_debug_state, v);
	}
	return v;
}

static void evu_vlog(const char *prefix, const char *fmt, va_list ap)
{
	char line[512];

	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "%s%s\n", prefix, line);
}

void evu_debug(const char *fmt, ...)
{
	va_list ap;

	if (!evu_debug_enabled())
		return;
	va_start(ap, fmt);
	evu_vlog("[evuring] ", fmt, ap);
	va_end(ap);
}

void evu_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	/* libevent's default log line format, so logs look the same. */
	evu_vlog("[warn] ", fmt, ap);
	va_end(ap);
}

#ifdef EVU_TEST_HOOKS
bool evu_test_fault(const char *name)
{
	const char *v = secure_getenv("EVURING_TEST_FAULT");

	return v && !strcmp(v, name);
}
#endif
