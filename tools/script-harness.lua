#!/usr/bin/env lua5.4
--[[
script-harness.lua: a development stand-in for the C Lua host, to run the
recorded-payload cases (tests/scripts/NAME.json, format in docs/scripts.md)
and every script's own `examples` without building genrelay.

    lua5.4 tools/script-harness.lua [-v] [--scripts DIR] [FILE.json ...]

With no files it runs every tests/scripts/*.json of the checkout the harness
lives in; scripts come from its scripts/ unless --scripts says otherwise.
-v prints each result (and verify's reason).

What it imitates: the sandboxed environment (allowlisted globals, require for
lib.* and cjson only, an instruction budget), JSON as the host converts it
(integers stay integers, arrays carry a marker so [] survives, null is
cjson.null), ctx with every documented field, and subset matching of `expect`.
Crypto (sha256, HMAC, Ed25519) shells out to openssl; base64 and hex are plain
Lua. The case's ctx may set callback_url, keys and now (fixed unix time).
The real check is the C runner unit_test_scripts; this is only a dev aid.
]]
local cjson = require("cjson")
local NULL = cjson.null
local ARRAY = { __name = "json.array" }

------------------------------------------------------------------ JSON ----
-- Decoder that keeps integers and marks arrays (as core/luajson.c does).
local function decode(s)
	local pos = 1
	local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
	local function fail(msg) error(string.format("JSON: %s at byte %d", msg, pos), 0) end
	local value
	local ESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
	local function str()
		local out, i = {}, pos + 1
		while true do
			local c = s:sub(i, i)
			if c == "" then fail("unterminated string") end
			if c == '"' then pos = i + 1; return table.concat(out) end
			if c == "\\" then
				local e = s:sub(i + 1, i + 1)
				if e == "u" then
					local cp = tonumber(s:sub(i + 2, i + 5), 16) or fail("bad \\u")
					i = i + 6
					if cp >= 0xD800 and cp <= 0xDBFF and s:sub(i, i + 1) == "\\u" then
						local lo = tonumber(s:sub(i + 2, i + 5), 16)
						if lo and lo >= 0xDC00 and lo <= 0xDFFF then
							cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
							i = i + 6
						end
					end
					out[#out + 1] = utf8.char(cp)
				else
					out[#out + 1] = ESC[e] or fail("bad escape")
					i = i + 2
				end
			else
				local j = s:find('["\\]', i) or fail("unterminated string")
				out[#out + 1] = s:sub(i, j - 1)
				i = j
			end
		end
	end
	function value()
		ws()
		local c = s:sub(pos, pos)
		if c == "{" then
			local t = {}
			pos = pos + 1; ws()
			if s:sub(pos, pos) == "}" then pos = pos + 1; return t end
			while true do
				ws()
				if s:sub(pos, pos) ~= '"' then fail("expected key") end
				local k = str(); ws()
				if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
				pos = pos + 1
				t[k] = value(); ws()
				local d = s:sub(pos, pos); pos = pos + 1
				if d == "}" then return t end
				if d ~= "," then fail("expected ',' or '}'") end
			end
		elseif c == "[" then
			local t = setmetatable({}, ARRAY)
			pos = pos + 1; ws()
			if s:sub(pos, pos) == "]" then pos = pos + 1; return t end
			while true do
				t[#t + 1] = value(); ws()
				local d = s:sub(pos, pos); pos = pos + 1
				if d == "]" then return t end
				if d ~= "," then fail("expected ',' or ']'") end
			end
		elseif c == '"' then
			return str()
		elseif s:find("^true", pos) then pos = pos + 4; return true
		elseif s:find("^false", pos) then pos = pos + 5; return false
		elseif s:find("^null", pos) then pos = pos + 4; return NULL
		else
			local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos) or fail("unexpected character")
			pos = pos + #num
			local n = tonumber(num) or fail("bad number")
			if not num:find("[%.eE]") then n = math.tointeger(n) or n end
			return n
		end
	end
	local v = value(); ws()
	if pos <= #s then fail("trailing data") end
	return v
end

-- "array", "object" or a Lua type name, by the host's rule: a table is an
-- array when it carries the marker or its keys are exactly 1..n with n >= 1.
local function kind(v)
	if type(v) ~= "table" then return v == NULL and "null" or type(v) end
	if getmetatable(v) == ARRAY then return "array" end
	local n = 0
	for _ in pairs(v) do n = n + 1 end
	if n > 0 and n == #v then return "array" end
	return "object"
end

local function encode(v, depth)
	depth = depth or 0
	if depth > 64 then error("too deep") end
	local k = kind(v)
	if k == "null" or v == nil then return "null" end
	if k == "string" then return cjson.encode(v) end
	if k == "number" then
		if v ~= v or v == math.huge or v == -math.huge then error("NaN/inf") end
		if math.type(v) == "integer" then return tostring(v) end
		return v == math.floor(v) and string.format("%.1f", v) or string.format("%.14g", v)
	end
	if k == "boolean" then return tostring(v) end
	if k == "array" then
		local out = {}
		for i = 1, #v do out[i] = encode(v[i], depth + 1) end
		return "[" .. table.concat(out, ",") .. "]"
	end
	if k == "object" then
		local keys = {}
		for key in pairs(v) do
			if type(key) ~= "string" and type(key) ~= "number" then error("bad key type " .. type(key)) end
			keys[#keys + 1] = tostring(key)
		end
		table.sort(keys)
		local out = {}
		for _, key in ipairs(keys) do
			local val = v[key]
			if val == nil then val = v[tonumber(key)] end
			out[#out + 1] = cjson.encode(key) .. ":" .. encode(val, depth + 1)
		end
		return "{" .. table.concat(out, ",") .. "}"
	end
	error("cannot convert a " .. k .. " to JSON")
end

local function copy(v)
	if type(v) ~= "table" then return v end
	local t = setmetatable({}, getmetatable(v))
	for k, x in pairs(v) do t[k] = copy(x) end
	return t
end

----------------------------------------------------------------- crypto ---
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
	return (s:gsub("..?.?", function(c)
		local a, b, d = c:byte(1, 3)
		local n = a * 65536 + (b or 0) * 256 + (d or 0)
		local o = {}
		for i = 1, 4 do
			local idx = (n >> (6 * (4 - i))) & 63
			o[i] = B64:sub(idx + 1, idx + 1)
		end
		if not b then o[3], o[4] = "=", "=" elseif not d then o[4] = "=" end
		return table.concat(o)
	end))
end
local function base64_decode(s)
	if type(s) ~= "string" then return nil end
	s = s:gsub("%-", "+"):gsub("_", "/"):gsub("=+$", "")
	if s:find("[^%w%+/]") or #s % 4 == 1 then return nil end
	local out, bits, nbits = {}, 0, 0
	for i = 1, #s do
		bits = (bits << 6) | (B64:find(s:sub(i, i), 1, true) - 1)
		nbits = nbits + 6
		if nbits >= 8 then
			nbits = nbits - 8
			out[#out + 1] = string.char((bits >> nbits) & 255)
		end
	end
	return table.concat(out)
end
local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function hex_decode(s)
	if type(s) ~= "string" or #s % 2 == 1 or s:find("[^%x]") then return nil end
	return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

local function tmpfile(data)
	local p = os.tmpname()
	local f = assert(io.open(p, "wb"))
	f:write(data)
	f:close()
	return p
end
local function openssl(args, ...)
	local files = { ... }
	local p = io.popen("openssl " .. args:gsub("%%(%d)", function(i) return files[tonumber(i)] end) .. " 2>/dev/null", "r")
	local out = p:read("a")
	local ok = p:close()
	for _, f in ipairs(files) do os.remove(f) end
	return out, ok
end
local function sha256(s) return (openssl("dgst -sha256 -binary %1", tmpfile(s))) end
local function hmac_sha256(key, msg)
	if key == "" then error("hmac_sha256: empty key not supported by the harness") end
	return (openssl("dgst -sha256 -mac HMAC -macopt hexkey:" .. hex(key) .. " -binary %1", tmpfile(msg)))
end
local function ed25519_verify(pub, msg, sig)
	if type(pub) ~= "string" or #pub ~= 32 or type(sig) ~= "string" or #sig ~= 64 then return false end
	local der = hex_decode("302a300506032b6570032100") .. pub
	local _, ok = openssl("pkeyutl -verify -pubin -keyform DER -inkey %1 -rawin -in %2 -sigfile %3",
		tmpfile(der), tmpfile(msg), tmpfile(sig))
	return ok == true
end
local function equal(a, b)
	if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
	local d = 0
	for i = 1, #a do d = d | (a:byte(i) ~ b:byte(i)) end
	return d == 0
end
local function url_encode(s)
	return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

---------------------------------------------------------------- sandbox ---
local function allow(lib, drop)
	local t = {}
	for k, v in pairs(lib) do if k ~= drop then t[k] = v end end
	return t
end

-- A fresh environment per script, as the host gives each script its own state.
local function sandbox(root)
	local env = {}
	for _, k in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber", "tostring",
		"type", "xpcall", "rawequal", "rawget", "rawset", "rawlen", "setmetatable", "getmetatable" }) do
		env[k] = _G[k]
	end
	env.string, env.table, env.math = allow(string, "dump"), allow(table), allow(math, "randomseed")
	env.utf8, env.os = allow(utf8), { time = os.time, date = os.date, clock = os.clock }
	local loaded = {}
	env.require = function(name)
		if name == "cjson" then return cjson end
		local lib = type(name) == "string" and name:match("^lib%.([%w_]+)$")
		if not lib then error("require: only lib.* and cjson are allowed, not " .. tostring(name), 2) end
		if loaded[lib] == nil then
			local chunk = assert(loadfile(root .. "/lib/" .. lib .. ".lua", "t", env))
			loaded[lib] = chunk() or true
		end
		return loaded[lib]
	end
	return env
end

local BUDGET = 10000000
-- Calls fn(...) under an instruction budget; returns pcall's results.
local function call(fn, ...)
	local n = 0
	debug.sethook(function()
		n = n + 1000
		if n > BUDGET then debug.sethook(); error("instruction budget exceeded", 2) end
	end, "", 1000)
	local r = table.pack(xpcall(fn, debug.traceback, ...))
	debug.sethook()
	return table.unpack(r, 1, r.n)
end

------------------------------------------------------------------- ctx ----
local SECRET = { key = true, webhook_secret = true, secret = true, token = true, api_key = true }

local function make_ctx(script, config, c)
	local settings = {}
	for k, v in pairs(script.defaults or {}) do settings[k] = v end
	for k, v in pairs(config or {}) do settings[k] = v end
	local public = {}
	for k, v in pairs(settings) do if not SECRET[k] then public[k] = v end end
	c = c or {}
	return {
		json = cjson, null = NULL,
		array = function(t) return setmetatable(t, ARRAY) end,
		secret = function(name)
			local v = settings[name]
			if v == NULL then return nil end
			return v
		end,
		config = public,
		callback_url = c.callback_url,
		keys = c.keys,
		hmac_sha256 = hmac_sha256, sha256 = sha256, ed25519_verify = ed25519_verify,
		base64 = base64, base64_decode = base64_decode, hex = hex, hex_decode = hex_decode,
		equal = equal, url_encode = url_encode,
		now = function() return c.now or os.time() end,
		log = function(msg) io.stderr:write("  log: ", tostring(msg), "\n") end,
	}
end

--------------------------------------------------------------- matching ---
-- nil when got matches exp as a subset, else a description of the first difference.
local function match(exp, got, path)
	local ke, kg = kind(exp), kind(got)
	if got == nil then kg = "absent" end
	if ke == "object" then
		if kg ~= "object" then return path .. ": expected an object, got " .. kg end
		for k, v in pairs(exp) do
			local d = match(v, got[k], path .. "." .. tostring(k))
			if d then return d end
		end
		return nil
	elseif ke == "array" then
		if kg ~= "array" then return path .. ": expected an array, got " .. kg end
		if #exp ~= #got then return string.format("%s: expected %d elements, got %d", path, #exp, #got) end
		for i = 1, #exp do
			local d = match(exp[i], got[i], path .. "[" .. i .. "]")
			if d then return d end
		end
		return nil
	end
	if ke == "number" and kg == "number" then
		if exp == got and math.type(exp) == math.type(got) then return nil end
	elseif exp == got then
		return nil
	end
	return string.format("%s: expected %s, got %s", path, encode(exp), got == nil and "nothing" or encode(got))
end

-- Shape checks on what a provider function returned; nil or a complaint.
local STATES = { processing = true, succeeded = true, failed = true, canceled = true, retry = true }
local REQUEST_FNS = { submit = true, poll = true, cancel = true }
local function lint(fn, r)
	if fn == "verify" or fn == "transform" then return nil end
	if r == nil then
		if REQUEST_FNS[fn] then return nil end -- no request: nothing to send (e.g. cancel before an id)
		return fn .. " returned nothing"
	end
	if type(r) ~= "table" then return fn .. " returned a " .. type(r) end
	if REQUEST_FNS[fn] or fn == "next" then
		if type(r.method) ~= "string" or type(r.url) ~= "string" then return fn .. ": request needs method and url" end
		if r.url:find("[%s]") then return fn .. ": url contains white space" end
		return nil
	end
	if not STATES[r.state] then return fn .. ": bad state " .. tostring(r.state) end
	if r.state == "retry" and fn ~= "on_submitted" then return "retry is for on_submitted only" end
	if r.request_id ~= nil and type(r.request_id) ~= "string" then return "request_id must be a string" end
	if r.state == "failed" and (type(r.error) ~= "table" or type(r.error.message) ~= "string") then
		return "failed without error.message"
	end
	if r.output ~= nil then
		if type(r.output) ~= "table" or type(r.output.type) ~= "string" or kind(r.output.items) ~= "array" then
			return "output needs type and an items array"
		end
		for _, it in ipairs(r.output.items) do
			if type(it.url) ~= "string" or type(it.type) ~= "string" then return "output item needs type and url" end
		end
	end
	if r.next ~= nil then return lint("next", r.next) end
	return nil
end

----------------------------------------------------------------- runner ---
-- Paths default to the checkout this file lives in (tools/..).
local repo = (arg[0]:match("^(.*)/tools/[^/]*$") or ".")
local verbose, root, files = false, repo .. "/scripts", {}
do
	local i = 1
	while arg[i] do
		if arg[i] == "-v" then verbose = true
		elseif arg[i] == "--scripts" then i = i + 1; root = arg[i]
		else files[#files + 1] = arg[i] end
		i = i + 1
	end
	if #files == 0 then
		local p = io.popen("ls '" .. repo .. "'/tests/scripts/*.json 2>/dev/null")
		for f in p:lines() do files[#files + 1] = f end
		p:close()
	end
end

local total, failed = 0, 0
local function report(name, problem, result)
	total = total + 1
	if problem then
		failed = failed + 1
		print("FAIL " .. name .. "\n     " .. problem:gsub("\n", "\n     "))
	elseif verbose then
		print("ok   " .. name .. "  ->  " .. (pcall(encode, result) and encode(result) or tostring(result)))
	end
end

-- Runs one call described by a case or an example and reports it.
local function run_one(label, script, ctx, c)
	local fn = script[c.fn]
	if type(fn) ~= "function" then return report(label, "no function " .. tostring(c.fn)) end
	local args = copy(c.args or {})
	local n = #args
	args[n + 1] = ctx
	local ok, result, reason = call(fn, table.unpack(args, 1, n + 1))
	if c.expect_error then
		if ok then return report(label, "expected an error containing " .. c.expect_error) end
		if not tostring(result):find(c.expect_error, 1, true) then return report(label, "wrong error: " .. tostring(result)) end
		return report(label, nil, result)
	end
	if not ok then return report(label, "raised: " .. tostring(result)) end
	local conv_ok, conv_err = pcall(encode, result)
	if not conv_ok then return report(label, "result is not JSON: " .. tostring(conv_err)) end
	local problem = lint(c.fn, result)
	if not problem and c.expect ~= nil then problem = match(c.expect, result, "result") end
	if problem and c.fn == "verify" and reason then problem = problem .. " (reason: " .. tostring(reason) .. ")" end
	if verbose and c.fn == "verify" and reason then result = tostring(result) .. " (" .. tostring(reason) .. ")" end
	report(label, problem, result)
end

local checked = {}
for _, file in ipairs(files) do
	local f = assert(io.open(file, "rb"))
	local ok, spec = pcall(decode, f:read("a"))
	f:close()
	if not ok then
		report(file, spec)
	else
		local dir = spec.kind == "hook" and "hooks" or "providers"
		local path = root .. "/" .. dir .. "/" .. spec.name .. ".lua"
		local chunk, err = loadfile(path, "t", sandbox(root))
		local script
		if chunk then
			ok, script = call(chunk)
			if not ok then err = script end
		end
		if not chunk or not ok then
			report(path, "load: " .. tostring(err))
		elseif type(script) ~= "table" then
			report(path, "does not return a table")
		else
			local need = spec.kind == "hook" and { "transform" } or { "submit", "on_submitted", "on_callback" }
			for _, fn in ipairs(need) do
				if type(script[fn]) ~= "function" then report(path, "missing function " .. fn) end
			end
			if spec.kind ~= "hook" and script.name ~= spec.name then report(path, "name differs from the file name") end
			if script.poll and not script.on_polled then report(path, "poll without on_polled") end
			if not checked[path] then
				checked[path] = true
				for i, ex in ipairs(script.examples or {}) do
					run_one(path .. " example " .. i, script, make_ctx(script, spec.config, nil), ex)
				end
			end
			for i, c in ipairs(spec.cases or {}) do
				run_one(file .. " #" .. i .. " " .. tostring(c.name), script, make_ctx(script, spec.config, c.ctx), c)
			end
		end
	end
end
print(string.format("%d checks, %d failed", total, failed))
os.exit(failed == 0 and 0 or 1)
