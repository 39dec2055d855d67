-- lib/standard_webhooks.lua: verifies callbacks signed with Standard Webhooks
-- (https://www.standardwebhooks.com; Replicate signs this way): headers
-- webhook-id, webhook-timestamp and webhook-signature, a space-separated
-- list of "v1,<base64 HMAC-SHA256 of id.timestamp.body>". A provider that
-- signs so needs one line:
--   verify = SW.verify("webhook_secret"),
-- The setting (providers.NAME.webhook_secret) is "whsec_<base64>" (the key
-- is the decoded bytes) or a raw key; a list of them is accepted while a
-- secret is rotated. opts.tolerance_s (default 300) bounds the timestamp's
-- distance from ctx.now() either way.
local M = {}

M.TOLERANCE_S = 300

-- The key bytes of a secret ("whsec_<base64>" decoded, else as given).
local function key_of(ctx, secret)
	local b64 = secret:match("^whsec_(.+)$")
	if b64 then return ctx.base64_decode(b64) end
	return secret
end

-- true, or false and the reason: checks req (headers lower-case, raw body)
-- against secrets (a string or a list of strings).
function M.check(req, ctx, secrets, opts)
	if type(secrets) == "string" then secrets = { secrets } end
	if type(secrets) ~= "table" or #secrets == 0 then return false, "no webhook secret is configured" end
	local h = req.headers or {}
	local id, ts, sigs = h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"]
	if type(id) ~= "string" or type(ts) ~= "string" or type(sigs) ~= "string" then
		return false, "missing webhook-id, webhook-timestamp or webhook-signature"
	end
	local t = ts:match("^%d+$") and tonumber(ts)
	local tolerance = (opts and opts.tolerance_s) or M.TOLERANCE_S
	if not t or math.abs(ctx.now() - t) > tolerance then
		return false, "webhook-timestamp outside " .. tolerance .. " s"
	end
	local signed = id .. "." .. ts .. "." .. (req.body or "")
	for _, secret in ipairs(secrets) do
		local key = type(secret) == "string" and secret ~= "" and key_of(ctx, secret)
		if key then
			local want = ctx.base64(ctx.hmac_sha256(key, signed))
			for sig in sigs:gmatch("%S+") do
				local v, b = sig:match("^(v1),(.+)$")
				if v and ctx.equal(b, want) then return true end
			end
		end
	end
	return false, "webhook-signature does not match"
end

-- A verify function (verify(req, ctx, job)) reading the secret from the
-- provider setting named setting.
function M.verify(setting, opts)
	return function(req, ctx)
		return M.check(req, ctx, ctx.secret(setting), opts)
	end
end

return M
