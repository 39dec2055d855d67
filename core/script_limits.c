/*
 * script_limits.c: the memory cap, the instruction budget and the charging
 * of C functions against it (see script_limits.h).
 */
#include "script_limits.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_STEP 1000 /* instructions between budget checks */

/*
 * lua_Alloc with a cap. When ptr is NULL, osize is a type tag, not a size.
 * Growth past the cap fails (Lua then runs an emergency collection and
 * raises a memory error); shrinking never fails, as Lua requires.
 */
void *limits_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct vm *vm = ud;
	size_t old = ptr ? osize : 0;
	void *p;

	if (nsize == 0) {
		free(ptr);
		vm->mem_used -= old;
		return NULL;
	}
	if (nsize > old && nsize - old > vm->mem_cap - vm->mem_used) {
		if (!vm->mem_hit && vm->L && vm->hook_step) {
			/* Where the script was: lua_getstack/lua_getinfo("Sl") do not
			 * allocate, so they are safe to call from here. */
			lua_Debug ar;
			vm->mem_where[0] = '\0';
			for (int level = 0; level < 32 && lua_getstack(vm->L, level, &ar); level++) {
				if (lua_getinfo(vm->L, "Sl", &ar) && ar.currentline > 0) {
					snprintf(vm->mem_where, sizeof vm->mem_where, "%s:%d",
						 ar.short_src, ar.currentline);
					break;
				}
			}
		}
		vm->mem_hit = 1;
		return NULL;
	}
	p = realloc(ptr, nsize);
	if (!p) {
		if (nsize <= old)
			return ptr; /* keep the larger block */
		vm->mem_hit = 1;
		return NULL;
	}
	vm->mem_used = vm->mem_used - old + nsize;
	return p;
}

/*
 * Count hook. Once the budget is spent it records where, switches to firing
 * on every instruction and raises each time, so a pcall inside the script
 * cannot swallow the error and carry on.
 */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
	struct vm *vm = vm_of(L);
	vm->count += vm->hook_step;
	if (!vm->budget_hit && vm->count < vm->budget)
		return;
	if (!vm->budget_hit) {
		vm->budget_hit = 1;
		if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
			snprintf(vm->budget_where, sizeof vm->budget_where, "%s:%d",
				 ar->short_src, ar->currentline);
		else
			snprintf(vm->budget_where, sizeof vm->budget_where, "%s", vm->chunk);
		vm->hook_step = 1;
		lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
	}
	lua_pushliteral(L, "instruction budget exceeded");
	lua_error(L);
}

void limits_reset(struct vm *vm)
{
	vm->count = 0;
	vm->budget_hit = 0;
	vm->mem_hit = 0;
	vm->mem_where[0] = '\0';
	if (vm->hook_step != HOOK_STEP) {
		vm->hook_step = HOOK_STEP;
		lua_sethook(vm->L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
	}
}

/*
 * Raises the budget error from C (as the hook would) and arms the hook to
 * fire on every instruction.
 */
static int budget_raise(lua_State *L, struct vm *vm)
{
	if (!vm->budget_hit) {
		lua_Debug ar;
		vm->budget_hit = 1;
		if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
			snprintf(vm->budget_where, sizeof vm->budget_where, "%s:%d",
				 ar.short_src, ar.currentline);
		else
			snprintf(vm->budget_where, sizeof vm->budget_where, "%s", vm->chunk);
		vm->hook_step = 1;
		lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
	}
	lua_pushliteral(L, "instruction budget exceeded");
	return lua_error(L);
}

/*
 * How a wrapped C function is charged against the instruction budget. The
 * count hook never runs inside C functions, so without this a loop of a few
 * instructions around a scan of a large string (or a C loop bounded only by
 * an integer argument, like string.rep("", 2^62) or table.move) could run
 * for minutes or forever within the budget. One instruction is charged per
 * CHARGE_UNIT bytes or elements of work; the rules avoid charging common
 * linear patterns quadratically (appends, anchored matches, s:sub(i, i)).
 */
#define CHARGE_UNIT 8
enum charge_kind {
	CH_NONE = -1,
	CH_OUT,    /* the strings and values it returns */
	CH_SCAN,   /* its string arguments, plus CH_OUT */
	CH_FIND,   /* string.find / match: what was scanned, plus CH_OUT */
	CH_REP,    /* string.rep: the count, plus CH_OUT */
	CH_SORT,   /* table.sort: n log n */
	CH_SHIFT,  /* table.insert / remove with a position: the elements shifted */
	CH_MOVE,   /* table.move: the range */
};

static enum charge_kind charge_kind_of(const char *lib, const char *fn)
{
	if (strcmp(lib, "string") == 0) {
		if (!strcmp(fn, "find") || !strcmp(fn, "match"))
			return CH_FIND;
		if (!strcmp(fn, "gsub") || !strcmp(fn, "gmatch"))
			return CH_SCAN;
		if (!strcmp(fn, "rep"))
			return CH_REP;
		return CH_OUT;
	}
	if (strcmp(lib, "table") == 0) {
		if (!strcmp(fn, "sort"))
			return CH_SORT;
		if (!strcmp(fn, "insert") || !strcmp(fn, "remove"))
			return CH_SHIFT;
		if (!strcmp(fn, "move"))
			return CH_MOVE;
		return CH_OUT;
	}
	if (strcmp(lib, "utf8") == 0 || strcmp(lib, "cjson") == 0 || strcmp(lib, "ctx") == 0)
		return CH_SCAN;
	return CH_NONE;
}

void limits_charge(lua_State *L, struct vm *vm, double units)
{
	if (units >= 1) {
		double total = (double)vm->count + units / CHARGE_UNIT;
		vm->count = total >= (double)vm->budget ? vm->budget : (long)total;
	}
	if (vm->count >= vm->budget || vm->budget_hit)
		budget_raise(L, vm);
}

/* Length of the table at 1 as the table library sees it (__len counts). */
static double table_len(lua_State *L)
{
	double n;
	if (lua_type(L, 1) != LUA_TTABLE)
		return 0;
	if (luaL_getmetafield(L, 1, "__len") == LUA_TNIL)
		return (double)lua_rawlen(L, 1);
	lua_pop(L, 1);
	lua_len(L, 1);
	n = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : 0;
	lua_pop(L, 1);
	return n;
}

/* The wrapper: upvalue 1 the function, 2 its charge_kind, 3 true for
 * table.remove (whose position is its second argument, not its third). */
static int sb_charged(lua_State *L)
{
	struct vm *vm = vm_of(L);
	int n = lua_gettop(L), kind = (int)lua_tointeger(L, lua_upvalueindex(2));
	double pre = 0, post = 0, slen = 0, init = 1;
	int anchored = 0, nres;

	switch (kind) {
	case CH_SCAN:
		for (int i = 1; i <= n; i++)
			if (lua_type(L, i) == LUA_TSTRING)
				pre += (double)lua_rawlen(L, i);
		break;
	case CH_FIND:
		if (lua_type(L, 1) == LUA_TSTRING) {
			slen = (double)lua_rawlen(L, 1);
			if (lua_type(L, 3) == LUA_TNUMBER) {
				init = (double)lua_tonumber(L, 3);
				if (init < 0)
					init = slen + init + 1;
				if (init < 1)
					init = 1;
			}
			anchored = lua_type(L, 2) == LUA_TSTRING && lua_tostring(L, 2)[0] == '^' &&
				   !lua_toboolean(L, 4);
		}
		break;
	case CH_REP:
		/* rep("", n) loops n times making nothing; otherwise its output
		 * (charged below, capped by memory) bounds its work */
		if (lua_type(L, 2) == LUA_TNUMBER && lua_tonumber(L, 2) > 0 &&
		    lua_type(L, 1) == LUA_TSTRING && lua_rawlen(L, 1) == 0 &&
		    (lua_type(L, 3) != LUA_TSTRING || lua_rawlen(L, 3) == 0))
			pre = (double)lua_tonumber(L, 2);
		break;
	case CH_SORT: {
		double m = table_len(L);
		pre = m > 1 ? m * log2(m) * CHARGE_UNIT : 0;
		break;
	}
	case CH_SHIFT:
		/* with a position, the elements from there to the end (as __len
		 * says) are shifted; appending and popping shift nothing */
		if (n >= (lua_toboolean(L, lua_upvalueindex(3)) ? 2 : 3)) {
			double len = table_len(L);
			double pos = lua_type(L, 2) == LUA_TNUMBER ? (double)lua_tonumber(L, 2) : 1;
			pre = len - pos + 1 > 0 ? len - pos + 1 : 0;
		}
		break;
	case CH_MOVE:
		if (lua_type(L, 2) == LUA_TNUMBER && lua_type(L, 3) == LUA_TNUMBER &&
		    lua_tonumber(L, 3) >= lua_tonumber(L, 2))
			pre = (double)lua_tonumber(L, 3) - (double)lua_tonumber(L, 2) + 1;
		pre *= 4;
		break;
	}
	limits_charge(L, vm, pre);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, n, LUA_MULTRET);
	nres = lua_gettop(L);
	post = nres;
	for (int i = 1; i <= nres; i++)
		if (lua_type(L, i) == LUA_TSTRING)
			post += (double)lua_rawlen(L, i);
	if (kind == CH_FIND && !anchored && init <= slen) {
		if (nres >= 1 && lua_isnil(L, 1))
			post += slen - init + 1;
		else if (nres >= 2 && lua_type(L, 2) == LUA_TNUMBER)
			post += (double)lua_tonumber(L, 2) - init + 1;
	}
	limits_charge(L, vm, post);
	return nres;
}

/*
 * Raises again when a protected call failed because of a limit: the budget
 * (also enforced by the hook), or the memory cap (a memory error, or any
 * error while the allocator refused memory, such as cjson.safe's). Catching
 * those would let a script spin on them: each memory error costs a full
 * emergency collection but only a few instructions.
 */
void limits_rethrow(lua_State *L, struct vm *vm, int status, int mem_before)
{
	if (status == LUA_ERRMEM || vm->mem_hit || vm->budget_hit)
		lua_error(L);
	vm->mem_hit = mem_before;
}

void limits_wrap(lua_State *L, const char *lib, const char *fn)
{
	enum charge_kind k = charge_kind_of(lib, fn);
	if (k == CH_NONE)
		return;
	lua_pushinteger(L, k);
	lua_pushboolean(L, strcmp(fn, "remove") == 0);
	lua_pushcclosure(L, sb_charged, 3);
}

void limits_wrap_scan(lua_State *L)
{
	lua_pushinteger(L, CH_SCAN);
	lua_pushboolean(L, 0);
	lua_pushcclosure(L, sb_charged, 3);
}
