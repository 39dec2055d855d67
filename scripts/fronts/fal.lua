-- fal's queue and sync protocols (docs/fronts.md, "fal"), as @fal-ai/client
-- and @ai-sdk/fal speak them, mapped to genrelay runs and jobs.
--   proxy: any path under /fal/ with x-fal-target-url: https://queue.fal.run/...
--          or https://fal.run/... (the client's proxyUrl)
--   direct: /fal/queue/{model}, /fal/queue/{app}/requests/{id}[/status[/stream]|/cancel]
--           (the queue host is genrelay) and /fal/run/{model} (fal.run, sync)
-- A genrelay alias or model without '/' (which fal's client refuses) is
-- written genrelay/NAME.
local U = require("lib.util")

local function urldecode(s)
	return (s:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(q, into)
	for pair in (q or ""):gmatch("[^&]+") do
		local k, v = pair:match("^([^=]*)=?(.*)$")
		into[urldecode(k)] = urldecode(v)
	end
	return into
end

local function detail(status, msg, extra)
	local body = { detail = msg, message = msg }
	for k, v in pairs(extra or {}) do body[k] = v end
	return { op = "respond", status = status, body = body }
end

-- The model a fal endpoint id names: "genrelay/NAME" is genrelay's NAME.
local function model_of(endpoint)
	return endpoint:match("^genrelay/(.+)$") or endpoint
end

-- fal's app id: owner/alias (a namespace keeps its first three segments).
local function app_of(endpoint)
	local a, b, c = endpoint:match("^([^/]+)/([^/]+)/?([^/]*)")
	if not a then return endpoint end
	if (a == "workflows" or a == "comfy") and c ~= "" then return a .. "/" .. b .. "/" .. c end
	return a .. "/" .. b
end

-- {mode = "queue"|"sync", path, query} from the request, or nil, why.
local function target(req)
	local t = U.val(req.headers["x-fal-target-url"])
	if t then
		local host, path, q = t:match("^https?://([^/?#]+)([^?#]*)%??([^#]*)")
		if not host then return nil, "x-fal-target-url is not a URL" end
		local query = parse_query(q, {})
		if host == "queue.fal.run" then return { mode = "queue", path = path, query = query } end
		if host == "fal.run" then return { mode = "sync", path = path, query = query } end
		return nil, "x-fal-target-url must be on queue.fal.run or fal.run (genrelay serves no other fal host)"
	end
	local q = {}
	for k, v in pairs(req.query or {}) do q[k] = v end
	local p = req.path:match("^/queue(/.*)$")
	if p then return { mode = "queue", path = p, query = q } end
	p = req.path:match("^/run(/.*)$")
	if p then return { mode = "sync", path = p, query = q } end
	return nil, "no such fal route: use /fal/queue/..., /fal/run/... or the proxy with x-fal-target-url"
end

local function input_of(req)
	if req.body_error then return nil, req.body_error end
	local b = U.val(req.body)
	if b == nil then return {} end
	if type(b) ~= "table" or (#b > 0) then return nil, "the input must be a JSON object" end
	return b
end

local function validation(msg)
	return { op = "respond", status = 422,
		body = { detail = { { loc = { "body" }, msg = msg, type = "value_error" } }, message = msg } }
end

local function urls(base, app, id)
	local r = base .. "/queue/" .. app .. "/requests/" .. id
	return { response_url = r, status_url = r .. "/status", cancel_url = r .. "/cancel" }
end

-- fal's result from the unified output.
local function result_of(job, inline)
	local out = U.val(job.output)
	local items = type(out) == "table" and U.val(out.items) or {}
	local files = {}
	for i, it in ipairs(items) do
		local url = it.url
		if inline and it.b64 then url = "data:" .. (it.content_type or "application/octet-stream") .. ";base64," .. it.b64 end
		local f = { url = url, content_type = U.val(it.content_type) }
		if U.val(it.width) then f.width = it.width end
		if U.val(it.height) then f.height = it.height end
		files[i] = f
	end
	local typ = type(out) == "table" and U.val(out.type) or "image"
	if typ == "video" then return { video = files[1] } end
	if typ == "audio" then return { audio = files[1] } end
	if typ == "image" or #files ~= 1 then return { images = files } end
	return { file = files[1] }
end

local ERR_STATUS = { PROVIDER_REJECTED = 422, MODEL_NOT_FOUND = 404, CANCELED = 400,
	PROVIDER_TIMEOUT = 504 }

local function failed(job)
	local e = U.val(job.error) or {}
	local msg = U.val(e.message) or "the request failed"
	if job.status == "canceled" then msg = "the request was canceled" end
	return { op = "respond", status = ERR_STATUS[U.val(e.code) or ""] or 500,
		headers = { ["x-fal-request-id"] = job.job_id },
		body = { detail = msg, message = msg, error_type = U.val(e.code) } }
end

local FAL_STATUS = { queued = "IN_QUEUE", processing = "IN_PROGRESS" }

local function status_of(job, req, ctx)
	local app = req.app or "genrelay/job"
	local s = FAL_STATUS[job.status] or "COMPLETED"
	local body = urls(req.base_url, app, job.job_id)
	body.status = s
	body.request_id = job.job_id
	if s == "IN_QUEUE" then body.queue_position = 0 end
	if req.logs then body.logs = ctx.array({}) end
	if s == "COMPLETED" then
		body.metrics = {}
		if job.status ~= "succeeded" then
			local e = U.val(job.error) or {}
			body.error = U.val(e.message) or job.status
			body.error_type = U.val(e.code)
		end
	end
	return { status = s == "COMPLETED" and 200 or 202, body = body,
		headers = { ["x-fal-request-id"] = job.job_id } }
end

return {
	name = "fal",

	request = function(req, ctx)
		local t, why = target(req)
		if not t then return detail(404, why) end
		local path = t.path:gsub("/+$", "")
		if t.mode == "sync" or not path:find("/requests/", 1, true) then
			if req.method ~= "POST" then return detail(405, "submit with POST") end
			local endpoint = path:gsub("^/+", "")
			if endpoint == "" then return detail(404, "no model in the path") end
			local input, bad = input_of(req)
			if not input then return validation(bad) end
			local hook = U.val(t.query.fal_webhook)
			if hook == "" then hook = nil end
			req.app = app_of(endpoint)
			if t.mode == "sync" then
				return { op = "submit", model = model_of(endpoint), input = input, wait = true,
					reply = "sync", inline = input.sync_mode == true }
			end
			return { op = "submit", model = model_of(endpoint), input = input, webhook_url = hook,
				webhook_shape = hook ~= nil, reply = "queue",
				idempotency_key = U.val(req.headers["idempotency-key"]) }
		end
		local app, id, rest = path:match("^/(.-)/requests/([^/]+)(.*)$")
		if not id then return detail(404, "no such route") end
		local op = ({ [""] = "get", ["/status"] = "get", ["/status/stream"] = "stream", ["/cancel"] = "cancel" })[rest]
		if not op then return detail(404, "no such route") end
		local want = (op == "cancel") and "PUT" or "GET"
		if req.method ~= want and not (op == "cancel" and req.method == "POST") then
			return detail(405, "use " .. want)
		end
		local reply = ({ [""] = "result", ["/status"] = "status", ["/status/stream"] = "status", ["/cancel"] = "cancel" })[rest]
		return { op = op, job_id = id, reply = reply }
	end,

	-- req is the request() saw; respond runs after it, so recompute what it derived.
	respond = function(reply, job, req, ctx)
		local t = target(req) or { path = "", query = {} }
		local app = t.path:match("^/(.-)/requests/")
		req.app = app or app_of((t.path:gsub("^/+", ""):gsub("^run/", "")))
		req.logs = t.query.logs == "1"
		if reply == "queue" then
			local body = urls(req.base_url, req.app, job.job_id)
			body.request_id = job.job_id
			body.status = "IN_QUEUE"
			body.queue_position = 0
			return { status = 200, body = body, headers = { ["x-fal-request-id"] = job.job_id } }
		elseif reply == "status" then
			return status_of(job, req, ctx)
		elseif reply == "cancel" then
			if job.status == "canceled" then
				return { status = 202, body = { status = "CANCELLATION_REQUESTED" } }
			end
			return { status = 400, body = { status = "ALREADY_COMPLETED" } }
		end
		-- result and sync
		if job.status == "succeeded" then
			return { status = 200, body = result_of(job, reply == "sync"),
				headers = { ["x-fal-request-id"] = job.job_id } }
		elseif job.status == "failed" or job.status == "canceled" then
			return failed(job)
		end
		if reply == "sync" then
			return { status = 504, headers = { ["x-fal-request-id"] = job.job_id },
				body = { detail = "still running after the wait; poll " .. req.base_url .. "/queue/" ..
					req.app .. "/requests/" .. job.job_id .. "/status" } }
		end
		return { status = 400, body = { detail = "Request is still in progress" },
			headers = { ["x-fal-request-id"] = job.job_id } }
	end,

	error = function(err, req, ctx)
		if err.status == 400 then
			return { status = 422, body = { detail = { { loc = { "body" }, msg = err.message, type = "value_error" } },
				message = err.message } }
		end
		return { status = err.status, body = { detail = err.message, message = err.message } }
	end,

	-- fal's webhook body for fal_webhook; signed by the core (Standard Webhooks).
	webhook = function(event, ctx)
		if event.status == "succeeded" then
			return { body = { request_id = event.job_id, gateway_request_id = event.job_id,
				status = "OK", payload = result_of(event, false) } }
		end
		local e = U.val(event.error) or {}
		return { body = { request_id = event.job_id, gateway_request_id = event.job_id,
			status = "ERROR", error = U.val(e.message) or event.status,
			payload = { detail = { { msg = U.val(e.message) or event.status, type = U.val(e.code) } } } } }
	end,

	examples = {
		{ name = "proxied submit", fn = "request",
			args = { { method = "POST", path = "/proxy", query = {}, base_url = "http://g/fal",
				headers = { ["x-fal-target-url"] = "https://queue.fal.run/fal-ai/flux/dev?fal_webhook=http%3A%2F%2Fh%2Fx" },
				body = { prompt = "a cat" } } },
			expect = { op = "submit", model = "fal-ai/flux/dev", input = { prompt = "a cat" },
				webhook_url = "http://h/x", webhook_shape = true, reply = "queue" } },
		{ name = "alias through genrelay/", fn = "request",
			args = { { method = "POST", path = "/queue/genrelay/flux-any", query = {}, headers = {}, base_url = "http://g/fal" } },
			expect = { op = "submit", model = "flux-any" } },
		{ name = "status", fn = "request",
			args = { { method = "GET", path = "/queue/fal-ai/flux/requests/job_1/status", query = { logs = "1" }, headers = {}, base_url = "http://g/fal" } },
			expect = { op = "get", job_id = "job_1", reply = "status" } },
		{ name = "bad body", fn = "request",
			args = { { method = "POST", path = "/run/fal-ai/flux/dev", query = {}, headers = {}, body_error = "not JSON", base_url = "http://g/fal" } },
			expect = { op = "respond", status = 422 } },
		{ name = "image result", fn = "respond",
			args = { "result", { job_id = "job_1", status = "succeeded",
				output = { type = "image", items = { { type = "image", url = "https://x/a.png", content_type = "image/png" } } } },
				{ method = "GET", path = "/queue/fal-ai/flux/requests/job_1", query = {}, headers = {}, base_url = "http://g/fal" } },
			expect = { status = 200, body = { images = { { url = "https://x/a.png", content_type = "image/png" } } } } },
		{ name = "in progress", fn = "respond",
			args = { "status", { job_id = "job_1", status = "processing" },
				{ method = "GET", path = "/queue/fal-ai/flux/requests/job_1/status", query = {}, headers = {}, base_url = "http://g/fal" } },
			expect = { status = 202, body = { status = "IN_PROGRESS", status_url = "http://g/fal/queue/fal-ai/flux/requests/job_1/status" } } },
	},
}
