-- lib/util.lua: small helpers shared by provider adapters and hooks.
-- Pure functions; anything that needs ctx (ctx.array) takes it as an argument.
local M = {}

-- v, or nil when v is nil or JSON null (null is a light userdata).
function M.val(v)
	if type(v) == "userdata" then return nil end
	return v
end

-- The first argument that is neither nil nor JSON null.
function M.first(...)
	for i = 1, select("#", ...) do
		local v = select(i, ...)
		if v ~= nil and type(v) ~= "userdata" then return v end
	end
	return nil
end

-- An id (string or number) as a string: 12345 and 12345.0 both give "12345".
-- nil for nil, null, "" and anything else.
function M.str(v)
	if type(v) == "string" then return v ~= "" and v or nil end
	if type(v) == "number" then
		if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
		return tostring(v)
	end
	return nil
end

-- base .. "/" .. path with exactly one slash between them.
function M.join(base, path)
	base = (tostring(base or ""):gsub("/+$", ""))
	path = (tostring(path or ""):gsub("^/+", ""))
	return base .. "/" .. path
end

-- The non-empty strings among the arguments joined with ": ", or nil.
function M.concat(...)
	local parts = {}
	for i = 1, select("#", ...) do
		local s = select(i, ...)
		if type(s) == "string" and s ~= "" then parts[#parts + 1] = s end
	end
	return #parts > 0 and table.concat(parts, ": ") or nil
end

-- Text of one FastAPI-style "detail": a string, or a list of {msg, loc}.
local function detail_text(d)
	if type(d) == "string" then return d ~= "" and d or nil end
	if type(d) ~= "table" then return nil end
	if #d == 0 then d = { d } end
	local parts = {}
	for _, e in ipairs(d) do
		if type(e) == "string" then
			parts[#parts + 1] = e
		elseif type(e) == "table" then
			local m = M.first(e.msg, e.message)
			if type(m) == "string" then
				local loc = {}
				if type(e.loc) == "table" then
					for _, l in ipairs(e.loc) do loc[#loc + 1] = M.str(l) end
				end
				parts[#parts + 1] = #loc > 0 and (m .. " (" .. table.concat(loc, ".") .. ")") or m
			end
		end
	end
	return #parts > 0 and table.concat(parts, "; ") or nil
end

-- The message in a provider error body (decoded JSON) in any of the common
-- shapes: {detail = "..."}, {detail = {{msg, loc}}}, {error = "..."},
-- {error = {message}}, {message}, {messege}; validation lists
-- {errors = {{field, message}}} are appended. At most 500 bytes; nil if none.
function M.message(b)
	if type(b) == "string" then return b ~= "" and b:sub(1, 500) or nil end
	if type(b) ~= "table" then return nil end
	local e = M.val(b.error)
	local m = detail_text(M.val(b.detail))
		or (type(e) == "string" and e ~= "" and e)
		or (type(e) == "table" and M.message(e))
		or nil
	if not m then
		m = M.first(b.message, b.messege, b.msg)
		m = type(m) == "string" and m ~= "" and m or nil
	end
	if type(b.errors) == "table" then
		local list = {}
		for _, v in ipairs(b.errors) do
			if type(v) == "table" and type(v.message) == "string" then
				list[#list + 1] = type(v.field) == "string" and (v.field .. ": " .. v.message) or v.message
			end
		end
		if #list > 0 then m = M.concat(m, table.concat(list, "; ")) end
	end
	return m and m:sub(1, 500) or nil
end

-- The message of a provider response res ({status, body, json}): the body's
-- message, else the start of a non-JSON body, else "HTTP <status>".
function M.res_message(res)
	local m = M.message(res.json)
	if not m and type(res.body) == "string" and res.body ~= "" and res.json == nil then
		m = res.body:sub(1, 200)
	end
	return m or ("HTTP " .. (M.str(res.status) or "?"))
end

-- true when res.status is 2xx.
function M.ok(res)
	return type(res.status) == "number" and res.status >= 200 and res.status < 300
end

local EXT = {
	png = { "image", "image/png" }, jpg = { "image", "image/jpeg" }, jpeg = { "image", "image/jpeg" },
	webp = { "image", "image/webp" }, gif = { "image", "image/gif" },
	mp4 = { "video", "video/mp4" }, webm = { "video", "video/webm" }, mov = { "video", "video/quicktime" },
	mp3 = { "audio", "audio/mpeg" }, wav = { "audio", "audio/wav" }, ogg = { "audio", "audio/ogg" },
	flac = { "audio", "audio/flac" },
	glb = { "object", "model/gltf-binary" }, obj = { "object", "model/obj" },
}
local MAJOR = { image = "image", video = "video", audio = "audio", model = "object", text = "text" }

-- Unified type of a content type ("image/png" -> "image", "model/..." -> "object"), or nil.
function M.type_of(ct)
	local major = type(ct) == "string" and ct:match("^%s*(%a+)/")
	return major and MAJOR[major:lower()] or nil
end

-- Type and content type guessed from a URL's extension (or a data: URL's
-- media type); nil, nil when unknown.
function M.guess(url)
	if type(url) ~= "string" then return nil, nil end
	local mime = url:match("^data:([%w%.%+%-]+/[%w%.%+%-]+)")
	if mime then return M.type_of(mime), mime end
	local path = url:gsub("[?#].*$", "")
	local ext = path:match("/[^/]*%.(%w+)$")
	local e = ext and EXT[ext:lower()]
	if e then return e[1], e[2] end
	return nil, nil
end

-- A unified output item {type, url, content_type?}; nil unless url is a
-- non-empty string. typ wins when given; else the content type, else the URL's
-- extension decides; "file" when nothing does.
function M.item(url, typ, ct)
	if type(url) ~= "string" or url == "" then return nil end
	local gt, gct = M.guess(url)
	ct = type(ct) == "string" and ct ~= "" and ct or gct
	typ = type(typ) == "string" and typ ~= "" and typ or nil
	return { type = typ or M.type_of(ct) or gt or "file", url = url, content_type = ct }
end

-- Items for a list of URL strings (or one URL string); see M.item for typ.
function M.items_from_urls(urls, typ)
	local items = {}
	if type(urls) == "string" then urls = { urls } end
	if type(urls) == "table" then
		for _, u in ipairs(urls) do items[#items + 1] = M.item(u, typ) end
	end
	return items
end

-- Every {url = ...} object in a decoded payload (at most 3 levels deep) as
-- items, each URL once. hints: ordered list of {key, type}; files under those
-- keys get that type and come first, other keys follow by name.
function M.file_items(payload, hints)
	local hint, rank = {}, {}
	for i, h in ipairs(hints or {}) do hint[h[1]], rank[h[1]] = h[2], i end
	local out, seen = {}, {}
	local function walk(v, typ, depth)
		if type(v) ~= "table" or depth > 3 then return end
		if type(v.url) == "string" then
			if not seen[v.url] then
				seen[v.url] = true
				out[#out + 1] = M.item(v.url, typ, M.val(v.content_type))
			end
		elseif #v > 0 then
			for _, e in ipairs(v) do walk(e, typ, depth + 1) end
		else
			local keys = {}
			for k in pairs(v) do if type(k) == "string" then keys[#keys + 1] = k end end
			table.sort(keys, function(a, b)
				local ra, rb = rank[a] or math.huge, rank[b] or math.huge
				if ra ~= rb then return ra < rb end
				return a < b
			end)
			for _, k in ipairs(keys) do walk(v[k], typ or hint[k], depth + 1) end
		end
	end
	walk(payload, nil, 0)
	return out
end

-- A unified output {type, items}: typ, else the first item's type, else "file".
function M.output(items, ctx, typ)
	typ = type(typ) == "string" and typ ~= "" and typ or (items[1] and items[1].type) or "file"
	return { type = typ, items = ctx.array(items) }
end

-- Result helpers.
function M.succeeded(items, ctx, request_id, typ)
	return { state = "succeeded", request_id = request_id, output = M.output(items, ctx, typ) }
end

-- A failed result; code is left out when nil (the core then picks
-- PROVIDER_REJECTED for a 4xx answer, else PROVIDER_FAILURE).
function M.failed(message, code, request_id)
	return { state = "failed", request_id = request_id, error = { code = code, message = message } }
end

-- {name = value} when value is a non-empty string, else {} (omits an unset key).
function M.header(name, value)
	if type(value) ~= "string" or value == "" then return {} end
	return { [name] = value }
end

-- job.request_id, raising when the provider has not given one yet.
function M.request_id(job)
	local id = M.str(job.request_id)
	if not id then error("job has no request_id yet", 2) end
	return id
end

-- false, reason when the id a callback carries differs from the job's
-- provider id (both known); true otherwise. For providers that do not sign.
function M.same_id(job, got, what)
	got = M.str(got)
	if job and job.request_id and got and got ~= M.str(job.request_id) then
		return false, (what or "id") .. " does not match the job's request id"
	end
	return true
end

-- For providers that do not sign and whose documented callbacks always name
-- the provider's request id: true when got (the id the callback names) is the
-- job's request id; false, reason when it names none or another one. Before
-- the job's request id is known, any named id is accepted.
function M.require_id(job, got, what)
	what = what or "id"
	got = M.str(got)
	if not got then return false, "callback names no " .. what end
	return M.same_id(job, got, what)
end

return M
