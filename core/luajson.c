/*
 * luajson.c: Lua <-> jansson conversion (see luajson.h).
 */
#include "luajson.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Registry key of the array marker metatable: the address of this byte. */
static const char array_mt_key = 0;

void luajson_array_mt(lua_State *L)
{
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key) == LUA_TTABLE)
		return;
	lua_pop(L, 1);
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "array");
	lua_setfield(L, -2, "__name");
	lua_pushvalue(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
}

static int push_value(lua_State *L, const json_t *v, int depth)
{
	if (depth > LUAJSON_MAX_DEPTH || !lua_checkstack(L, 4))
		return -1;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *x;
		lua_createtable(L, 0, (int)json_object_size(v));
		json_object_foreach((json_t *)v, k, x) {
			lua_pushstring(L, k);
			if (push_value(L, x, depth + 1) < 0) {
				lua_pop(L, 2);
				return -1;
			}
			lua_rawset(L, -3);
		}
		return 0;
	}
	case JSON_ARRAY: {
		size_t i, n = json_array_size(v);
		lua_createtable(L, n > 0x7fffffff ? 0 : (int)n, 0);
		for (i = 0; i < n; i++) {
			if (push_value(L, json_array_get(v, i), depth + 1) < 0) {
				lua_pop(L, 1);
				return -1;
			}
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		luajson_array_mt(L);
		lua_setmetatable(L, -2);
		return 0;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_INTEGER:
		lua_pushinteger(L, (lua_Integer)json_integer_value(v));
		return 0;
	case JSON_REAL:
		lua_pushnumber(L, json_real_value(v));
		return 0;
	case JSON_TRUE:
		lua_pushboolean(L, 1);
		return 0;
	case JSON_FALSE:
		lua_pushboolean(L, 0);
		return 0;
	case JSON_NULL:
	default:
		lua_pushlightuserdata(L, NULL);
		return 0;
	}
}

int luajson_push(lua_State *L, const json_t *v)
{
	if (!v) {
		lua_pushlightuserdata(L, NULL);
		return 0;
	}
	return push_value(L, v, 1);
}

/* One step of the path to the value being converted: an object key
 * (borrowed from the Lua stack or the caller's frame) or an array index. */
struct seg {
	const char *key; /* NULL for an index */
	size_t klen;
	lua_Integer index;
};

/* Conversion state for luajson_to_json: the tables on the current path (for
 * cycle detection) and the path itself, formatted only on failure. */
struct conv {
	const void *seen[LUAJSON_MAX_DEPTH + 1];
	int depth;
	struct seg segs[LUAJSON_MAX_DEPTH + 1];
	int nsegs;
	char *err;
	size_t errlen;
	const char *skip; /* a field of the top table left out, or NULL */
};

static json_t *fail(struct conv *c, const char *what)
{
	char path[256];
	size_t n = 0;

	path[0] = '\0';
	for (int i = 0; i < c->nsegs && n < sizeof path - 1; i++) {
		const struct seg *g = &c->segs[i];
		int r;
		if (g->key)
			r = snprintf(path + n, sizeof path - n, "%s%.*s", n ? "." : "",
				     (int)(g->klen > 48 ? 48 : g->klen), g->key);
		else
			r = snprintf(path + n, sizeof path - n, "[%lld]", (long long)g->index);
		if (r < 0)
			break;
		n += (size_t)r;
		if (n >= sizeof path)
			n = sizeof path - 1;
	}
	if (c->err && c->errlen)
		snprintf(c->err, c->errlen, "%s%s%s", path, path[0] ? ": " : "", what);
	return NULL;
}

static void path_push_key(struct conv *c, const char *key, size_t klen)
{
	struct seg *g = &c->segs[c->nsegs++];
	g->key = key;
	g->klen = klen;
	g->index = 0;
}

static void path_push_index(struct conv *c, lua_Integer i)
{
	struct seg *g = &c->segs[c->nsegs++];
	g->key = NULL;
	g->klen = 0;
	g->index = i;
}

/* Number conversion: integral floats within 2^53 become integers (cjson
 * decodes every number as a float), NaN and infinities are refused. */
static json_t *number_to_json(lua_State *L, int idx, struct conv *c)
{
	lua_Number d;
	if (lua_isinteger(L, idx))
		return json_integer((json_int_t)lua_tointeger(L, idx));
	d = lua_tonumber(L, idx);
	if (isnan(d) || isinf(d))
		return fail(c, "NaN or infinity is not valid JSON");
	if (d == floor(d) && fabs(d) <= 9007199254740992.0)
		return json_integer((json_int_t)d);
	return json_real(d);
}

static json_t *to_json(lua_State *L, int idx, struct conv *c);

/* 1 when the table at idx is a sequence 1..n with n >= 1 and nothing else;
 * *n gets n. */
static int is_sequence(lua_State *L, int idx, lua_Integer *n)
{
	lua_Integer count = 0, max = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (!lua_isinteger(L, -1)) {
			lua_pop(L, 1);
			return 0;
		}
		lua_Integer k = lua_tointeger(L, -1);
		if (k < 1) {
			lua_pop(L, 1);
			return 0;
		}
		if (k > max)
			max = k;
		count++;
	}
	*n = max;
	return count > 0 && count == max;
}

static json_t *array_to_json(lua_State *L, int idx, lua_Integer n,
			     struct conv *c)
{
	json_t *a = json_array();
	if (!a)
		return fail(c, "out of memory");
	for (lua_Integer i = 1; i <= n; i++) {
		json_t *x;
		path_push_index(c, i);
		lua_rawgeti(L, idx, i);
		x = to_json(L, lua_gettop(L), c);
		lua_pop(L, 1);
		c->nsegs--;
		if (!x || json_array_append_new(a, x) < 0) {
			json_decref(a);
			return x ? fail(c, "out of memory") : NULL;
		}
	}
	return a;
}

static json_t *object_to_json(lua_State *L, int idx, struct conv *c)
{
	json_t *o = json_object();
	if (!o)
		return fail(c, "out of memory");
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		char kbuf[64];
		const char *k;
		size_t klen;
		json_t *x;
		int kt = lua_type(L, -2);

		if (kt == LUA_TSTRING) {
			k = lua_tolstring(L, -2, &klen);
			if (c->skip && c->depth == 1 && strcmp(k, c->skip) == 0 &&
			    klen == strlen(c->skip)) {
				lua_pop(L, 1);
				continue;
			}
		} else if (kt == LUA_TNUMBER) {
			if (lua_isinteger(L, -2))
				snprintf(kbuf, sizeof kbuf, "%lld",
					 (long long)lua_tointeger(L, -2));
			else
				snprintf(kbuf, sizeof kbuf, "%.14g",
					 (double)lua_tonumber(L, -2));
			k = kbuf;
			klen = strlen(kbuf);
		} else {
			snprintf(kbuf, sizeof kbuf, "a %s key is not allowed in a JSON object",
				 lua_typename(L, kt));
			lua_pop(L, 2);
			json_decref(o);
			return fail(c, kbuf);
		}
		path_push_key(c, k, klen);
		x = to_json(L, lua_gettop(L), c);
		c->nsegs--;
		lua_pop(L, 1);
		if (!x) {
			lua_pop(L, 1);
			json_decref(o);
			return NULL;
		}
		if (json_object_setn_new_nocheck(o, k, klen, x) < 0) {
			lua_pop(L, 1);
			json_decref(o);
			return fail(c, "out of memory");
		}
	}
	return o;
}

static json_t *table_to_json(lua_State *L, int idx, struct conv *c)
{
	const void *p = lua_topointer(L, idx);
	lua_Integer n = 0;
	int marked = 0;
	json_t *r;

	for (int i = 0; i < c->depth; i++)
		if (c->seen[i] == p)
			return fail(c, "cycle in table");
	if (c->depth >= LUAJSON_MAX_DEPTH)
		return fail(c, "nesting too deep");
	if (!lua_checkstack(L, 6))
		return fail(c, "Lua stack exhausted");
	c->seen[c->depth++] = p;

	if (lua_getmetatable(L, idx)) {
		lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key); /* no allocation */
		marked = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
	}
	if (marked) {
		n = (lua_Integer)lua_rawlen(L, idx);
		r = array_to_json(L, idx, n, c);
	} else if (is_sequence(L, idx, &n)) {
		r = array_to_json(L, idx, n, c);
	} else {
		r = object_to_json(L, idx, c);
	}
	c->depth--;
	return r;
}

static json_t *to_json(lua_State *L, int idx, struct conv *c)
{
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return json_null();
	case LUA_TBOOLEAN:
		return json_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		return number_to_json(L, idx, c);
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		json_t *x = json_stringn_nocheck(s, len);
		return x ? x : fail(c, "out of memory");
	}
	case LUA_TTABLE:
		return table_to_json(L, idx, c);
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == NULL)
			return json_null();
		return fail(c, "userdata is not convertible to JSON");
	default: {
		char what[64];
		snprintf(what, sizeof what, "a %s is not convertible to JSON",
			 lua_typename(L, lua_type(L, idx)));
		return fail(c, what);
	}
	}
}

json_t *luajson_to_json(lua_State *L, int idx, char *err, size_t errlen)
{
	return luajson_to_json_skip(L, idx, NULL, err, errlen);
}

json_t *luajson_to_json_skip(lua_State *L, int idx, const char *skip, char *err, size_t errlen)
{
	struct conv c;

	c.depth = 0;
	c.nsegs = 0;
	c.err = err;
	c.errlen = errlen;
	c.skip = skip;
	return to_json(L, lua_absindex(L, idx), &c);
}

int luajson_is_sequence(lua_State *L, int idx, lua_Integer *n)
{
	return is_sequence(L, lua_absindex(L, idx), n);
}

int luajson_is_marked_array(lua_State *L, int idx)
{
	int marked = 0;
	idx = lua_absindex(L, idx);
	if (lua_getmetatable(L, idx)) {
		lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key); /* no allocation */
		marked = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
	}
	return marked;
}
