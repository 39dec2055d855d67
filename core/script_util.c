/*
 * script_util.c: the bottom of the Lua host (script_int.h): the primitives
 * every other script_*.c shares (error text, the name check, the kinds'
 * directory and display names, the registry keys). It calls no other
 * module of the host, so each of them may call it.
 */
#include "script_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>

const char *const script_kind_dir[SCRIPT_KINDS] = { "providers", "hooks", "fronts" };
const char *const script_kind_name[SCRIPT_KINDS] = { "provider", "hook", "front" };
const char script_key_env = 0, script_key_loaded = 0, script_key_libsrc = 0, script_key_loading = 0;

void script_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int script_valid_name(const char *s, size_t n)
{
	if (n == 0 || n > SCRIPT_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return 0;
	return 1;
}
