-- Artificial Studio API (docs/provider-facts.md, "Artificial Studio"). model = tool slug, e.g. "create-image".
local U = require("lib.util")
local A = require("lib.auth")

local auth = A.header("Authorization") -- the raw key, no "Bearer"

local PENDING = { pending = true, processing = true, uploading = true }

-- A generation (submit answer, GET /api/generations/{id}, webhook) as a result.
-- output is one URL string; type is image | video | audio | text | object.
local function from_generation(b, ctx, phase)
	if type(b) ~= "table" then
		if phase == "callback" then return { state = "processing" } end
		return U.failed("Artificial Studio: response is not JSON", "PROVIDER_FAILURE")
	end
	local st, id = U.val(b.status), U.str(b.id)
	if st == "success" then
		return U.succeeded(U.items_from_urls(U.val(b.output), U.val(b.type)), ctx, id)
	elseif st == "error" then
		local e = U.val(b.error)
		return U.failed((type(e) == "string" and e ~= "" and e) or U.message(e) or U.message(b)
			or "Artificial Studio generation failed", "PROVIDER_FAILURE", id)
	elseif PENDING[st] or phase ~= "submit" then
		return { state = "processing", request_id = id }
	end
	return U.failed("Artificial Studio: unexpected status " .. tostring(st), "PROVIDER_FAILURE", id)
end

return {
	name = "artificialstudio",
	errors = "core", -- non-2xx answers never reach on_submitted/on_polled (docs/scripts.md)
	models = {},
	-- Artificial Studio refuses non-HTTPS and private webhook URLs (docs/provider-facts.md).
	callback_requires = { https = true, public = true },
	defaults = { base_url = "https://api.artificialstudio.ai" },

	-- Unknown top-level fields get a 400, so the body is exactly {tool, input, webhook?}.
	submit = function(job, ctx)
		return { method = "POST", url = U.join(ctx.config.base_url, "api/run"), headers = auth(ctx),
			body = { tool = job.model, input = job.input or {}, webhook = ctx.callback_url } }
	end,

	on_submitted = function(res, job, ctx) return from_generation(res.json, ctx, "submit") end,

	-- No signature; X-Media-Id and the body's id must name this job's
	-- generation (every documented webhook carries both; one is required).
	verify = function(req, ctx, job)
		local media = (req.headers or {})["x-media-id"]
		local body_id = type(req.json) == "table" and U.str(req.json.id) or nil
		if media and body_id and media ~= body_id then return false, "X-Media-Id differs from the body's id" end
		return U.require_id(job, media or body_id, "X-Media-Id or id")
	end,

	on_callback = function(req, job, ctx) return from_generation(req.json, ctx, "callback") end,

	poll = function(job, ctx)
		return { method = "GET", url = U.join(ctx.config.base_url, "api/generations/" .. U.request_id(job)),
			headers = auth(ctx) }
	end,

	on_polled = function(res, job, ctx)
		return from_generation(res.json, ctx, "poll")
	end,

	examples = {
		{ fn = "on_polled",
			args = { { status = 200, headers = {}, json = { id = "a1", status = "success", type = "image",
				output = "https://f/a.png", thumbnail = "https://f/t.jpg" } },
				{ id = "job_1", model = "create-image", request_id = "a1", data = {} } },
			expect = { state = "succeeded", output = { type = "image",
				items = { { type = "image", url = "https://f/a.png", content_type = "image/png" } } } } },
		{ fn = "on_polled",
			args = { { status = 200, headers = {}, json = { id = "a1", status = "error", error = "NSFW" } },
				{ id = "job_1", model = "create-image", request_id = "a1", data = {} } },
			expect = { state = "failed", error = { code = "PROVIDER_FAILURE", message = "NSFW" } } },
	},
}
