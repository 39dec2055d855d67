-- docs/examples/providers/lumen.lua: a complete adapter for "Lumen", a
-- FICTIONAL provider, written as the example of docs/providers.md. To use it,
-- copy it to scripts/providers/lumen.lua; `build/genrelay scripts check
-- docs/examples/providers/lumen.lua` loads it and runs its examples.
--
-- Lumen's API (as its imaginary docs describe it):
--   base URL    https://api.lumen.example
--   auth        header X-Api-Key: <key>
--   submit      POST /v2/tasks  {model, params, callback_url?, reference?}
--               -> 201 {task: {id, state: "queued"}}   errors: {error: {type, message}}
--   status      GET  /v2/tasks/{id} -> {task: {id, state, outputs?, failure?}}
--               state: queued | running | succeeded | failed | canceled
--               outputs: [{url, mime}]; failure: {message}
--   cancel      POST /v2/tasks/{id}/cancel
--   callback    POST <callback_url>, body {event: "task.finished", task: {...}},
--               header Lumen-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">
--               under the account's webhook secret.
--
-- Self-contained on purpose (scripts/lib/util.lua has helpers for most of
-- what is written out here).

-- Lumen's states -> genrelay's unified states.
local STATE = { queued = "processing", running = "processing", succeeded = "succeeded",
	failed = "failed", canceled = "canceled" }

-- The unified type of a MIME type: "image/png" -> "image".
local function type_of(mime)
	local major = type(mime) == "string" and mime:match("^(%a+)/") or nil
	if major == "model" then return "object" end
	return major or "file"
end

-- JSON null arrives as a userdata (ctx.null); treat it like nil.
local function val(v)
	if type(v) == "userdata" then return nil end
	return v
end

-- Lumen's task object as a genrelay result (used for the submit answer, the
-- status answer and the callback alike).
local function from_task(task, ctx)
	if type(task) ~= "table" then return nil end
	local id = val(task.id)
	id = (type(id) == "string" or type(id) == "number") and tostring(id) or nil
	local state = STATE[val(task.state)] or "processing" -- unknown states: not done yet
	if state == "succeeded" then
		local items = {}
		for _, o in ipairs(type(val(task.outputs)) == "table" and task.outputs or {}) do
			if type(o) == "table" and type(o.url) == "string" then
				local mime = type(o.mime) == "string" and o.mime or nil
				items[#items + 1] = { type = type_of(mime), url = o.url, content_type = mime }
			end
		end
		return { state = "succeeded", request_id = id,
			-- ctx.array: an empty list must still be encoded as [] (not {}).
			output = { type = items[1] and items[1].type or "file", items = ctx.array(items) } }
	elseif state == "failed" then
		local f = val(task.failure)
		local msg = type(f) == "table" and type(f.message) == "string" and f.message or "Lumen task failed"
		return { state = "failed", request_id = id, error = { code = "PROVIDER_FAILURE", message = msg } }
	end
	return { state = state, request_id = id }
end

local function headers(ctx)
	return { ["X-Api-Key"] = ctx.secret("key") } -- a nil key leaves the header out
end

local function task_url(ctx, job, suffix)
	return ctx.config.base_url .. "/v2/tasks/" .. job.request_id .. (suffix or "")
end

return {
	name = "lumen",                       -- must equal the file name
	errors = "core",                      -- error answers are the core's (docs/scripts.md, "What the core checks")
	models = { "photon%-[%w%-]+" },       -- unprefixed ids it serves, e.g. photon-1 (lumen:photon-1 works too)
	defaults = { base_url = "https://api.lumen.example" },

	-- job.model is Lumen's model id ("photon-1" for lumen:photon-1 or photon-1).
	submit = function(job, ctx)
		return {
			method = "POST",
			url = ctx.config.base_url .. "/v2/tasks",
			headers = headers(ctx),
			body = { model = job.model, params = job.input, callback_url = ctx.callback_url,
				reference = job.track_id }, -- nil fields are left out of the JSON
		}
	end,

	-- Only 2xx answers get here: the core retries network errors, 408/425/429
	-- and 5xx, and turns any other answer into a failed result with the
	-- body's message (PROVIDER_REJECTED for a 4xx). A "processing" result
	-- without a request_id is failed by the core too.
	on_submitted = function(res, job, ctx)
		return type(res.json) == "table" and from_task(val(res.json.task), ctx) or { state = "processing" }
	end,

	-- Runs before on_callback; anything but true answers 401 and leaves the
	-- job untouched. Like every verify: verify(req, ctx, job).
	verify = function(req, ctx, job)
		local secret = ctx.secret("webhook_secret")
		if not secret then return false, "lumen: webhook_secret is not configured" end
		local sig = (req.headers or {})["lumen-signature"] -- header names are lower-case
		if type(sig) ~= "string" then return false, "missing Lumen-Signature" end
		local t, v1 = sig:match("t=(%d+)"), sig:match("v1=(%x+)")
		if not t or not v1 then return false, "malformed Lumen-Signature" end
		if math.abs(ctx.now() - tonumber(t)) > 300 then return false, "Lumen-Signature timestamp too old" end
		local want = ctx.hex(ctx.hmac_sha256(secret, t .. "." .. (req.body or ""))) -- the raw bytes, never re-encoded JSON
		if not ctx.equal(want, v1:lower()) then return false, "Lumen-Signature does not match" end
		return true
	end,

	on_callback = function(req, job, ctx)
		local b = req.json
		-- Unreadable or not a task: "processing" keeps the job waiting (and polling).
		if type(b) ~= "table" then return { state = "processing" } end
		return from_task(val(b.task), ctx) or { state = "processing" }
	end,

	poll = function(job, ctx)
		return { method = "GET", url = task_url(ctx, job), headers = headers(ctx) }
	end,

	-- Only 2xx answers get here too (a 404 after the third in a row becomes a
	-- failed result with Lumen's message).
	on_polled = function(res, job, ctx)
		local r = type(res.json) == "table" and from_task(val(res.json.task), ctx) or nil
		if not r then
			return { state = "failed", error = { code = "PROVIDER_FAILURE", message = "Lumen: unreadable status (HTTP " .. res.status .. ")" } }
		end
		return r
	end,

	-- Called after the job is already canceled locally; its answer is only recorded.
	cancel = function(job, ctx)
		if not job.request_id then return nil end -- never submitted: nothing to cancel
		return { method = "POST", url = task_url(ctx, job, "/cancel"), headers = headers(ctx) }
	end,

	-- Run on every load (and by `genrelay scripts check`); a failure keeps the
	-- previous version of the script running. ctx is added by the host.
	examples = {
		{ name = "submit maps the job", fn = "submit",
			args = { { id = "job_1", model = "photon-1", model_id = "lumen:photon-1",
				input = { prompt = "a cat" }, track_id = "t1", data = {}, attempt = 1 } },
			expect = { method = "POST", body = { model = "photon-1", params = { prompt = "a cat" }, reference = "t1" } } },
		{ name = "queued answer", fn = "on_submitted",
			args = { { status = 201, headers = {}, json = { task = { id = "tsk_1", state = "queued" } } },
				{ id = "job_1", model = "photon-1", data = {} } },
			expect = { state = "processing", request_id = "tsk_1" } },
		{ name = "callback with an image", fn = "on_callback",
			args = { { headers = {}, json = { event = "task.finished", task = { id = "tsk_1", state = "succeeded",
				outputs = { { url = "https://cdn.lumen.example/a.png", mime = "image/png" } } } } },
				{ id = "job_1", model = "photon-1", request_id = "tsk_1", data = {} } },
			expect = { state = "succeeded", output = { type = "image",
				items = { { type = "image", url = "https://cdn.lumen.example/a.png", content_type = "image/png" } } } } },
		{ name = "failed task", fn = "on_polled",
			args = { { status = 200, headers = {}, json = { task = { id = "tsk_1", state = "failed",
				failure = { message = "NSFW prompt" } } } },
				{ id = "job_1", model = "photon-1", request_id = "tsk_1", data = {} } },
			expect = { state = "failed", error = { code = "PROVIDER_FAILURE", message = "NSFW prompt" } } },
	},
}
