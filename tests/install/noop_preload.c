/*
 * evu_noop_preload: an empty preload library. The evuring-run test puts it in
 * LD_PRELOAD beforehand to check evuring-run keeps it (after evuring's).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
int evu_noop_preload_marker(void);

int evu_noop_preload_marker(void)
{
	return 42;
}
