-- {job_id, status, url}: url is the first output URL, null when there is none
-- (failed or canceled jobs).
local U = require("lib.util")

return {
	transform = function(event, ctx)
		local out = U.val(event.output)
		local items = type(out) == "table" and U.val(out.items) or nil
		local first = type(items) == "table" and items[1] or nil
		return { body = { job_id = event.job_id, status = event.status,
			url = type(first) == "table" and U.val(first.url) or ctx.null } }
	end,

	examples = {
		{ fn = "transform",
			args = { { type = "job.succeeded", job_id = "job_1", status = "succeeded",
				output = { type = "image", items = { { type = "image", url = "https://x/a.png" }, { type = "image", url = "https://x/b.png" } } } } },
			expect = { body = { job_id = "job_1", status = "succeeded", url = "https://x/a.png" } } },
	},
}
