-- fal.ai queue API (docs/provider-facts.md, "fal").
local U = require("lib.util")
local A = require("lib.auth")

-- @fal-ai/client's ensureEndpointIdFormat: an id without a slash in the
-- legacy form "123-app" is "123/app"; any other id is used as given.
local function endpoint_id(model)
	if model:find("/", 1, true) then return model end
	local owner, name = model:match("^(%d+)%-([%w%-]+)$")
	return owner and (owner .. "/" .. name) or model
end

-- The request prefix status, result and cancel use, by @fal-ai/client's
-- parseEndpointId: "owner/alias" of "owner/alias[/path]", and
-- "namespace/owner/alias" when the id starts with a namespace
-- (workflows/, comfy/).
local NAMESPACES = { workflows = true, comfy = true }
local function prefix_of(model)
	local parts = {}
	for p in endpoint_id(model):gmatch("[^/]+") do parts[#parts + 1] = p end
	local n = NAMESPACES[parts[1]] and 3 or 2
	return table.concat(parts, "/", 1, math.min(n, #parts))
end

-- u when it is an http(s) URL on base_url's origin (scheme, host, port),
-- else nil: a URL fal returned is used (with the key) only on fal's own host.
local function origin(u) return type(u) == "string" and u:match("^(https?://[^/?#]+)") or nil end
local function own_url(u, ctx)
	local o, b = origin(u), origin(ctx.config.base_url)
	return (o and b and o:lower() == b:lower()) and u or nil
end

local auth = A.header("Authorization", "Key ")

-- The status ("status_url"), result ("response_url") or cancel ("cancel_url")
-- URL: the one the submit answer returned (fal asks clients to use them),
-- else built from the request prefix as @fal-ai/client builds it.
local SUFFIX = { status_url = "/status", response_url = "", cancel_url = "/cancel" }
local function request_url(job, ctx, which)
	local given = own_url((job.data or {})[which], ctx)
	if given then return given end
	return U.join(ctx.config.base_url, prefix_of(job.model) .. "/requests/" .. U.request_id(job) .. SUFFIX[which])
end

-- Payload keys whose files have a known type, listed first in this order.
local HINTS = { { "images", "image" }, { "image", "image" }, { "videos", "video" }, { "video", "video" },
	{ "audio", "audio" }, { "audio_file", "audio" }, { "audio_url", "audio" } }

local function items(payload) return U.file_items(payload, HINTS) end

return {
	name = "fal",
	errors = "core", -- non-2xx answers never reach on_submitted/on_polled (docs/scripts.md)
	models = { "fal%-ai/.+" },
	defaults = { base_url = "https://queue.fal.run", jwks_url = "https://rest.alpha.fal.ai/.well-known/jwks.json" },

	submit = function(job, ctx)
		local url = U.join(ctx.config.base_url, endpoint_id(job.model))
		if ctx.callback_url then url = url .. "?fal_webhook=" .. ctx.url_encode(ctx.callback_url) end
		return { method = "POST", url = url, headers = auth(ctx), body = job.input }
	end,

	on_submitted = function(res, job, ctx)
		local b = type(res.json) == "table" and res.json or {}
		local data = {}
		for which in pairs(SUFFIX) do data[which] = own_url(U.val(b[which]), ctx) end
		return { state = "processing", request_id = U.str(b.request_id), data = data }
	end,

	-- Ed25519 over "request_id\nuser_id\ntimestamp\nhex(sha256(body))" (docs/provider-facts.md, "fal").
	verify = function(req, ctx, job)
		local h = req.headers or {}
		local rid, uid = h["x-fal-webhook-request-id"], h["x-fal-webhook-user-id"]
		local ts, sig = h["x-fal-webhook-timestamp"], h["x-fal-webhook-signature"]
		if not (rid and uid and ts and sig) then return false, "missing X-Fal-Webhook-* headers" end
		local t = tonumber(ts)
		if not t or math.abs(ctx.now() - t) > 300 then return false, "timestamp outside 300 s" end
		local b = type(req.json) == "table" and req.json or {}
		local brid, gid = U.str(b.request_id), U.str(b.gateway_request_id)
		if brid and rid ~= brid and rid ~= gid then return false, "body request_id differs from the header" end
		if job and job.request_id and rid ~= job.request_id and brid ~= job.request_id then
			return false, "request id does not match the job"
		end
		if type(ctx.keys) ~= "table" or #ctx.keys == 0 then return false, "no JWKS keys cached" end
		local raw = ctx.hex_decode(sig)
		if not raw or #raw ~= 64 then return false, "malformed signature" end
		local msg = rid .. "\n" .. uid .. "\n" .. ts .. "\n" .. ctx.hex(ctx.sha256(req.body or ""))
		for _, k in ipairs(ctx.keys) do
			local pub = type(k) == "table" and type(k.x) == "string" and ctx.base64_decode(k.x)
			if pub and #pub == 32 and (k.crv == nil or k.crv == "Ed25519") and ctx.ed25519_verify(pub, msg, raw) then
				return true
			end
		end
		return false, "signature does not verify"
	end,

	on_callback = function(req, job, ctx)
		local b = req.json
		if type(b) ~= "table" then return { state = "processing" } end -- unreadable: keep polling
		local payload = U.val(b.payload)
		if b.status == "ERROR" then
			local e = U.val(b.error)
			return U.failed(U.concat(type(e) == "string" and e or U.message(e), U.message(payload),
				U.val(b.payload_error)) or "fal reported an error", "PROVIDER_FAILURE")
		end
		-- OK without a payload (payload null, payload_error set): the generation
		-- succeeded but its result could not be attached; fal says to fetch it
		-- from the queue, so poll now (status, then result).
		if b.status == "OK" and payload == nil then return { state = "processing", poll_in = 0 } end
		if b.status == "OK" then return U.succeeded(items(payload), ctx) end
		return { state = "processing" }
	end,

	poll = function(job, ctx)
		return { method = "GET", url = request_url(job, ctx, "status_url"), headers = auth(ctx) }
	end,

	-- Answers both the status call and the result call it chains with `next`:
	-- a status body carries an upper-case `status`, a result body is the
	-- model's output (or its error).
	on_polled = function(res, job, ctx)
		local b = type(res.json) == "table" and res.json or {}
		local st = U.val(b.status)
		if res.status == 202 or st == "IN_QUEUE" or st == "IN_PROGRESS" then return { state = "processing" } end
		if st == "COMPLETED" then
			return { state = "processing", next = { method = "GET", url = request_url(job, ctx, "response_url"), headers = auth(ctx) } }
		end
		if st == "FAILED" then return U.failed(U.message(b) or "fal reported FAILED", "PROVIDER_FAILURE") end
		if st == "CANCELED" or st == "CANCELLED" then return { state = "canceled" } end
		return U.succeeded(items(b), ctx)
	end,

	cancel = function(job, ctx)
		if not job.request_id then return nil end
		return { method = "PUT", url = request_url(job, ctx, "cancel_url"), headers = auth(ctx) }
	end,

	examples = {
		{ fn = "on_callback",
			args = { { headers = {}, json = { request_id = "r1", status = "OK",
				payload = { images = { { url = "https://x/a.png", content_type = "image/png" } } } } },
				{ id = "job_1", model = "fal-ai/flux/dev", data = {} } },
			expect = { state = "succeeded", output = { type = "image",
				items = { { type = "image", url = "https://x/a.png", content_type = "image/png" } } } } },
		{ fn = "on_callback",
			args = { { headers = {}, json = { request_id = "r1", status = "ERROR", error = "Invalid status code: 422",
				payload = { detail = { { loc = { "body", "prompt" }, msg = "field required" } } } } },
				{ id = "job_1", model = "fal-ai/flux/dev", data = {} } },
			expect = { state = "failed", error = { code = "PROVIDER_FAILURE",
				message = "Invalid status code: 422: field required (body.prompt)" } } },
		{ fn = "on_polled",
			args = { { status = 202, headers = {}, json = { status = "IN_QUEUE", queue_position = 2 } },
				{ id = "job_1", model = "fal-ai/flux/dev", request_id = "r1", data = {} } },
			expect = { state = "processing" } },
	},
}
