-- The body a ModelsLab webhook handler parses (docs/provider-facts.md, "ModelsLab"):
-- {status = "success" | "failed", id, output = [urls], track_id, message?}.
-- ModelsLab has no canceled state, so a canceled job is reported as failed.
local U = require("lib.util")

local STATUS = { succeeded = "success", failed = "failed", canceled = "failed" }

return {
	transform = function(event, ctx)
		local out = U.val(event.output)
		local urls = {}
		for _, it in ipairs(type(out) == "table" and U.val(out.items) or {}) do
			if type(it) == "table" and type(it.url) == "string" then urls[#urls + 1] = it.url end
		end
		local body = { status = STATUS[event.status] or event.status, id = event.job_id,
			output = ctx.array(urls), track_id = U.val(event.track_id) or ctx.null }
		if event.status ~= "succeeded" then
			local e = U.val(event.error)
			body.message = type(e) == "table" and U.val(e.message)
				or (event.status == "canceled" and "canceled" or "failed")
		end
		return { body = body }
	end,

	examples = {
		{ fn = "transform",
			args = { { type = "job.succeeded", job_id = "job_1", status = "succeeded", track_id = "t1",
				output = { type = "image", items = { { type = "image", url = "https://x/a.png" } } } } },
			expect = { body = { status = "success", id = "job_1", output = { "https://x/a.png" }, track_id = "t1" } } },
		{ fn = "transform",
			args = { { type = "job.failed", job_id = "job_1", status = "failed",
				error = { code = "PROVIDER_FAILURE", message = "boom" } } },
			expect = { body = { status = "failed", id = "job_1", message = "boom" } } },
	},
}
