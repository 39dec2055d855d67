-- OpenAI's images API (docs/fronts.md, "OpenAI"), as the openai npm package
-- sends it with baseURL = genrelay's /openai/v1: generations (JSON) and edits
-- (multipart, the uploaded images passed to the provider as data URLs).
-- model is any genrelay model or alias; the answer waits for the job.
local U = require("lib.util")

local function oerr(status, message, typ, code, param, extra)
	local e = { message = message, type = typ or "invalid_request_error", code = code, param = param }
	for k, v in pairs(extra or {}) do e[k] = v end
	-- x-should-retry: the SDK would otherwise resubmit on 5xx, making a second job
	return { op = "respond", status = status, body = { error = e },
		headers = { ["x-should-retry"] = (status == 429 or status == 503) and "true" or "false" } }
end

local function bad(message, param, code)
	return oerr(400, message, "invalid_request_error", code or "invalid_value", param)
end

-- "1024x1024" -> {width, height}; "auto" or nil -> nil; else false.
local function size_of(s)
	if s == nil or s == "auto" then return nil end
	if type(s) ~= "string" then return false end
	local w, h = s:match("^(%d+)x(%d+)$")
	if not w then return false end
	w, h = tonumber(w), tonumber(h)
	if w < 1 or h < 1 or w > 8192 or h > 8192 then return false end
	return { width = w, height = h }
end

-- The fields of a generations/edits request, from JSON or multipart form.
local function fields(req, edits)
	if edits then
		if req.body_error then return nil, req.body_error end
		if type(req.form) ~= "table" then return nil, "images/edits takes multipart/form-data" end
		local f = {}
		for k, v in pairs(req.form) do f[k] = v end
		if f.n then f.n = tonumber(f.n) or f.n end
		return f
	end
	if req.body_error then return nil, req.body_error end
	local b = U.val(req.body)
	if type(b) ~= "table" or #b > 0 then return nil, "the body must be a JSON object" end
	return b
end

local FORMATS = { url = true, b64_json = true }
-- Fields the front maps itself (or drops: user, stream, moderation).
local OWN = { model = true, prompt = true, n = true, size = true, response_format = true,
	stream = true, user = true, moderation = true, partial_images = true }

local function map(req, edits)
	local f, why = fields(req, edits)
	if not f then return bad(why, nil, "invalid_body") end
	local model = U.val(f.model)
	if type(model) ~= "string" or model == "" then return bad("model is required (a genrelay model or alias)", "model", "missing_required_parameter") end
	local prompt = U.val(f.prompt)
	if type(prompt) ~= "string" or prompt == "" then return bad("prompt is required", "prompt", "missing_required_parameter") end
	if #prompt > 32000 then return bad("prompt is longer than 32000 characters", "prompt") end
	local n = U.val(f.n)
	if n ~= nil and (math.type(n) ~= "integer" or n < 1 or n > 10) then
		return bad("n must be an integer from 1 to 10", "n")
	end
	local size = size_of(U.val(f.size))
	if size == false then return bad("size must be WIDTHxHEIGHT or auto", "size") end
	local fmt = U.val(f.response_format) or "url"
	if not FORMATS[fmt] then return bad("response_format must be url or b64_json", "response_format") end
	if f.stream == true or f.stream == "true" then return bad("streaming is not supported", "stream") end
	local input = { prompt = prompt, num_images = n }
	if size then input.image_size = size end
	-- Everything else (quality, style, background, a provider's own fields)
	-- goes to the provider as it came.
	for k, v in pairs(f) do
		if not OWN[k] and input[k] == nil then input[k] = v end
	end
	if edits then
		local urls = {}
		for _, file in ipairs(req.files or {}) do
			if file.field == "image" or file.field == "image[]" then urls[#urls + 1] = file.data_url
			elseif file.field == "mask" then input.mask_url = file.data_url end
		end
		if #urls == 0 then return bad("image is required (one or more image files)", "image", "missing_required_parameter") end
		input.image_url = urls[1]
		input.image_urls = urls
	end
	return { op = "submit", model = model, input = input, wait = true,
		reply = fmt, inline = fmt == "b64_json",
		idempotency_key = U.val(req.headers and req.headers["idempotency-key"]) }
end

local ERR = {
	PROVIDER_REJECTED = { 400, "invalid_request_error", "image_generation_rejected" },
	CANCELED = { 409, "invalid_request_error", "canceled" },
	PROVIDER_TIMEOUT = { 504, "server_error", "timeout" },
}

local function when(job)
	local y, mo, d, h, mi, s = tostring(job.created_at or ""):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
	if not y then return 0 end
	-- days since the epoch (civil from days, proleptic Gregorian)
	y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
	if mo <= 2 then y = y - 1 end
	local era = y // 400
	local yoe = y - era * 400
	local mp = (mo + 9) % 12
	local doy = (153 * mp + 2) // 5 + d - 1
	local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
	local days = era * 146097 + doe - 719468
	return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end

return {
	name = "openai",

	request = function(req, ctx)
		local p = req.path:gsub("/+$", "")
		local edits = p == "/v1/images/edits"
		if p ~= "/v1/images/generations" and not edits then
			return oerr(404, "unknown URL " .. req.method .. " " .. p .. " (genrelay serves /v1/images/generations and /v1/images/edits)", "invalid_request_error", "unknown_url")
		end
		if req.method ~= "POST" then return oerr(405, "use POST", "invalid_request_error", "method_not_allowed") end
		return map(req, edits)
	end,

	respond = function(reply, job, req, ctx)
		if job.status == "succeeded" then
			local out = U.val(job.output)
			local data = {}
			for _, it in ipairs(type(out) == "table" and U.val(out.items) or {}) do
				if reply == "b64_json" then
					if not it.b64 then
						return oerr(502, "could not fetch the image to encode it: " .. (it.inline_error or "unknown"), "server_error", "b64_fetch_failed", nil, { job_id = job.job_id })
					end
					data[#data + 1] = { b64_json = it.b64 }
				else
					data[#data + 1] = { url = it.url }
				end
			end
			return { status = 200, body = { created = when(job), data = ctx.array(data) } }
		elseif job.status == "failed" or job.status == "canceled" then
			local e = U.val(job.error) or {}
			local m = ERR[U.val(e.code) or ""] or { 502, "server_error", "image_generation_failed" }
			local r = oerr(m[1], U.val(e.message) or ("the job " .. job.status), m[2], m[3], nil, { job_id = job.job_id })
			r.op = nil
			return r
		end
		local r = oerr(504, "the job " .. job.job_id .. " is still running after the wait; poll GET /v1/jobs/" .. job.job_id ..
			" with the same key", "timeout", "job_pending", nil, { job_id = job.job_id })
		r.op = nil
		return r
	end,

	error = function(err, req, ctx)
		local code, typ, param = string.lower(err.code), "invalid_request_error", nil
		if err.status == 401 then code = "invalid_api_key"
		elseif err.code == "MODEL_NOT_FOUND" then code = "model_not_found"; param = "model"
		elseif err.status >= 500 then typ = "server_error" end
		local r = oerr(err.status, err.message, typ, code, param)
		r.op = nil
		return r
	end,

	examples = {
		{ name = "generations", fn = "request",
			args = { { method = "POST", path = "/v1/images/generations", query = {}, headers = {},
				body = { model = "flux-any", prompt = "a cat", n = 2, size = "512x512" } } },
			expect = { op = "submit", model = "flux-any", wait = true, reply = "url",
				input = { prompt = "a cat", num_images = 2, image_size = { width = 512, height = 512 } } } },
		{ name = "no prompt", fn = "request",
			args = { { method = "POST", path = "/v1/images/generations", query = {}, headers = {}, body = { model = "m" } } },
			expect = { op = "respond", status = 400, body = { error = { param = "prompt", type = "invalid_request_error" } } } },
		{ name = "edit", fn = "request",
			args = { { method = "POST", path = "/v1/images/edits", query = {}, headers = {},
				form = { model = "m", prompt = "p" },
				files = { { field = "image", filename = "a.png", content_type = "image/png", data_url = "data:image/png;base64,AA==" } } } },
			expect = { op = "submit", input = { image_url = "data:image/png;base64,AA==" } } },
		{ name = "answer", fn = "respond",
			args = { "url", { job_id = "job_1", status = "succeeded", created_at = "2026-01-01T00:00:10.000Z",
				output = { type = "image", items = { { url = "https://x/a.png" } } } }, {} },
			expect = { status = 200, body = { created = 1767225610, data = { { url = "https://x/a.png" } } } } },
	},
}
