-- lib/auth.lua: how an adapter sends its provider key. Each helper returns a
-- function of ctx, so an adapter writes it once:
--   local auth = A.bearer()                      -- Authorization: Bearer <key>
--   headers = auth(ctx)                          -- a new table each call ({} without a key)
-- setting names the providers.NAME setting that holds the key ("key" when
-- nil); with a key pool, ctx.secret("key") is the job's key.
local M = {}

local function secret(ctx, setting)
	local k = ctx.secret(setting or "key")
	if type(k) ~= "string" or k == "" then return nil end
	return k
end

-- A header carrying the key: name = prefix .. key (prefix "" when nil).
function M.header(name, prefix, setting)
	return function(ctx)
		local k = secret(ctx, setting)
		if not k then return {} end
		return { [name] = (prefix or "") .. k }
	end
end

-- Authorization: Bearer <key>.
function M.bearer(setting) return M.header("Authorization", "Bearer ", setting) end

-- A query parameter carrying the key: the returned function takes (url, ctx)
-- and gives url with name=<key, percent-encoded> appended (url as is
-- without a key).
function M.query(name, setting)
	return function(url, ctx)
		local k = secret(ctx, setting)
		if not k then return url end
		return url .. (url:find("?", 1, true) and "&" or "?") .. name .. "=" .. ctx.url_encode(k)
	end
end

return M
