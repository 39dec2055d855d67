-- ModelsLab API v6 (docs/provider-facts.md, "ModelsLab"). model = endpoint, e.g. "images/text2img".
local U = require("lib.util")

local TYPE = { images = "image", realtime = "image", video = "video", voice = "audio", ["3d"] = "object" }

-- The endpoint family that fetch lives under: "images" for images/text2img.
local function family(job)
	return (job.data or {}).family or job.model:match("^/*([^/]+)")
end

local function rate_limited(m)
	m = m:lower()
	return m:find("rate limit", 1, true) or m:find("too many requests", 1, true)
end

-- A submit, fetch or webhook body as a result. phase: "submit", "poll" or "callback".
-- Bodies carry status success | processing | error | failed, message or messege,
-- and an id that may be a number or a string.
local function from_body(b, job, ctx, phase)
	if type(b) ~= "table" then
		if phase == "callback" then return { state = "processing" } end
		return U.failed("ModelsLab: response is not JSON", "PROVIDER_FAILURE")
	end
	local st, id = U.val(b.status), U.str(b.id)
	if st == "success" then
		local urls = U.val(b.output)
		if type(urls) ~= "string" and (type(urls) ~= "table" or #urls == 0) then urls = U.val(b.proxy_links) end
		return U.succeeded(U.items_from_urls(urls, TYPE[family(job)]), ctx, id)
	elseif st == "processing" then
		local eta = tonumber(U.val(b.eta))
		local fam = type(b.fetch_result) == "string" and b.fetch_result:match("/([^/]+)/fetch/[^/]*$")
		return { state = "processing", request_id = id, poll_in = eta and math.max(1, eta) or nil,
			data = fam and { family = fam } or nil }
	elseif st == "error" or st == "failed" then
		local m = U.message(b) or ("ModelsLab reported " .. st)
		local wait = tonumber(U.val(b.retry_after))
		if phase == "submit" and rate_limited(m) then return { state = "retry", retry_in = wait } end
		if phase == "poll" and rate_limited(m) then return { state = "processing", poll_in = wait or 30 } end
		-- An error in a submit answer without an id is the provider refusing the request (as
		-- its 4xx answers do); with an id, a generation ran and failed at once.
		return U.failed(m, (phase == "submit" and not id) and "PROVIDER_REJECTED" or "PROVIDER_FAILURE", id)
	end
	if id or phase ~= "submit" then return { state = "processing", request_id = id } end
	return U.failed("ModelsLab: unexpected status " .. tostring(st), "PROVIDER_FAILURE")
end

return {
	name = "modelslab",
	errors = "core", -- non-2xx answers go to on_error, then the core (docs/scripts.md)
	models = {},
	-- ModelsLab requires an HTTPS webhook (docs/provider-facts.md); without one
	-- the core refuses the job at submit unless providers.modelslab.callbacks = false.
	callback_requires = { https = true },
	-- queue_limit: the plan's queue (5, 10 or 15 requests); the core's default
	-- cap on jobs in flight (providers.modelslab.max_inflight overrides it).
	defaults = { base_url = "https://modelslab.com/api/v6", queue_limit = 5 },

	submit = function(job, ctx)
		local body = {}
		for k, v in pairs(job.input or {}) do body[k] = v end
		body.key = ctx.secret("key")
		body.webhook = ctx.callback_url
		body.track_id = U.str(U.first(job.track_id, body.track_id)) or job.id
		return { method = "POST", url = U.join(ctx.config.base_url, job.model), body = body }
	end,

	on_submitted = function(res, job, ctx) return from_body(res.json, job, ctx, "submit") end,

	-- Answers that are not 2xx. A full queue: HTTP 429 (on submit) with the
	-- wait in the body ({status = "error", retry_after = 30}); anything else
	-- is left to the core (nil: failed with the body's message).
	on_error = function(res, job, ctx)
		if res.status ~= 429 then return nil end
		local b = type(res.json) == "table" and res.json or {}
		return { state = "retry", retry_in = tonumber(U.val(b.retry_after)),
			error = { message = U.message(b) or "ModelsLab: too many queued requests" } }
	end,

	-- ModelsLab does not sign webhooks; its generation webhooks always carry
	-- the request's id, which must be this job's.
	verify = function(req, ctx, job)
		return U.require_id(job, type(req.json) == "table" and req.json.id, "id")
	end,

	on_callback = function(req, job, ctx) return from_body(req.json, job, ctx, "callback") end,

	poll = function(job, ctx)
		return { method = "POST", url = U.join(ctx.config.base_url, family(job) .. "/fetch/" .. U.request_id(job)),
			body = { key = ctx.secret("key") } }
	end,

	on_polled = function(res, job, ctx)
		return from_body(res.json, job, ctx, "poll")
	end,

	examples = {
		{ fn = "on_submitted",
			args = { { status = 200, headers = {}, json = { status = "processing", id = 7, eta = 12 } },
				{ id = "job_1", model = "images/text2img", input = {}, data = {} } },
			expect = { state = "processing", request_id = "7", poll_in = 12 } },
		{ fn = "on_callback",
			args = { { headers = {}, json = { status = "failed", id = "7", messege = "out of memory" } },
				{ id = "job_1", model = "images/text2img", data = {} } },
			expect = { state = "failed", error = { code = "PROVIDER_FAILURE", message = "out of memory" } } },
		{ fn = "on_polled",
			args = { { status = 200, headers = {}, json = { status = "success", id = 7, output = { "https://m/a.png" } } },
				{ id = "job_1", model = "images/text2img", request_id = "7", data = {} } },
			expect = { state = "succeeded", output = { type = "image", items = { { url = "https://m/a.png" } } } } },
	},
}
