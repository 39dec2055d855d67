-- Krea API (docs/provider-facts.md, "Krea"). Reached by prefix only: krea:image/bfl/flux-1-dev.
local U = require("lib.util")
local A = require("lib.auth")

local auth = A.bearer()

-- Path after /generate/: "image/bfl/flux-1-dev" as given; a two-part id
-- such as "bfl/flux-1-dev" (the form DESIGN.md's alias example uses) is an image model.
local function model_path(model)
	model = model:gsub("^/+", ""):gsub("^generate/", "")
	local _, slashes = model:gsub("/", "")
	if slashes < 2 then model = "image/" .. model end
	return model
end

local FAMILY = { image = "image", video = "video", audio = "audio", ["3d"] = "object" }

local PENDING = { backlogged = true, queued = true, scheduled = true, processing = true,
	sampling = true, ["intermediate-complete"] = true, pending = true }

-- A Krea job object (submit answer, GET /jobs/{id}, webhook) as a result.
local function from_job(b, job, ctx)
	if type(b) ~= "table" then return { state = "processing" } end
	local id = U.str(b.job_id)
	local st = U.val(b.status)
	local r = U.val(b.result)
	r = type(r) == "table" and r or {}
	local err = U.val(r.error) or U.val(b.error)
	local urls = U.val(r.urls)
	local done = U.val(b.completed_at) ~= nil and not PENDING[st]
	if st == "completed" or (done and st ~= "failed" and type(urls) == "table" and urls[1]) then
		local typ = FAMILY[model_path(job.model):match("^([^/]+)/")]
		return U.succeeded(U.items_from_urls(urls, typ), ctx, id)
	elseif st == "failed" or (done and err) then
		return U.failed((type(err) == "string" and err) or U.message(err) or "Krea job failed", "PROVIDER_FAILURE", id)
	elseif st == "cancelled" or st == "canceled" then
		return { state = "canceled", request_id = id }
	end
	return { state = "processing", request_id = id }
end

return {
	name = "krea",
	errors = "core", -- non-2xx answers never reach on_submitted/on_polled (docs/scripts.md)
	models = {},
	defaults = { base_url = "https://api.krea.ai" },

	submit = function(job, ctx)
		local h = auth(ctx)
		if ctx.callback_url then h["X-Webhook-URL"] = ctx.callback_url end
		return { method = "POST", url = U.join(ctx.config.base_url, "generate/" .. model_path(job.model)),
			headers = h, body = job.input }
	end,

	on_submitted = function(res, job, ctx) return from_job(res.json, job, ctx) end,

	-- Krea does not sign webhooks; its docs say to check that job_id is ours.
	-- The webhook is the job object, which always carries job_id: a body
	-- without it (or with another job's) is refused.
	verify = function(req, ctx, job)
		return U.require_id(job, type(req.json) == "table" and req.json.job_id, "job_id")
	end,

	on_callback = function(req, job, ctx) return from_job(req.json, job, ctx) end,

	poll = function(job, ctx)
		return { method = "GET", url = U.join(ctx.config.base_url, "jobs/" .. U.request_id(job)), headers = auth(ctx) }
	end,

	on_polled = function(res, job, ctx)
		return from_job(res.json, job, ctx)
	end,

	cancel = function(job, ctx)
		if not job.request_id then return nil end
		return { method = "DELETE", url = U.join(ctx.config.base_url, "jobs/" .. U.request_id(job)), headers = auth(ctx) }
	end,

	examples = {
		{ fn = "on_callback",
			args = { { headers = {}, json = { job_id = "k1", status = "completed", result = { urls = { "https://k/a.png" } } } },
				{ id = "job_1", model = "image/bfl/flux-1-dev", data = {} } },
			expect = { state = "succeeded", request_id = "k1",
				output = { type = "image", items = { { type = "image", url = "https://k/a.png" } } } } },
		{ fn = "on_polled",
			args = { { status = 200, headers = {}, json = { job_id = "k1", status = "backlogged" } },
				{ id = "job_1", model = "image/bfl/flux-1-dev", request_id = "k1", data = {} } },
			expect = { state = "processing" } },
	},
}
