-- abstrakt API (docs/provider-facts.md, "abstrakt"). Its docs exist in several
-- versions, and callbacks come in three forms, all accepted:
--   API reference  {job_id, status = "succeeded", output = {type, items}}
--   tutorial       {request_id, status = "completed", result = {items}, metrics, timestamp}
--   event envelope {event = "job.completed" | "job.failed" | ..., data = {...}}
local U = require("lib.util")
local A = require("lib.auth")

local auth = A.bearer()

local STATE = { pending = "processing", queued = "processing", processing = "processing", running = "processing",
	started = "processing", completed = "succeeded", succeeded = "succeeded", success = "succeeded",
	failed = "failed", error = "failed", cancelled = "canceled", canceled = "canceled" }
local EVENT = { ["job.completed"] = "completed", ["job.failed"] = "failed",
	["job.started"] = "processing", ["job.progress"] = "processing" }

-- Output {type?, items = {{type?, url, content_type?, ...}}} (or a bare list
-- of items or URLs) in the unified shape.
local function output(o, ctx)
	local list = type(o) == "table" and (U.val(o.items) or (#o > 0 and o)) or nil
	local items = {}
	for _, it in ipairs(type(list) == "table" and list or {}) do
		if type(it) == "string" then
			items[#items + 1] = U.item(it)
		elseif type(it) == "table" then
			items[#items + 1] = U.item(U.val(it.url), U.val(it.type), U.val(it.content_type))
		end
	end
	return U.output(items, ctx, type(o) == "table" and U.val(o.type) or nil)
end

-- A job (run answer, GET /v1/jobs/{id}, webhook of either version) as a result.
local function from_job(b, ctx)
	if type(b) ~= "table" then return nil end
	local st = U.val(b.status)
	if type(b.event) == "string" and type(b.data) == "table" then -- version B envelope
		local event = b.event
		b = b.data
		st = U.first(b.status, EVENT[event])
	end
	local id = U.str(U.first(b.job_id, b.request_id, b.id))
	local state = STATE[st]
	if state == "succeeded" then
		-- abstrakt reports what a job cost in credits
		local credits = tonumber(U.val(b.credits_used))
		return { state = "succeeded", request_id = id, output = output(U.first(b.output, b.result), ctx),
			cost = credits and credits >= 0 and { amount = credits, unit = "credits", source = "provider" } or nil }
	elseif state == "failed" then
		local e = U.val(b.error)
		return U.failed((type(e) == "string" and e ~= "" and e) or U.message(e) or U.message(b)
			or "abstrakt job failed", "PROVIDER_FAILURE", id)
	elseif state == "canceled" then
		return { state = "canceled", request_id = id }
	end
	return { state = "processing", request_id = id }
end

return {
	name = "abstrakt",
	errors = "core", -- non-2xx answers never reach on_submitted/on_polled (docs/scripts.md)
	models = {},
	defaults = { base_url = "https://api.abstrakt.one" },

	-- With a callback, a per-job webhook_secret (the tutorial's per-request
	-- secret) generated here, kept in job.data (stored with the job, never
	-- shown) and reused by a retried submit.
	submit = function(job, ctx)
		local body = { input = job.input or {}, webhook_url = ctx.callback_url, sync = false }
		local data
		if ctx.callback_url then
			local secret = U.str((job.data or {}).webhook_secret) or ctx.random_hex(32)
			body.webhook_secret = secret
			data = { webhook_secret = secret }
		end
		return { method = "POST", url = U.join(ctx.config.base_url, "v1/models/" .. job.model .. "/run"),
			headers = auth(ctx), body = body, data = data }
	end,

	on_submitted = function(res, job, ctx)
		return from_job(res.json, ctx) or { state = "processing" } -- no job id: the core fails it
	end,

	-- Hex HMAC-SHA256 over the raw body (with X-Abstrakt-Timestamp, over
	-- "{ts}.{body}" too), under the job's own webhook_secret first, then the
	-- configured providers.abstrakt.webhook_secret: the tutorial signs with
	-- the per-request secret, the API reference with the account's. A
	-- signature must match one of them; an unsigned callback is accepted only
	-- when no secret is configured (the callback URL's token still
	-- authenticates it; not every docs version sends the per-request secret).
	verify = function(req, ctx, job)
		local own = type(job) == "table" and U.str((job.data or {}).webhook_secret) or nil
		local configured = ctx.secret("webhook_secret")
		local h = req.headers or {}
		local sig = h["x-abstrakt-signature"]
		if type(sig) ~= "string" then
			if not configured then return true end
			return false, "missing X-Abstrakt-Signature"
		end
		sig = sig:lower():gsub("^sha256=", "")
		local body, ts = req.body or "", h["x-abstrakt-timestamp"]
		for _, secret in ipairs({ own or false, configured or false }) do
			if secret then
				if ctx.equal(ctx.hex(ctx.hmac_sha256(secret, body)), sig) then return true end
				if ts and ctx.equal(ctx.hex(ctx.hmac_sha256(secret, ts .. "." .. body)), sig) then return true end
			end
		end
		return false, "X-Abstrakt-Signature does not match"
	end,

	on_callback = function(req, job, ctx)
		return from_job(req.json, ctx) or { state = "processing" } -- unreadable: keep polling
	end,

	poll = function(job, ctx)
		return { method = "GET", url = U.join(ctx.config.base_url, "v1/jobs/" .. U.request_id(job)), headers = auth(ctx) }
	end,

	on_polled = function(res, job, ctx)
		return from_job(res.json, ctx) or U.failed("abstrakt: job response is not JSON", "PROVIDER_FAILURE")
	end,

	cancel = function(job, ctx)
		if not job.request_id then return nil end
		return { method = "DELETE", url = U.join(ctx.config.base_url, "v1/jobs/" .. U.request_id(job)), headers = auth(ctx) }
	end,

	examples = {
		{ fn = "on_callback",
			args = { { headers = {}, json = { job_id = "job_a", status = "succeeded",
				output = { type = "image", items = { { type = "image", url = "https://c/a.png" } } } } },
				{ id = "job_1", model = "fal-ai/flux/schnell", data = {} } },
			expect = { state = "succeeded", output = { type = "image", items = { { type = "image", url = "https://c/a.png" } } } } },
		{ fn = "on_callback",
			args = { { headers = {}, json = { job_id = "job_b", status = "succeeded", credits_used = 3,
				output = { type = "image", items = { { type = "image", url = "https://c/b.png" } } } } },
				{ id = "job_2", model = "fal-ai/flux/schnell", data = {} } },
			expect = { state = "succeeded", cost = { amount = 3, unit = "credits", source = "provider" } } },
		{ fn = "on_callback",
			args = { { headers = {}, json = { event = "job.failed", data = { request_id = "r1", status = "failed",
				error = { message = "boom" } } } }, { id = "job_1", model = "m", data = {} } },
			expect = { state = "failed", error = { code = "PROVIDER_FAILURE", message = "boom" } } },
	},
}
